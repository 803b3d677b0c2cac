"""What the fine-tuning gates measure: target-token cross-entropy of padded example batches, and the
per-language perplexity of the base's held-out data, from its token_shards version (model/evaluate.py's
split) or from reference texts; and the gate records built from those numbers (docs/finetuning.md).

Shape legend: B examples in a batch, T tokens (inputs; targets are the inputs shifted by one).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from model.loop import IGNORE  # targets that carry no loss (prompt tokens, padding)
from model.transformer import Transformer
from records.assets import TOKEN_SHARDS
from records.hashing import sha256_file
from records.manifest import version_folder
from records.models import RUN, load_record
from records.token_shards import stage_dirs

__all__ = [
    "IGNORE",
    "Encoded",
    "ReferenceData",
    "collate",
    "nll",
    "perplexity",
    "pretrained_root",
    "reference_from_token_shards",
    "reference_from_texts",
    "evaluate_gates",
]


@dataclass(frozen=True)
class Encoded:
    """An example's token ids and the first position whose token is a target (the response's start)."""

    ids: list[int]
    loss_from: int
    truncated: bool


def collate(items: list[Encoded], pad: int, multiple: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    """(inputs (B, T), targets (B, T)): right-padded; targets IGNORE before loss_from and on padding."""
    T = max(len(e.ids) for e in items) - 1
    T = -(-T // multiple) * multiple
    inputs = torch.full((len(items), T), pad, dtype=torch.int64)
    targets = torch.full((len(items), T), IGNORE, dtype=torch.int64)
    for b, e in enumerate(items):
        ids = torch.tensor(e.ids, dtype=torch.int64)
        inputs[b, : len(ids) - 1] = ids[:-1]
        targets[b, e.loss_from - 1 : len(ids) - 1] = ids[e.loss_from :]
    return inputs.to(device), targets.to(device)


def pad_multiple(model: Transformer) -> int:
    """What a batch's length is rounded up to: LASA attention works on whole key blocks."""
    a = model.cfg.attention
    return a.block_size if a.impl == "lasa" else 1


@torch.no_grad()
def nll(model: Transformer, items: list[Encoded], pad: int, batch_size: int, device) -> tuple[float, int]:
    """(summed target cross-entropy, target tokens) of the model in eval mode."""
    was_training = model.training
    model.eval()
    total, count = 0.0, 0
    try:
        for lo in range(0, len(items), batch_size):
            inputs, targets = collate(items[lo : lo + batch_size], pad, pad_multiple(model), device)
            logits = model(inputs)[0].float()
            total += float(F.cross_entropy(logits.flatten(0, 1), targets.flatten(), reduction="sum"))
            count += int((targets != IGNORE).sum())
    finally:
        model.train(was_training)
    return total, count


def perplexity(nll: float, tokens: int) -> dict:
    loss = nll / tokens
    return {"loss": loss, "perplexity": math.exp(loss), "tokens": tokens}


class ReferenceData:
    """The held-out data of the perplexity gate: evaluate(model) -> {language: {loss, perplexity, tokens}}."""

    def __init__(self, source: str, evaluate):
        self.source = source
        self.evaluate = evaluate


def pretrained_root(folder: Path) -> tuple[Path, dict]:
    """(folder, provenance record) of the trained_model a model version descends from through its
    fine-tuning records' "base" (the version itself when it is one)."""
    folder = Path(folder)
    record = load_record(folder)
    for _ in range(1000):  # a chain of fine-tunes; a cycle is impossible with content addresses
        base = record.get("base")
        if not isinstance(base, dict) or "model_version" not in base:
            return folder, record
        folder = version_folder(folder.parent.parent, base["model_version"])
        record = load_record(folder)
    raise AssertionError(f"{folder}: fine-tuning chain too long")


def reference_from_token_shards(base_folder: Path, eval_sequences: int, device) -> ReferenceData | None:
    """The pretraining run's held-out documents of every stage of its token_shards version (as
    model/evaluate.py splits them, with that run's fraction from its run.json), or None when that
    version is not in the data folder."""
    from model.evaluate import evaluate_split, merge_results, split_stage, stage_languages

    base_folder, base_record = pretrained_root(base_folder)

    ref = (base_record.get("datasets") or {}).get(TOKEN_SHARDS)
    if not ref:
        return None
    try:
        folder = version_folder(base_folder.parent.parent, ref)
    except ValueError:
        return None
    run_file = base_folder / RUN
    run_info = json.loads(run_file.read_text()) if run_file.exists() else {}
    fraction = run_info.get("held_out", {}).get("fraction", 0.02)
    splits = [
        split_stage(d, fraction, stage_languages(folder, d), eval_sequences) for d in stage_dirs(folder)
    ]

    def evaluate(model):
        result = merge_results(
            {s.name: evaluate_split(model, s, batch_size=8, device=device) for s in splits}
        )
        return result["languages"]

    return ReferenceData(f"{ref} held-out (fraction {fraction})", evaluate)


def reference_from_texts(path: Path, tokenizer, eot: int, pad: int, seq_len: int, device) -> ReferenceData:
    """A JSONL file of {"text", "language"}: each text between separators, cut into windows of seq_len."""
    by_language: dict[str, list[Encoded]] = {}
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines()):
        if not line.strip():
            continue
        record = json.loads(line)
        if not isinstance(record, dict) or not isinstance(record.get("text"), str):
            raise ValueError(
                f'{path} line {number + 1}: a reference text is {{"text": ..., "language": ...}}'
            )
        ids = [eot, *tokenizer.encode(record["text"], add_special_tokens=False).ids, eot]
        windows = by_language.setdefault(str(record.get("language") or "unknown"), [])
        for lo in range(0, len(ids) - 1, seq_len):
            windows.append(Encoded(ids[lo : lo + seq_len + 1], 1, False))

    def evaluate(model):
        return {lang: perplexity(*nll(model, w, pad, 8, device)) for lang, w in sorted(by_language.items())}

    return ReferenceData(f"{path.name} sha256 {sha256_file(path)}", evaluate)


def evaluate_gates(
    held_out_loss_margin: float,
    perplexity_margin: float,
    held_out: tuple[dict, dict],
    reference: tuple[dict, dict],
    source: str,
):
    """The gate records (docs/finetuning.md): each holds its numbers, its limit and whether it passed."""
    (base_ho, tuned_ho), (base_ref, tuned_ref) = held_out, reference
    limit = base_ho["loss"] * (1 + held_out_loss_margin)
    languages = {}
    for lang in sorted(base_ref):
        b, t = base_ref[lang]["perplexity"], tuned_ref[lang]["perplexity"]
        lim = b * (1 + perplexity_margin)
        languages[lang] = {"base": b, "finetuned": t, "limit": lim, "passed": t <= lim}
    return {
        "held_out_examples": {
            "metric": "mean cross-entropy on the held-out examples' target tokens",
            "base": base_ho["loss"],
            "finetuned": tuned_ho["loss"],
            "margin": held_out_loss_margin,
            "limit": limit,
            "tokens": base_ho["tokens"],
            "passed": tuned_ho["loss"] <= limit,
        },
        "base_perplexity": {
            "metric": "perplexity per language on the base's held-out data",
            "source": source,
            "margin": perplexity_margin,
            "languages": languages,
            "passed": bool(languages) and all(v["passed"] for v in languages.values()),
        },
    }
