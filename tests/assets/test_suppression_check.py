"""The erasure suppression check blocks: a curation whose ``raw_documents`` version keeps a document
that an applied erasure request names fails (``apertus curate`` exits non-zero), and nothing
downstream of the leaking version is materialized."""

from __future__ import annotations

import json

import dagster as dg
import pytest

from records.layout import DataLayout


@pytest.fixture
def leaking_curation(tmp_path, monkeypatch):
    """A one-file snapshot with a document an erasure request names, and a suppression filter that
    lets everything through: the fault the check exists for (the filter's old ``re`` matching let
    ``[[:digit:]]`` patterns through this way)."""
    from pipelines.suppression import SuppressionFilter
    from records.requests import record_request

    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "dagster_home"))
    monkeypatch.setenv("APERTUS_DATA", str(tmp_path / "data"))
    (tmp_path / "dagster_home").mkdir()
    layout = DataLayout.from_env()
    folder = layout.snapshot_dir("tiny")
    folder.mkdir(parents=True)
    rows = [
        {"id": "leak", "url": "https://a.example/leak", "text": "Call me on 555-1234 after six, please."},
        {"id": "fine", "url": "https://a.example/fine", "text": "Nothing personal in this text at all."},
    ]
    (folder / "part-0.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    request = record_request(layout, "regex", r"[[:digit:]]{3}-[[:digit:]]{4}")
    monkeypatch.setattr(SuppressionFilter, "filter", lambda self, doc: True)
    return layout, request


def test_a_leak_fails_the_curation_and_blocks_what_is_downstream(leaking_curation):
    from apertus.snapshots import curate, dagster_instance

    layout, request = leaking_curation
    result = curate("tiny", tasks=1, raise_on_error=False)
    assert not result.success
    failed = [e.step_key for e in result.all_events if e.event_type_value == "STEP_FAILURE"]
    assert failed == ["raw_documents"]  # the step whose version leaks, and nothing else
    (check,) = [
        e for e in result.get_asset_check_evaluations() if e.check_name == "erasure_requests_suppressed"
    ]
    assert not check.passed
    (leak,) = check.metadata["kept_but_requested"].value
    assert "(https://a.example/leak) is kept" in leak and request.request_id[:12] in leak
    instance = dagster_instance()
    assert instance.get_latest_materialization_event(dg.AssetKey("language_identified")) is None


def test_curate_exits_non_zero_on_a_leak(leaking_curation):
    from apertus.cli import main

    # Raised out of the command, so its exit status is 1.
    with pytest.raises(dg.DagsterError, match="blocking asset check failed"):
        main(["curate", "--snapshot", "tiny", "--tasks", "1"])


def test_the_suppression_check_is_declared_blocking():
    from assets.curation import raw_documents

    specs = {spec.name: spec for spec in raw_documents.check_specs}
    assert specs["erasure_requests_suppressed"].blocking
    assert not specs["version_verifies"].blocking  # only the leak check stops the run
