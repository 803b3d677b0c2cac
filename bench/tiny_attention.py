"""The tiny recipe with LASA attention against the same recipe with dense attention, on real token shards.

Both variants ("lasa" = the `tiny` recipe, "dense" = `tiny-dense-attention`) train through
model.staged_training.train_on_stages, as the demo's trained_model asset does (the recipe's max_steps, or a given
one with warmup and decay scaled as `python -m model.staged_training --max-steps` scales them, checkpoints at stage ends only, 2% of the
documents held out), on the same token_shards version, in rounds of alternating order so that load from
other processes hits both alike. Training is deterministic (same seed, same batches), so loss and held-out
perplexity repeat exactly across rounds; only the speed varies. Per run it prints the final loss (mean
lm_loss of the last 10 steps), the median tokens/s after the first 3 steps, the wall time and the held-out
perplexity per language after the last stage (model/evaluate.py); then per variant the median and range of
tokens/s over the rounds and the LASA / dense ratio taken within each round.

    apertus demo            # or any run that leaves a token_shards version; then:
    OMP_NUM_THREADS=2 python bench/tiny_attention.py --token-shards <data>/datasets/token_shards/<id> \
        [--max-steps N] [--rounds 3]

Writes bench/out/tiny_attention.json.
"""

import argparse
import dataclasses
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "2")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from model.config import CurriculumRun, RunConfig  # noqa: E402
from model.staged_training import run_config, train_on_stages  # noqa: E402
from records.assets import TOKEN_SHARDS  # noqa: E402

VARIANTS = {"lasa": "tiny", "dense": "tiny-dense-attention"}
SKIP = 3  # first steps: allocator and ZeRO buffer warm-up
LAST = 10  # steps averaged for the final loss


def scaled(name: str, shards: Path, max_steps: int | None) -> RunConfig:
    """The recipe as the trained_model asset runs it (model.staged_training.run_config: the recipe's max_steps
    unless given, its warmup and decay scaled to a given one), checkpoints at stage ends only."""
    run = run_config(CurriculumRun(token_shards=str(shards), out="", recipe=name, max_steps=max_steps))
    return RunConfig(run.model, dataclasses.replace(run.train, checkpoint_every=0))


def measure(run: RunConfig, shards: Path, out: Path) -> dict:
    started = time.perf_counter()
    summary = train_on_stages(run, shards, out, export=False, log=lambda line: None)
    wall = time.perf_counter() - started
    steps = summary.history
    last = summary.evaluations[-1]
    return {
        "wall_s": wall,
        "tokens_per_s": statistics.median(r["tokens_per_s"] for r in steps[SKIP:]),
        "final_loss": statistics.mean(r["lm_loss"] for r in steps[-LAST:]),
        "first_loss": steps[0]["lm_loss"],
        "perplexity": last["perplexity"],
        "overall_perplexity": last["overall"]["perplexity"],
    }


def _spread(values: list[float], fmt: str = ".0f") -> str:
    return (
        f"{statistics.median(values):{fmt}} (range {min(values):{fmt}}-{max(values):{fmt}}, n={len(values)})"
    )


def _load() -> str:
    return "/".join(f"{x:.2f}" for x in os.getloadavg())


def _commit() -> str:
    repo = Path(__file__).resolve().parents[1]
    head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=repo, capture_output=True, text=True)
    dirty = subprocess.run(["git", "status", "--porcelain"], cwd=repo, capture_output=True, text=True)
    return head.stdout.strip() + (" (dirty)" if dirty.stdout.strip() else "")


def _machine() -> str:
    with open("/proc/cpuinfo") as f:
        cpu = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), "unknown")
    return f"{cpu}; {os.cpu_count()} logical cores ({len(os.sched_getaffinity(0))} usable)"


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--token-shards", required=True, type=Path, help="a token_shards version folder")
    p.add_argument("--max-steps", type=int, default=None, help="default: the recipe's, as trained_model")
    p.add_argument("--rounds", type=int, default=3)
    args = p.parse_args(argv)
    runs = {name: scaled(r, args.token_shards, args.max_steps) for name, r in VARIANTS.items()}
    att = runs["lasa"].model.attention
    print(
        f"machine: {_machine()}; OMP_NUM_THREADS={os.environ['OMP_NUM_THREADS']}; commit {_commit()}; "
        f"load {_load()}\nshards: {args.token_shards}\nlasa = recipe tiny (block_size {att.block_size}, "
        f"sink + {att.window_blocks} local + top-{att.top_k}); dense = recipe tiny-dense-attention; "
        f"{runs['lasa'].train.max_steps} steps of {runs['lasa'].train.micro_batch_size} x {runs['lasa'].train.seq_len} tokens"
    )
    results: dict[str, list[dict]] = {name: [] for name in runs}
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.rounds):
            order = list(runs) if r % 2 == 0 else list(reversed(runs))
            for name in order:
                res = measure(runs[name], args.token_shards, Path(tmp) / f"{name}-{r}")
                results[name].append(res)
                ppl = " ".join(f"{lang} {v:.1f}" for lang, v in res["perplexity"].items())
                print(
                    f"round {r + 1} {name:5}: {res['tokens_per_s']:6.0f} tokens/s, wall {res['wall_s']:5.1f} s, "
                    f"loss {res['first_loss']:.3f} -> {res['final_loss']:.3f}, held-out perplexity overall "
                    f"{res['overall_perplexity']:.1f} | {ppl}; load {_load()}",
                    flush=True,
                )
    for name in runs:
        rs = results[name]
        print(
            f"{name:5}: tokens/s {_spread([x['tokens_per_s'] for x in rs])}; wall s "
            f"{_spread([x['wall_s'] for x in rs], '.1f')}; final loss {_spread([x['final_loss'] for x in rs], '.3f')}"
            f"; overall perplexity {_spread([x['overall_perplexity'] for x in rs], '.2f')}"
        )
    ratios = [
        a["tokens_per_s"] / b["tokens_per_s"] for a, b in zip(results["lasa"], results["dense"], strict=True)
    ]
    print(f"ratio lasa / dense tokens/s (within each round): {_spread(ratios, '.2f')}")
    languages = sorted(results["lasa"][0]["perplexity"])
    print("held-out perplexity after the last stage (round 1; deterministic, so every round's):")
    print("| language | lasa | dense |\n|---|---|---|")
    for lang in languages:
        print(
            f"| {lang} | {results['lasa'][0]['perplexity'][lang]:.2f} | {results['dense'][0]['perplexity'][lang]:.2f} |"
        )
    print(
        f"| overall | {results['lasa'][0]['overall_perplexity']:.2f} | {results['dense'][0]['overall_perplexity']:.2f} |"
    )
    print(f"wall {time.perf_counter() - started:.0f} s; load {_load()}")
    out = Path(__file__).parent / "out"
    out.mkdir(exist_ok=True)
    (out / "tiny_attention.json").write_text(
        json.dumps(
            {
                "args": vars(args) | {TOKEN_SHARDS: str(args.token_shards)},
                "results": results,
                "ratios": ratios,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
