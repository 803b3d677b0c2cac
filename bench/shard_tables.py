"""Peak memory of a step's own process when it finishes a version: tables and lookup per shard.

For each size, a synthetic version of documents (``--shards`` shard files of ``SHARD_SCHEMA``,
3/4 kept and 1/4 excluded, short texts, about half of the contents repeated) is written; one
child process per shard writes its part (``pipelines.tables.write_shard_part``, what a step's
table task does); then a fresh child process does what the step's own process does:
``build_tables`` from the parts and ``build_lookup`` from the parts' runs; then another one adds
the version's catalog rows (``add_version_to_catalog``). Their peak RSS (``VmHWM``, Linux) and wall
time are printed as JSON, beside the same for the lookup rebuilt from the version's tables (``build_lookup`` without runs: runs cut from the tables, as `audit index
--rebuild` does). The claim measured: the merge's memory does not grow with the version.

    python bench/shard_tables.py --sizes 600000 2400000 --shards 4
"""

from __future__ import annotations

import argparse
import hashlib
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.timing import commit  # noqa: E402


def _write_version(folder: Path, documents: int, shards: int) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    from pipelines.shards import SHARD_SCHEMA

    per_shard = -(-documents // shards)
    for s in range(shards):
        first, n = s * per_shard, min(per_shard, documents - s * per_shard)
        for kind, lo, hi in (("shards", 0, n * 3 // 4), ("excluded", n * 3 // 4, n)):
            ids = range(first + lo, first + hi)
            texts = [f"document {i // 2} " * 20 for i in ids]
            columns = {f.name: pa.nulls(len(ids), f.type) for f in SHARD_SCHEMA}
            columns.update(
                id=pa.array([f"doc-{i}" for i in ids]),
                text=pa.array(texts),
                snapshot=pa.array(["bench"] * len(ids)),
                url=pa.array([f"https://site{i % 997}.example/page/{i}" for i in ids]),
                sha256=pa.array([hashlib.sha256(t.encode()).hexdigest() for t in texts]),
                language=pa.array(["en"] * len(ids)),
            )
            if kind == "excluded":
                columns["filter_reason"] = pa.array(["bench_reason"] * len(ids))
            (folder / kind).mkdir(parents=True, exist_ok=True)
            table = pa.Table.from_pydict(columns, schema=SHARD_SCHEMA)
            pq.write_table(table, folder / kind / f"{s:05d}.parquet", compression="zstd")


def _child(role: str, folder: Path, parts: Path, data: Path, shard: str = "") -> dict:
    out = subprocess.run(
        [sys.executable, __file__, "--child", role, str(folder), str(parts), str(data), shard],
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def _run_child(role: str, folder: Path, parts: Path, data: Path, shard: str) -> None:
    from pipelines.tables import build_tables, part_runs, write_shard_part
    from records.assets import RAW_DOCUMENTS
    from records.layout import DataLayout
    from records.lookup_build import build_lookup
    from records.manifest import load_manifest, seal

    start = time.perf_counter()
    if role == "part":
        write_shard_part(folder, folder / shard, parts, "bench")
    elif role == "merge":
        build_tables(folder, "bench", parts)
        layout = DataLayout(data)
        manifest, _ = seal(folder, layout.datasets, asset=RAW_DOCUMENTS, snapshot="bench")
        build_lookup(layout, manifest, layout.datasets / manifest.ref, runs=part_runs(parts))
        (data / "ref").write_text(manifest.ref)
    elif role == "catalog":
        from records.catalog import add_version_to_catalog

        add_version_to_catalog(DataLayout(data), (data / "ref").read_text())
    elif role == "rebuild":
        layout = DataLayout(data)
        ref = (data / "ref").read_text()
        build_lookup(layout, load_manifest(layout.datasets / ref), layout.datasets / ref)
    # VmHWM, not ru_maxrss: Linux carries ru_maxrss over exec from the forking parent (this
    # script, which held the generated documents); VmHWM belongs to this process's memory only.
    status = Path("/proc/self/status").read_text()
    peak_mib = int(next(line.split()[1] for line in status.splitlines() if line.startswith("VmHWM:"))) / 1024
    print(json.dumps({"seconds": round(time.perf_counter() - start, 2), "peak_rss_mib": round(peak_mib, 1)}))


def measure(documents: int, shards: int) -> dict:
    with tempfile.TemporaryDirectory(prefix="shard-tables-") as tmp:
        folder, parts, data = Path(tmp) / "staging", Path(tmp) / "parts", Path(tmp) / "data"
        _write_version(folder, documents, shards)
        parts.mkdir()
        names = [
            p.relative_to(folder).as_posix()
            for k in ("shards", "excluded")
            for p in sorted((folder / k).glob("*"))
        ]
        tasks = [_child("part", folder, parts, data, name) for name in names]
        merge = _child("merge", folder, parts, data)
        catalog = _child("catalog", folder, parts, data)
        rebuild = _child("rebuild", folder, parts, data)
    return {
        "documents": documents,
        "shard_files": len(names),
        "task_peak_rss_mib_max": max(t["peak_rss_mib"] for t in tasks),
        "task_seconds_sum": round(sum(t["seconds"] for t in tasks), 2),
        "step_merge": merge,
        "catalog_rows": catalog,
        "lookup_rebuild_from_tables": rebuild,
    }


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        _run_child(sys.argv[2], Path(sys.argv[3]), Path(sys.argv[4]), Path(sys.argv[5]), sys.argv[6])
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[600_000, 2_400_000])
    parser.add_argument("--shards", type=int, default=4)
    args = parser.parse_args()
    for size in args.sizes:
        print(json.dumps({"commit": commit(), **measure(size, args.shards)}), flush=True)


if __name__ == "__main__":
    main()
