"""Compatibility: a data folder written by older code still reads and verifies.

``tests/fixtures/compat_v1/`` was written once by the real pipeline at commit 23086f8 (before the
records floor, lineage in version ids and canonical JSON everywhere; tests/fixtures/make_compat_folder.py
says how), with ``expected.json``: the facts read from its files when it was written. Every test
here copies it and asks through the command line, the interface that stays while modules move, the
questions an auditor asks of an old folder: does it verify against its key and held head, is a
document in or was it dropped and why, what is a version's lineage, what does the catalog rebuilt
from it hold. If one fails after a change, the change broke reading existing data folders: fix the
code, never the fixture (docs/data-model.md, "Compatibility").
"""

from __future__ import annotations

import base64
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest

from apertus.cli import main

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "compat_v1"
EXPECTED = json.loads((FIXTURE / "expected.json").read_text())
REFS = {f"{asset}/{version_id}" for asset, version_id in EXPECTED["versions"].items()}
TOKEN_SHARDS = f"token_shards/{EXPECTED['versions']['token_shards']}"


@dataclass(frozen=True)
class Folder:
    data: Path
    keys: Path
    held_head: Path


@pytest.fixture
def folder(tmp_path, monkeypatch) -> Folder:
    """A copy of the fixture (the committed files are never touched), named by APERTUS_DATA and
    APERTUS_KEYS. Git keeps no file modes, so the key folder's are set as `apertus init` sets them."""
    root = tmp_path / "compat_v1"
    shutil.copytree(FIXTURE, root)
    keys = root / "keys"
    os.chmod(keys, 0o700)
    os.chmod(keys / "ledger_ed25519.pem", 0o600)
    monkeypatch.setenv("APERTUS_DATA", str(root / "data"))
    monkeypatch.setenv("APERTUS_KEYS", str(keys))
    (held_head,) = (keys / "heads").glob("*.checkpoint")
    return Folder(root / "data", keys, held_head)


def apertus(capsys, *argv: str) -> tuple[int, str, str]:
    """Run ``apertus <argv>`` in this process; (exit code, stdout, stderr)."""
    capsys.readouterr()
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def sql(capsys, query: str) -> list[dict]:
    code, out, err = apertus(capsys, "audit", "sql", query, "--format", "json")
    assert code == 0, err
    return json.loads(out)


def test_verify_against_the_trusted_key_and_held_head(folder, capsys):
    code, out, err = apertus(
        capsys,
        "audit",
        "verify",
        "--json",
        "--trusted-key",
        str(folder.keys),
        "--head",
        str(folder.held_head),
    )
    report = json.loads(out)
    assert code == 0 and report["ok"], (report["problems"], report["trust"]["problems"], err)
    assert set(report["versions"]) == REFS
    assert report["ledger_entries"] == EXPECTED["ledger"]["size"]
    assert report["trust"]["ok"] and report["trust"]["held_head"]
    assert "trusted key" in report["trust"]["key"]

    code, out, _ = apertus(
        capsys, "audit", "verify", "--trusted-key", str(folder.keys), "--head", str(folder.held_head)
    )
    summary = out.splitlines()[-1]
    assert code == 0 and summary.startswith(f"OK: {len(REFS)} dataset versions"), out


def test_the_signed_head_is_the_one_recorded(folder, capsys):
    code, out, err = apertus(capsys, "audit", "head")
    assert code == 0, err
    origin, size, root = out.splitlines()[:3]
    assert origin == EXPECTED["ledger"]["origin"]
    assert int(size) == EXPECTED["ledger"]["size"]
    assert base64.b64decode(root).hex() == EXPECTED["ledger"]["root"]


@pytest.mark.parametrize("field", ["url", "sha256", "text"])
def test_documents_in_the_token_shards_are_in(folder, capsys, field):
    for document in EXPECTED["in_token_shards"]:
        code, out, err = apertus(capsys, "audit", "contains", f"--{field}", document[field], "--json")
        answer = json.loads(out)
        assert code == 0 and answer["status"] == "in", (document, err)
        assert [d["doc_id"] for d in answer["documents"]] == [document["doc_id"]]
        assert answer["documents"][0]["kept_in"] == [
            f"quality_scored/{EXPECTED['versions']['quality_scored']}"
        ]


@pytest.mark.parametrize("field", ["url", "sha256", "text"])
def test_the_dropped_document_is_dropped_with_its_reason(folder, capsys, field):
    dropped = EXPECTED["dropped"]
    code, out, err = apertus(capsys, "audit", "contains", f"--{field}", dropped[field], "--json")
    answer = json.loads(out)
    assert code == 1 and answer["status"] == "dropped", err
    (document,) = answer["documents"]
    assert (document["doc_id"], document["sha256"], document["url"]) == (
        dropped["doc_id"],
        dropped["sha256"],
        dropped["url"],
    )
    assert document["dropped_at"]["version"] == f"{dropped['step']}/{EXPECTED['versions'][dropped['step']]}"
    assert document["dropped_at"]["reason"] == dropped["reason"]


def test_lineage_of_the_token_shards_walks_to_the_raw_files(folder, capsys):
    code, out, err = apertus(capsys, "audit", "lineage", TOKEN_SHARDS, "--json")
    assert code == 0, err
    entities = json.loads(out)["entity"]
    assert {e.removeprefix("apertus:version/") for e in entities if e.startswith("apertus:version/")} == REFS
    raw_files = {e for e in entities if e.startswith(f"apertus:file/inbox/{EXPECTED['snapshot']}/")}
    assert len(raw_files) == 3  # the snapshot's JSONL, Parquet and WARC files

    code, out, err = apertus(capsys, "audit", "lineage", TOKEN_SHARDS[:24])  # a unique prefix will do
    assert code == 0, err
    assert f"raw_documents/{EXPECTED['versions']['raw_documents'][:12]}" in out
    assert f"snapshot {EXPECTED['snapshot']}: inbox/{EXPECTED['snapshot']}/" in out


def test_every_version_is_pinned_already(folder, capsys):
    """The old pin markers and creation entries are read as pins: repin appends nothing and the
    records stay byte for byte as written."""
    before = {p: p.read_bytes() for p in [*folder.data.glob("pins/*/*.json"), *folder.data.glob("ledger/*")]}
    code, out, err = apertus(capsys, "audit", "repin", "--json")
    result = json.loads(out)
    assert code == 0 and result["pinned"] == {} and result["problems"] == [], err
    assert {p: p.read_bytes() for p in before} == before


def test_diff_names_the_drops_by_reason(folder, capsys):
    versions = EXPECTED["versions"]
    a, b = (
        f"language_identified/{versions['language_identified']}",
        f"quality_filtered/{versions['quality_filtered']}",
    )
    code, out, err = apertus(capsys, "audit", "diff", a, b, "--json")
    result = json.loads(out)
    assert code == 0, err
    assert (result["num_added"], result["num_removed"]) == (0, EXPECTED["exclusions"]["quality_filtered"])
    assert result["removed_by_reason"][EXPECTED["dropped"]["reason"]] >= 1


def test_the_catalog_rebuilt_from_the_folder(folder, capsys):
    assert not (folder.data / "catalog.duckdb").exists()  # the fixture has none: it is derived
    rows = sql(capsys, "select asset, count(*) as n from document_index group by asset")
    assert {r["asset"]: r["n"] for r in rows} == {a: n for a, n in EXPECTED["documents"].items() if n}
    rows = sql(capsys, "select asset, count(*) as n from exclusions group by asset")
    assert {r["asset"]: r["n"] for r in rows} == {a: n for a, n in EXPECTED["exclusions"].items() if n}
    rows = sql(capsys, "select stage, count(*) as n from sequences group by stage")
    assert {r["stage"]: r["n"] for r in rows} == EXPECTED["sequences"]
    (row,) = sql(capsys, "select count(distinct doc_id) as n, min(token_shards_version) as v from sequences")
    assert row == {"n": EXPECTED["token_shards_documents"], "v": EXPECTED["versions"]["token_shards"]}
    rows = sql(capsys, "select event_type, count(*) as n from ledger_entries group by event_type")
    assert {r["event_type"]: r["n"] for r in rows} == EXPECTED["ledger"]["events"]
    in_shards = [d["doc_id"] for d in EXPECTED["in_token_shards"]] + [EXPECTED["dropped"]["doc_id"]]
    listed = ", ".join(f"'{doc_id}'" for doc_id in in_shards)  # ids of the fixture: no quotes inside
    rows = sql(capsys, f"select distinct doc_id from sequences where doc_id in ({listed})")
    assert {r["doc_id"] for r in rows} == set(in_shards[:-1])


def test_verify_fails_on_a_flipped_byte_in_a_shard(folder, capsys):
    """Not vacuous: the same verify names a changed token shard file."""
    shard = folder.data / "datasets" / TOKEN_SHARDS / "stages" / "00-broad" / "tokens-00000.bin"
    data = bytearray(shard.read_bytes())
    data[len(data) // 2] ^= 0x01
    shard.write_bytes(bytes(data))
    code, out, _ = apertus(
        capsys, "audit", "verify", "--trusted-key", str(folder.keys), "--head", str(folder.held_head)
    )
    assert code == 1 and out.splitlines()[-1].startswith("FAILED"), out
    assert "stages/00-broad/tokens-00000.bin" in out


def test_verify_fails_on_a_rewritten_ledger_entry(folder, capsys):
    """The first entry (the pin of raw_documents) rewritten with another code version: verify finds it."""
    entries = folder.data / "ledger" / "entries.jsonl"
    lines = entries.read_text().splitlines(keepends=True)
    first = json.loads(lines[0])
    first["payload"]["code_version"] = "0" * 16
    lines[0] = json.dumps(first, separators=(",", ":"), sort_keys=True) + "\n"
    entries.write_text("".join(lines))
    code, out, _ = apertus(
        capsys, "audit", "verify", "--trusted-key", str(folder.keys), "--head", str(folder.held_head)
    )
    assert code == 1 and out.splitlines()[-1].startswith("FAILED"), out
    assert "entries.jsonl" in out
