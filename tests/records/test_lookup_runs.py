"""Lookups merged from sorted runs (records.lookup_runs): the same bytes however the rows are cut
into runs, the rows a plain sort of the tables gives, and a merge whose memory does not grow with
the number of rows.

Ground truth is a plain-Python encoding of the documented format (docs/audit.md) from the tables'
rows, independent of the numpy and heap code under test.
"""

from __future__ import annotations

import hashlib
import random
import struct
import tracemalloc
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from records import lookup_runs
from records.layout import DataLayout
from records.lookup_build import build_lookup, lookup_problems
from records.lookup_file import BLOCK_ROWS, NULL_INT, NULL_LENGTH, STRINGS, LookupFile
from records.lookup_runs import answer_table, merge_runs, write_run
from records.manifest import seal


def _columns(rnd: random.Random, n: int, first: int, excluded: bool) -> dict:
    # Few distinct contents, so that equal sha256s fall in different runs and their order matters.
    shas = [hashlib.sha256(str(rnd.randrange(n // 3 + 1)).encode()).hexdigest() for _ in range(n)]
    urls = [
        None if rnd.random() < 0.1 else f"https://h{rnd.randrange(40)}.example/{rnd.randrange(n)}"
        for _ in range(n)
    ]
    columns = {
        "doc_id": [f"d{first + i}" for i in range(n)],
        "url": urls,
        "snapshot": ["s"] * n,
        "sha256": shas,
        "minhash_cluster_id": [None if rnd.random() < 0.5 else f"c{rnd.randrange(9)}é" for _ in range(n)],
        "minhash_cluster_size": pa.array([None if rnd.random() < 0.5 else rnd.randrange(5) for _ in range(n)], pa.int64()),
    }  # fmt: skip
    if excluded:
        columns |= {
            "step": ["x"] * n,
            "reason": [rnd.choice(["a", None]) for _ in range(n)],
            "details": ["{}"] * n,
        }
    return columns


def _version(tmp_path: Path, kept: int, dropped: int):
    rnd = random.Random(kept)
    staging = tmp_path / "staging"
    staging.mkdir()
    pq.write_table(pa.table(_columns(rnd, kept, 0, False)), staging / "index.parquet", row_group_size=500)
    pq.write_table(pa.table(_columns(rnd, dropped, kept, True)), staging / "exclusions.parquet")
    layout = DataLayout(tmp_path / "data")
    manifest, _ = seal(staging, layout.datasets, asset="raw_documents", snapshot="s")
    return layout, manifest, layout.datasets / manifest.ref


def _reference_rows(folder: Path) -> list[tuple]:
    """(digest, strings…, kept, size) of every row, sorted by digest with ties in table order."""
    rows = []
    for name, kept in (("index.parquet", True), ("exclusions.parquet", False)):
        for r in pq.read_table(folder / name).to_pylist():
            strings = tuple(
                None if kept and c in ("step", "reason", "details") else r.get(c) for c in STRINGS
            )
            rows.append((bytes.fromhex(r["sha256"]), len(rows), strings, kept, r["minhash_cluster_size"]))
    return sorted(rows, key=lambda r: (r[0], r[1]))


def _reference_block(rows: list[tuple]) -> bytes:
    lengths, data = b"", b""
    for c in range(len(STRINGS)):
        values = [r[2][c] for r in rows]
        lengths += b"".join(struct.pack("<I", NULL_LENGTH if v is None else len(v.encode())) for v in values)
        data += b"".join(v.encode() for v in values if v is not None)
    kept = bytes(int(r[3]) for r in rows)
    sizes = b"".join(struct.pack("<q", NULL_INT if r[4] is None else r[4]) for r in rows)
    return lengths + kept + sizes + data


def _shard_runs(folder: Path, work: Path, pieces: int) -> list[Path]:
    """Runs as a step's tasks write them: each table cut into ``pieces`` shards, each sorted alone."""
    stems = []
    for name, kept in (("index.parquet", True), ("exclusions.parquet", False)):
        table = pq.read_table(folder / name)
        step = max(1, -(-table.num_rows // pieces))
        for start in range(0, table.num_rows, step):
            stems.append(work / f"{len(stems):03d}")
            write_run(answer_table(table.slice(start, step), kept, name), stems[-1])
    return stems


@pytest.mark.parametrize("kept,dropped", [(0, 1), (700, 300), (2100, 64)])
def test_merged_runs_give_the_rows_of_a_plain_sort_whatever_the_runs(tmp_path, kept, dropped):
    layout, manifest, folder = _version(tmp_path, kept, dropped)
    from_tables = build_lookup(layout, manifest, folder).read_bytes()
    truth = _reference_rows(folder)
    with LookupFile(build_lookup(layout, manifest, folder)) as f:
        assert f.rows == len(truth)
        assert f.sha256s() == b"".join(r[0] for r in truth)
        for b in range(0, len(truth), BLOCK_ROWS):
            assert f.block(b // BLOCK_ROWS) == _reference_block(truth[b : b + BLOCK_ROWS])
        url_rows = sorted(
            (hashlib.sha256(r[2][1].encode()).digest()[:8], i)
            for i, r in enumerate(truth)
            if r[2][1] is not None
        )
        assert f.url_keys() == b"".join(key + struct.pack(">I", i) for key, i in url_rows)
    for pieces in (1, 3, 7):  # as many shards per table
        work = tmp_path / f"runs{pieces}"
        work.mkdir()
        assert (
            build_lookup(layout, manifest, folder, runs=_shard_runs(folder, work, pieces)).read_bytes()
            == from_tables
        )
    assert lookup_problems(layout, manifest, folder) == []


def _merge_peak(tmp_path: Path, rows_per_run: int, runs: int) -> int:
    rnd = random.Random(rows_per_run)
    work = tmp_path / f"merge{rows_per_run}"
    work.mkdir()
    stems = []
    for r in range(runs):
        table = pa.table(_columns(rnd, rows_per_run, r * rows_per_run, bool(r % 2)))
        stems.append(work / f"{r:03d}")
        write_run(answer_table(table, not r % 2, "t"), stems[-1])
    blocks = []
    tracemalloc.start()
    try:
        merged = merge_runs(stems, work, lambda block: blocks.append(len(block)))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert merged.rows == runs * rows_per_run and len(blocks) == -(-merged.rows // BLOCK_ROWS)
    return peak


def test_merge_memory_does_not_grow_with_the_rows(tmp_path):
    """Four times the rows in the same number of runs: the merge's peak of Python memory stays
    within 1.5x (it holds BATCH_ROWS rows per run, not the rows), while the rows' own size grows 4x."""
    small = _merge_peak(tmp_path, 2 * lookup_runs.BATCH_ROWS, 4)
    large = _merge_peak(tmp_path, 8 * lookup_runs.BATCH_ROWS, 4)
    assert large < 1.5 * small, (small, large)
