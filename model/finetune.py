"""SovereignTune: fine-tune a released checkpoint on a file of examples, on one process, with every
example's use recorded as a leaf of the run's Merkle tree and evaluation gates that decide whether the
run may be certified.

    python -m model.finetune --base <data>/datasets/trained_model/<id> --examples FILE.jsonl --out DIR

The base version's model.safetensors is loaded (model/export.py) and trained with plain torch AdamW
(DeepSpeed-MoE's layer runs without its engine at ep_size=1). Examples (records/finetune.py) are
tokenized with the base's tokenizer as <|endoftext|> prompt response <|endoftext|>: for a
{"prompt", "response"} example only the response and the closing separator are targets, for a
{"text"} example every token. Optimizer step s trains on the examples batch_indices(num_train, s,
batch_size, seed) names (model/data.py), so the run is a pure function of (base, examples, config).

Gates (FinetuneConfig margins): the loss on the held-out examples must not exceed the base's by more
than held_out_loss_margin (relative), and per language, perplexity on the base's own held-out data
(the token_shards version of its record, split as model/evaluate.py splits it; or --reference-texts)
must not exceed the base's by more than perplexity_margin. DIR receives model.safetensors,
examples.jsonl, usage.jsonl, metrics.jsonl, evaluation.json and run.json; `apertus finetune` seals it.
"""

from __future__ import annotations

import argparse
import dataclasses
import shutil
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import save_file

from model.data import batch_indices
from model.export import load_safetensors
from model.finetune_eval import (
    Encoded,
    collate,
    evaluate_gates,
    nll,
    pad_multiple,
    perplexity,
    pretrained_root,
    reference_from_texts,
    reference_from_token_shards,
)
from model.loop import AdamWConfig, LoopConfig, TorchStep, run_loop
from model.transformer import Transformer
from records.assets import TOKENIZER
from records.canonical import canonical_json, write_record
from records.finetune import (
    EXAMPLES_FILE,
    RUN_FORMAT,
    USAGE_FILE,
    Example,
    hardware_record,
    read_examples,
    seal_examples,
    seal_finetune,
    split_held_out,
    usage_line,
    usage_root,
)
from records.hashing import sha256_file
from records.layout import DataLayout
from records.manifest import Manifest, load_manifest, version_folder
from records.models import EVALUATION, EXPORT_FILE, METRICS, RECORD, RUN, load_record, metrics_lines
from records.tokenizer import TOKENIZER_FILE

__all__ = ["FinetuneConfig", "encode_example", "save_safetensors", "finetune", "finetune_and_seal", "main"]

END_OF_TEXT, PAD = "<|endoftext|>", "<|pad|>"  # pipelines/tokenizer.py: ids 0 and 1


@dataclass(frozen=True)
class FinetuneConfig:
    """One fine-tuning run. The learning rate warms up linearly over warmup_steps (at most all steps),
    then decays linearly to final_lr at the last step. max_tokens: an example longer than this is cut
    (counted as truncated).

    held_out_fraction: share of the examples never trained on, for the held-out-loss gate.
    held_out_loss_margin: fine-tuned held-out loss <= base loss * (1 + margin).
    perplexity_margin: per language, perplexity on the base's held-out data <= base's * (1 + margin).
    eval_sequences: held-out sequences per stage of the base's token_shards evaluated for that gate.
    """

    steps: int = 30
    batch_size: int = 8
    max_tokens: int = 256
    peak_lr: float = 3e-4
    final_lr: float = 3e-5
    warmup_steps: int = 4
    weight_decay: float = 0.0
    betas: tuple[float, float] = (0.9, 0.95)
    grad_clip: float = 1.0
    seed: int = 0
    held_out_fraction: float = 0.1
    held_out_loss_margin: float = 0.0
    perplexity_margin: float = 0.25
    eval_sequences: int = 32

    def loop_config(self) -> LoopConfig:
        """The training loop of this run: linear warmup over warmup_steps (at most all steps; a run shorter
        than the warmup just warms up), then linear decay to final_lr; plain AdamW, no checkpoints."""
        warmup = min(self.warmup_steps, self.steps)
        optimizer = AdamWConfig(betas=self.betas, weight_decay=self.weight_decay, grad_clip=self.grad_clip)
        return LoopConfig(
            max_steps=self.steps,
            peak_lr=self.peak_lr,
            final_lr=self.final_lr,
            warmup_end=warmup,
            decay_start=warmup,
            optimizer=optimizer,
        )

    def __post_init__(self):
        if self.steps < 1 or self.batch_size < 1 or self.max_tokens < 2:
            raise ValueError(f"FinetuneConfig: need steps >= 1, batch_size >= 1, max_tokens >= 2; got {self}")
        if self.warmup_steps < 0:
            raise ValueError(f"FinetuneConfig.warmup_steps={self.warmup_steps}; must be >= 0")
        if min(self.held_out_loss_margin, self.perplexity_margin) < 0:
            raise ValueError("FinetuneConfig: margins are allowed relative increases, >= 0")


def _load_tokenizer(path: Path):
    from tokenizers import Tokenizer

    if not path.is_file():
        raise ValueError(f"{path}: the base's tokenizer is missing (provenance.json datasets.tokenizer)")
    tokenizer = Tokenizer.from_file(str(path))
    # Text that spells a special token gets ordinary tokens for it (as pipelines/tokenizer.py loads it).
    tokenizer.encode_special_tokens = True
    return tokenizer


def encode_example(tokenizer, example: Example, eot: int, max_tokens: int) -> Encoded:
    """<|endoftext|> prompt response <|endoftext|> (or the text between separators), cut to max_tokens."""

    def enc(text: str) -> list[int]:
        return tokenizer.encode(text, add_special_tokens=False).ids if text else []

    r = example.record
    if "text" in r:
        ids, loss_from = [eot, *enc(r["text"]), eot], 1
    else:
        prompt = enc(r["prompt"])
        ids, loss_from = [eot, *prompt, *enc(r["response"]), eot], 1 + len(prompt)
    truncated = len(ids) > max_tokens
    return Encoded(ids[:max_tokens], min(loss_from, max_tokens - 1), truncated)


def save_safetensors(model: Transformer, path: str | Path) -> Path:
    """The model's parameters as model/export.py writes them (tied embeddings once, the ModelConfig as
    JSON metadata), so model.export.load_safetensors reads it back."""
    state = {n: t.detach().cpu().contiguous() for n, t in model.state_dict().items()}
    if model.cfg.tie_embeddings:
        state.pop("head.weight")
    save_file(
        state, str(path), metadata={"model_config": canonical_json(dataclasses.asdict(model.cfg)).decode()}
    )
    return Path(path)


def finetune(
    base_folder: str | Path,
    examples_path: str | Path,
    out_dir: str | Path,
    cfg: FinetuneConfig,
    *,
    reference_texts: str | Path | None = None,
    log=print,
) -> dict:
    """Fine-tune the base version in base_folder on examples_path (see the module docstring) into out_dir
    and return its run record (run.json). ValueError for a base without its tokenizer or held-out data,
    or examples the tokenizer's vocabulary exceeds the model's for."""
    base_folder, out_dir = Path(base_folder), Path(out_dir)
    base_manifest = load_manifest(base_folder)
    base_record = load_record(base_folder)
    datasets_root = base_folder.parent.parent
    tokenizer_ref = (pretrained_root(base_folder)[1].get("datasets") or {}).get(TOKENIZER)
    if not tokenizer_ref:
        raise ValueError(f"{base_folder / RECORD}: names no tokenizer version (datasets.tokenizer)")
    tokenizer = _load_tokenizer(version_folder(datasets_root, tokenizer_ref) / TOKENIZER_FILE)
    eot, pad = tokenizer.token_to_id(END_OF_TEXT), tokenizer.token_to_id(PAD)

    torch.manual_seed(cfg.seed)
    torch.use_deterministic_algorithms(True, warn_only=True)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    model = load_safetensors(base_folder / EXPORT_FILE).to(device)
    if tokenizer.get_vocab_size() > model.cfg.vocab_size:
        raise ValueError(
            f"{tokenizer_ref}: vocabulary of {tokenizer.get_vocab_size()}, "
            f"the model's is {model.cfg.vocab_size}"
        )
    max_tokens = min(cfg.max_tokens, model.cfg.max_seq_len + 1)

    examples = read_examples(examples_path)
    train, held = split_held_out(examples, cfg.held_out_fraction)
    encoded = {e.sha256: encode_example(tokenizer, e, eot, max_tokens) for e in examples}
    reference = (
        reference_from_texts(Path(reference_texts), tokenizer, eot, pad, max_tokens - 1, device)
        if reference_texts
        else reference_from_token_shards(base_folder, cfg.eval_sequences, device)
    )
    if reference is None:
        raise ValueError(
            f"{base_folder}: its token_shards version is not in {datasets_root}, so the perplexity gate has "
            "no held-out data; pass --reference-texts FILE.jsonl ({'text', 'language'} per line)"
        )
    held_items = [encoded[e.sha256] for e in held]
    base_ho = perplexity(*nll(model, held_items, pad, cfg.batch_size, device))
    base_ref = reference.evaluate(model)
    log(
        f"base: held-out example loss {base_ho['loss']:.4f}; reference perplexity "
        + ", ".join(f"{k} {v['perplexity']:.1f}" for k, v in base_ref.items())
    )

    out_dir.mkdir(parents=True, exist_ok=True)
    model.train()
    loop = cfg.loop_config()
    step = TorchStep.for_model(model, loop)
    usage, started = [], time.perf_counter()

    def batch(global_step: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The step's examples, each use recorded as a usage leaf (step, slot), collated."""
        idx = batch_indices(len(train), global_step, cfg.batch_size, cfg.seed).tolist()
        examples = [train[i] for i in idx]
        usage.extend(usage_line(e.sha256, global_step, slot) for slot, e in enumerate(examples))
        return collate([encoded[e.sha256] for e in examples], pad, pad_multiple(model), device)

    def on_step(record: dict) -> None:
        log(f"step {record['step'] + 1}/{cfg.steps} loss {record['lm_loss']:.4f} lr {record['lr']:.2e}")

    metrics = run_loop(loop, step, batch, on_step=on_step)
    elapsed = time.perf_counter() - started

    tuned_ho = perplexity(*nll(model, held_items, pad, cfg.batch_size, device))
    tuned_ref = reference.evaluate(model)
    gates = evaluate_gates(
        cfg.held_out_loss_margin,
        cfg.perplexity_margin,
        (base_ho, tuned_ho),
        (base_ref, tuned_ref),
        reference.source,
    )
    certifiable = all(g["passed"] for g in gates.values())
    log(
        f"held-out example loss {base_ho['loss']:.4f} -> {tuned_ho['loss']:.4f}; gates "
        + ", ".join(f"{k} {'passed' if g['passed'] else 'FAILED'}" for k, g in gates.items())
    )

    save_safetensors(model, out_dir / EXPORT_FILE)
    held_shas = {e.sha256 for e in held}
    with open(out_dir / EXAMPLES_FILE, "w", encoding="utf-8") as f:
        for e in examples:
            enc = encoded[e.sha256]
            row = {
                "line": e.line,
                "sha256": e.sha256,
                "split": "held_out" if e.sha256 in held_shas else "train",
                "kind": e.kind,
                "language": e.language,
                "tokens": len(enc.ids),
                "target_tokens": len(enc.ids) - enc.loss_from,
                "truncated": enc.truncated,
            }
            f.write(canonical_json(row).decode() + "\n")
    (out_dir / USAGE_FILE).write_bytes(b"".join(line + b"\n" for line in usage))
    (out_dir / METRICS).write_bytes(metrics_lines(metrics))
    evaluation = {
        "format": "apertus.finetune-evaluation/1",
        "gates": gates,
        "certifiable": certifiable,
        "held_out_examples": {"base": base_ho, "finetuned": tuned_ho},
        "reference": {"source": reference.source, "base": base_ref, "finetuned": tuned_ref},
    }
    write_record(out_dir / EVALUATION, evaluation)
    tokens = sum(m["target_tokens"] for m in metrics)
    run = {
        "format": RUN_FORMAT,
        "base": {
            "model_version": base_manifest.ref,
            "model_sha256": sha256_file(base_folder / EXPORT_FILE),
            "record_sha256": sha256_file(base_folder / RECORD),
            TOKENIZER: tokenizer_ref,
        },
        "model": {
            "recipe": (base_record.get("model") or {}).get("recipe"),
            "config": dataclasses.asdict(model.cfg),
            "parameters": (base_record.get("model") or {}).get("parameters"),
        },
        "examples": {
            "file_name": Path(examples_path).name,
            "file_sha256": sha256_file(examples_path),
            "count": len(examples),
            "train": len(train),
            "held_out": len(held),
            "truncated": sum(encoded[e.sha256].truncated for e in examples),
            "leaves": len(usage),
            "root": usage_root(usage),
            "tree": "RFC 6962 over the lines of usage.jsonl, in order",
        },
        "config": dataclasses.asdict(cfg),
        "gates": gates,
        "certifiable": certifiable,
        "metrics": {
            "steps": cfg.steps,
            "first_loss": metrics[0]["lm_loss"],
            "final_loss": metrics[-1]["lm_loss"],
            "held_out_loss_base": base_ho["loss"],
            "held_out_loss": tuned_ho["loss"],
            "target_tokens_per_s": tokens / elapsed,
        },
        "hardware": {**hardware_record(), "device": str(device), "torch": torch.__version__},
    }
    write_record(out_dir / RUN, run)
    return run


def finetune_and_seal(
    layout: DataLayout,
    base_folder: str | Path,
    examples: str | Path,
    cfg: FinetuneConfig,
    *,
    reference_texts: str | Path | None = None,
    log=print,
) -> tuple[Manifest, dict]:
    """Seal the examples as a finetune_examples version, fine-tune the base version in base_folder on
    that sealed copy (``finetune``) and seal the run as a finetuned_model version with its ledger entry;
    return (the new version's manifest, the run record). The run folder under the layout's work folder
    is removed either way. ``apertus finetune`` and the finetuned_model asset both run this."""
    examples_manifest, created = seal_examples(layout, examples)
    log(
        f"examples: {examples_manifest.ref} ({examples_manifest.stats['examples']} examples, "
        f"{'new' if created else 'already sealed'})"
    )
    sealed_examples = version_folder(layout.datasets, examples_manifest.ref) / EXAMPLES_FILE
    run_dir = layout.work / "finetune" / uuid.uuid4().hex[:12]
    try:
        run = finetune(base_folder, sealed_examples, run_dir, cfg, reference_texts=reference_texts, log=log)
        manifest, index = seal_finetune(layout, run_dir, examples_manifest.ref)
    finally:
        shutil.rmtree(run_dir, ignore_errors=True)
    where = f"ledger entry {index}" if index is not None else "identical version existed"
    log(
        f"sealed {manifest.ref} ({where}); examples root {run['examples']['root']}; "
        f"certifiable: {run['certifiable']}"
    )
    return manifest, run


def add_finetune_arguments(p: argparse.ArgumentParser) -> None:
    """The FinetuneConfig options shared by `python -m model.finetune` and `apertus finetune`."""
    defaults = FinetuneConfig()
    for field in dataclasses.fields(FinetuneConfig):
        if field.name == "betas":
            continue
        value = getattr(defaults, field.name)
        p.add_argument(
            f"--{field.name.replace('_', '-')}", type=type(value), default=value, help=f"(default {value})"
        )
    p.add_argument(
        "--reference-texts",
        help="JSONL of {text, language}: the perplexity gate's held-out data "
        "when the base's token_shards version is not in the data folder",
    )


def config_from_args(args: argparse.Namespace) -> FinetuneConfig:
    """FinetuneConfig from the parsed options of add_finetune_arguments."""
    names = [f.name for f in dataclasses.fields(FinetuneConfig) if f.name != "betas"]
    return FinetuneConfig(**{n: getattr(args, n) for n in names})


def main(argv=None) -> None:
    p = argparse.ArgumentParser(prog="python -m model.finetune", description=__doc__.split("\n\n")[0])
    p.add_argument("--base", required=True, help="a trained_model (or finetuned_model) version folder")
    p.add_argument("--examples", required=True, help='JSONL: {"prompt", "response"} or {"text"} per line')
    p.add_argument("--out", required=True, help="run folder (sealed by `apertus finetune`)")
    add_finetune_arguments(p)
    args = p.parse_args(argv)
    run = finetune(
        args.base,
        args.examples,
        args.out,
        config_from_args(args),
        reference_texts=args.reference_texts,
        log=lambda line: print(line, flush=True),
    )
    print(f"examples root {run['examples']['root']}; certifiable: {run['certifiable']}")


if __name__ == "__main__":
    main()
