"""Near-duplicate detection on the independent set (tests/data/neardup): ours against datatrove's.

    .venv/bin/python bench/neardup.py [--repeats 3] [--json bench/neardup.json] [--set min_jaccard=0.5 ...]

Runs, on the same documents (one Parquet shard) and each as datatrove runs with one task per stage
and one worker (``bench/minhash.py``'s ``SINGLE_CORE``), alternating, ``--repeats`` times:
(a) our whole ``deduplicate`` (signatures, buckets, clusters with verification, filter) with
``DedupConfig`` (its defaults, or ``--set`` overrides); (b) datatrove's four MinHash stages with its
default ``MinhashConfig`` (cluster ids saved by its cluster stage and read from its ``.clusters``
file; its filter writes kept and dropped documents as ours does, without setting cluster ids). Prints
precision, recall overall and per variant kind, false positives per negative kind
(``evaluation.cluster_scores``), end-to-end wall time (median, min-max), each stage's median (each
``run_pipeline`` call timed; ``deduplicate`` calls it through ``pipelines.dedup.run`` and
``pipelines.dedup.cluster_stage``) and the
speed ratio: end to end, without the filter stage (reading and writing, the same work in both), and
in CPU time (user and system, of this process and its children), steadier than wall time when
other jobs share the cores.

``--scale K`` makes K disjoint copies of the set (copy c shifts every letter by c Unicode planes, so
no shingle is shared across copies while lengths, languages and the duplicate structure stay), for
timings where per-document work, not the fixed start-up of each stage, dominates; the scores are
those of copy 0, the set itself (shifted letters lose case folding and NFKC, so other copies score
lower on ``punct_case`` and ``fullwidth``; no cluster crosses copies).

datatrove's default tokenizers need spaCy / NLTK (not installed, offline): its signature stage gets
the whitespace tokenizer of ``bench/minhash.py``, as there. On Chinese and Japanese that makes its
"words" whole clauses.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import struct
import subprocess
import tempfile
import time
from dataclasses import asdict, fields, replace
from pathlib import Path

from datatrove.pipeline.dedup.minhash import (
    MinhashConfig,
    MinhashDedupBuckets,
    MinhashDedupCluster,
    MinhashDedupFilter,
    MinhashDedupSignature,
)

from bench.minhash import SINGLE_CORE, SplitTokenizer, machine, write_shards
from pipelines import fields as doc_fields
from pipelines.dedup import DedupConfig, cluster_stage, deduplicate
from pipelines.dedup import run as dedup_run
from pipelines.dedup.evaluation import cluster_scores, make_document, neardup_set
from pipelines.executor import run_pipeline
from pipelines.shards import DocumentShardReader, DocumentShardWriter, read_rows

STAGE_TIMES: dict[str, float] = {}  # stage (its logging folder's name) -> wall seconds, last run


def clocked_pipeline(*args, **kwargs):
    """``run_pipeline``, timed per stage; ``deduplicate`` is made to call it through its module."""
    start = time.perf_counter()
    result = run_pipeline(*args, **kwargs)
    STAGE_TIMES[Path(kwargs["logging_dir"]).name] = time.perf_counter() - start
    return result


dedup_run.run_pipeline = clocked_pipeline
cluster_stage.run_pipeline = clocked_pipeline  # the cluster stage's own call(s)


def run_ours(input_folder: Path, work: Path, config: DedupConfig) -> tuple[float, dict[str, str]]:
    start = time.perf_counter()
    deduplicate(
        str(input_folder), str(work / "out"), str(work / "excluded"), str(work / "work"),
        config=config, executor=SINGLE_CORE,
    )  # fmt: skip
    elapsed = time.perf_counter() - start
    rows = [
        r for sub in ("out", "excluded") for p in sorted((work / sub).glob("*.parquet")) for r in read_rows(p)
    ]
    return elapsed, {r["id"]: r[doc_fields.MINHASH_CLUSTER_ID] for r in rows}


def run_datatrove(input_folder: Path, work: Path, ids: list[str]) -> tuple[float, dict[str, int]]:
    run_pipeline = clocked_pipeline  # noqa: N806  (timed per stage, as ours)
    config = MinhashConfig()
    sigs, buckets, removed = (str(work / name) for name in ("sigs", "buckets", "remove"))
    start = time.perf_counter()
    run_pipeline(
        [DocumentShardReader(str(input_folder)), MinhashDedupSignature(sigs, config, SplitTokenizer())],
        logging_dir=work / "logs" / "signatures", config=SINGLE_CORE,
    )  # fmt: skip
    run_pipeline(
        [MinhashDedupBuckets(sigs, buckets, config=config)],
        logging_dir=work / "logs" / "buckets", config=SINGLE_CORE, tasks=config.num_buckets,
    )  # fmt: skip
    run_pipeline(
        [MinhashDedupCluster(buckets, removed, config=config, save_cluster_id=True)],
        logging_dir=work / "logs" / "clusters", config=SINGLE_CORE,
    )  # fmt: skip
    run_pipeline(
        [
            DocumentShardReader(str(input_folder)),
            MinhashDedupFilter(removed, exclusion_writer=DocumentShardWriter(str(work / "excluded"))),
            DocumentShardWriter(str(work / "out")),
        ],
        logging_dir=work / "logs" / "filter", config=SINGLE_CORE,
    )  # fmt: skip
    elapsed = time.perf_counter() - start
    raw = (
        (work / "remove" / "000000.clusters").read_bytes()
        if (work / "remove" / "000000.clusters").exists()
        else b""
    )
    pairs = struct.iter_unpack("<II", raw)  # (index in the single input task, cluster number)
    return elapsed, {ids[index]: cluster for index, cluster in pairs}


def scaled(docs, families: dict[str, str], pairs: list[dict], copies: int):
    """``copies`` disjoint copies of the set's documents: copy c (from 0) has ids suffixed ``@c`` and
    every letter moved up c Unicode planes (0x10000 code points); families and pairs of copy 0."""

    def shift(text: str, c: int) -> str:
        return "".join(
            chr(ord(ch) + c * 0x10000) if ch.isalpha() and ord(ch) < 0x10000 else ch for ch in text
        )

    out_docs = []
    for c in range(copies):
        out_docs += [
            make_document(f"{d.id}@{c}", shift(d.text, c), d.metadata[doc_fields.LANGUAGE]) for d in docs
        ]
    return (
        out_docs,
        {f"{i}@0": f"{f}@0" for i, f in families.items()},
        [dict(p, a=f"{p['a']}@0", b=f"{p['b']}@0") for p in pairs],
    )


def cpu_seconds() -> float:
    """User and system CPU of this process and its finished children."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def spread(times: list[float]) -> dict:
    return {"median_s": statistics.median(times), "min_s": min(times), "max_s": max(times), "runs_s": times}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", type=Path, help="write the raw results here")
    parser.add_argument("--scale", type=int, default=1, help="disjoint copies of the set (timing)")
    parser.add_argument("--set", nargs="*", default=[], help="DedupConfig overrides, name=value")
    args = parser.parse_args()
    types = {f.name: f.type for f in fields(DedupConfig)}
    overrides = {k: (float if types[k] == "float" else int)(v) for k, v in (s.split("=") for s in args.set)}
    config = replace(DedupConfig(), **overrides)
    docs, families, pairs = neardup_set()
    if not 1 <= args.scale <= 17:
        parser.error("--scale: 1 to 17 (copy c moves letters c planes up; there are 17 planes)")
    if args.scale > 1:
        docs, families, pairs = scaled(docs, families, pairs, args.scale)
    ids = [d.id for d in docs]
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True
    ).stdout.strip()
    print(f"machine: {machine()}; commit {commit}")
    print(f"set: {args.scale} cop{'y' if args.scale == 1 else 'ies'}, {len(docs)} documents; scored on copy 0: "
          f"{sum(p['label'] == 'duplicate' for p in pairs)} duplicate pairs, "
          f"{sum(p['label'] == 'negative' for p in pairs)} negative pairs")  # fmt: skip
    print(f"ours: {config}")
    results = {"ours": {"config": {k: v for k, v in asdict(config).items() if k != "no_space_languages"}},
               "datatrove": {"config": str(MinhashConfig())}}  # fmt: skip
    times, stages, cpu = ({"ours": [], "datatrove": []} for _ in range(3))
    with tempfile.TemporaryDirectory(prefix="bench-neardup-") as tmp:
        tmp = Path(tmp)
        input_folder = write_shards(tmp / "in", docs, per_shard=len(docs))
        for repeat in range(args.repeats):
            for name in ("ours", "datatrove") if repeat % 2 == 0 else ("datatrove", "ours"):
                work = tmp / f"{name}-{repeat}"
                cpu_start = cpu_seconds()
                if name == "ours":
                    elapsed, cluster_of = run_ours(input_folder, work, config)
                else:
                    elapsed, cluster_of = run_datatrove(input_folder, work, ids)
                times[name].append(elapsed)
                cpu[name].append(cpu_seconds() - cpu_start)
                stages[name].append(dict(STAGE_TIMES))
                STAGE_TIMES.clear()
                results[name]["scores"] = cluster_scores(cluster_of, families, pairs)
    for name in ("ours", "datatrove"):
        results[name]["time"] = spread(times[name])
        results[name]["cpu"] = spread(cpu[name])
        results[name]["stage_median_s"] = {
            stage: statistics.median(run[stage] for run in stages[name]) for stage in stages[name][0]
        }
        s, t = results[name]["scores"], results[name]["time"]
        print(f"\n{name}: recall {s['recall']:.3f}, precision {s['precision']:.3f} "
              f"({s['predicted_pairs']} predicted pairs); end to end {t['median_s']:.2f} s median "
              f"(min {t['min_s']:.2f}, max {t['max_s']:.2f}, {len(t['runs_s'])} runs); CPU "
              f"{results[name]['cpu']['median_s']:.2f} s median")  # fmt: skip
        print(
            "  stage medians: "
            + ", ".join(f"{k} {v:.2f} s" for k, v in results[name]["stage_median_s"].items())
        )
        print("  recall per kind: " + ", ".join(f"{k} {v:.3f}" for k, v in s["recall_per_kind"].items()))
        print("  false positives: " + ", ".join(f"{k} {v}" for k, v in s["false_positives_per_kind"].items()))
    ratio = results["datatrove"]["time"]["median_s"] / results["ours"]["time"]["median_s"]
    results["speed_ratio"] = ratio
    without = {
        name: sum(v for k, v in results[name]["stage_median_s"].items() if k != "filter")
        for name in ("ours", "datatrove")
    }
    results["speed_ratio_without_filter"] = without["datatrove"] / without["ours"]
    results["cpu_ratio"] = results["datatrove"]["cpu"]["median_s"] / results["ours"]["cpu"]["median_s"]
    print(f"\nspeed: ours {ratio:.2f}x datatrove's end to end (median over median); "
          f"{results['speed_ratio_without_filter']:.2f}x without the filter stage (sum of stage medians); "
          f"{results['cpu_ratio']:.2f}x in CPU time (user and system, children included)")  # fmt: skip
    if args.json:
        args.json.write_text(json.dumps(results, indent=1, sort_keys=True) + "\n")


if __name__ == "__main__":
    main()
