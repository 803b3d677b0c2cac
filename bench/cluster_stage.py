"""The MinHash cluster stage: the one-task reference against the parallel rounds, on the same pairs.

    .venv/bin/python bench/cluster_stage.py [--synthetic DOCS | --scale 16] [--tasks 4] [--repeats 3] [--json PATH]

Builds stage 1 and 2 files once, then times, alternating (who goes first rotates) and
``--repeats`` times each, every run in its own process: (a) the reference
``clusters.ClusterDecisions`` (one task, as main ran it); (b) ``cluster_stage.cluster_decisions``
with ``--tasks`` tasks and 2 workers; (c) the same with 1 worker (the reference's CPU budget, so
the rounds' fixed start-up shows). The input: ``--scale K`` copies of tests/data/neardup through
our stages 1 and 2 (``bench/neardup.py``'s copies; few pairs), or ``--synthetic DOCS``: stage 1 and
2 files written directly (``synthetic_work``), with many pairs. Every run's decisions and summary
are checked byte-identical to the first run's. Prints per run the stage's wall seconds (measured
in the process), its CPU seconds and peak RSS (of the process and the task processes it waited
for, ``wait4``), the propagation rounds and the bytes under ``clusters/`` after a parallel run.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from bench.minhash import machine, write_shards
from bench.neardup import scaled
from pipelines.dedup.cluster_stage import cluster_decisions
from pipelines.dedup.clusters import ClusterDecisions
from pipelines.dedup.config import DedupConfig
from pipelines.dedup.evaluation import neardup_set
from pipelines.dedup.minhash import BandBuckets, MinhashSignatures
from pipelines.executor import ExecutorConfig, run_pipeline
from pipelines.shards import DocumentShardReader

BANDS = 8  # band files of the synthetic input
CHUNK = 1 << 16


def synthetic_work(work: Path, num_docs: int, ranks: int, seed: int = 0) -> None:
    """Stage 1 and 2 files of ``num_docs`` documents in ``ranks`` input tasks: families of about 3
    documents (Poisson) whose signatures are a family base with 0, 10, 30 or 60% of the
    permutations replaced (0%: an exact copy, same sha256); per band, 80% of each family share a
    bucket (a star of pairs from its first member); 1% of documents get a pair to a random other
    one (rejected by verification)."""
    rng = np.random.default_rng(seed)
    perm = DedupConfig().num_perm
    family = rng.integers(0, max(1, num_docs // 3), num_docs)
    base = rng.integers(0, 1 << 32, (max(1, num_docs // 3), perm), dtype=np.uint32)
    level = rng.choice([0.0, 0.1, 0.3, 0.6], num_docs)
    ids = [f"syn/{k:09d}" for k in rng.permutation(num_docs).tolist()]
    shas = [
        hashlib.sha256(f"family {f}".encode() if lv == 0 else f"doc {k}".encode()).hexdigest()
        for k, (f, lv) in enumerate(zip(family.tolist(), level.tolist(), strict=True))
    ]
    bounds = [num_docs * r // ranks for r in range(ranks + 1)]
    rank_of = np.searchsorted(bounds, np.arange(num_docs), side="right") - 1
    nodes = (rank_of.astype(np.uint64) << np.uint64(32)) | (
        np.arange(num_docs) - np.array(bounds)[rank_of]
    ).astype(np.uint64)
    for sub in ("signatures/sigs", "signatures/docs", "edges"):
        (work / sub).mkdir(parents=True, exist_ok=True)
    for r in range(ranks):
        lo, hi = bounds[r], bounds[r + 1]
        sig = np.empty((hi - lo, perm), np.uint32)
        for start in range(lo, hi, CHUNK):
            end = min(hi, start + CHUNK)
            noise = rng.random((end - start, perm)) < level[start:end, None]
            sig[start - lo : end - lo] = np.where(
                noise, rng.integers(0, 1 << 32, noise.shape, dtype=np.uint32), base[family[start:end]]
            )
        np.save(work / "signatures/sigs" / f"{r:05d}.npy", sig)
        pq.write_table(pa.table({"id": pa.array(ids[lo:hi], pa.string()), "sha256": pa.array(shas[lo:hi], pa.string())}),
                       work / "signatures/docs" / f"{r:05d}.parquet")  # fmt: skip

    def stars(members: np.ndarray, key: np.ndarray) -> np.ndarray:
        order = members[np.lexsort((rng.random(len(members)), key[members]))]
        keys = key[order]
        first = np.ones(len(order), bool)
        first[1:] = keys[1:] != keys[:-1]
        head = order[np.flatnonzero(first)[np.cumsum(first) - 1]]
        return np.stack([nodes[head[~first]], nodes[order[~first]]], axis=1)

    exact = np.flatnonzero(level == 0)
    np.save(work / "edges" / "exact-000.npy", stars(exact, family))
    for band in range(BANDS):
        pairs = stars(np.flatnonzero(rng.random(num_docs) < 0.8), family)
        stray = rng.choice(num_docs, num_docs // 100, replace=False)
        pairs = np.concatenate(
            [pairs, np.stack([nodes[stray], nodes[rng.integers(0, num_docs, len(stray))]], axis=1)]
        )
        pairs = pairs[pairs[:, 0] != pairs[:, 1]]
        np.save(work / "edges" / f"b{band:03d}-000.npy", pairs)


def neardup_work(work: Path, scale: int, tasks: int) -> int:
    """Stage 1 and 2 files of ``scale`` copies of the independent set; returns the documents."""
    config = DedupConfig()
    docs, families, pairs = neardup_set()
    docs, _, _ = scaled(docs, families, pairs, scale)
    build = ExecutorConfig(tasks=tasks, workers=2, ray_address=None)
    inputs = write_shards(work.parent / "in", docs, per_shard=len(docs) // tasks + 1)
    run_pipeline(
        [DocumentShardReader(str(inputs)), MinhashSignatures(str(work), config)],
        logging_dir=work / "logs" / "signatures", config=build,
    )  # fmt: skip
    buckets = BandBuckets(str(work), config, max_tasks=tasks)
    run_pipeline([buckets], logging_dir=work / "logs" / "buckets", config=build, tasks=buckets.num_tasks())
    return len(docs)


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


def run_one(work: Path, tasks: int, workers: int) -> None:
    """In this process: one run of the stage (``workers`` 0: the reference); prints its JSON."""
    config = DedupConfig()
    start, rounds = time.perf_counter(), None
    if workers == 0:
        run_pipeline(
            [ClusterDecisions(str(work), config)], logging_dir=work / "logs" / "clusters",
            config=ExecutorConfig(tasks=1, workers=1, ray_address=None), tasks=1,
        )  # fmt: skip
    else:
        executor = ExecutorConfig(tasks=tasks, workers=workers, ray_address=None)
        rounds = cluster_decisions(str(work), config, executor, work / "logs" / "clusters", tasks)
    wall = time.perf_counter() - start
    size = sum(p.stat().st_size for p in (work / "clusters").rglob("*") if p.is_file()) if workers else None
    print(json.dumps({"wall_s": round(wall, 3), "rounds": rounds, "round_bytes": size}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--scale", type=int, default=16)
    parser.add_argument("--synthetic", type=int, default=0, help="documents of a synthetic input")
    parser.add_argument("--tasks", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", type=Path)
    parser.add_argument("--run", type=Path, help=argparse.SUPPRESS)  # a work folder: one run, here
    parser.add_argument("--workers", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.run:
        return run_one(args.run, args.tasks, args.workers)
    tmp = Path(tempfile.mkdtemp(prefix="cluster_stage_"))
    work = tmp / "work"
    if args.synthetic:
        synthetic_work(work, args.synthetic, args.tasks)
        described = f"synthetic, {args.synthetic} documents"
    else:
        described = f"{args.scale} copies of tests/data/neardup, {neardup_work(work, args.scale, args.tasks)} documents"
    pairs = sum(np.load(p, mmap_mode="r").shape[0] for p in (work / "edges").glob("*.npy"))
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True
    ).stdout.strip()
    uptime = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    print(f"machine: {machine()}\ncommit: {commit}\nload at start: {uptime}")
    print(f"input: {described}, {args.tasks} input tasks, {pairs} candidate pairs (bands' repeats included)")
    variants = {
        "reference (1 task)": 0,
        f"parallel ({args.tasks} tasks, 2 workers)": 2,
        f"parallel ({args.tasks} tasks, 1 worker)": 1,
    }
    results = {name: {"wall_s": [], "cpu_s": [], "peak_rss_mb": []} for name in variants}
    expected, info = None, {}
    for repeat in range(args.repeats):
        names = list(variants)
        for name in names[repeat % len(names) :] + names[: repeat % len(names)]:
            clear(work)
            command = [sys.executable, __file__, "--run", str(work), "--tasks", str(args.tasks),
                       "--workers", str(variants[name])]  # fmt: skip
            child = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
            out = child.stdout.read()
            _, status, usage = os.wait4(child.pid, 0)
            assert status == 0, f"{name} failed"
            run = json.loads(out.strip().splitlines()[-1])
            got = outputs(work)
            expected = expected or got
            assert got == expected, f"{name}: decisions differ from the first run's"
            if run["rounds"] is not None:
                info = {"rounds": run["rounds"], "round_bytes": run["round_bytes"]}
            cpu, rss = usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024
            for key, value in (
                ("wall_s", run["wall_s"]),
                ("cpu_s", round(cpu, 2)),
                ("peak_rss_mb", round(rss)),
            ):
                results[name][key].append(value)
            print(f"repeat {repeat} {name}: wall {run['wall_s']:.2f} s, cpu {cpu:.2f} s (process incl. start-up), "
                  f"peak rss {rss:.0f} MB")  # fmt: skip
    print(f"decision files: {len(expected) - 1}, identical in every run; propagation rounds: {info.get('rounds')}; "
          f"bytes under clusters/ after a parallel run: {info.get('round_bytes')}")  # fmt: skip
    for name, r in results.items():
        print(f"{name}: wall median {statistics.median(r['wall_s']):.2f} s (min {min(r['wall_s']):.2f}, "
              f"max {max(r['wall_s']):.2f}); cpu median {statistics.median(r['cpu_s']):.2f} s; "
              f"peak rss max {max(r['peak_rss_mb'])} MB")  # fmt: skip
    print(f"load at end: {subprocess.run(['uptime'], capture_output=True, text=True).stdout.strip()}")
    if args.json:
        raw = {"args": {k: str(v) for k, v in vars(args).items()}, "commit": commit, "input": described,
               "pairs": int(pairs), **info, "results": results}  # fmt: skip
        args.json.write_text(json.dumps(raw, indent=1) + "\n")
    shutil.rmtree(tmp)


if __name__ == "__main__":
    main()
