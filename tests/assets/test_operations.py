"""Operations: retry policies, concurrency pools, run retries and automation conditions, as defined and
as Dagster applies them in a real instance (temporary DAGSTER_HOME)."""

from __future__ import annotations

import shutil

import dagster as dg
import pytest
import yaml
from dagster._core.definitions.data_version import CODE_VERSION_TAG, DATA_VERSION_TAG

from assets.curation import CODE_VERSION
from assets.definitions import defs
from assets.operations import (
    CPU_POOL,
    CURATION_AUTOMATION,
    CURATION_RETRY,
    STAGING_AUTOMATION,
    TRAIN_POOL,
    TRAINING_RETRY,
)
from records.layout import REPO_ROOT

CURATION = ["raw_documents", "language_identified", "quality_filtered", "deduplicated"]
SCORING = ["quality_classifier", "quality_scored"]
STAGING = ["curriculum_stages", "tokenizer", "token_shards"]
PG_ENV = {
    "DAGSTER_PG_HOST": "db.internal",
    "DAGSTER_PG_USER": "dagster",
    "DAGSTER_PG_PASSWORD": "secret",
    "DAGSTER_PG_DB": "apertus",
}


def _node(asset: str):
    return defs.resolve_assets_def(asset).node_def


def test_every_step_has_its_retry_policy_and_pool():
    for asset in [*CURATION, *SCORING, *STAGING]:
        assert _node(asset).retry_policy == CURATION_RETRY, asset
        assert _node(asset).pool == CPU_POOL, asset
    assert _node("trained_model").retry_policy == TRAINING_RETRY
    assert _node("trained_model").pool == TRAIN_POOL
    for policy in (CURATION_RETRY, TRAINING_RETRY):
        assert policy.max_retries >= 1 and policy.delay > 0
        assert policy.backoff == dg.Backoff.EXPONENTIAL and policy.jitter is not None


def test_automation_conditions_leave_roots_and_training_to_sensors_and_schedule():
    graph = defs.resolve_asset_graph()
    condition = {
        key.to_user_string(): graph.get(key).automation_condition for key in graph.get_all_asset_keys()
    }
    assert condition["raw_documents"] is None  # the inbox sensor, the schedule and erasure start it
    assert condition["trained_model"] is None  # expensive: the retraining schedule decides
    for asset in [*CURATION[1:], *SCORING]:
        assert condition[asset] == CURATION_AUTOMATION, asset
    for asset in STAGING:
        assert condition[asset] == STAGING_AUTOMATION, asset
    sensor = defs.resolve_sensor_def("automation")
    assert isinstance(sensor, dg.AutomationConditionSensorDefinition)
    assert sensor.default_status == dg.DefaultSensorStatus.STOPPED


def test_jobs_carry_run_retry_tags_consistent_with_production():
    production = yaml.safe_load((REPO_ROOT / "deploy" / "dagster.production.yaml").read_text())
    assert production["run_retries"]["retry_on_asset_or_op_failure"] is False
    for job in ("curate", "stage", "train", "retrain", "erasure"):
        tags = defs.resolve_job_def(job).tags
        retries = int(tags["dagster/max_retries"])
        assert 1 <= retries <= production["run_retries"]["max_retries"], job
        assert tags["dagster/retry_on_asset_or_op_failure"] == "false", job
    for job in ("stage", "train"):
        assert defs.resolve_job_def(job).tags["apertus/heavy"] == "true"


def test_production_instance_limits_runs_and_pools(tmp_path, monkeypatch):
    """The queue's run limits live under ``concurrency: runs`` (Dagster 1.13 rejects them in the run
    coordinator's config once ``pools`` is set); Dagster's own merge gives the effective queue."""
    from dagster._core.instance.config import ConcurrencyConfig, PoolGranularity, dagster_instance_config
    from dagster._core.run_coordinator import QueuedRunCoordinator

    for name, value in PG_ENV.items():
        monkeypatch.setenv(name, value)
    shutil.copy(REPO_ROOT / "deploy" / "dagster.production.yaml", tmp_path / "dagster.yaml")
    config, _ = dagster_instance_config(str(tmp_path))
    queue = QueuedRunCoordinator(**config["run_coordinator"]["config"])
    effective = ConcurrencyConfig.from_concurrency_settings(
        config["concurrency"], queue.get_run_queue_config()
    )
    assert effective.pool_config.default_pool_limit == 1
    assert effective.pool_config.pool_granularity == PoolGranularity.OP
    assert effective.run_queue_config.max_concurrent_runs == 4
    limits = {limit["key"]: limit for limit in effective.run_queue_config.tag_concurrency_limits}
    assert limits["dagster/partition"]["value"] == {"applyLimitPerUniqueValue": True}
    assert limits["apertus/heavy"] == {"key": "apertus/heavy", "value": "true", "limit": 1}


@pytest.fixture
def checkout_instance(tmp_path):
    """A Dagster instance configured by the checkout's dagster_home/dagster.yaml, in a temporary folder."""
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(REPO_ROOT / "dagster_home" / "dagster.yaml", home / "dagster.yaml")
    with dg.DagsterInstance.from_config(str(home)) as instance:
        yield instance


def test_retry_policy_retries_a_transient_failure_in_a_real_run(tmp_path, checkout_instance):
    """A step that fails once the way a lost network mount does is retried by the policy the
    curation assets carry, and the run succeeds; it ran in the pool the checkout's instance limits."""
    marker = tmp_path / "failed-once"

    @dg.asset(retry_policy=CURATION_RETRY, pool=CPU_POOL)
    def flaky_inbox_read(context) -> int:
        if not marker.exists():
            marker.touch()
            raise OSError(116, "Stale file handle", "/mnt/inbox/part-00000.jsonl.gz")
        return context.retry_number

    assert checkout_instance.get_concurrency_config().pool_config.default_pool_limit == 1
    result = dg.materialize([flaky_inbox_read], instance=checkout_instance)
    assert result.success
    assert result.output_for_node("flaky_inbox_read") == 1  # the second attempt returned
    events = [e.event_type for e in result.all_events]
    assert events.count(dg.DagsterEventType.STEP_UP_FOR_RETRY) == 1
    assert events.count(dg.DagsterEventType.STEP_FAILURE) == 0
    assert checkout_instance.event_log_storage.get_concurrency_info(CPU_POOL).slot_count == 1


def _report(instance, asset: str, version: str, partition: str | None = None) -> None:
    """Record a materialization of ``asset`` with the data version and code version a run records."""
    tags = {DATA_VERSION_TAG: version, CODE_VERSION_TAG: CODE_VERSION}
    instance.report_runless_asset_event(dg.AssetMaterialization(asset, partition=partition, tags=tags))


def _requested(result) -> dict[str, list]:
    return {
        key.to_user_string(): sorted(str(p) for p in partitions)
        for key, partitions in result._requested_partitions_by_asset_key.items()
        if partitions
    }


def test_downstream_updates_when_an_upstream_version_changes_and_not_otherwise():
    """Materializations as runs record them (data version and code version); the conditions read only
    the instance, so the version ids need no folders behind them here."""
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions("snapshots", ["small"])
        first = dg.evaluate_automation_conditions(defs=defs, instance=instance)
        assert first.total_requested == 0  # nothing exists: nothing can be built

        _report(instance, "raw_documents", "7a3f0c", "small")
        after_raw = dg.evaluate_automation_conditions(defs=defs, instance=instance, cursor=first.cursor)
        # The snapshot's chain, in one go; staging waits until the snapshot's scores exist.
        assert _requested(after_raw) == {asset: ["small"] for asset in [*CURATION[1:], *SCORING]}

        quiet = dg.evaluate_automation_conditions(defs=defs, instance=instance, cursor=after_raw.cursor)
        assert quiet.total_requested == 0  # nothing changed since: nothing requested again

        for asset in [*CURATION[1:], *SCORING]:
            _report(instance, asset, f"{asset}-v1", "small")
        curated_now = dg.evaluate_automation_conditions(defs=defs, instance=instance, cursor=quiet.cursor)
        assert _requested(curated_now) == {asset: ["None"] for asset in STAGING}  # never trained_model
        for asset in STAGING:
            _report(instance, asset, f"{asset}-v1")
        staged = dg.evaluate_automation_conditions(defs=defs, instance=instance, cursor=curated_now.cursor)
        assert staged.total_requested == 0

        # raw_documents materialized again to the same version (an unchanged snapshot re-read):
        # no version changed, so nothing downstream is rebuilt.
        _report(instance, "raw_documents", "7a3f0c", "small")
        same = dg.evaluate_automation_conditions(defs=defs, instance=instance, cursor=staged.cursor)
        assert same.total_requested == 0

        # A new version of one snapshot's scores (re-curated under an erasure request) re-stages.
        _report(instance, "quality_scored", "quality_scored-v2", "small")
        changed = dg.evaluate_automation_conditions(defs=defs, instance=instance, cursor=same.cursor)
        assert _requested(changed) == {"curriculum_stages": ["None"], "token_shards": ["None"]}
