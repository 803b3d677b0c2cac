"""Peak memory of ingesting one large JSONL.gz file: SnapshotReader -> Normalizer -> DocumentShardWriter.

    python bench/ingest_memory.py                  # generates ~1 GB of JSONL (gzipped), then deletes it
    python bench/ingest_memory.py --size-mb 200    # a quicker run
    python bench/ingest_memory.py --input big.jsonl.gz

Each measurement runs in a fresh child process, so its peak RSS (``ru_maxrss``) is its own. The
baseline is the least any reader must pay: the same file read line by line with ``gzip`` and
``json.loads``, nothing kept. Reading is streamed, so the pipeline's peak should stay a constant
few hundred MB above the baseline, whatever the input size (see the "per GB of input" line).

Generated documents are cut from the bundled ``sample/sources`` paragraphs (multilingual, so ftfy
does real work); one in 2000 is a ~2 MB document, to show that a large record is not held twice.
"""

from __future__ import annotations

import argparse
import gzip
import json
import random
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
MB = 1_000_000


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / MB  # Linux: KiB


def generate(path: Path, size_mb: int, seed: int = 0) -> tuple[int, int]:
    """Write about ``size_mb`` MB of JSONL (uncompressed) to ``path``, gzipped, streaming; returns
    (documents, uncompressed bytes)."""
    rng = random.Random(seed)
    paragraphs = []
    for source in sorted((REPO / "sample" / "sources").glob("*.jsonl.gz")):
        with gzip.open(source, "rt", encoding="utf-8") as f:
            for line in f:
                record = json.loads(line)
                paragraphs.extend((record["language"], p) for p in record["text"].split("\n\n") if p.strip())
    written, number = 0, 0
    with gzip.open(path, "wb", compresslevel=1) as out:
        while written < size_mb * MB:
            language, _ = rng.choice(paragraphs)
            count = 400 if number % 2000 == 1999 else rng.randint(2, 30)  # a ~2 MB document now and then
            text = "\n\n".join(p for _, p in rng.choices(paragraphs, k=count))
            if count == 400:
                text = (text + "\n\n") * max(1, 2 * MB // max(1, len(text.encode())))
            line = (
                json.dumps(
                    {
                        "id": f"bench-{number}",
                        "url": f"https://bench.example/{number}",
                        "text": text,
                        "language": language,
                    },
                    ensure_ascii=False,
                ).encode()
                + b"\n"
            )
            out.write(line)
            written += len(line)
            number += 1
    return number, written


def measure_baseline(path: Path) -> dict:
    start, num_documents = time.perf_counter(), 0
    with gzip.open(path, "rb") as f:
        for line in f:
            json.loads(line)
            num_documents += 1
    return {"documents": num_documents, "seconds": time.perf_counter() - start, "peak_rss_mb": peak_rss_mb()}


def measure_pipeline(path: Path, work: Path) -> dict:
    from pipelines.executor import ExecutorConfig, run_pipeline
    from pipelines.normalize import Normalizer
    from pipelines.readers import SnapshotReader, read_quarantine
    from pipelines.shards import DocumentShardWriter

    rss_after_imports = peak_rss_mb()
    start = time.perf_counter()
    pipeline = [
        SnapshotReader(str(path.parent), "bench", str(work / "quarantine")),
        Normalizer(),
        DocumentShardWriter(str(work / "shards")),
    ]
    run_pipeline(pipeline, logging_dir=str(work / "logs"), config=ExecutorConfig(tasks=1, workers=1))
    import pyarrow.parquet as pq

    num_documents = sum(pq.ParquetFile(p).metadata.num_rows for p in (work / "shards").glob("*.parquet"))
    return {
        "documents": num_documents,
        "quarantined": len(read_quarantine(str(work / "quarantine"))),
        "seconds": time.perf_counter() - start,
        "peak_rss_mb": peak_rss_mb(),
        "rss_after_imports_mb": rss_after_imports,
    }


def run_child(*args: str) -> dict:
    result = subprocess.run(
        [sys.executable, __file__, "--measure", *args], check=True, capture_output=True, text=True, cwd=REPO
    )
    return json.loads(result.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size-mb", type=int, default=1000, help="uncompressed JSONL to generate (MB)")
    parser.add_argument(
        "--input", type=Path, help="an existing .jsonl.gz to read instead (alone in its folder)"
    )
    parser.add_argument("--measure", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        kind, *paths = args.measure
        result = (
            measure_baseline(Path(paths[0])) if kind == "baseline" else measure_pipeline(*map(Path, paths))
        )
        print(json.dumps(result))
        return

    temp = Path(tempfile.mkdtemp(prefix="ingest_memory_"))
    try:
        if args.input:
            path, num_documents, uncompressed = args.input.resolve(), None, None
        else:
            (temp / "snapshot").mkdir()
            path = temp / "snapshot" / "input.jsonl.gz"
            start = time.perf_counter()
            num_documents, uncompressed = generate(path, args.size_mb)
            print(f"generated {num_documents} documents, {uncompressed / MB:.0f} MB of JSONL "
                  f"in {time.perf_counter() - start:.0f} s")  # fmt: skip
        compressed = path.stat().st_size
        baseline = run_child("baseline", str(path))
        pipeline = run_child("pipeline", str(path), str(temp / "work"))
    finally:
        shutil.rmtree(temp, ignore_errors=True)

    size_mb = (uncompressed or compressed) / MB
    print(f"input: {path.name}, {compressed / MB:.0f} MB gzipped"
          + (f", {uncompressed / MB:.0f} MB uncompressed" if uncompressed else ""))  # fmt: skip
    print(f"baseline (gzip + json.loads, line by line): peak RSS {baseline['peak_rss_mb']:.0f} MB, "
          f"{baseline['documents']} lines in {baseline['seconds']:.0f} s")  # fmt: skip
    print(f"pipeline (SnapshotReader -> Normalizer -> DocumentShardWriter, 1 task): peak RSS "
          f"{pipeline['peak_rss_mb']:.0f} MB ({pipeline['rss_after_imports_mb']:.0f} MB after imports), "
          f"{pipeline['documents']} documents, {pipeline['quarantined']} quarantined, "
          f"in {pipeline['seconds']:.0f} s ({size_mb / pipeline['seconds']:.1f} MB/s)")  # fmt: skip
    extra = pipeline["peak_rss_mb"] - baseline["peak_rss_mb"]
    print(f"pipeline peak over baseline: {extra:+.0f} MB; peak / input size: "
          f"{pipeline['peak_rss_mb'] / size_mb:.2f} MB per MB of uncompressed input")  # fmt: skip
    if num_documents is not None and pipeline["documents"] + pipeline["quarantined"] != num_documents:
        sys.exit(f"expected {num_documents} documents in, got {pipeline['documents']} + quarantined")


if __name__ == "__main__":
    main()
