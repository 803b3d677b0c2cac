"""Training throughput of the tiny MoE recipe against a dense model of the same active size.

Both go through model.train.train (DeepSpeed engine, ZeRO-1, one process) on the same synthetic corpus,
alternating in rounds so that load from other processes hits both alike; the figure is the median
tokens/s over the steps after the first few. Prints the MoE/dense ratio (goal on CPU: >= 0.7) and
writes bench/out/train.json.

    OMP_NUM_THREADS=1 python bench/train.py [--steps 15] [--rounds 2]
"""

import argparse
import dataclasses
import json
import os
import statistics
import tempfile
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

from model.config import RunConfig, tiny, tiny_dense  # noqa: E402
from model.data import MemmapTokens, write_markov_tokens  # noqa: E402
from model.train import train  # noqa: E402
from model.transformer import count_parameters  # noqa: E402

SKIP = 3  # first steps: allocator and ZeRO buffer warm-up


def _variants(steps: int) -> dict[str, RunConfig]:
    def short(run: RunConfig) -> RunConfig:
        t = dataclasses.replace(run.train, max_steps=steps, warmup_steps=2, decay_steps=2, checkpoint_every=0)
        return RunConfig(run.model, t)

    moe = short(tiny())
    capped = dataclasses.replace(moe.model.moe, drop_tokens=True, capacity_factor=1.25)
    return {
        "moe-dropless": moe,
        "moe-capacity-1.25": RunConfig(dataclasses.replace(moe.model, moe=capped), moe.train),
        "dense": short(tiny_dense()),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--steps", type=int, default=15)
    p.add_argument("--rounds", type=int, default=2)
    args = p.parse_args()
    variants = _variants(args.steps)
    seq_len = variants["dense"].train.seq_len
    samples: dict[str, list[float]] = {name: [] for name in variants}
    # Busiest expert's load / mean load: dropless pads every expert to the busiest one.
    peaks: dict[str, list[float]] = {name: [] for name in variants}
    with tempfile.TemporaryDirectory() as tmp:
        write_markov_tokens(Path(tmp) / "tokens.bin", 400_000)
        data = MemmapTokens(Path(tmp) / "tokens.bin", seq_len)
        for r in range(args.rounds):
            for name, run in variants.items():
                history = train(run, data, Path(tmp) / f"{name}-{r}", export=False)
                samples[name] += [h["tokens_per_s"] for h in history[SKIP:]]
                peaks[name] += [
                    max(c) * len(c) / max(sum(c), 1) for h in history[SKIP:] for c in h["expert_load"] if c
                ]
    result = {
        "threads": int(os.environ["OMP_NUM_THREADS"]),
        "tokens_per_step": variants["dense"].train.micro_batch_size * seq_len,
    }
    for name, run in variants.items():
        total, active = count_parameters(run.model)
        result[name] = {
            "tokens_per_s": statistics.median(samples[name]),
            "params_total": total,
            "params_active": active,
            "busiest_expert_over_mean": statistics.mean(peaks[name]) if peaks[name] else None,
        }
    for name in ("moe-dropless", "moe-capacity-1.25"):
        result[f"ratio_{name}_vs_dense"] = result[name]["tokens_per_s"] / result["dense"]["tokens_per_s"]
    out = Path(__file__).parent / "out"
    out.mkdir(exist_ok=True)
    (out / "train.json").write_text(json.dumps(result, indent=2))
    for name in variants:
        r = result[name]
        print(
            f"{name:>18}: {r['tokens_per_s']:8.0f} tokens/s  (params {r['params_total'] / 1e6:.2f}M total, "
            f"{r['params_active'] / 1e6:.2f}M active)"
            + (
                f", busiest expert {r['busiest_expert_over_mean']:.1f}x the mean load"
                if r["busiest_expert_over_mean"]
                else ""
            )
        )
    for name in ("moe-dropless", "moe-capacity-1.25"):
        print(f"ratio {name} / dense: {result[f'ratio_{name}_vs_dense']:.2f}  (goal >= 0.7)")


if __name__ == "__main__":
    main()
