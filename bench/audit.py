"""Benchmark of `apertus audit contains --url / --sha256` on a synthetic catalog.

Builds, in a data folder, SNAPSHOTS curation chains of four sealed dataset versions each
(raw_documents -> language_identified -> quality_filtered -> deduplicated: 20 versions for 5
snapshots) holding --num-documents distinct documents in all, with index.parquet and
exclusions.parquet in the columns and row-group layout the pipeline writes (pipelines/tables.py;
no shards: contains never reads them), sealed with records.manifest.seal. The columns are made
with numpy and pyarrow compute, not through the pipeline (10 M documents in a few minutes). Drop
rates per step are realistic (1 %, 10 %, 15 %), drops carry reasons and details. Lookup files are
then built the normal way (``build_missing_lookups``, as ``apertus audit index`` does) and pinned
(``apertus audit repin``: the versions are sealed here without ledger entries). Then it
times, each as a fresh process (interpreter start included, OS page cache warm), the median of
--repeats runs of:

- ``apertus audit contains --url U`` and ``--sha256 H`` with lookup files, over every chain end
  (20 versions in scope) and with ``--version`` naming one chain end (4 versions in scope),
- the same without lookup files (the CLI's DuckDB scan fallback; skip with --no-scan-fallback),
- the baseline: a plain DuckDB scan of the same index and exclusions Parquet files for the value,
- ``python -c pass``, ``python -c "import apertus.cli, …contains"`` and ``python -c "import duckdb"``:
  the floors (interpreter start; our imports; DuckDB's import).

Each command runs once untimed first (bytecode cached, OS page cache warm: PYTHONDONTWRITEBYTECODE
is unset for the runs), then the timed runs go round-robin over all commands.

It also reports each version's lookup file size against its index + exclusions Parquet.

Usage: python bench/audit.py [--num-documents 10000000] [--snapshots 5] [--keep DIR]
(--keep DIR: build the catalog in DIR, or reuse the one already there, and keep it.)
"""

from __future__ import annotations

import argparse
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
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402
import pyarrow as pa  # noqa: E402
import pyarrow.compute as pc  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402

from pipelines.tables import EXCLUSION_COLUMNS, INDEX_COLUMNS  # noqa: E402
from provenance.audit.repin import repin  # noqa: E402
from records.assets import DEDUPLICATED, LANGUAGE_IDENTIFIED, QUALITY_FILTERED, RAW_DOCUMENTS  # noqa: E402
from records.documents import SHARDS, TABLES  # noqa: E402
from records.layout import DataLayout  # noqa: E402
from records.lookup import lookup_path  # noqa: E402
from records.lookup_build import build_missing_lookups  # noqa: E402
from records.manifest import seal  # noqa: E402
from records.sql_quote import sql_identifier  # noqa: E402
from records.versions import leaves, load_versions  # noqa: E402

STEPS = (  # asset, share of its input dropped, reason, details
    (RAW_DOCUMENTS, 0.0, None, None),
    (LANGUAGE_IDENTIFIED, 0.01, "low_language_score", {"rule": "min_score", "threshold": 0.65}),
    (
        QUALITY_FILTERED,
        0.10,
        "gopher_repetition:dup_line_frac",
        {"rule": "dup_line_frac", "threshold": 0.3},
    ),
    (DEDUPLICATED, 0.15, "near_duplicate", {"cluster_size": 2}),
)
SHARD_ROWS = 131_072  # rows per shard, so per row group of index.parquet (one write per shard)
LANGUAGES = ["en", "de", "fr", "es", "it", "pt", "nl", "pl", "ru", "ja", "zh", "ko"]
HEX = np.frombuffer(b"0123456789abcdef", dtype=np.uint8)
SAMPLES = "samples.json"


def _hex_column(raw: np.ndarray) -> pa.Array:
    """(n, 32) uint8 digests -> a string array of 64 lowercase hex digits each."""
    n = raw.shape[0]
    digits = np.empty((n, 64), dtype=np.uint8)
    digits[:, 0::2] = HEX[raw >> 4]
    digits[:, 1::2] = HEX[raw & 15]
    offsets = np.arange(n + 1, dtype=np.int32) * 64
    return pa.Array.from_buffers(pa.string(), n, [None, pa.py_buffer(offsets), pa.py_buffer(digits)])


def _text(values) -> pa.Array:
    return pc.cast(pa.array(values), pa.string())


def _join(*parts) -> pa.Array:
    return pc.binary_join_element_wise(*[pa.scalar(p) if isinstance(p, str) else p for p in parts], "")


def _documents(snapshot: str, seed: int, n: int) -> tuple[pa.Table, np.ndarray]:
    """The snapshot's n documents as index columns (no shard/row yet), and each one's fate."""
    raw = np.frombuffer(np.random.default_rng(seed).bytes(32 * n), dtype=np.uint8).reshape(n, 32)
    i = np.arange(n, dtype=np.int64)
    sha = _hex_column(raw)
    site = ((raw[:, 0].astype(np.int64) << 16) | (raw[:, 1].astype(np.int64) << 8) | raw[:, 2]) % 40_000
    language = pa.array(LANGUAGES).take(pa.array(i % 12))
    part = pc.utf8_lpad(_text(i // 10_000), 5, "0")
    source_file = _join("jsonl/part-", part, ".jsonl.gz")
    columns = {
        "doc_id": _join(snapshot + "/", source_file, "#", _text(i % 10_000)),
        "snapshot": pa.array([snapshot] * n, pa.string()),
        "source_id": _join(snapshot + "-", _text(i)),
        "source_file": source_file,
        "source_offset": pa.array(i),
        "url": _join("https://www.site", _text(site), ".example/", language, "/", _text(i), "-",
                     pc.utf8_slice_codeunits(sha, 6, 12), ".html"),
        "sha256": sha,
        "language": language,
        "language_score": pa.array(0.5 + (i % 50) / 100),
        "script": pa.array(["Latn"] * n, pa.string()),
        "quality_score": pa.nulls(n, pa.float64()),
        "quality_percentile": pa.nulls(n, pa.float64()),
        "minhash_cluster_id": pa.nulls(n, pa.string()),
        "minhash_cluster_size": pa.nulls(n, pa.int64()),
        "num_chars": pa.array((2000 + i % 3000).astype(np.int32)),
        "num_tokens_est": pa.array(600 + i % 900),
    }  # fmt: skip
    return pa.table(columns), _fates(i)


def _fates(i: np.ndarray) -> np.ndarray:
    """Index of the step that drops each document (len(STEPS) when kept to the end); deterministic."""
    u = (i.astype(np.uint64) * np.uint64(2654435761) % np.uint64(2**32)).astype(np.float64) / 2**32
    fate = np.full(len(i), len(STEPS), dtype=np.int8)
    cumulative, alive = 0.0, 1.0
    bounds = []
    for _, rate, _, _ in STEPS:
        cumulative += alive * rate
        bounds.append(cumulative)
        alive *= 1 - rate
    for k in reversed(range(len(STEPS))):
        fate[u < bounds[k]] = k
    return fate


def _schema(columns: tuple[str, ...]) -> pa.Schema:
    types = {"source_offset": pa.int64(), "language_score": pa.float64(), "quality_score": pa.float64(),
             "quality_percentile": pa.float64(), "minhash_cluster_size": pa.int64(), "num_chars": pa.int32(),
             "num_tokens_est": pa.int64(), "row": pa.int64()}  # fmt: skip
    return pa.schema([(c, types.get(c, pa.string())) for c in columns])


def _write_version(layout, snapshot, k, docs, fates, parent) -> str:
    asset, _, reason, details = STEPS[k]
    staging = layout.work / f"{asset}-{snapshot}"
    staging.mkdir(parents=True)
    schemas = {"index": _schema(INDEX_COLUMNS), "exclusions": _schema(EXCLUSION_COLUMNS)}
    writers = {
        t: pq.ParquetWriter(staging / f"{t}.parquet", s, compression="zstd") for t, s in schemas.items()
    }
    rows = {"index": 0, "exclusions": 0}
    for start in range(0, docs.num_rows, SHARD_ROWS):
        chunk, chunk_fates = docs.slice(start, SHARD_ROWS), fates[start : start + SHARD_ROWS]
        shard = f"{SHARDS}/{start // SHARD_ROWS:05d}.parquet"
        for table, mask in (("index", chunk_fates > k), ("exclusions", chunk_fates == k)):
            chosen = chunk.filter(pa.array(mask))
            n = chosen.num_rows
            if not n:
                continue
            chosen = chosen.append_column("shard", pa.array([shard] * n, pa.string()))
            chosen = chosen.append_column("row", pa.array(np.arange(rows[table], rows[table] + n)))
            if table == "exclusions":
                detail = json.dumps({**details, "value": 0.5})
                for name, value in (("step", asset), ("reason", reason), ("details", detail)):
                    chosen = chosen.append_column(name, pa.array([value] * n, pa.string()))
            rows[table] += n
            writers[table].write_table(chosen.select(schemas[table].names).cast(schemas[table]))
    for writer in writers.values():
        writer.close()
    manifest, _ = seal(staging, layout.datasets, asset=asset, snapshot=snapshot, parents=parent,
                       config={"synthetic": True}, stats={"kept": {"documents": rows["index"]}})  # fmt: skip
    return manifest.ref


def build_catalog(root: Path, num_documents: int, num_snapshots: int) -> tuple[DataLayout, dict]:
    """Write the synthetic versions; return the layout and sample queries with their expected status.

    Reuses the catalog already in ``root`` when it holds the samples file of a finished build.
    """
    layout = DataLayout(root)
    if (root / SAMPLES).exists():
        return layout, json.loads((root / SAMPLES).read_text())
    per_snapshot = num_documents // num_snapshots
    samples: dict = {}
    for s in range(num_snapshots):
        snapshot = f"crawl-{s:02d}"
        docs, fates = _documents(snapshot, s, per_snapshot)
        parent: tuple[str, ...] = ()
        for k in range(len(STEPS)):
            parent = (_write_version(layout, snapshot, k, docs, fates, parent),)
        if s == num_snapshots // 2:
            samples["target"] = parent[0]
            middle = per_snapshot // 2
            kept = middle + int(np.argmax(fates[middle:] == len(STEPS)))
            dropped = middle + int(np.argmax(fates[middle:] == 2))
            for name, i, status in (("kept", kept, "in"), ("quality_drop", dropped, "dropped")):
                samples[name] = {"url": docs["url"][i].as_py(), "sha256": docs["sha256"][i].as_py(),
                                 "status": status}  # fmt: skip
    samples["never_seen"] = {"url": "https://never.example/x.html", "sha256": "0" * 64, "status": "not_seen"}
    (root / SAMPLES).write_text(json.dumps(samples, indent=1))
    return layout, samples


def _time_all(commands: dict[str, tuple[list[str], int | None]], env: dict, repeats: int) -> dict[str, dict]:
    """Median, min and max wall milliseconds of ``repeats`` fresh runs of each command.

    Each command first runs once untimed (bytecode written, page cache warm); then the timed runs
    go round-robin over the commands, so a burst of load on the shared machine hits all of them.
    A command whose exit status differs from the expected one (when given) stops the benchmark.
    """
    times: dict[str, list[float]] = {name: [] for name in commands}
    for round_ in range(repeats + 1):
        for name, (command, expect_rc) in commands.items():
            start = time.perf_counter()
            result = subprocess.run(command, env=env, capture_output=True, text=True)
            if round_:
                times[name].append((time.perf_counter() - start) * 1000)
            if expect_rc is not None and result.returncode != expect_rc:
                raise SystemExit(
                    f"{' '.join(command)}: exit {result.returncode}, expected {expect_rc}\n{result.stderr}"
                )
    return {
        name: {"median": round(statistics.median(t), 1), "min": round(min(t), 1), "max": round(max(t), 1)}
        for name, t in times.items()
    }


def _baseline_script(layout: DataLayout, column: str, value: str) -> str:
    """A one-line Python script for the DuckDB-scan baseline: the files and the value are passed as
    parameters, the column name through the one quoting helper (records.sql_quote)."""
    files = sorted(str(p) for p in layout.datasets.glob("*/*/*.parquet"))
    select = (
        "SELECT doc_id, filename FROM read_parquet(?, filename=true, union_by_name=true) "
        f"WHERE {sql_identifier(column)} = ?"
    )
    return f"import duckdb; print(duckdb.execute({select!r}, [{files!r}, {value!r}]).fetchall())"


def _sizes(layout: DataLayout, versions: dict) -> dict:
    """Per version and in all: bytes of index + exclusions Parquet, bytes of its lookup folder."""
    per_version = {}
    for ref in sorted(versions):
        parquet = sum((layout.datasets / ref / t).stat().st_size for t in TABLES)
        folder = lookup_path(layout, ref).parent
        lookup = sum(p.stat().st_size for p in folder.iterdir() if p.is_file())
        rows = sum(pq.ParquetFile(layout.datasets / ref / t).metadata.num_rows
                   for t in TABLES)  # fmt: skip
        per_version[ref] = {"rows": rows, "parquet_bytes": parquet, "lookup_bytes": lookup,
                            "ratio": round(lookup / parquet, 3)}  # fmt: skip
    parquet = sum(v["parquet_bytes"] for v in per_version.values())
    lookup = sum(v["lookup_bytes"] for v in per_version.values())
    return {"parquet_bytes": parquet, "lookup_bytes": lookup, "ratio": round(lookup / parquet, 3),
            "per_version": per_version}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--num-documents", type=int, default=10_000_000)
    parser.add_argument("--snapshots", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--no-scan-fallback", action="store_true", help="skip timing the CLI without lookups")
    parser.add_argument("--keep", type=Path, help="build the catalog here (or reuse it) and keep it")
    parser.add_argument("--out", type=Path, help="also write the report (JSON) to this file")
    args = parser.parse_args()
    root = args.keep or Path(tempfile.mkdtemp(prefix="apertus-audit-bench-"))
    try:
        t = time.perf_counter()
        layout, samples = build_catalog(root / "data", args.num_documents, args.snapshots)
        build_s = time.perf_counter() - t
        versions = load_versions(layout)
        rows = sum(pq.ParquetFile(p).metadata.num_rows for p in layout.datasets.glob("*/*/*.parquet"))
        env = {**os.environ, "APERTUS_DATA": str(layout.root), "PYTHONPATH": str(REPO)}
        env.pop("PYTHONDONTWRITEBYTECODE", None)  # a cold start of an installed program: bytecode cached
        py = sys.executable
        apertus = str(Path(py).parent / "apertus")
        report: dict = {"num_documents": args.num_documents, "num_versions": len(versions), "rows": rows,
                        "chain_ends": len(leaves(versions)), "target": samples["target"],
                        "catalog_build_s": round(build_s, 1), "repeats": args.repeats,
                        "load_average_start": os.getloadavg()}  # fmt: skip
        queries = [(n, s) for n, s in samples.items() if isinstance(s, dict)]
        floors = {
            "python_start_ms": ([py, "-c", "pass"], 0),
            "import_cli_ms": ([py, "-c", "import apertus.cli, apertus.audit, provenance.audit.contains"], 0),
            "import_duckdb_ms": ([py, "-c", "import duckdb"], 0),
        }

        def contains_commands(label: str, scopes: dict[str, list[str]]) -> dict:
            commands = {}
            for scope, extra in scopes.items():
                for name, sample in queries:
                    for key in ("url", "sha256"):
                        rc = 0 if sample["status"] == "in" else 1
                        command = [apertus, "audit", "contains", f"--{key}", sample[key], *extra, "--json"]
                        commands[f"{label}.{scope}.{key}.{name}_ms"] = (command, rc)
            return commands

        if not args.no_scan_fallback:
            shutil.rmtree(layout.lookup, ignore_errors=True)
            report.update(
                _time_all(contains_commands("scan_fallback", {"all_versions": []}), env, args.repeats)
            )
        t = time.perf_counter()
        built = build_missing_lookups(layout, versions)
        report["lookup_build_s"] = round(time.perf_counter() - t, 1)
        report["lookups_built"] = len(built)
        t = time.perf_counter()  # contains answers only under pinned lookup roots (records.pins)
        report["repinned"] = len(repin(layout).pinned)
        report["repin_s"] = round(time.perf_counter() - t, 1)
        report["sizes"] = _sizes(layout, versions)
        commands = {
            **floors,
            **contains_commands(
                "lookup", {"all_versions": [], "one_target": ["--version", samples["target"]]}
            ),
        }
        for key in ("url", "sha256"):
            script = _baseline_script(layout, key, samples["quality_drop"][key])
            commands[f"baseline_duckdb_scan.{key}_ms"] = ([py, "-c", script], 0)
        report.update(_time_all(commands, env, args.repeats))
        report["load_average_end"] = os.getloadavg()
        text = json.dumps(report, indent=2)
        print(text)
        if args.out:
            args.out.write_text(text + "\n")
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
