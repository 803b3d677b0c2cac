"""Idempotent pinning (issue 14, finding 3): a version sealed by a run whose ledger append failed is
pinned by the next run of its step, or by `apertus audit repin`; `verify` notes it as pinned late.

Each test ingests its own tiny snapshot (40 generated pages) into a fresh data folder: the real
step, the real ledger. The append is made to fail the way a full disk or a damaged ledger folder
would: ``entries.jsonl`` is a folder for one run.
"""

from __future__ import annotations

import json
import shutil

import pyarrow.parquet as pq
import pytest

from apertus.cli import main
from pipelines.config import CurationConfig
from pipelines.executor import ExecutorConfig
from pipelines.steps import ingest_snapshot, pin_version
from provenance.audit.verify import verify
from records.layout import DATA_ENV, DataLayout
from records.ledger import DATASET_VERSION_CREATED, Ledger
from records.versions import ledger_records

SNAPSHOT = "tiny"


@pytest.fixture(scope="module")
def tiny_snapshot(tmp_path_factory):
    from sample.crawl import generate_snapshot

    folder = tmp_path_factory.mktemp("snapshots") / SNAPSHOT
    generate_snapshot(folder, seed=11, num_documents=40)
    return folder


@pytest.fixture
def layout(tiny_snapshot, tmp_path, monkeypatch) -> DataLayout:
    data = DataLayout(tmp_path / "data")
    shutil.copytree(tiny_snapshot, data.snapshot_dir(SNAPSHOT))
    monkeypatch.setenv(DATA_ENV, str(data.root))
    return data


def _ingest(layout: DataLayout):
    return ingest_snapshot(layout, SNAPSHOT, CurationConfig(), ExecutorConfig(tasks=1, workers=1))


def _ingest_with_failing_append(layout: DataLayout) -> None:
    """Run the step while the ledger cannot be appended to: the version is sealed, not pinned."""
    entries = layout.ledger / "entries.jsonl"
    entries.mkdir(parents=True)
    with pytest.raises(OSError):
        _ingest(layout)
    entries.rmdir()
    assert list(layout.datasets.glob("raw_documents/*/manifest.json")), "the version was sealed"
    assert Ledger(layout.ledger).size() == 0


def _kept_url(layout: DataLayout, ref: str) -> str:
    return pq.read_table(layout.datasets / ref / "index.parquet", columns=["url"])["url"][0].as_py()


def test_a_retried_step_pins_the_version_its_failed_run_sealed(layout, capsys):
    _ingest_with_failing_append(layout)
    retry = _ingest(layout)
    ref = retry.manifest.ref
    assert not retry.created
    records = ledger_records(layout)
    assert ref in records, "the retry must pin the version the failed run sealed"
    assert records[ref].payload["repinned"] is True and records[ref].payload["lookup_root"]
    report = verify(layout)
    assert report.ok, report.problems
    assert report.notes == [f"{layout.datasets / ref / 'manifest.json'}: pinned late, at entry 0"]
    assert main(["audit", "verify", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["notes"] == report.notes
    assert main(["audit", "contains", "--url", _kept_url(layout, ref)]) == 0
    # Idempotent: a third run finds the marker and appends nothing.
    size = Ledger(layout.ledger).size()
    assert _ingest(layout).ledger_index is None and Ledger(layout.ledger).size() == size


def test_a_kept_marker_answers_without_reading_the_ledger(layout):
    from records.pins import marker_path

    first = _ingest(layout)
    assert first.created and first.ledger_index == 0
    marker = json.loads(marker_path(layout, first.manifest.ref).read_text())
    assert marker["index"] == 0 and json.loads(marker["entry"])["event_type"] == DATASET_VERSION_CREATED
    # With the entries file unreadable, pinning again still knows the version is pinned (the marker,
    # checked against the leaf hash at its index): it neither scans nor appends.
    entries = layout.ledger / "entries.jsonl"
    saved = entries.read_bytes()
    entries.unlink()
    entries.mkdir()
    try:
        assert pin_version(layout, first.manifest, first.folder, sealed_now=False) == 0
    finally:
        entries.rmdir()
        entries.write_bytes(saved)
    assert Ledger(layout.ledger).size() == 1 and verify(layout).ok
    assert _ingest(layout).ledger_index is None and Ledger(layout.ledger).size() == 1


def test_repin_pins_an_older_folder_in_one_batch(layout, capsys):
    _ingest_with_failing_append(layout)
    (ref,) = [f"raw_documents/{p.parent.name}" for p in layout.datasets.glob("raw_documents/*/manifest.json")]
    report = verify(layout)
    assert any("no entry pinning" in p for p in report.problems)
    assert main(["audit", "repin"]) == 0
    out = capsys.readouterr().out
    assert f"pinned {ref} late, at entry 0" in out
    heads = (layout.ledger / "tree_heads.jsonl").read_text().splitlines()
    assert len(heads) == 1  # one batch, one signed head
    report = verify(layout)
    assert report.ok, report.problems
    assert report.notes == [f"{layout.datasets / ref / 'manifest.json'}: pinned late, at entry 0"]
    assert main(["audit", "contains", "--url", _kept_url(layout, ref)]) == 0
    capsys.readouterr()
    assert main(["audit", "repin", "--json"]) == 0  # nothing left to pin
    assert json.loads(capsys.readouterr().out)["pinned"] == {}


def test_repin_pins_the_root_of_a_lookup_pinned_by_older_code(layout, capsys):
    from records.pins import dataset_payload, marker_path

    version = _ingest(layout)
    ref = version.manifest.ref
    # What older code wrote: an entry without lookup_root, and no marker.
    (entry,) = Ledger(layout.ledger).append_many(
        [(DATASET_VERSION_CREATED, dataset_payload(layout, version.manifest, None))]
    )
    marker_path(layout, ref).unlink()
    assert any("no lookup_root pinned" in p for p in verify(layout).problems)
    assert main(["audit", "contains", "--url", _kept_url(layout, ref)]) == 2
    assert "apertus audit repin" in capsys.readouterr().err
    assert main(["audit", "repin"]) == 0
    assert f"pinned {ref} late, at entry {entry.index + 1}" in capsys.readouterr().out
    assert main(["audit", "contains", "--url", _kept_url(layout, ref)]) == 0
    report = verify(layout)
    assert report.ok and report.notes == [
        f"{layout.datasets / ref / 'manifest.json'}: pinned late, at entry {entry.index + 1}"
    ]
