"""Held-out documents of a token_shards version and the model's perplexity on them, per language.

A document is held out when a hash of its sha256 (its text) falls below ``fraction``, so the same
text is held out in every stage and every copy. Per stage, a sequence is held out when every
document slice in it belongs to a held-out document, trained on when none does; sequences that mix
both are used for neither (counted as ``mixed``). Held-out tokens are thereby never training
targets, nor are any other tokens of their documents.

Each target token is attributed to the language of the document it belongs to (the stage file of
the ``curriculum_stages`` version the token_shards index names, joined on ``position``);
``<|endoftext|>`` separators count in ``overall`` only. Perplexity = exp(mean cross-entropy).
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import torch
import torch.nn.functional as F

from model.data import TokenShards
from records.curriculum import STAGES
from records.token_shards import read_index, sequences_file

__all__ = ["StageSplit", "held_out_mask", "stage_languages", "split_stage", "evaluate_split", "merge_results"]

UNKNOWN = "unknown"


def held_out_mask(sha256s: list[str], fraction: float) -> np.ndarray:
    """True for the documents held out: sha256("held-out:" + their sha256) below fraction of the range."""
    limit = int(fraction * (1 << 64))
    held = {
        s: int.from_bytes(hashlib.sha256(f"held-out:{s}".encode()).digest()[:8], "big") < limit
        for s in set(sha256s)
    }
    return np.array([held[s] for s in sha256s], dtype=bool)


def stage_languages(token_shards_folder: Path, stage_dir: Path) -> dict[int, str]:
    """position -> language of the stage's documents, from the stage file of the curriculum_stages
    version that token_shards' index.json names (a sibling under the same datasets folder); {} when that
    version is not there."""
    index = read_index(token_shards_folder)
    ref = index.get("stages_version")
    if not ref:
        return {}
    asset, _, version = ref.partition("/")
    matches = sorted((Path(token_shards_folder).parent.parent / asset).glob(f"{version}*"))
    path = matches[0] / STAGES / f"{Path(stage_dir).name}.parquet" if len(matches) == 1 else None
    if path is None or not path.exists():
        return {}
    table = pq.read_table(path, columns=["position", "language"])
    return {
        int(p): (lang or UNKNOWN)
        for p, lang in zip(table["position"].to_pylist(), table["language"].to_pylist(), strict=True)
    }


@dataclass
class StageSplit:
    """One stage's sequences split into training and held-out ones.

    train / held_out: sequence indices (ascending). labels: for each held-out sequence, the language
    code (index into languages) of each of its seq_len + 1 tokens, -1 for separators.
    """

    name: str
    data: TokenShards
    train: np.ndarray
    held_out: np.ndarray
    mixed: int
    held_out_documents: int
    languages: list[str]
    labels: np.ndarray

    def summary(self) -> dict:
        tokens = np.bincount(self.labels[:, 1:].ravel() + 1, minlength=len(self.languages) + 1)[1:]
        return {
            "sequences": len(self.data),
            "train_sequences": len(self.train),
            "held_out_sequences": len(self.held_out),
            "mixed_sequences_unused": self.mixed,
            "held_out_documents": self.held_out_documents,
            "held_out_tokens_by_language": {
                lang: int(n) for lang, n in zip(self.languages, tokens, strict=True) if n
            },
        }


def split_stage(
    stage_dir: Path, fraction: float, languages: dict[int, str] | None = None, max_held_out: int | None = None
) -> StageSplit:
    """Split a stage folder's sequences (see the module docstring); max_held_out keeps the first that
    many held-out sequences for evaluation (the rest are still never trained on)."""
    stage_dir = Path(stage_dir)
    data = TokenShards(stage_dir)
    table = pq.read_table(
        sequences_file(stage_dir),
        columns=["sequence", "sha256", "doc_id", "position", "token_start", "token_end"],
    )
    keys = [s or d for s, d in zip(table["sha256"].to_pylist(), table["doc_id"].to_pylist(), strict=True)]
    held_doc = held_out_mask(keys, fraction) if fraction > 0 else np.zeros(len(keys), bool)
    sequence = table["sequence"].to_numpy()
    n = len(data)
    slices = np.bincount(sequence, minlength=n)
    held_slices = np.bincount(sequence[held_doc], minlength=n)
    held_out = np.flatnonzero((slices > 0) & (held_slices == slices))
    train = np.flatnonzero(held_slices == 0)
    mixed = n - len(held_out) - len(train)
    eval_rows = held_out if max_held_out is None else held_out[:max_held_out]

    languages = languages or {}
    positions = table["position"].to_numpy()
    names = sorted({languages.get(int(p), UNKNOWN) for p in positions[held_doc]})
    code = {lang: i for i, lang in enumerate(names)}
    labels = np.full((len(eval_rows), data.seq_len + 1), -1, dtype=np.int32)
    row_of = {int(s): i for i, s in enumerate(eval_rows)}
    starts, ends = table["token_start"].to_numpy(), table["token_end"].to_numpy()
    for r in np.flatnonzero(held_doc):
        i = row_of.get(int(sequence[r]))
        if i is not None:
            labels[i, starts[r] : ends[r]] = code[languages.get(int(positions[r]), UNKNOWN)]
    documents = len(set(np.asarray(keys, dtype=object)[held_doc].tolist()))
    return StageSplit(stage_dir.name, data, train, eval_rows, mixed, documents, names, labels)


@torch.no_grad()
def evaluate_split(model: torch.nn.Module, split: StageSplit, *, batch_size: int = 8, device=None) -> dict:
    """Cross-entropy sums and token counts of the model on split's held-out sequences, per language and
    overall: {"languages": {lang: [nll_sum, tokens]}, "overall": [nll_sum, tokens]}. The model is put
    in eval mode and back into the mode it was in."""
    was_training = model.training
    model.eval()
    sums = torch.zeros(len(split.languages) + 1, dtype=torch.float64)
    counts = torch.zeros(len(split.languages) + 1, dtype=torch.float64)
    try:
        for lo in range(0, len(split.held_out), batch_size):
            rows = split.held_out[lo : lo + batch_size]
            batch = torch.stack([split.data[int(i)] for i in rows]).to(device)
            logits = model(batch[:, :-1])[0].float()
            nll = (
                F.cross_entropy(logits.flatten(0, 1), batch[:, 1:].flatten(), reduction="none").double().cpu()
            )
            codes = torch.from_numpy(split.labels[lo : lo + len(rows), 1:].ravel().astype(np.int64)) + 1
            sums += torch.bincount(codes, weights=nll, minlength=len(sums))
            counts += torch.bincount(codes, minlength=len(counts)).double()
    finally:
        model.train(was_training)
    return {
        "languages": {
            lang: [float(sums[i + 1]), int(counts[i + 1])]
            for i, lang in enumerate(split.languages)
            if counts[i + 1]
        },
        "overall": [float(sums.sum()), int(counts.sum())],
    }


def _perplexity(nll_sum: float, tokens: int) -> dict:
    # No tokens: nothing was measured, recorded as null (the records' canonical JSON has no NaN).
    if not tokens:
        return {"loss": None, "perplexity": None, "tokens": 0}
    loss = nll_sum / tokens
    return {"loss": loss, "perplexity": math.exp(loss), "tokens": tokens}


def merge_results(by_stage: dict[str, dict]) -> dict:
    """Per language and overall, loss / perplexity / tokens over the held-out sets of all stages, and
    the same per held-out stage."""
    languages: dict[str, list[float]] = {}
    overall = [0.0, 0]
    for result in by_stage.values():
        for lang, (s, n) in result["languages"].items():
            acc = languages.setdefault(lang, [0.0, 0])
            acc[0] += s
            acc[1] += n
        overall[0] += result["overall"][0]
        overall[1] += result["overall"][1]
    return {
        "perplexity": {lang: _perplexity(*acc)["perplexity"] for lang, acc in sorted(languages.items())},
        "languages": {lang: _perplexity(*acc) for lang, acc in sorted(languages.items())},
        "overall": _perplexity(*overall),
        "by_held_out_stage": {
            stage: {
                "languages": {lang: _perplexity(*v) for lang, v in sorted(r["languages"].items())},
                "overall": _perplexity(*r["overall"]),
            }
            for stage, r in by_stage.items()
        },
    }
