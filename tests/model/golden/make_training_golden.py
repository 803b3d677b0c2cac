"""Golden data of the training loops: per-step losses and final-weight hashes under fixed seeds.

Each training entry point runs a few steps on a tiny deterministic input on the CPU, in one thread:
pre-training (model.train.train on the `tiny` recipe's model, once straight and once stopped and
resumed), staged training (model.staged_training.train_on_stages over the two-stage token_shards version of
tests/model/test_staged_training.py), fine-tuning (model.finetune.finetune of the hand-built base of
tests/model/test_finetune.py) and the benchmarks' loops (bench/train.py, bench/gpu_train.py --smoke).
Floats are kept exactly, as float.hex(); weights as the sha256 of their tensors (names sorted; name,
dtype, shape and bytes of each). Timings are left out.

The numbers were first written by the five separate loops and are what the one loop (model/loop.py)
must reproduce bit for bit (tests/model/test_training_golden.py). They hold for the torch version and
CPU kernel set recorded under "environment": another build may round differently.

    OMP_NUM_THREADS=1 python tests/model/golden/make_training_golden.py    # rewrites training_golden.json
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import tempfile
from collections.abc import Iterable
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
REPO = Path(__file__).resolve().parents[3]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import torch  # noqa: E402

GOLDEN = Path(__file__).with_name("training_golden.json")
STEP_FIELDS = ("loss", "lm_loss", "aux_loss", "lr", "grad_norm")


def environment() -> dict:
    """What the exact numbers depend on besides the code: the torch build and its CPU kernels."""
    return {"torch": torch.__version__, "cpu_capability": torch.backends.cpu.get_cpu_capability()}


def hex_floats(values: Iterable[float | None]) -> list[str | None]:
    return [None if v is None else float(v).hex() for v in values]


def steps(history: list[dict]) -> dict[str, list]:
    """The computed fields of the per-step records (not their timings), floats as hex."""
    out = {"step": [h["step"] for h in history]}
    for field in STEP_FIELDS:
        out[field] = hex_floats(h[field] for h in history)
    if "expert_load" in history[0]:  # tokens per expert per layer per step, as one hash
        out["expert_load_sha256"] = hashlib.sha256(
            json.dumps([h["expert_load"] for h in history]).encode()
        ).hexdigest()
    return out


def weights_sha256(state: dict[str, torch.Tensor]) -> str:
    """sha256 over the tensors in name order: each name, dtype, shape and raw bytes."""
    h = hashlib.sha256()
    for name in sorted(state):
        t = state[name].detach().cpu().contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}\n".encode())
        h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def safetensors_sha256(path: Path) -> str:
    from safetensors.torch import load_file

    return weights_sha256(load_file(str(path)))


def as_recorded(run):
    """``run`` with the attention the golden runs were recorded with: dense. The tiny recipe has used
    LASA since (issue 17); the golden numbers pin the loops, so the cases keep their computation."""
    import dataclasses

    from model.config import RunConfig

    dense = dataclasses.replace(run.model.attention, impl="dense")
    return RunConfig(dataclasses.replace(run.model, attention=dense), run.train)


def pretraining(tmp: Path) -> dict:
    """model.train.train: 6 steps of the tiny recipe's model (4 x 64 tokens) on a Markov corpus, straight
    and again stopped after 3 steps (a checkpoint) and resumed."""
    from model.data import MemmapTokens, write_markov_tokens
    from model.train import EXPORT_FILE, train
    from tests.model.conftest import tiny_run

    write_markov_tokens(tmp / "markov.bin", 20_000, num_states=256, branching=4, seed=0)
    data = MemmapTokens(tmp / "markov.bin", 64)
    run = as_recorded(tiny_run(max_steps=6, warmup_steps=2, decay_steps=2, checkpoint_every=3))
    straight = train(run, data, tmp / "straight")
    first = train(run, data, tmp / "resumed", stop_after=3)
    second = train(run, data, tmp / "resumed")
    return {
        "steps": steps(straight),
        "weights_sha256": safetensors_sha256(tmp / "straight" / EXPORT_FILE),
        "resumed_steps": steps(first + second),
        "resumed_weights_sha256": safetensors_sha256(tmp / "resumed" / EXPORT_FILE),
    }


def staged(tmp: Path) -> dict:
    """model.staged_training.train_on_stages: 6 steps over two stages of 32-token sequences, evaluated per stage."""
    from model.staged_training import train_on_stages
    from tests.model.conftest import tiny_run
    from tests.model.test_staged_training import write_token_shards

    shards = write_token_shards(tmp / "datasets", tmp / "work")
    run = as_recorded(tiny_run(seq_len=32, max_steps=6, warmup_steps=2, decay_steps=2, checkpoint_every=0))
    out = tmp / "run"
    summary = train_on_stages(
        run, shards, out, held_out_fraction=0.1, eval_sequences=8, log=lambda line: None
    )
    return {
        "steps": steps(summary.history),
        "stages": [h["stage"] for h in summary.history],
        "evaluations": [
            {
                "step": e["step"],
                "stage": e["stage"],
                "perplexity": hex_floats([e["overall"]["perplexity"]])[0],
            }
            for e in summary.evaluations
        ],
        "weights_sha256": safetensors_sha256(out / "model.safetensors"),
    }


def finetuning(tmp: Path) -> dict:
    """model.finetune.finetune: 6 steps of 4 examples on a base pre-trained 5 steps, its gates."""
    from model.finetune import FinetuneConfig, finetune
    from tests.model.test_finetune import SAMPLE, build_base

    (tmp / "data").mkdir()
    layout, ref, reference = build_base(tmp / "data", pretrain_steps=5)
    cfg = FinetuneConfig(
        steps=6,
        batch_size=4,
        max_tokens=64,
        warmup_steps=1,
        peak_lr=1e-3,
        eval_sequences=4,
        perplexity_margin=1.0,
        held_out_loss_margin=0.5,
    )
    out = tmp / "run"
    run = finetune(layout.datasets / ref, SAMPLE, out, cfg, reference_texts=reference, log=lambda line: None)
    metrics = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    return {
        "steps": {
            **steps(metrics),
            "target_tokens": [m["target_tokens"] for m in metrics],
        },
        "usage_root": run["examples"]["root"],
        "held_out_loss": hex_floats([run["metrics"]["held_out_loss"]])[0],
        "certifiable": run["certifiable"],
        "weights_sha256": safetensors_sha256(out / "model.safetensors"),
    }


def _load_bench(name: str):
    from tests.bench._load import load_bench

    return load_bench(name)


def bench_train(tmp: Path) -> dict:
    """bench/train.py's measuring loop: 4 steps of its tiny MoE variant (8 x 128 tokens)."""
    from model.data import MemmapTokens, write_markov_tokens

    bench = _load_bench("train")
    run = as_recorded(bench._variants(4, padded=False)["moe-dropless"])
    write_markov_tokens(tmp / "tokens.bin", 20_000)
    history = bench._measure(run, MemmapTokens(tmp / "tokens.bin", run.train.seq_len), tmp / "ckpt")
    return {"steps": steps(history)}


def bench_gpu_train(tmp: Path) -> dict:
    """bench/gpu_train.py --smoke's loops: the first-step loss check and 2 steps of each recipe."""
    bench = _load_bench("gpu_train")
    check = bench.loss_check(bench.smoke_recipe(bench.RECIPES[0]), tmp)
    out = {"loss_check": hex_floats([check["engine_loss"], check["cpu_fp32_loss"]])}
    for name in bench.RECIPES:
        r = bench.train_recipe(bench.smoke_recipe(name), tmp, 1e9, None)
        out[name] = {"steps": r["steps"], "losses": hex_floats([r["first_loss"], r["last_loss"]])}
    return out


RUNS = {
    "pretraining": pretraining,
    "staged": staged,
    "finetuning": finetuning,
    "bench_train": bench_train,
    "bench_gpu_train": bench_gpu_train,
}


def collect(name: str, tmp: Path) -> dict:
    """Run one of RUNS in a fresh folder under tmp, on one CPU thread; its golden record."""
    torch.set_num_threads(1)
    folder = Path(tmp) / name
    folder.mkdir(parents=True)
    return RUNS[name](folder)


def main() -> None:
    from records.keys import KEYS_ENV, create_identity

    with tempfile.TemporaryDirectory() as tmp:
        if KEYS_ENV not in os.environ:  # the fine-tuning base is pinned in a signed ledger
            create_identity(Path(tmp) / "keys")
            os.environ[KEYS_ENV] = str(Path(tmp) / "keys")
        golden = {"environment": environment()}
        golden.update({name: collect(name, Path(tmp)) for name in RUNS})
    GOLDEN.write_text(json.dumps(golden, indent=1, sort_keys=True) + "\n")
    print(f"wrote {GOLDEN.relative_to(REPO)}")


if __name__ == "__main__":
    main()
