"""The sensors: a new snapshot folder becomes a partition and a curation run, once; an erasure request
file is recorded in the ledger and re-curates every snapshot, once."""

from __future__ import annotations

import hashlib
import json

import dagster as dg
import pytest

from assets.definitions import defs
from assets.sensors import erasure_requests, new_snapshots


def test_new_folder_is_registered_and_requested_once(tmp_path, monkeypatch):
    monkeypatch.setenv("APERTUS_DATA", str(tmp_path / "data"))
    (tmp_path / "data" / "inbox" / "crawl-2026-11").mkdir(parents=True)
    with dg.instance_for_test() as instance:
        context = dg.build_sensor_context(instance=instance, definitions=defs)
        result = new_snapshots(context)
        assert [r.partition_key for r in result.run_requests] == ["crawl-2026-11"]
        assert result.run_requests[0].job_name in (None, "curate")
        (request,) = result.dynamic_partitions_requests
        assert list(request.partition_keys) == ["crawl-2026-11"]
        instance.add_dynamic_partitions("snapshots", list(request.partition_keys))

        again = new_snapshots(dg.build_sensor_context(instance=instance, definitions=defs))
        assert not again.run_requests and again.skip_reason


def test_a_snapshot_in_the_remote_inbox_is_registered_once_and_never_copied(tmp_path, monkeypatch):
    import fsspec

    from pipelines.remote_inbox import snapshot_source
    from records.layout import DataLayout
    from sample.bad_inputs import write_bad_inputs  # a small folder of real shard files

    local = tmp_path / "delivery"
    write_bad_inputs(local, seed=0)
    fs = fsspec.filesystem("memory")
    remote = "memory://apertus-test-inbox"
    if fs.exists(remote):
        fs.rm(remote, recursive=True)
    files = sorted(p for p in local.rglob("*") if p.is_file())
    for path in files:
        fs.pipe(f"{remote}/crawl-remote/{path.relative_to(local).as_posix()}", path.read_bytes())
    fs.pipe(f"{remote}/.in-progress/part.jsonl", b"{}")  # hidden: a delivery not finished yet
    monkeypatch.setenv("APERTUS_DATA", str(tmp_path / "data"))
    monkeypatch.setenv("APERTUS_INBOX_URL", remote)
    with dg.instance_for_test() as instance:
        result = new_snapshots(dg.build_sensor_context(instance=instance, definitions=defs))
        assert [r.partition_key for r in result.run_requests] == ["crawl-remote"]
        assert not (tmp_path / "data" / "inbox").exists()  # read in place by the ingest step
        assert snapshot_source(DataLayout(tmp_path / "data"), "crawl-remote") == f"{remote}/crawl-remote"
        instance.add_dynamic_partitions("snapshots", ["crawl-remote"])
        again = new_snapshots(dg.build_sensor_context(instance=instance, definitions=defs))
        assert not again.run_requests
    fs.rm(remote, recursive=True)


def test_folders_with_invalid_names_are_skipped_and_bogus_partitions_deleted(tmp_path, monkeypatch):
    monkeypatch.setenv("APERTUS_DATA", str(tmp_path / "data"))
    inbox = tmp_path / "data" / "inbox"
    for name in ("good-1", "has space", "-dash", "tab\tname"):
        (inbox / name).mkdir(parents=True)
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions("snapshots", ["..", "../../../../etc"])  # left by older code
        result = new_snapshots(dg.build_sensor_context(instance=instance, definitions=defs))
        assert [r.partition_key for r in result.run_requests] == ["good-1"]
        add, delete = result.dynamic_partitions_requests
        assert list(add.partition_keys) == ["good-1"]
        assert sorted(delete.partition_keys) == ["..", "../../../../etc"]
        instance.add_dynamic_partitions("snapshots", ["good-1"])
        instance.delete_dynamic_partition("snapshots", "..")
        instance.delete_dynamic_partition("snapshots", "../../../../etc")
        again = new_snapshots(dg.build_sensor_context(instance=instance, definitions=defs))
        assert not again.run_requests and not again.dynamic_partitions_requests
        skip = again.skip_reason.skip_message
        assert "'has space' is not valid" in skip and "'-dash' is not valid" in skip


def _remote_inbox(monkeypatch, tmp_path, name: str):
    import fsspec

    fs = fsspec.filesystem("memory")
    remote = f"memory://apertus-test-{name}"
    if fs.exists(remote):
        fs.rm(remote, recursive=True)
    monkeypatch.setenv("APERTUS_DATA", str(tmp_path / "data"))
    monkeypatch.setenv("APERTUS_INBOX_URL", remote)
    return fs, remote


def test_remote_keys_that_leave_the_snapshot_are_refused(tmp_path, monkeypatch):
    fs, remote = _remote_inbox(monkeypatch, tmp_path, "escape")
    fs.pipe(f"{remote}/evil/ok.jsonl", b'{"text": "fine"}\n')
    fs.pipe(f"{remote}/evil/../../../../escaped.jsonl", b'{"text": "outside"}\n')
    fs.pipe(f"{remote}/good/a.jsonl", b'{"text": "fine"}\n')
    with dg.instance_for_test() as instance:
        result = new_snapshots(dg.build_sensor_context(instance=instance, definitions=defs))
        assert [r.partition_key for r in result.run_requests] == ["good"]
    assert not list(tmp_path.rglob("escaped.jsonl"))
    assert not (tmp_path / "data" / "inbox").exists()  # nothing copied
    fs.rm(remote, recursive=True)


def test_remote_backslash_and_absolute_keys_are_refused():
    from pipelines.remote_inbox import staged_path

    assert staged_path("a/b.jsonl").as_posix() == "a/b.jsonl"
    for key in ("../x", "a/../../x", "/etc/passwd", "a\\..\\..\\x", "a//b", "./a", "", "a/\x00b"):
        with pytest.raises(ValueError, match="would leave the snapshot folder"):
            staged_path(key)


def test_symlinks_in_a_file_drop_are_quarantined_not_read_as_their_targets(tmp_path, monkeypatch):
    import polars as pl

    from pipelines.config import CurationConfig
    from pipelines.executor import ExecutorConfig
    from pipelines.readers import read_quarantine
    from pipelines.steps import ingest_snapshot
    from records.layout import DataLayout

    secret = tmp_path / "host" / "secret.jsonl"
    secret.parent.mkdir()
    secret.write_text('{"text": "HOST SECRET"}\n')
    drop = tmp_path / "drop" / "delivery"
    drop.mkdir(parents=True)
    (drop / "a.jsonl").write_text('{"text": "fine"}\n')
    (drop / "key.jsonl").symlink_to(secret)
    (drop / "hostdir").symlink_to(secret.parent, target_is_directory=True)
    monkeypatch.setenv("APERTUS_DATA", str(tmp_path / "data"))
    monkeypatch.setenv("APERTUS_INBOX_URL", f"file://{tmp_path / 'drop'}")
    with dg.instance_for_test() as instance:
        result = new_snapshots(dg.build_sensor_context(instance=instance, definitions=defs))
        assert [r.partition_key for r in result.run_requests] == ["delivery"]
    layout = DataLayout(tmp_path / "data")
    raw = ingest_snapshot(layout, "delivery", CurationConfig(), ExecutorConfig(tasks=1, workers=1))
    texts = pl.read_parquet(raw.folder / "shards").get_column("text").to_list()
    assert texts == ["fine"]
    reasons = {row["file"]: row["reason"] for row in read_quarantine(raw.folder / "quarantine")}
    assert reasons == {"key.jsonl": "symlink", "hostdir": "symlink"}
    assert not layout.inbox.exists()


def _erasure_request(data, name: str, body: dict):
    folder = data / "requests" / "erasure"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(json.dumps(body))
    return path


def _curated(data, texts_by_snapshot: dict[str, dict[str, str]]) -> None:
    """Ingest one tiny JSONL snapshot per entry (url -> text), as the curate job's first step does."""
    from pipelines.config import CurationConfig
    from pipelines.executor import ExecutorConfig
    from pipelines.steps import ingest_snapshot
    from records.layout import DataLayout

    layout = DataLayout(data)
    for name, texts in texts_by_snapshot.items():
        folder = layout.snapshot_dir(name)
        folder.mkdir(parents=True)
        lines = [json.dumps({"id": url.rsplit("/", 1)[1], "url": url, "text": t}) for url, t in texts.items()]
        (folder / "part-0.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
        ingest_snapshot(layout, name, CurationConfig(), ExecutorConfig(tasks=1, workers=1))


CRAWLS = {
    "crawl-a": {"https://example.org/a": "Some words of a page.", "https://example.org/b": "Other words."},
    "crawl-b": {"https://other.org/c": "A third page, elsewhere.", "https://other.org/d": "And a fourth."},
}


def test_erasure_request_file_re_curates_only_the_snapshots_keeping_a_match(tmp_path, monkeypatch):
    from records.layout import DataLayout
    from records.requests import requests
    from records.retrain_state import read_state

    data = tmp_path / "data"
    monkeypatch.setenv("APERTUS_DATA", str(data))
    _curated(data, CRAWLS)
    body = {"kind": "url", "value": "https://example.org/a", "note": "ticket 17"}
    path = _erasure_request(data, "ticket-17.json", body)
    _erasure_request(data, "unsorted-resent.json", body)  # the same request twice: processed once
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions("snapshots", ["crawl-a", "crawl-b", "crawl-c"])  # c: never curated
        result = erasure_requests(dg.build_sensor_context(instance=instance, definitions=defs))
        assert erasure_requests.job_name == "erasure"
        (recorded,) = requests(DataLayout(data))
        assert (recorded.kind, recorded.value, recorded.note) == ("url", "https://example.org/a", "ticket 17")
        (run,) = result.run_requests  # only crawl-a keeps the page
        assert run.partition_key == "crawl-a" and run.run_key == f"erasure:{digest}:crawl-a"
        assert run.tags["apertus/erasure_request"] == digest
        assert run.tags["apertus/erasure_request_id"] == recorded.request_id
        assert run.tags["apertus/erasure_request_file"] == str(path)
        # crawl-b was checked clear of the request: the retraining tick leaves it alone; crawl-a
        # waits for its re-curation, which applies the request.
        state = read_state(DataLayout(data), ["crawl-a", "crawl-b"])
        assert state.num_requests == 1
        assert {n: s.applied_requests for n, s in state.snapshots.items()} == {"crawl-a": 0, "crawl-b": 1}

        # The next tick sees the same file: nothing to do, nothing recorded twice; a copy under
        # another name is the same request.
        _erasure_request(data, "ticket-17-copy.json", body)
        context = dg.build_sensor_context(instance=instance, definitions=defs, cursor=result.cursor)
        again = erasure_requests(context)
        assert not again.run_requests and again.skip_reason
        assert len(requests(DataLayout(data))) == 1

        # A request that matches nothing re-curates nothing and keeps crawl-b clear.
        _erasure_request(data, "nowhere.json", {"kind": "domain", "value": "nowhere.example"})
        # (a result without a cursor leaves Dagster's cursor as it was: the first tick's)
        context = dg.build_sensor_context(instance=instance, definitions=defs, cursor=result.cursor)
        none = erasure_requests(context)
        assert not none.run_requests
        assert "no curated snapshot keeps a document they name" in none.skip_reason.skip_message
        state = read_state(DataLayout(data), ["crawl-a", "crawl-b"])
        assert {n: s.applied_requests for n, s in state.snapshots.items()} == {"crawl-a": 0, "crawl-b": 2}


def test_erasure_request_replayed_without_cursor_is_not_recorded_twice(tmp_path, monkeypatch):
    from records.layout import DataLayout
    from records.requests import requests

    data = tmp_path / "data"
    monkeypatch.setenv("APERTUS_DATA", str(data))
    _curated(data, {"crawl-a": CRAWLS["crawl-a"]})
    _erasure_request(data, "r.json", {"kind": "domain", "value": "example.org"})
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions("snapshots", ["crawl-a"])
        first = erasure_requests(dg.build_sensor_context(instance=instance, definitions=defs))
        assert [r.partition_key for r in first.run_requests] == ["crawl-a"]
        # A lost cursor (sensor reset) replays the file: same request id, same run keys (which
        # Dagster launches once), and the ledger keeps one entry.
        replay = erasure_requests(dg.build_sensor_context(instance=instance, definitions=defs))
        assert [r.run_key for r in replay.run_requests] == [r.run_key for r in first.run_requests]
        assert (
            replay.run_requests[0].tags["apertus/erasure_request_id"]
            == (first.run_requests[0].tags["apertus/erasure_request_id"])
        )
        assert len(requests(DataLayout(data))) == 1


def test_erasure_request_folder_is_not_a_snapshot_and_bad_files_are_named(tmp_path, monkeypatch):
    from records.layout import DataLayout

    data = tmp_path / "data"
    monkeypatch.setenv("APERTUS_DATA", str(data))
    path = _erasure_request(data, "bad.json", {"kind": "url"})
    (data / "inbox" / "crawl-a").mkdir(parents=True)
    assert DataLayout(data).snapshots() == ["crawl-a"]
    with dg.instance_for_test() as instance:
        result = erasure_requests(dg.build_sensor_context(instance=instance, definitions=defs))
        assert not result.run_requests and "rejected bad.json" in result.skip_reason.skip_message
        rejected = path.parent / "rejected"
        assert (rejected / "bad.json").exists() and not path.exists()
        assert (
            f"{path}: an erasure request is a JSON object with"
            in (rejected / "bad.json.reason.txt").read_text()
        )
        path.write_text(json.dumps({"kind": "url", "value": "https://example.org/", "reason": "x"}))
        erasure_requests(dg.build_sensor_context(instance=instance, definitions=defs))
        assert f"{path}: unknown field(s) reason" in (rejected / "bad.1.json.reason.txt").read_text()


def test_a_malformed_file_is_rejected_and_the_valid_one_after_it_recorded_in_the_same_tick(
    tmp_path, monkeypatch
):
    """One bad file made the sensor fail every tick, so the requests after it were never recorded."""
    from records.layout import DataLayout
    from records.requests import requests

    data = tmp_path / "data"
    monkeypatch.setenv("APERTUS_DATA", str(data))
    _curated(data, {"crawl-a": CRAWLS["crawl-a"]})  # its pages are on example.org
    folder = data / "requests" / "erasure"
    folder.mkdir(parents=True)
    (folder / "a-broken.json").write_text('{"kind": "url", "value": ')  # sorted first
    _erasure_request(data, "b-lookaround.json", {"kind": "regex", "value": "(?<=Mr )Smith"})
    good = _erasure_request(data, "c-good.json", {"kind": "domain", "value": "example.org"})
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions("snapshots", ["crawl-a"])
        result = erasure_requests(dg.build_sensor_context(instance=instance, definitions=defs))
        (recorded,) = requests(DataLayout(data))
        assert (recorded.kind, recorded.value) == ("domain", "example.org")
        assert [r.tags["apertus/erasure_request_file"] for r in result.run_requests] == [str(good)]
        assert sorted(p.name for p in folder.iterdir()) == ["c-good.json", "rejected"]
        reasons = {p.name: p.read_text() for p in (folder / "rejected").glob("*.reason.txt")}
        assert "not a JSON erasure request" in reasons["a-broken.json.reason.txt"]
        assert "RE2 cannot compile it" in reasons["b-lookaround.json.reason.txt"]
        assert (folder / "rejected" / "b-lookaround.json").exists()
        # The next tick has nothing new: the rejected files are not read again.
        again = erasure_requests(
            dg.build_sensor_context(instance=instance, definitions=defs, cursor=result.cursor)
        )
        assert not again.run_requests and len(requests(DataLayout(data))) == 1
