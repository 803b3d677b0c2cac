"""The curation assets in a real Dagster instance (temporary DAGSTER_HOME), as `apertus curate` runs them."""

from __future__ import annotations

import shutil

import dagster as dg
import pytest

from records.layout import DataLayout

ASSETS = ["raw_documents", "language_identified", "quality_filtered", "deduplicated"]


@pytest.fixture(scope="module")
def materialized(small_snapshot, tmp_path_factory):
    folder, _ = small_snapshot
    home = tmp_path_factory.mktemp("dagster_home")
    data = tmp_path_factory.mktemp("data")
    mp = pytest.MonkeyPatch()
    mp.setenv("DAGSTER_HOME", str(home))
    mp.setenv("APERTUS_DATA", str(data))
    from apertus.snapshots import curate, dagster_instance, stage

    layout = DataLayout.from_env()
    shutil.copytree(folder, layout.snapshot_dir("small"))
    first = curate("small", tasks=2)
    second = curate("small", tasks=2)
    staged = stage(tasks=2)
    yield dagster_instance(), layout, first, second, staged
    mp.undo()


def _materialization(result, asset):
    (event,) = result.asset_materializations_for_node(asset)
    return event


def test_runs_succeed_and_are_recorded_in_the_instance(materialized):
    instance, _, first, second, _ = materialized
    assert first.success and second.success
    assert instance.has_dynamic_partition("snapshots", "small")
    for asset in ASSETS:
        record = instance.get_latest_materialization_event(dg.AssetKey(asset))
        assert record is not None and record.asset_materialization.partition == "small"


def test_data_version_is_the_dataset_version_and_is_reused(materialized):
    _, layout, first, second, _ = materialized
    for asset in ASSETS:
        event = _materialization(first, asset)
        version = event.metadata["dataset_version"].value
        assert event.tags["dagster/data_version"] == version
        assert (layout.datasets / asset / version / "manifest.json").exists()
        again = _materialization(second, asset)
        assert again.tags["dagster/data_version"] == version
        assert again.metadata["new_version"].value is False


def test_metadata_shows_what_a_person_looks_for(materialized):
    _, _, first, _, _ = materialized
    raw = _materialization(first, "raw_documents").metadata
    assert "quarantined_records" in raw
    final = _materialization(first, "deduplicated").metadata
    for key in [
        "languages",
        "removals_by_reason",
        "examples_kept",
        "examples_removed",
        "language_distribution",
    ]:
        assert key in final
    assert "| de |" in final["languages"].value
    assert (
        "near_duplicate" in final["removals_by_reason"].value
        or "exact_duplicate" in final["removals_by_reason"].value
    )
    assert final["language_distribution"].value.startswith("![language_distribution](data:image/png;base64,")


def test_asset_checks_pass(materialized):
    _, _, first, _, _ = materialized
    evaluations = first.get_asset_check_evaluations()
    assert len(evaluations) >= 4 * 3
    failed = [(e.asset_key.to_user_string(), e.check_name, e.metadata) for e in evaluations if not e.passed]
    assert failed == []


def test_training_data_assets_stage_the_curated_snapshot(materialized):
    _, layout, first, _, staged = materialized
    assert staged.success
    classifier = _materialization(first, "quality_classifier").metadata
    assert 0.0 <= classifier["auc"].value <= 1.0
    stages = _materialization(staged, "curriculum_stages").metadata
    assert "| broad |" in stages["stages"].value or "broad" in stages["stages"].value
    tokenizer = _materialization(staged, "tokenizer").metadata
    assert "| de |" in tokenizer["fertility"].value
    shards = _materialization(staged, "token_shards").metadata
    assert shards["tokens"].value > 0
    failed = [
        (e.asset_key.to_user_string(), e.check_name)
        for e in staged.get_asset_check_evaluations()
        if not e.passed
    ]
    assert failed == []
    # The token shards' lineage reaches the curriculum, the tokenizer and every curation step.
    version = shards["dataset_version"].value
    assert (layout.datasets / "token_shards" / version / "manifest.json").exists()
