"""Snapshot names and links at the entry points (issue 14, finding 8): one validation function for
every name, `apertus curate --snapshot ..` refused before anything is registered or read, and
`apertus ingest` never following a link inside the folder it copies."""

from __future__ import annotations

import json

import dagster as dg
import pytest

from apertus.cli import main
from pipelines import reasons
from pipelines.readers import SnapshotReader, read_quarantine
from records.layout import DataLayout, validate_snapshot_name

BAD_NAMES = [
    "..",
    ".",
    "",
    "a/b",
    "../../../../etc",
    ".hidden",
    "-rf",
    "a\nb",
    "abc\n",
    "x" * 129,
    "a b",
    "tab\t",
]


@pytest.mark.parametrize("name", BAD_NAMES)
def test_bad_snapshot_names_are_refused_everywhere(tmp_path, name):
    with pytest.raises(ValueError, match="snapshot name"):
        validate_snapshot_name(name)
    with pytest.raises(ValueError, match="snapshot name"):
        DataLayout(tmp_path).snapshot_dir(name)
    with pytest.raises(ValueError, match="snapshot name"):
        SnapshotReader(tmp_path, name, tmp_path / "q")


@pytest.mark.parametrize("name", ["crawl-2026-11", "CC-MAIN-2025-05", "a", "v1.2_x", "9" * 128])
def test_good_snapshot_names_pass(tmp_path, name):
    assert validate_snapshot_name(name) == name
    assert DataLayout(tmp_path).snapshot_dir(name) == tmp_path.resolve() / "inbox" / name


@pytest.fixture
def instance_home(tmp_path, monkeypatch):
    """A data folder and an empty Dagster home for the CLI."""
    (tmp_path / "home").mkdir()
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("APERTUS_DATA", str(tmp_path / "data"))
    (tmp_path / "data" / "inbox").mkdir(parents=True)
    return tmp_path


@pytest.mark.parametrize("name", ["..", "../../../../etc", "."])
def test_curate_refuses_a_name_that_leaves_the_inbox_before_registering_it(instance_home, capsys, name):
    assert main(["curate", "--snapshot", name]) == 2
    assert f"snapshot name {name!r} is not valid" in capsys.readouterr().err
    with dg.DagsterInstance.get() as instance:
        assert instance.get_dynamic_partitions("snapshots") == []


def test_ingest_refuses_a_bad_name_and_copies_links_as_links(instance_home, capsys):
    source = instance_home / "delivery"
    source.mkdir()
    (source / "good.jsonl").write_text(json.dumps({"text": "a good document"}) + "\n")
    secret = instance_home / "private_key.pem"
    secret.write_text(json.dumps({"text": "SECRET KEY MATERIAL"}) + "\n")
    (source / "key.jsonl").symlink_to(secret)
    (source / "etc").symlink_to(instance_home / "home", target_is_directory=True)
    assert main(["ingest", str(source), "--snapshot", "bad\n"]) == 2
    assert "is not valid" in capsys.readouterr().err

    assert main(["ingest", str(source), "--snapshot", "delivery"]) == 0
    assert "key.jsonl is a symbolic link" in capsys.readouterr().out
    copied = instance_home / "data" / "inbox" / "delivery"
    assert (copied / "key.jsonl").is_symlink() and (copied / "etc").is_symlink()
    documents = list(SnapshotReader(copied, "delivery", instance_home / "q").run())
    assert [d.text for d in documents] == ["a good document"]
    rows = read_quarantine(instance_home / "q")
    assert {(r["file"], r["reason"]) for r in rows} == {
        ("key.jsonl", reasons.SYMLINK),
        ("etc", reasons.SYMLINK),
    }
    assert not any("SECRET" in (r["excerpt"] or "") for r in rows)
    with dg.DagsterInstance.get() as instance:
        assert instance.get_dynamic_partitions("snapshots") == ["delivery"]


def test_ingest_link_registers_the_resolved_real_path(instance_home):
    real = instance_home / "real"
    real.mkdir()
    (real / "a.jsonl").write_text(json.dumps({"text": "x"}) + "\n")
    (instance_home / "alias").symlink_to(real, target_is_directory=True)
    assert main(["ingest", str(instance_home / "alias"), "--snapshot", "linked", "--link"]) == 0
    entry = instance_home / "data" / "inbox" / "linked"
    assert entry.is_symlink() and entry.readlink() == real.resolve()
