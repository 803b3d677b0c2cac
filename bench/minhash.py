"""MinHash signature throughput: datatrove's ``MinhashDedupSignature`` against ours, same documents.

    .venv/bin/python bench/minhash.py [--num-documents 2000] [--target 20000]

Generates the sample snapshot (``sample.crawl``, mixed languages), reads it as the
pipeline does, repeats it to ``--target`` documents, and times, each as its own datatrove run with
one task and one worker (single core): the reader alone, the reader + datatrove's signature stage,
the reader + ours. Signature throughput is documents / (run time - reader time). It then runs the
whole ``deduplicate`` on the un-repeated snapshot and prints recall and precision on its truth.

datatrove's default word tokenizers need spaCy or NLTK data, neither installed (offline), so its
stage gets a whitespace ``str.split`` tokenizer: the cheapest possible, which flatters datatrove.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import polars as pl
from datatrove.data import Document
from datatrove.pipeline.dedup.minhash import MinhashConfig, MinhashDedupSignature
from datatrove.utils.word_tokenizers import WordTokenizer

from pipelines import fields
from pipelines.dedup import DedupConfig, deduplicate
from pipelines.dedup.evaluation import dedup_scores, snapshot_documents
from pipelines.dedup.minhash import MinhashSignatures
from pipelines.executor import ExecutorConfig, run_pipeline
from pipelines.shards import DocumentShardReader, DocumentShardWriter, read_rows
from sample.crawl import generate_snapshot

SINGLE_CORE = ExecutorConfig(tasks=1, workers=1, ray_address=None)


class SplitTokenizer(WordTokenizer):
    """Whitespace words, as ``str.split``: stands in for spaCy / NLTK, which are not installed."""

    def word_tokenize(self, text: str) -> list[str]:
        return text.split()

    def sent_tokenize(self, text: str) -> list[str]:
        return text.splitlines()

    def span_tokenize(self, text: str) -> list[tuple[int, int]]:
        raise NotImplementedError("not used by the signature stage")


def machine() -> str:
    model = "unknown CPU"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    usable = len(os.sched_getaffinity(0))
    return f"{model}; {os.cpu_count()} logical cores ({usable} usable); {platform.python_implementation()} {platform.python_version()}"


def write_shards(folder: Path, docs: list[Document], per_shard: int = 2000) -> Path:
    for start in range(0, len(docs), per_shard):
        with DocumentShardWriter(str(folder), output_filename=f"{start // per_shard:05d}.parquet") as writer:
            for doc in docs[start : start + per_shard]:
                writer.write(doc, rank=0)
    return folder


def timed(pipeline: list, logs: Path) -> float:
    start = time.perf_counter()
    run_pipeline(pipeline, logging_dir=logs, config=SINGLE_CORE)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--num-documents", type=int, default=2000, help="documents of the generated snapshot")
    parser.add_argument("--target", type=int, default=20000, help="documents after repeating the snapshot")
    args = parser.parse_args()
    print(f"machine: {machine()}")
    with tempfile.TemporaryDirectory(prefix="bench-minhash-") as tmp:
        tmp = Path(tmp)
        truth = pl.read_parquet(generate_snapshot(tmp / "snap", seed=0, num_documents=args.num_documents))
        docs = [doc for shard in snapshot_documents(tmp / "snap") for doc in shard]
        repeated = [
            Document(text=d.text, id=f"{d.id}~{k}", metadata=dict(d.metadata))
            for k in range(-(-args.target // len(docs)))
            for d in docs
        ][: args.target]
        num_words = sum(len(d.text.split()) for d in repeated)
        print(
            f"documents: {len(repeated)} ({len(docs)} of the sample, repeated), {num_words / len(repeated):.0f} words/doc"
        )
        bench_in = write_shards(tmp / "bench-in", repeated)

        t_read = timed([DocumentShardReader(str(bench_in))], tmp / "logs" / "read")
        t_datatrove = timed(
            [
                DocumentShardReader(str(bench_in)),
                MinhashDedupSignature(str(tmp / "dt"), MinhashConfig(), SplitTokenizer()),
            ],
            tmp / "logs" / "datatrove",
        )
        t_ours = timed(
            [DocumentShardReader(str(bench_in)), MinhashSignatures(str(tmp / "ours"), DedupConfig())],
            tmp / "logs" / "ours",
        )
        n = len(repeated)
        rate_dt, rate_ours = n / (t_datatrove - t_read), n / (t_ours - t_read)
        print(f"reader alone:                  {t_read:7.2f} s")
        print(
            f"datatrove MinhashDedupSignature: {t_datatrove:7.2f} s with reader, {rate_dt:8.0f} docs/s signature stage"
        )
        print(
            f"ours (rensa, numpy shingles):    {t_ours:7.2f} s with reader, {rate_ours:8.0f} docs/s signature stage"
        )
        print(
            f"speed-up: {rate_ours / rate_dt:.1f}x signature stage ({t_datatrove / t_ours:.1f}x whole run incl. reading)"
        )

        sample_in = write_shards(tmp / "sample-in", docs)
        start = time.perf_counter()
        summary = deduplicate(
            str(sample_in), str(tmp / "out"), str(tmp / "excluded"), str(tmp / "work"), executor=SINGLE_CORE
        )
        elapsed = time.perf_counter() - start
        dropped = {
            row["id"]: row for path in sorted((tmp / "excluded").glob("*.parquet")) for row in read_rows(path)
        }
        print(f"deduplicate() on the {len(docs)}-document sample, 1 task: {elapsed:.1f} s; {summary}")
        for name, value in dedup_scores(truth, dropped).items():
            print(f"  {name}: {value:.4f}" if isinstance(value, float) else f"  {name}: {value}")
        estimates = [json.loads(r[fields.FILTER_DETAILS]).get("estimated_jaccard") for r in dropped.values()]
        estimates = [e for e in estimates if e is not None]
        truth_jaccard = truth["near_dup_jaccard"].drop_nulls()
        print(
            f"  near drops' estimated Jaccard: min {min(estimates):.3f}, mean {sum(estimates) / len(estimates):.3f}; "
            f"truth near pairs' 5-gram Jaccard: min {truth_jaccard.min():.3f}, mean {truth_jaccard.mean():.3f}"
        )


if __name__ == "__main__":
    main()
