"""Bad input never stops a run and is never lost: the raw_documents step on a folder of broken files."""

from __future__ import annotations

import polars as pl
import pytest

from pipelines.config import CurationConfig
from pipelines.executor import ExecutorConfig
from pipelines.steps import ingest_snapshot
from records.catalog import query
from records.layout import DataLayout
from sample.bad_inputs import write_bad_inputs


@pytest.fixture(scope="module")
def ingested(tmp_path_factory):
    layout = DataLayout(tmp_path_factory.mktemp("data"))
    truth = pl.read_parquet(write_bad_inputs(layout.snapshot_dir("broken"), seed=3))
    result = ingest_snapshot(layout, "broken", CurationConfig(), ExecutorConfig(tasks=2, workers=1))
    return layout, result, truth


def test_every_bad_record_is_quarantined_with_file_offset_and_reason(ingested):
    layout, result, truth = ingested
    bad = truth.filter(pl.col("reason").is_not_null())
    _, rows = query(layout, 'SELECT file, "offset", reason FROM quarantine')
    quarantined = {(f, o, r) for f, o, r in rows}
    for file, offset, reason in bad.select("file", "offset", "reason").iter_rows():
        assert (file, offset, reason) in quarantined, (file, offset, reason)
    assert result.manifest.stats["quarantine"]["records"] == len(rows) >= bad.height


def test_good_records_around_bad_ones_are_kept(ingested):
    layout, result, truth = ingested
    good = truth.filter(pl.col("reason").is_null())
    _, rows = query(
        layout,
        f"SELECT source_file, source_offset FROM document_index WHERE dataset_version = '{result.manifest.version_id}'",
    )
    kept = set(rows)
    missing = [(f, o) for f, o in good.select("file", "offset").iter_rows() if (f, o) not in kept]
    assert missing == []
    assert result.kept["documents"] == good.height
