"""Byte budgets (issue 14, finding 9): small compressed files that inflate to gigabytes are read
within a bounded address space, and what the budgets refuse is quarantined with its reason.

The hostile files run through the reader and the shard writer in a subprocess under RLIMIT_AS
(``budget_probe``), so a budget that fails shows as a MemoryError or a crash, not a slow machine."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from datatrove.data import Document

from pipelines import reasons
from pipelines.readers.budgets import ByteBudgets
from pipelines.shards import DocumentShardWriter
from sample.bad_inputs import write_gzip_of_large_lines

REPO = Path(__file__).resolve().parents[2]
HOSTILE = REPO / "tests" / "resources" / "hostile"
# Address space allowed beyond the interpreter with pyarrow and datatrove imported and Arrow's pool
# started (about 1.4 GB mapped, 0.15 GB resident): the hostile files below peaked at 3.4 GB and
# 2.7 GB resident before the budgets, and stay under 0.4 GB with them.
HEADROOM = 1_000_000_000


def probe(snapshot_dir: Path, work: Path, budgets: dict | None = None) -> dict:
    """What ``budget_probe`` read and quarantined from ``snapshot_dir`` under the limit."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    command = [sys.executable, "-m", "tests.pipelines.budget_probe", str(HEADROOM)]
    command += [str(snapshot_dir), str(work), json.dumps(budgets or {})]
    done = subprocess.run(command, capture_output=True, text=True, env=env, cwd=REPO, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def gzip_of_large_lines(tmp_path_factory) -> Path:
    """Issue 14's file: 100 JSON lines of 9 MB (each under the per-record cap) in 880 KB of gzip."""
    folder = tmp_path_factory.mktemp("gzip_bomb") / "snapshot"
    folder.mkdir()
    assert write_gzip_of_large_lines(folder / "big.jsonl.gz") < 1_000_000
    return folder


def test_gzip_of_large_lines_stops_at_the_file_budget_in_bounded_memory(gzip_of_large_lines, tmp_path):
    out = probe(gzip_of_large_lines, tmp_path, {"max_file_bytes": 150_000_000})
    (row,) = out["quarantine"]
    assert row["reason"] == reasons.FILE_TOO_LARGE and row["file"] == "big.jsonl.gz"
    # Every line before the budget became a document; the rest of the file is one row, at its line.
    assert row["offset"] == len(out["documents"]) == 150_000_000 // 9_000_000
    assert "max_file_bytes=150000000" in row["detail"] and "not read" in row["detail"]
    assert out["peak_rss"] < 600_000_000  # 379 MB measured; the old reader peaked at 2.5 GB


@pytest.mark.slow
def test_gzip_of_large_lines_is_read_whole_in_bounded_memory(gzip_of_large_lines, tmp_path):
    """The default budgets: all 100 lines are documents, the writer flushes by bytes (~30 s)."""
    out = probe(gzip_of_large_lines, tmp_path)
    assert out["quarantine"] == [] and len(out["documents"]) == 100
    assert out["peak_rss"] < 1_000_000_000


def test_parquet_cell_of_400_mb_is_quarantined_from_the_metadata(tmp_path):
    snapshot = tmp_path / "snapshot"
    snapshot.mkdir()
    shutil.copy(HOSTILE / "one_400mb_cell.parquet", snapshot / "cell.parquet")  # 13 KB, zstd
    assert (snapshot / "cell.parquet").stat().st_size < 20_000
    out = probe(snapshot, tmp_path / "work")
    assert out["documents"] == []
    (row,) = out["quarantine"]
    assert (row["file"], row["offset"], row["reason"]) == ("cell.parquet", 0, reasons.COLUMN_CHUNK_TOO_LARGE)
    assert "rows 0 to 1 (2 rows)" in row["detail"] and "column 'text'" in row["detail"]
    assert f"max_column_chunk_bytes={ByteBudgets().max_column_chunk_bytes}" in row["detail"]


def test_shard_writer_flushes_by_bytes_as_well_as_by_count(tmp_path):
    """Ten 300 KB documents under a 1 MB buffer: row groups of at most 4 documents, not one of 10."""
    writer = DocumentShardWriter(tmp_path, max_buffer_bytes=1_000_000)
    with writer:
        for n in range(10):
            writer.write(Document(text=f"{n}" + "x" * 300_000, id=f"d{n}", metadata={}), rank=0)
    metadata = pq.read_metadata(tmp_path / "00000.parquet")
    sizes = [metadata.row_group(i).num_rows for i in range(metadata.num_row_groups)]
    assert sum(sizes) == 10 and max(sizes) <= 4, sizes
    texts = pq.read_table(tmp_path / "00000.parquet", columns=["text"]).column("text").to_pylist()
    assert [t[0] for t in texts] == [str(n) for n in range(10)]  # order kept across the flushes


def test_budgets_come_from_the_curation_config(tmp_path):
    from pipelines.config import load_curation_config

    path = tmp_path / "curation.yaml"
    path.write_text("budgets:\n  max_file_bytes: 1000\n  max_column_chunk_bytes: 2000\n")
    budgets = load_curation_config(path).budgets
    assert (budgets.max_file_bytes, budgets.max_column_chunk_bytes) == (1000, 2000)
    assert budgets.max_shard_buffer_bytes == ByteBudgets().max_shard_buffer_bytes
    path.write_text("budgets:\n  max_file_bytes: 0\n")
    with pytest.raises(ValueError, match="max_file_bytes"):
        load_curation_config(path)


def test_the_curation_config_budgets_reach_the_ingest_step(tmp_path):
    """`budgets:` in the curation YAML caps what ingest reads, and the version records it."""
    from pipelines.config import load_curation_config
    from pipelines.executor import ExecutorConfig
    from pipelines.reasons import FILE_TOO_LARGE
    from pipelines.steps import ingest_snapshot
    from records.layout import DataLayout

    layout = DataLayout(tmp_path / "data")
    snapshot = layout.snapshot_dir("capped")
    snapshot.mkdir(parents=True)
    line = '{"url": "https://example.org/%d", "text": "%s"}\n'
    text = "Ein ganz gewöhnlicher Satz über das Wetter in der Stadt. " * 20
    (snapshot / "pages.jsonl").write_text("".join(line % (i, text) for i in range(40)))
    config_file = tmp_path / "curation.yaml"
    config_file.write_text("budgets:\n  max_file_bytes: 20000\n")
    config = load_curation_config(config_file)
    result = ingest_snapshot(layout, "capped", config, ExecutorConfig(tasks=1, workers=1))
    assert result.manifest.config["budgets"]["max_file_bytes"] == 20000
    quarantine = result.manifest.stats["quarantine"]
    assert quarantine["by_reason"] == {FILE_TOO_LARGE: 1}, quarantine
    assert 0 < result.kept["documents"] < 40
