"""Tables and lookup runs per shard (pipelines.tables): the step's process merges the parts its
tasks wrote without reading a document, and gets the tables a one-process build gets.

The reference is the same version's tables built in one process from intact shards (every part
written there, one shard at a time), compared row by row with what the merge of task-written
parts gives after every shard file was emptied.
"""

from __future__ import annotations

import shutil

import pyarrow.parquet as pq

from pipelines.executor import ExecutorConfig, run_pipeline
from pipelines.tables import ShardTables, build_tables, part_runs, shard_files
from records.documents import EXCLUSIONS, INDEX
from records.layout import DataLayout
from records.lookup_build import build_lookup, lookup_problems
from records.manifest import seal


def test_merge_reads_no_shard_and_equals_a_one_process_build(curated, tmp_path):
    layout, results, _ = curated
    source = layout.datasets / results[3].manifest.ref  # deduplicated: kept and excluded shards
    staging, reference = tmp_path / "staging", tmp_path / "reference"
    for folder in (staging, reference):
        folder.mkdir()
        for kind in ("shards", "excluded"):
            shutil.copytree(source / kind, folder / kind)
    files = shard_files(staging)
    assert len([f for f in files if f.parent.name == "excluded"]) >= 1 and len(files) >= 3

    parts = tmp_path / "parts"
    parts.mkdir()
    executor = ExecutorConfig(tasks=2, workers=1)
    run_pipeline(
        [ShardTables(staging, parts, "deduplicated")], logging_dir=tmp_path / "logs", config=executor
    )
    for shard in files:  # the step's process must not need a byte of them now
        shard.write_bytes(b"")

    counts, kept, excluded = build_tables(staging, "deduplicated", parts)
    expected = build_tables(reference, "deduplicated", tmp_path / "reference_parts")
    assert (counts, kept.as_dict(), excluded.as_dict()) == (
        expected[0], expected[1].as_dict(), expected[2].as_dict()
    )  # fmt: skip
    for name in (INDEX, EXCLUSIONS):
        merged, whole = pq.read_table(staging / name), pq.read_table(reference / name)
        assert merged.schema.metadata == whole.schema.metadata
        assert merged.to_pylist() == whole.to_pylist() and merged.num_rows > 0

    # The lookup from the tasks' runs is the one a check rebuilds from the sealed tables.
    data = DataLayout(tmp_path / "data")
    for kind in ("shards", "excluded"):
        shutil.rmtree(staging / kind)
    manifest, _ = seal(staging, data.datasets, asset="deduplicated", snapshot="s")
    folder = data.datasets / manifest.ref
    from_runs = build_lookup(data, manifest, folder, runs=part_runs(parts)).read_bytes()
    assert lookup_problems(data, manifest, folder) == []
    assert build_lookup(data, manifest, folder).read_bytes() == from_runs
