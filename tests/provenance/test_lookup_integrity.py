"""Lookups are sealed derived records (issue 14, finding 5): `contains` checks every piece of a lookup
file it reads against the root pinned in the ledger, and a changed byte exits 2 naming the file,
never "NOT IN".

Each test ingests a tiny generated snapshot into a fresh data folder (the real step pins the
version with its lookup's root), then changes one byte the way an attacker or a bad disk would.
"""

from __future__ import annotations

import json
import shutil

import pyarrow.parquet as pq
import pytest

from apertus.cli import main
from pipelines.config import CurationConfig
from pipelines.executor import ExecutorConfig
from pipelines.steps import ingest_snapshot
from provenance.audit.verify import verify
from records.layout import DATA_ENV, DataLayout
from records.lookup import lookup_path
from records.lookup_file import SHA_WIDTH, URL_WIDTH, LookupFile

SNAPSHOT = "tiny"


@pytest.fixture(scope="module")
def ingested(tmp_path_factory):
    """A data folder holding one pinned raw_documents version; tests work on copies."""
    from sample.crawl import generate_snapshot

    snapshot = tmp_path_factory.mktemp("snapshots") / SNAPSHOT
    generate_snapshot(snapshot, seed=5, num_documents=40)
    layout = DataLayout(tmp_path_factory.mktemp("ingested") / "data")
    shutil.copytree(snapshot, layout.snapshot_dir(SNAPSHOT))
    result = ingest_snapshot(layout, SNAPSHOT, CurationConfig(), ExecutorConfig(tasks=1, workers=1))
    return layout, result.manifest.ref


@pytest.fixture
def data(ingested, tmp_path, monkeypatch):
    source, ref = ingested
    layout = DataLayout(tmp_path / "data")
    shutil.copytree(source.root, layout.root, ignore=shutil.ignore_patterns("work", "*.lock"))
    monkeypatch.setenv(DATA_ENV, str(layout.root))
    kept = pq.read_table(layout.datasets / ref / "index.parquet").to_pylist()[0]
    return layout, ref, kept


def _flip(path, offset: int) -> None:
    blob = bytearray(path.read_bytes())
    blob[offset] ^= 0x01
    path.write_bytes(bytes(blob))


def _row_offsets(path, kept) -> tuple[int, int]:
    """Where the kept document's sha256 and its URL key sit in the file (read without checks)."""
    with LookupFile(path) as lookup:
        (row,) = lookup.rows_with_sha256(bytes.fromhex(kept["sha256"]))
        sha_at = lookup.sections["sha256"][0] + row * SHA_WIDTH
        keys = lookup.url_keys()
        (i,) = [
            i for i in range(0, len(keys), URL_WIDTH) if int.from_bytes(keys[i + 8 : i + 12], "big") == row
        ]
        return sha_at, lookup.sections["url_keys"][0] + i


@pytest.mark.parametrize("question", ["sha256", "url"])
def test_a_changed_byte_in_a_lookup_exits_2_naming_it(data, capsys, question):
    layout, ref, kept = data
    path = lookup_path(layout, ref)
    assert main(["audit", "contains", f"--{question}", kept[question]]) == 0
    capsys.readouterr()
    sha_at, url_at = _row_offsets(path, kept)
    _flip(path, sha_at + 5 if question == "sha256" else url_at + 3)
    for extra in ([], ["--json"]):
        code = main(["audit", "contains", f"--{question}", kept[question], *extra])
        captured = capsys.readouterr()
        assert code == 2, captured.out
        assert "NOT IN" not in captured.out and str(path) in captured.err
    assert any(str(path) in p for p in verify(layout).problems)


def test_a_changed_block_hash_or_header_exits_2(data, capsys):
    layout, ref, kept = data
    path = lookup_path(layout, ref)
    with LookupFile(path) as lookup:
        hashes_at = lookup.sections["block_hashes"][0]
    for offset in (hashes_at + 1, 40):  # the hashes themselves; the header's JSON
        copy = path.read_bytes()
        _flip(path, offset)
        assert main(["audit", "contains", "--sha256", kept["sha256"]]) == 2
        assert str(path) in capsys.readouterr().err
        path.write_bytes(copy)
    assert main(["audit", "contains", "--sha256", kept["sha256"], "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["status"] == "in"


def test_a_version_without_a_lookup_is_answered_only_from_checked_tables(data, capsys):
    layout, ref, kept = data
    lookup_path(layout, ref).unlink()
    assert main(["audit", "contains", "--url", kept["url"]]) == 0  # the scan fallback
    capsys.readouterr()
    index = layout.datasets / ref / "index.parquet"
    index.chmod(0o644)
    _flip(index, index.stat().st_size - 20)  # the footer: Parquet still reads, other bytes than sealed
    assert main(["audit", "contains", "--url", kept["url"]]) == 2
    assert str(index) in capsys.readouterr().err
