"""Benchmark of `apertus audit contains --url / --sha256` on a synthetic catalog.

Builds, in a temporary data folder, SNAPSHOTS curation chains of four sealed dataset versions each
(raw_documents -> language_identified -> quality_filtered -> deduplicated: 20 versions for 5
snapshots) holding --num-documents distinct documents in all, with index.parquet and
exclusions.parquet in the columns and row-group layout the pipeline writes (pipelines/tables.py;
no shards: contains never reads them). Drop rates per step are realistic (1 %, 10 %, 15 %), drops
carry reasons and details. Then it times, each as a fresh process (interpreter start included,
OS page cache warm), the median of --repeats runs of:

- ``apertus audit contains --url U`` and ``--sha256 H`` with lookup files (``apertus audit index``),
- the same without lookup files (the CLI's scan fallback),
- the baseline: a plain DuckDB scan of the same index and exclusions Parquet files for the value,
- ``python -c "import duckdb"`` alone: the floor any DuckDB-based answer pays.

Usage: python bench/audit.py [--num-documents 1000000] [--snapshots 5] [--keep DIR]
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

REPO = Path(__file__).resolve().parents[1]

import pyarrow as pa  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402

from pipelines.tables import EXCLUSION_COLUMNS, INDEX_COLUMNS  # noqa: E402
from provenance.audit.lookup import build_missing_lookups  # noqa: E402
from provenance.audit.versions import load_versions  # noqa: E402
from provenance.layout import DataLayout  # noqa: E402
from provenance.manifest import seal  # noqa: E402

STEPS = (  # asset, share of its input dropped, reason, details
    ("raw_documents", 0.0, None, None),
    ("language_identified", 0.01, "low_language_score", {"rule": "min_score", "threshold": 0.65}),
    (
        "quality_filtered",
        0.10,
        "gopher_repetition:dup_line_frac",
        {"rule": "dup_line_frac", "threshold": 0.3},
    ),
    ("deduplicated", 0.15, "near_duplicate", {"cluster_size": 2}),
)
SHARD_ROWS = 131_072  # rows per shard, so per row group of index.parquet (one write per shard)
LANGUAGES = ["en", "de", "fr", "es", "it", "pt", "nl", "pl", "ru", "ja", "zh", "ko"]


def _documents(snapshot: str, start: int, stop: int) -> dict[str, list]:
    ids = range(start, stop)
    sha = [hashlib.sha256(f"{snapshot}:{i}".encode()).hexdigest() for i in ids]
    return {
        "doc_id": [f"{snapshot}/jsonl/part-{i // 10_000:05d}.jsonl.gz#{i % 10_000}" for i in ids],
        "snapshot": [snapshot] * len(ids),
        "source_id": [f"{snapshot}-{i}" for i in ids],
        "source_file": [f"jsonl/part-{i // 10_000:05d}.jsonl.gz" for i in ids],
        "source_offset": list(ids),
        "url": [
            f"https://www.site{int(h[:6], 16) % 40_000}.example/{LANGUAGES[i % 12]}/{i}-{h[6:12]}.html"
            for i, h in zip(ids, sha, strict=True)
        ],
        "sha256": sha,
        "language": [LANGUAGES[i % 12] for i in ids],
        "language_score": [0.5 + (i % 50) / 100 for i in ids],
        "script": ["Latn"] * len(ids),
        "quality_score": [None] * len(ids),
        "quality_percentile": [None] * len(ids),
        "minhash_cluster_id": [None] * len(ids),
        "minhash_cluster_size": [None] * len(ids),
        "num_chars": [2000 + i % 3000 for i in ids],
        "num_tokens_est": [600 + i % 900 for i in ids],
    }


def _fate(i: int) -> int:
    """Index of the step that drops document i (len(STEPS) when kept to the end); deterministic."""
    u = (i * 2654435761 % 2**32) / 2**32
    cumulative, alive = 0.0, 1.0
    for k, (_, rate, _, _) in enumerate(STEPS):
        cumulative += alive * rate
        if u < cumulative:
            return k
        alive *= 1 - rate
    return len(STEPS)


def _schema(columns: tuple[str, ...]) -> pa.Schema:
    types = {"source_offset": pa.int64(), "language_score": pa.float64(), "quality_score": pa.float64(),
             "quality_percentile": pa.float64(), "minhash_cluster_size": pa.int64(), "num_chars": pa.int32(),
             "num_tokens_est": pa.int64(), "row": pa.int64()}  # fmt: skip
    return pa.schema([(c, types.get(c, pa.string())) for c in columns])


def build_catalog(root: Path, num_documents: int, num_snapshots: int) -> tuple[DataLayout, dict]:
    """Write the synthetic versions; return the layout and sample queries with their expected status."""
    layout = DataLayout(root)
    per_snapshot = num_documents // num_snapshots
    samples = {}
    for s in range(num_snapshots):
        snapshot = f"crawl-{s:02d}"
        parent: tuple[str, ...] = ()
        for k, (asset, _, reason, details) in enumerate(STEPS):
            staging = layout.work / f"{asset}-{snapshot}"
            staging.mkdir(parents=True)
            writers = {
                "index": pq.ParquetWriter(staging / "index.parquet", _schema(INDEX_COLUMNS), compression="zstd"),
                "exclusions": pq.ParquetWriter(staging / "exclusions.parquet", _schema(EXCLUSION_COLUMNS), compression="zstd"),
            }  # fmt: skip
            rows = {"index": 0, "exclusions": 0}
            for start in range(0, per_snapshot, SHARD_ROWS):
                docs = _documents(snapshot, start, min(per_snapshot, start + SHARD_ROWS))
                fates = [_fate(i) for i in range(start, start + len(docs["doc_id"]))]
                shard = f"shards/{start // SHARD_ROWS:05d}.parquet"
                for table, chosen in (
                    ("index", [j for j, f in enumerate(fates) if f > k]),
                    ("exclusions", [j for j, f in enumerate(fates) if f == k]),
                ):
                    if not chosen:
                        continue
                    columns = {c: [v[j] for j in chosen] for c, v in docs.items()}
                    columns["shard"] = [shard] * len(chosen)
                    columns["row"] = list(range(rows[table], rows[table] + len(chosen)))
                    if table == "exclusions":
                        columns["step"] = [asset] * len(chosen)
                        columns["reason"] = [reason] * len(chosen)
                        columns["details"] = [json.dumps({**details, "value": 0.5}) for _ in chosen]
                    rows[table] += len(chosen)
                    writers[table].write_table(pa.table(columns, schema=writers[table].schema))
            for writer in writers.values():
                writer.close()
            manifest, _ = seal(staging, layout.datasets, asset=asset, snapshot=snapshot, parents=parent,
                               config={"synthetic": True}, stats={"kept": {"documents": rows["index"]}})  # fmt: skip
            parent = (manifest.ref,)
        if s == num_snapshots // 2:
            middle = per_snapshot // 2
            kept = next(i for i in range(middle, per_snapshot) if _fate(i) == len(STEPS))
            dropped = next(i for i in range(middle, per_snapshot) if _fate(i) == 2)
            for name, i, status in (("kept", kept, "in"), ("quality_drop", dropped, "dropped")):
                docs = _documents(snapshot, i, i + 1)
                samples[name] = {"url": docs["url"][0], "sha256": docs["sha256"][0], "status": status}
    samples["never_seen"] = {"url": "https://never.example/x.html", "sha256": "0" * 64, "status": "not_seen"}
    return layout, samples


def _time(command: list[str], env: dict, repeats: int, expect_rc: int | None = None) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        result = subprocess.run(command, env=env, capture_output=True, text=True)
        times.append(time.perf_counter() - start)
        if expect_rc is not None and result.returncode != expect_rc:
            raise SystemExit(
                f"{' '.join(command)}: exit {result.returncode}, expected {expect_rc}\n{result.stderr}"
            )
    return statistics.median(times) * 1000


def _baseline_script(layout: DataLayout, column: str, value: str) -> str:
    files = sorted(str(p) for p in layout.datasets.glob("*/*/*.parquet"))
    return (
        "import duckdb; "
        f'print(duckdb.sql("SELECT doc_id, filename FROM read_parquet({files!r}, filename=true, union_by_name=true) '
        f"WHERE {column} = '{value}'\").fetchall())"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--num-documents", type=int, default=10_000_000)
    parser.add_argument("--snapshots", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument(
        "--keep", type=Path, help="build the catalog here and keep it (default: a temp dir, deleted)"
    )
    args = parser.parse_args()
    root = args.keep or Path(tempfile.mkdtemp(prefix="apertus-audit-bench-"))
    try:
        t = time.perf_counter()
        layout, samples = build_catalog(root / "data", args.num_documents, args.snapshots)
        build_s = time.perf_counter() - t
        versions = load_versions(layout)
        rows = sum(pq.ParquetFile(p).metadata.num_rows for p in layout.datasets.glob("*/*/*.parquet"))
        data_bytes = sum(p.stat().st_size for p in layout.datasets.glob("*/*/*.parquet"))
        env = {**os.environ, "APERTUS_DATA": str(layout.root), "PYTHONPATH": str(REPO)}
        py = sys.executable
        report: dict = {"num_documents": args.num_documents, "num_versions": len(versions), "rows": rows,
                        "parquet_bytes": data_bytes, "catalog_build_s": round(build_s, 1), "repeats": args.repeats}  # fmt: skip
        report["import_duckdb_ms"] = round(_time([py, "-c", "import duckdb"], env, args.repeats), 1)
        report["python_start_ms"] = round(_time([py, "-c", "pass"], env, args.repeats), 1)
        cli = [py, "-m", "apertus.cli", "audit", "contains"]

        def measure(label: str) -> None:
            for name, sample in samples.items():
                for key in ("url", "sha256"):
                    rc = 0 if sample["status"] == "in" else 1
                    ms = _time([*cli, f"--{key}", sample[key], "--json"], env, args.repeats, rc)
                    report[f"{label}.{key}.{name}_ms"] = round(ms, 1)

        measure("scan_fallback")
        t = time.perf_counter()
        build_missing_lookups(layout, versions)
        report["lookup_build_s"] = round(time.perf_counter() - t, 1)
        report["lookup_bytes"] = sum(p.stat().st_size for p in (layout.root / "lookup").rglob("*.sqlite"))
        measure("lookup")
        for key in ("url", "sha256"):
            value = samples["quality_drop"][key]
            ms = _time([py, "-c", _baseline_script(layout, key, value)], env, args.repeats)
            report[f"baseline_duckdb_scan.{key}_ms"] = round(ms, 1)
        print(json.dumps(report, indent=2))
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
