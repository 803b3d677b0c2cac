"""The tick reads what changed since the last tick, not every snapshot (records.retrain_tick).

Each tick's plan is checked equal to the reference path's (the event log, the ledger and the
manifests, which read everything), and the snapshot records it read are counted: a tick that read
every snapshot's record when one changed would fail here.
"""

from __future__ import annotations

import dagster as dg
import pytest

import assets.schedules as schedules
from assets.curation import CODE_VERSION
from records.layout import DataLayout
from records.requests import record_request
from records.retrain_state import read_state, record_checked
from records.retrain_tick import RETRAIN_TICK, Rules
from tests.assets.test_schedules import _curate, _same, _train

SNAPSHOTS = [f"crawl-{n:02d}" for n in range(8)]


@pytest.fixture
def steady(tmp_path, monkeypatch):
    """Eight registered snapshots, all curated, and a model trained on all of them."""
    monkeypatch.setenv("APERTUS_DATA", str(tmp_path / "data"))
    with dg.instance_for_test() as instance:
        layout = DataLayout.from_env()
        instance.add_dynamic_partitions("snapshots", SNAPSHOTS)
        scored = [_curate(instance, layout, name, "v1") for name in SNAPSHOTS]
        _train(instance, layout, scored)
        yield instance, layout, scored


def test_a_tick_with_nothing_changed_reads_no_snapshot_record(steady):
    instance, layout, scored = steady
    first = _same(instance, layout)  # the record built: every snapshot read, once
    assert not first.curate and not first.retrain and first.records_read >= len(SNAPSHOTS)
    assert (layout.root / "retrain_state" / RETRAIN_TICK).exists()
    again = _same(instance, layout)
    assert again == first and again.records_read == 0
    assert f"all {len(SNAPSHOTS)} snapshots" in again.notes[0]


def test_a_new_snapshot_or_a_check_reads_that_snapshot_only(steady):
    instance, layout, scored = steady
    _same(instance, layout)
    instance.add_dynamic_partitions("snapshots", ["late"])
    plan = _same(instance, layout)
    assert plan.curate == {"late": "raw_documents never materialized"} and plan.records_read == 1
    late = _curate(instance, layout, "late", "v1")  # six updates, one snapshot
    plan = _same(instance, layout)
    assert f"new quality_scored/{late.version_id[:8]}" in plan.retrain
    # A retraining is due: its run request names every snapshot's version, so those are read.
    assert plan.records_read == 2 + len(SNAPSHOTS) + 1  # replayed, judged; then all nine
    _train(instance, layout, [*scored, late])  # a new model: its versions compared once, in SQL
    plan = _same(instance, layout)
    assert not plan.retrain and plan.records_read == 0
    record_checked(layout, {"crawl-03": ("raw_documents/none", 0)})  # a check of no current version
    assert _same(instance, layout).records_read == 2  # that snapshot's record: replayed, judged


def test_a_new_code_version_or_request_judges_every_snapshot_once(steady, monkeypatch):
    instance, layout, scored = steady
    _same(instance, layout)
    monkeypatch.setattr(schedules, "CODE_VERSION", "n3wc0de")
    monkeypatch.setattr(schedules, "RULES", Rules(schedules.CURATE_ASSET_NAMES, "n3wc0de"))
    plan = _same(instance, layout)
    assert plan.curate == {
        name: f"raw_documents made by code {CODE_VERSION}, now n3wc0de" for name in SNAPSHOTS
    }
    assert plan.records_read == len(SNAPSHOTS)
    assert _same(instance, layout).records_read == 0  # computed once, when the code changed
    monkeypatch.undo()
    assert _same(instance, layout).records_read == len(SNAPSHOTS)  # and back
    record_request(layout, "domain", "example.org", note="test")
    plan = _same(instance, layout)
    assert set(plan.curate) == set(SNAPSHOTS) and plan.records_read == len(SNAPSHOTS)
    assert _same(instance, layout).records_read == 0
    # The erasure sensor clears one snapshot: that one is read, and leaves the set.
    raw = read_state(layout, ["crawl-05"]).snapshots["crawl-05"].assets["raw_documents"][0]
    record_checked(layout, {"crawl-05": (raw, 1)})
    plan = schedules.plan_retraining(instance, layout)  # the event-log path knows no checks:
    state = read_state(layout, SNAPSHOTS)  # the rule over every record, as the tick decided before
    expected = {name: why for name in SNAPSHOTS if (why := schedules.curation_needed(state, name))}
    assert plan.curate == expected and set(expected) == set(SNAPSHOTS) - {"crawl-05"}
    assert plan.records_read == 2


def test_a_deleted_registration_or_another_instance_lists_every_snapshot(steady):
    instance, layout, scored = steady
    _same(instance, layout)
    instance.delete_dynamic_partition("snapshots", "crawl-07")
    plan = _same(instance, layout)
    assert "no longer current" in plan.retrain and plan.records_read >= len(SNAPSHOTS)
    with dg.instance_for_test() as other:  # the same data folder, another instance
        other.add_dynamic_partitions("snapshots", ["crawl-00"])
        plan = schedules.plan_retraining(other, layout)
        assert plan.curate == {} and plan.retrain.startswith("curated data changed")
        assert plan.records_read >= len(SNAPSHOTS)
    assert _same(instance, layout).records_read >= len(SNAPSHOTS) - 1  # back: listed again
