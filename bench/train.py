"""Training throughput of the tiny MoE recipe against a dense model of the same active size.

Every variant trains through model.train's own setup_engine and the one training loop (model/loop.py:
DeepSpeed engine, ZeRO-1, one process, the WSD schedule) on the same synthetic corpus. They run in
rounds, in forward order in even rounds and reversed in odd ones, so that load from other processes hits all of them alike. A variant's
figure in a round is its median over the steps after the first few, of two measures: tokens per second of
wall time (what train() reports) and tokens per second of this process's CPU time, which on a shared
machine does not count the time other processes held the core (with one thread they are the same on an
idle core). Each MoE/dense ratio is taken within a round (same load), and the script prints the median
ratio over the rounds with its range (goal on CPU: >= 0.7). Writes bench/out/train.json.

Variants: "moe-dropless" is the tiny recipe (dropless routing); "moe-capacity-1.25" drops tokens beyond
1.25 x the mean load; "moe-dropless-padded" is the tiny recipe with DeepSpeed's own Experts module, which
runs every expert on all C rows of the dispatch buffer (C = the busiest expert's load when dropless),
instead of model.transformer.RoutedExperts (each expert on its routed rows): the cost it removed.

    OMP_NUM_THREADS=1 python bench/train.py [--steps 15] [--rounds 3] [--no-padded]
"""

import argparse
import contextlib
import dataclasses
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import model.transformer as transformer  # noqa: E402
from model.config import RunConfig, tiny, tiny_dense  # noqa: E402
from model.data import MemmapTokens, TokenSource, write_markov_tokens  # noqa: E402
from model.loop import LoopConfig, run_loop, token_batches  # noqa: E402
from model.train import setup_engine  # noqa: E402
from model.transformer import count_parameters  # noqa: E402

SKIP = 3  # first steps: allocator and ZeRO buffer warm-up
PADDED = "moe-dropless-padded"


def _variants(steps: int, padded: bool) -> dict[str, RunConfig]:
    def short(run: RunConfig) -> RunConfig:
        t = dataclasses.replace(run.train, max_steps=steps, warmup_steps=2, decay_steps=2, checkpoint_every=0)
        return RunConfig(run.model, t)

    moe = short(tiny())
    capped = dataclasses.replace(moe.model.moe, drop_tokens=True, capacity_factor=1.25)
    variants = {
        "moe-dropless": moe,
        "moe-capacity-1.25": RunConfig(dataclasses.replace(moe.model, moe=capped), moe.train),
        "dense": short(tiny_dense()),
    }
    if padded:
        variants[PADDED] = moe
    return variants


@contextlib.contextmanager
def _deepspeed_experts(active: bool):
    """While active, MoE layers keep DeepSpeed's Experts (MoEFeedForward wraps them with RoutedExperts)."""
    saved = transformer.RoutedExperts
    if active:
        transformer.RoutedExperts = lambda experts: experts
    try:
        yield
    finally:
        transformer.RoutedExperts = saved


def _measure(run: RunConfig, data: TokenSource, ckpt_dir: Path) -> list[dict]:
    """Train run for its max_steps through model.loop's run_loop and EngineStep, as model.train.train does,
    without checkpoints or metrics files; per step the step's record plus "cpu_tokens_per_s" (tokens /
    process CPU seconds of the step)."""
    t = run.train
    step = setup_engine(run, ckpt_dir)

    def timed(batch, lr: float) -> dict:
        cpu = time.process_time()
        record = step(batch, lr)
        record["cpu_tokens_per_s"] = step.global_batch * t.seq_len / (time.process_time() - cpu)
        return record

    return run_loop(LoopConfig.from_train(t), timed, token_batches(data, step.global_batch, t.seed))


def _machine() -> str:
    with open("/proc/cpuinfo") as f:
        cpu = next(
            (line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), "unknown CPU"
        )
    return f"{cpu}; {os.cpu_count()} logical cores ({len(os.sched_getaffinity(0))} usable)"


def _load() -> str:
    return "/".join(f"{x:.2f}" for x in os.getloadavg())


def _spread(values: list[float]) -> str:
    return (
        f"{statistics.median(values):.2f} (range {min(values):.2f}-{max(values):.2f}, {len(values)} rounds)"
    )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--steps", type=int, default=15)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--no-padded", action="store_true", help=f"skip the {PADDED} variant")
    args = p.parse_args()
    variants = _variants(args.steps, padded=not args.no_padded)
    seq_len = variants["dense"].train.seq_len
    print(f"machine: {_machine()}; OMP_NUM_THREADS={os.environ['OMP_NUM_THREADS']}; load {_load()}")
    per_round: dict[str, list[float]] = {name: [] for name in variants}
    cpu_round: dict[str, list[float]] = {name: [] for name in variants}
    # Busiest expert's load / mean load: dropless sizes the buffer to the busiest expert.
    peaks: dict[str, list[float]] = {name: [] for name in variants}
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        write_markov_tokens(Path(tmp) / "tokens.bin", 400_000)
        data = MemmapTokens(Path(tmp) / "tokens.bin", seq_len)
        for r in range(args.rounds):
            order = list(variants) if r % 2 == 0 else list(reversed(variants))
            for name in order:
                with _deepspeed_experts(name == PADDED):
                    history = _measure(variants[name], data, Path(tmp) / f"{name}-{r}")
                per_round[name].append(statistics.median(h["tokens_per_s"] for h in history[SKIP:]))
                cpu_round[name].append(statistics.median(h["cpu_tokens_per_s"] for h in history[SKIP:]))
                peaks[name] += [
                    max(c) * len(c) / max(sum(c), 1) for h in history[SKIP:] for c in h["expert_load"] if c
                ]
            figures = ", ".join(
                f"{n} {per_round[n][-1]:.0f} ({cpu_round[n][-1]:.0f} per CPU s)" for n in order
            )
            print(f"round {r + 1} tokens/s: {figures}; load {_load()}")
    result = {
        "machine": _machine(),
        "threads": int(os.environ["OMP_NUM_THREADS"]),
        "tokens_per_step": variants["dense"].train.micro_batch_size * seq_len,
        "steps": args.steps,
        "skipped_steps": SKIP,
        "rounds": args.rounds,
        "wall_s": time.perf_counter() - start,
        "load_average_end": os.getloadavg(),
    }
    for name, run in variants.items():
        total, active = count_parameters(run.model)
        result[name] = {
            "tokens_per_s": statistics.median(per_round[name]),
            "tokens_per_s_per_round": per_round[name],
            "tokens_per_cpu_s": statistics.median(cpu_round[name]),
            "tokens_per_cpu_s_per_round": cpu_round[name],
            "params_total": total,
            "params_active": active,
            "busiest_expert_over_mean": statistics.mean(peaks[name]) if peaks[name] else None,
        }
    moe_names = [name for name in variants if name != "dense"]
    for name in moe_names:
        for key, figures in (("wall", per_round), ("cpu", cpu_round)):
            ratios = [m / d for m, d in zip(figures[name], figures["dense"], strict=True)]
            result[f"ratio_{name}_vs_dense_{key}"] = {
                "median": statistics.median(ratios),
                "min": min(ratios),
                "max": max(ratios),
                "per_round": ratios,
            }
    out = Path(__file__).parent / "out"
    out.mkdir(exist_ok=True)
    (out / "train.json").write_text(json.dumps(result, indent=2))
    for name in variants:
        r = result[name]
        busiest = r["busiest_expert_over_mean"]
        print(
            f"{name:>20}: {r['tokens_per_s']:6.0f} tokens/s, {r['tokens_per_cpu_s']:6.0f} per CPU s "
            f"(params {r['params_total'] / 1e6:.2f}M total, {r['params_active'] / 1e6:.2f}M active)"
            + (f", busiest expert {busiest:.1f}x the mean load" if busiest else "")
        )
    for name in moe_names:
        for key in ("wall", "cpu"):
            ratios = result[f"ratio_{name}_vs_dense_{key}"]["per_round"]
            print(f"ratio {name} / dense ({key} time): {_spread(ratios)}  (goal >= 0.7)")
    print(f"wall {result['wall_s']:.0f} s; load {_load()}")


if __name__ == "__main__":
    main()
