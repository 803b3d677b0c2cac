"""The retraining schedule, evaluated for a given tick on a real instance (temporary DAGSTER_HOME).

What the schedule reads is what runs record: each curation asset's materialization with its data
version (the dataset version id) and code version, and the last trained model's version, whose
manifest names the curriculum and, through it, the quality_scored versions trained on. The versions
here are sealed for real (records.manifest.seal) in a temporary data folder; the last test uses
the `trained` fixture's lineage, made by the real chain and records.models.seal_model.
"""

from __future__ import annotations

import json
import shutil
from datetime import UTC, datetime

import dagster as dg
import pytest
from dagster._core.definitions.data_version import CODE_VERSION_TAG, DATA_VERSION_TAG

from assets.curation import CODE_VERSION
from assets.definitions import defs
from assets.schedules import (
    CRON_ENV,
    DEFAULT_CRON,
    TIMEZONE_ENV,
    RetrainPlan,
    build_retrain_schedule,
    plan_retraining,
    plan_retraining_from_event_log,
    retraining,
)
from pipelines.suppression import suppression_config
from records.layout import DataLayout
from records.ledger import MODEL_TRAINED
from records.ledger.format import ENTRIES
from records.manifest import Manifest, seal
from records.pins import ensure_pinned, pin_dataset_version
from records.request_index import load_index
from records.requests import record_request
from records.retrain_state import (
    RETRAIN_STATE,
    RETRAIN_SUMMARY,
    RETRAIN_UPDATES,
    record_model,
    record_version,
)

CURATE = [
    "raw_documents", "language_identified", "quality_filtered", "deduplicated", "quality_classifier",
    "quality_scored",
]  # fmt: skip
STAGE_AND_TRAIN = ["curriculum_stages", "tokenizer", "token_shards", "trained_model"]
MONDAY = datetime(2026, 11, 30, 3, 0, tzinfo=UTC)


def _seal(
    layout: DataLayout, asset: str, content: str, parents=(), snapshot=None, code: str = "", config=None
) -> Manifest:
    """Seal and pin a version and note it in the retraining state, as a step does (finish_step)."""
    staging = layout.work / f"staging-{asset}-{content}"
    staging.mkdir(parents=True)
    (staging / "part-0.txt").write_text(content)
    manifest, _ = seal(
        staging, layout.datasets, asset=asset, snapshot=snapshot, parents=tuple(parents), code_version=code,
        config=config or {},
    )  # fmt: skip
    if asset == "trained_model":  # as records.models.seal_model pins and notes a model
        payload = {"model_version": manifest.ref, "kind": "pretrain", "parents": list(manifest.parents)}
        ensure_pinned(layout, manifest.ref, MODEL_TRAINED, payload, sealed_now=True)
        record_model(layout, manifest)
    else:
        pin_dataset_version(layout, manifest)
        record_version(layout, manifest)
    return manifest


def _report(instance, asset: str, version: str, partition=None, code: str = CODE_VERSION) -> None:
    """A materialization as a run records it: the data version and the code version it ran under."""
    tags = {DATA_VERSION_TAG: version, CODE_VERSION_TAG: code}
    instance.report_runless_asset_event(dg.AssetMaterialization(asset, partition=partition, tags=tags))


def _curate(
    instance, layout: DataLayout, snapshot: str, content: str, code: str = CODE_VERSION, raw_config=None
) -> Manifest:
    """Record a whole curation of ``snapshot``; its quality_scored version holds ``content``;
    ``raw_config``: the raw_documents version's sealed config (the request set it applied)."""
    for asset in CURATE[:-1]:
        config = raw_config if asset == "raw_documents" else None
        version = _seal(
            layout, asset, f"{snapshot}-{content}", snapshot=snapshot, code=code, config=config
        ).version_id
        _report(instance, asset, version, snapshot, code)
    scored = _seal(layout, "quality_scored", f"{snapshot}-{content}", snapshot=snapshot, code=code)
    _report(instance, "quality_scored", scored.version_id, snapshot, code)
    return scored


def _train(instance, layout: DataLayout, scored: list[Manifest]) -> Manifest:
    """Record a trained model whose curriculum drew from ``scored``."""
    stages = _seal(layout, "curriculum_stages", "stages", parents=[m.ref for m in scored])
    tokenizer = _seal(layout, "tokenizer", "bpe")
    shards = _seal(layout, "token_shards", "tokens", parents=[stages.ref, tokenizer.ref])
    model = _seal(layout, "trained_model", "weights", parents=[shards.ref, tokenizer.ref, stages.ref])
    for manifest in (stages, tokenizer, shards, model):
        _report(instance, manifest.asset, manifest.version_id)
    return model


def _tick(instance, when: datetime = MONDAY):
    context = dg.build_schedule_context(
        instance=instance, scheduled_execution_time=when, repository_def=defs.get_repository_def()
    )
    return retraining.evaluate_tick(context)


@pytest.fixture
def world(tmp_path, monkeypatch):
    """A temporary data folder and a real instance with the snapshot ``small`` registered."""
    monkeypatch.setenv("APERTUS_DATA", str(tmp_path / "data"))
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions("snapshots", ["small"])
        yield instance, DataLayout.from_env()


def test_schedule_targets_the_retrain_job_weekly_in_utc_by_default():
    assert defs.resolve_schedule_def("retraining") is retraining
    assert retraining.job_name == "retrain"
    assert (retraining.cron_schedule, retraining.execution_timezone) == (DEFAULT_CRON, "UTC")
    assert retraining.default_status == dg.DefaultScheduleStatus.RUNNING


def test_cron_and_timezone_come_from_the_environment(monkeypatch):
    monkeypatch.setenv(CRON_ENV, "30 1 * * 6")
    monkeypatch.setenv(TIMEZONE_ENV, "Europe/Zurich")
    schedule = build_retrain_schedule()
    assert (schedule.cron_schedule, schedule.execution_timezone) == ("30 1 * * 6", "Europe/Zurich")
    monkeypatch.setenv(TIMEZONE_ENV, "Europe/Atlantis")
    with pytest.raises(ValueError, match=f"{TIMEZONE_ENV}='Europe/Atlantis'"):
        build_retrain_schedule()
    monkeypatch.setenv(TIMEZONE_ENV, "UTC")
    monkeypatch.setenv(CRON_ENV, "every monday")
    with pytest.raises(ValueError, match=f"{CRON_ENV}='every monday'"):
        build_retrain_schedule()


def test_uncurated_snapshot_is_curated_and_training_waits(world):
    instance, _ = world
    result = _tick(instance)
    (request,) = result.run_requests
    assert request.partition_key == "small"
    assert [k.to_user_string() for k in request.asset_selection] == CURATE
    assert request.tags["apertus/retrain"] == "curate"
    assert request.tags["apertus/reason"] == "raw_documents never materialized"
    assert request.tags["dagster/schedule_name"] == "retraining"
    assert request.run_key == f"{MONDAY.isoformat()}:curate:small"


def test_curation_under_other_code_is_stale(world):
    instance, layout = world
    _curate(instance, layout, "small", "v1", code="0ld0c0de")
    (request,) = _tick(instance).run_requests
    assert request.partition_key == "small"
    assert request.tags["apertus/reason"] == f"raw_documents made by code 0ld0c0de, now {CODE_VERSION}"


def test_curated_and_never_trained_stages_and_trains(world):
    instance, layout = world
    _curate(instance, layout, "small", "v1")
    (request,) = _tick(instance).run_requests
    assert request.partition_key is None
    assert [k.to_user_string() for k in request.asset_selection] == STAGE_AND_TRAIN
    assert request.tags["apertus/retrain"] == "stage+train"
    assert request.tags["apertus/heavy"] == "true"
    assert request.tags["apertus/reason"].startswith("no model trained yet")


def test_nothing_changed_since_the_last_model_skips(world):
    instance, layout = world
    scored = _curate(instance, layout, "small", "v1")
    model = _train(instance, layout, [scored])
    result = _tick(instance)
    assert not result.run_requests
    assert model.ref in result.skip_message and "current curated versions" in result.skip_message


def test_an_erasure_request_recorded_since_curation_re_curates(world):
    instance, layout = world
    scored = _curate(instance, layout, "small", "v1")
    _train(instance, layout, [scored])
    request = record_request(layout, "domain", "example.org", note="test")
    assert plan_retraining(instance, layout).curate == {
        "small": "1 erasure request(s) recorded since its curation"
    }
    (run,) = _tick(instance).run_requests
    assert run.partition_key == "small" and "erasure request" in run.tags["apertus/reason"]
    assert request.request_id


def test_a_re_curation_that_applied_the_requests_settles(world):
    instance, layout = world
    scored = _curate(instance, layout, "small", "v1")
    _train(instance, layout, [scored])
    record_request(layout, "domain", "example.org", note="test")
    record_request(layout, "url", "https://example.com/a", note="test")
    assert plan_retraining(instance, layout).curate == {
        "small": "2 erasure request(s) recorded since its curation"
    }
    # Ingest seals the request set it applied (its ledger size, root and count) in the raw config.
    _curate(instance, layout, "small", "v2", raw_config=suppression_config(load_index(layout)))
    assert plan_retraining(instance, layout).curate == {}
    assert plan_retraining_from_event_log(instance, layout).curate == {}
    record_request(layout, "sha256", "ab" * 32, note="test")
    assert plan_retraining(instance, layout).curate == {
        "small": "1 erasure request(s) recorded since its curation"
    }


def test_changed_curated_data_retrains_and_names_the_versions(world):
    instance, layout = world
    old = _curate(instance, layout, "small", "v1")
    _train(instance, layout, [old])
    new = _curate(instance, layout, "small", "v2")  # e.g. re-curated with an erasure request applied
    (request,) = _tick(instance).run_requests
    assert request.tags["apertus/retrain"] == "stage+train"
    reason = request.tags["apertus/reason"]
    assert f"new quality_scored/{new.version_id[:8]}" in reason
    assert f"no longer current quality_scored/{old.version_id[:8]}" in reason


def test_new_snapshot_defers_training_until_it_is_curated(world):
    instance, layout = world
    scored = _curate(instance, layout, "small", "v1")
    _train(instance, layout, [scored])
    instance.add_dynamic_partitions("snapshots", ["late"])
    result = _tick(instance)
    assert [(r.partition_key, r.tags["apertus/retrain"]) for r in result.run_requests] == [("late", "curate")]

    late = _curate(instance, layout, "late", "v1")
    (request,) = _tick(instance).run_requests
    assert request.tags["apertus/retrain"] == "stage+train"
    assert f"new quality_scored/{late.version_id[:8]}" in request.tags["apertus/reason"]


def test_real_model_lineage_trained_on_current_data_skips(trained, tmp_path, monkeypatch):
    """The `trained` fixture's model (sealed by records.models.seal_model over the real chain)."""
    source, model, _ = trained
    layout = DataLayout(tmp_path / "data")
    shutil.copytree(source.root, layout.root)
    monkeypatch.setenv("APERTUS_DATA", str(layout.root))
    versions = {asset: sorted(p.name for p in (layout.datasets / asset).iterdir()) for asset in CURATE}
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions("snapshots", ["small"])
        for asset in CURATE:
            (version,) = versions[asset]
            _report(instance, asset, version, "small")
        _report(instance, "trained_model", model.version_id)
        result = _tick(instance)
        assert not result.run_requests
        assert f"trained_model/{model.version_id}" in result.skip_message


def test_snapshot_being_curated_is_left_alone_and_training_waits(world):
    instance, layout = world
    scored = _curate(instance, layout, "small", "v1")
    _train(instance, layout, [scored])
    instance.add_dynamic_partitions("snapshots", ["late"])
    running = dg.DagsterRun(
        job_name="curate", status=dg.DagsterRunStatus.STARTED, tags={"dagster/partition": "late"}
    )
    instance.add_run(running)
    result = _tick(instance)
    assert not result.run_requests
    assert "retraining waits for the curation of late" in result.skip_message


def _same(instance, layout) -> RetrainPlan:
    """The tick's plan from the state index, checked equal to the reference path's on the same folder."""
    plan = plan_retraining(instance, layout)
    assert plan == plan_retraining_from_event_log(instance, layout)
    return plan


def test_the_state_index_decides_as_the_event_log_and_the_ledger_do(world):
    instance, layout = world
    instance.add_dynamic_partitions("snapshots", ["late", "stale"])
    assert _same(instance, layout).curate.keys() == {"small", "late", "stale"}
    a = _curate(instance, layout, "small", "v1")
    b = _curate(instance, layout, "late", "v1")
    _curate(instance, layout, "stale", "v1", code="0ld0c0de")
    assert _same(instance, layout).curate == {
        "stale": f"raw_documents made by code 0ld0c0de, now {CODE_VERSION}"
    }
    c = _curate(instance, layout, "stale", "v2")
    assert _same(instance, layout).retrain.startswith("no model trained yet")
    _train(instance, layout, [a, b, c])
    assert not _same(instance, layout).retrain
    record_request(layout, "url", "https://example.org/a", note="one")
    record_request(layout, "url", "https://example.org/b", note="two")
    assert set(_same(instance, layout).curate.values()) == {
        "2 erasure request(s) recorded since its curation"
    }
    d = _curate(instance, layout, "late", "v2")  # new versions, no request applied: still stale
    assert _same(instance, layout).curated == {}
    assert d.ref not in {a.ref, b.ref, c.ref}


def test_a_tick_reads_no_ledger_entry_and_no_materialization(world):
    """With the index current, the ledger's entries file and the instance's materializations can be
    gone: the tick decides the same (the reference path, which reads both, no longer does)."""
    instance, layout = world
    scored = _curate(instance, layout, "small", "v1")
    model = _train(instance, layout, [scored])
    expected = plan_retraining(instance, layout)
    assert model.ref in expected.notes[0] and not expected.curate and not expected.retrain
    (layout.ledger / ENTRIES).rename(layout.root / "entries-aside")
    with dg.instance_for_test() as empty:  # no materialization recorded at all
        empty.add_dynamic_partitions("snapshots", ["small"])
        assert plan_retraining(empty, layout) == expected
        assert plan_retraining_from_event_log(empty, layout).curate == {
            "small": "raw_documents never materialized"
        }


def _tear(updates) -> None:
    """A line cut short by a crash, with a later writer's line appended after it."""
    with open(updates, "ab") as f:
        f.write(b'{"snapshot": "small", "ref": "raw_doc\n{"snapshot": "small"}\n')


def test_a_deleted_or_stale_state_index_is_rebuilt_from_the_ledger(world):
    instance, layout = world
    scored = _curate(instance, layout, "small", "v1")
    _train(instance, layout, [scored])
    record_request(layout, "domain", "example.org", note="test")
    expected = plan_retraining(instance, layout)
    assert expected.curate == {"small": "1 erasure request(s) recorded since its curation"}
    summary = layout.root / RETRAIN_STATE / RETRAIN_SUMMARY
    broken = json.loads(summary.read_text())
    broken["last_leaf"] = "00" * 32  # as if the ledger had been replaced under it
    for damage in (
        lambda: shutil.rmtree(layout.root / RETRAIN_STATE),
        lambda: summary.write_text(json.dumps(broken)),
        lambda: (layout.root / RETRAIN_STATE / RETRAIN_UPDATES).write_bytes(b""),  # shorter than compacted
        lambda: _tear(layout.root / RETRAIN_STATE / RETRAIN_UPDATES),
    ):
        damage()
        plan = plan_retraining(instance, layout)
        assert plan.curate == expected.curate
        assert plan.notes[0].startswith("the retraining state index was rebuilt from the ledger")
        assert plan_retraining(instance, layout) == expected  # once: the rebuilt index is current
