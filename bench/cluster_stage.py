"""The MinHash cluster stage: the one-task reference against the parallel rounds, on the same pairs.

    .venv/bin/python bench/cluster_stage.py [--scale 16] [--tasks 4] [--repeats 3] [--json PATH]

Builds stage 1 and 2 files once (``bench/neardup.py``'s ``--scale`` copies of tests/data/neardup,
``--tasks`` input tasks), then times, alternating and ``--repeats`` times each: (a) the reference
``clusters.ClusterDecisions`` (one task, as main ran it); (b) ``cluster_stage.cluster_decisions``
with ``--tasks`` tasks and 2 workers; (c) the same with 1 worker (the reference's CPU budget, so
the rounds' fixed start-up shows). Every run's decisions and summary are checked byte-identical to
the reference's. Prints wall and CPU seconds (this process and its children) per run, the
propagation rounds, and the bytes under ``clusters/`` after a parallel run.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from bench.minhash import machine, write_shards
from bench.neardup import cpu_seconds, scaled
from pipelines.dedup.cluster_stage import cluster_decisions
from pipelines.dedup.clusters import ClusterDecisions
from pipelines.dedup.config import DedupConfig
from pipelines.dedup.evaluation import neardup_set
from pipelines.dedup.minhash import BandBuckets, MinhashSignatures
from pipelines.executor import ExecutorConfig, run_pipeline
from pipelines.shards import DocumentShardReader


def outputs(work: Path) -> dict[str, bytes]:
    files = sorted((work / "decisions").glob("*.parquet")) + [work / "summary.json"]
    return {p.name: p.read_bytes() for p in files}


def clear(work: Path) -> None:
    for name in ("decisions", "summary.json", "clusters", "logs/clusters"):
        path = work / name
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--scale", type=int, default=16)
    parser.add_argument("--tasks", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    config = DedupConfig()
    docs, families, pairs = neardup_set()
    docs, _, _ = scaled(docs, families, pairs, args.scale)
    tmp = Path(tempfile.mkdtemp(prefix="cluster_stage_"))
    work = tmp / "work"
    build = ExecutorConfig(tasks=args.tasks, workers=2, ray_address=None)
    inputs = write_shards(tmp / "in", docs, per_shard=max(1, len(docs) // args.tasks + 1))
    run_pipeline(
        [DocumentShardReader(str(inputs)), MinhashSignatures(str(work), config)],
        logging_dir=work / "logs" / "signatures", config=build,
    )  # fmt: skip
    buckets = BandBuckets(str(work), config, max_tasks=args.tasks)
    run_pipeline([buckets], logging_dir=work / "logs" / "buckets", config=build, tasks=buckets.num_tasks())
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True
    ).stdout.strip()
    load = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    print(f"machine: {machine()}\ncommit: {commit}\nload at start: {load}")
    print(f"set: {args.scale} copies, {len(docs)} documents, {args.tasks} input tasks")

    variants = {
        "reference (1 task)": None,
        f"parallel ({args.tasks} tasks, 2 workers)": 2,
        f"parallel ({args.tasks} tasks, 1 worker)": 1,
    }
    results = {name: {"wall_s": [], "cpu_s": []} for name in variants}
    expected, rounds, round_bytes = None, None, None
    for repeat in range(args.repeats):
        names = list(variants)
        order = names[repeat % len(names) :] + names[: repeat % len(names)]  # rotate who goes first
        for name in order:
            clear(work)
            wall, cpu = time.perf_counter(), cpu_seconds()
            if variants[name] is None:
                run_pipeline(
                    [ClusterDecisions(str(work), config)], logging_dir=work / "logs" / "clusters",
                    config=ExecutorConfig(tasks=1, workers=1, ray_address=None), tasks=1,
                )  # fmt: skip
            else:
                executor = ExecutorConfig(tasks=args.tasks, workers=variants[name], ray_address=None)
                rounds = cluster_decisions(
                    str(work), config, executor, work / "logs" / "clusters", args.tasks
                )
                round_bytes = sum(p.stat().st_size for p in (work / "clusters").rglob("*") if p.is_file())
            wall, cpu = time.perf_counter() - wall, cpu_seconds() - cpu
            got = outputs(work)
            expected = expected or got
            assert got == expected, f"{name}: decisions differ from the first run's"
            results[name]["wall_s"].append(round(wall, 3))
            results[name]["cpu_s"].append(round(cpu, 3))
            print(f"repeat {repeat} {name}: wall {wall:.2f} s, cpu {cpu:.2f} s")
    print(f"decision files: {len(expected) - 1}, identical in every run; propagation rounds: {rounds}; "
          f"bytes under clusters/ after a parallel run: {round_bytes}")  # fmt: skip
    for name, r in results.items():
        print(f"{name}: wall median {statistics.median(r['wall_s']):.2f} s (min {min(r['wall_s']):.2f}, "
              f"max {max(r['wall_s']):.2f}); cpu median {statistics.median(r['cpu_s']):.2f} s")  # fmt: skip
    print(f"load at end: {subprocess.run(['uptime'], capture_output=True, text=True).stdout.strip()}")
    if args.json:
        args.json.write_text(json.dumps({"args": vars(args) | {"json": str(args.json)}, "commit": commit,
                                         "rounds": rounds, "round_bytes": round_bytes, "results": results},
                                        indent=1))  # fmt: skip
    shutil.rmtree(tmp)


if __name__ == "__main__":
    main()
