"""Changing only the curriculum re-makes only the curriculum and what depends on it.

In a real Dagster instance (temporary DAGSTER_HOME): a snapshot is curated and staged, then the
curriculum file alone changes. Dagster's own staleness resolver (code versions and data versions,
as the UI's "stale" badge uses them) must show every other asset fresh throughout, and the
curriculum's downstream stale until it is rebuilt; the dataset versions (our content hashes, which
are the data versions) of everything upstream stay the same.
"""

from __future__ import annotations

import shutil

import dagster as dg
import pytest
import yaml
from dagster._core.definitions.data_version import CachingStaleStatusResolver, StaleStatus
from dagster._core.loader import LoadingContextForTest

from records.layout import DataLayout

PARTITIONED = [
    "raw_documents", "language_identified", "quality_filtered", "deduplicated", "quality_classifier",
    "quality_scored",
]  # fmt: skip
UNCHANGED = [*PARTITIONED, "tokenizer"]
CURRICULUM_AND_DOWNSTREAM = ["curriculum_stages", "token_shards"]


def _status(instance, defs, asset: str) -> tuple[StaleStatus, list[str]]:
    """Dagster's stale status of ``asset`` (of partition "small" where partitioned) and its causes."""
    resolver = CachingStaleStatusResolver(
        instance, defs.resolve_asset_graph(), LoadingContextForTest(instance)
    )
    key, partition = dg.AssetKey(asset), "small" if asset in PARTITIONED else None
    causes = resolver.get_stale_causes(key, partition)
    return resolver.get_status(key, partition), [
        f"{c.dependency.asset_key.to_user_string() if c.dependency else asset}: {c.category.name} {c.reason}"
        for c in causes
    ]


def _data_version(instance, asset: str) -> str:
    event = instance.get_latest_materialization_event(dg.AssetKey(asset))
    return event.asset_materialization.tags["dagster/data_version"]


def _num_materializations(instance, asset: str) -> int:
    return len(instance.fetch_materializations(dg.AssetKey(asset), limit=100).records)


@pytest.fixture(scope="module")
def staged(small_snapshot, tmp_path_factory):
    folder, _ = small_snapshot
    home = tmp_path_factory.mktemp("dagster_home")
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n", encoding="utf-8")
    data = tmp_path_factory.mktemp("data")
    mp = pytest.MonkeyPatch()
    mp.setenv("DAGSTER_HOME", str(home))
    mp.setenv("APERTUS_DATA", str(data))
    from apertus.snapshots import curate, dagster_instance, stage
    from assets.definitions import defs
    from assets.training_data import DEFAULT_CURRICULUM

    shutil.copytree(folder, DataLayout.from_env().snapshot_dir("small"))
    assert curate("small", tasks=2).success and stage(tasks=2).success
    # The same curriculum with another seed: the stages hold the same documents in another order.
    curriculum = yaml.safe_load(DEFAULT_CURRICULUM.read_text(encoding="utf-8"))
    changed = tmp_path_factory.mktemp("curriculum") / "reseeded.yaml"
    changed.write_text(yaml.safe_dump({**curriculum, "seed": curriculum["seed"] + 1}), encoding="utf-8")
    yield dagster_instance(), defs, stage, changed
    mp.undo()


def test_changing_the_curriculum_rebuilds_only_the_curriculum_and_its_downstream(staged):
    instance, defs, stage, changed = staged
    everything = [*UNCHANGED, *CURRICULUM_AND_DOWNSTREAM]
    for asset in everything:
        assert _status(instance, defs, asset) == (StaleStatus.FRESH, []), asset
    before = {asset: _data_version(instance, asset) for asset in everything}
    runs_before = {asset: _num_materializations(instance, asset) for asset in everything}

    # The curriculum stages alone, from the changed file: its downstream goes stale, nothing else.
    from apertus.snapshots import _materialize
    from assets.training_data import curriculum_stages

    result = _materialize(
        [curriculum_stages],
        "stage",
        op_config={"curriculum_stages": {"curriculum_path": str(changed)}},
        tasks=2,
    )
    assert result.success
    assert _data_version(instance, "curriculum_stages") != before["curriculum_stages"]
    status, causes = _status(instance, defs, "token_shards")
    assert status == StaleStatus.STALE and any(c.startswith("curriculum_stages") for c in causes), causes
    for asset in [*UNCHANGED, "curriculum_stages"]:
        assert _status(instance, defs, asset) == (StaleStatus.FRESH, []), asset

    # Staging again with the changed file, as `apertus stage --curriculum` does: the token shards are
    # rebuilt; the tokenizer runs but yields the same version; upstream nothing runs at all.
    assert stage(curriculum=str(changed), tasks=2).success
    after = {asset: _data_version(instance, asset) for asset in everything}
    for asset in everything:
        assert _status(instance, defs, asset) == (StaleStatus.FRESH, []), asset
    assert {a for a in everything if after[a] != before[a]} == set(CURRICULUM_AND_DOWNSTREAM)
    for asset in PARTITIONED:
        assert _num_materializations(instance, asset) == runs_before[asset], asset
