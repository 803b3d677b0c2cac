"""The catalog is filled from sealed versions' listed, verified files, one version at a time, with no
absolute path in it (issue 14, findings 4 and 6)."""

from __future__ import annotations

import shutil
import subprocess
import sys

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from records.catalog import query, refresh_catalog
from records.layout import DataLayout
from records.manifest import seal

PLANTED_ID = "f" * 64
# The tables and views docs/catalog.md promises.
NAMES = [
    "documents", "document_index", "exclusions", "quarantine", "dataset_versions", "ledger_entries",
    "sequences", "training_use",
]  # fmt: skip


@pytest.fixture
def data(curated, tmp_path):
    """A private copy of the curated folder, its catalog current; and the step results."""
    source, results, _ = curated
    layout = DataLayout(tmp_path / "data")
    shutil.copytree(source.root, layout.root)
    refresh_catalog(layout)
    return layout, results


def _dump(layout: DataLayout) -> dict[str, list[tuple]]:
    """Every row of every table and view, in a fixed order."""
    con = duckdb.connect(str(layout.catalog), read_only=True)
    try:
        return {n: con.execute(f"SELECT * FROM {n} ORDER BY ALL").fetchall() for n in NAMES}
    finally:
        con.close()


def _counts(layout: DataLayout) -> tuple:
    _, [row] = query(
        layout,
        "SELECT (SELECT count(*) FROM document_index), (SELECT count(*) FROM exclusions), "
        "(SELECT count(*) FROM quarantine), (SELECT count(*) FROM dataset_versions)",
    )
    return row


def _plant(layout: DataLayout, results) -> None:
    """Index and quarantine files where no manifest lists them: a folder with no manifest, and an
    existing version's folder."""
    rows = pq.read_table(layout.datasets / results[-1].manifest.ref / "index.parquet")
    rows = rows.set_column(
        rows.schema.get_field_index("url"), "url", pa.array(["https://planted.example/"] * len(rows))
    )
    quarantine = pa.table({"snapshot": ["small"], "file": ["planted"], "offset": [0], "reason": ["planted"],
                           "detail": [""], "excerpt": ["planted"], "raw_bytes": [1]})  # fmt: skip
    for folder in (layout.datasets / "deduplicated" / PLANTED_ID, layout.datasets / results[0].manifest.ref):
        (folder / "quarantine").mkdir(parents=True, exist_ok=True)
        pq.write_table(quarantine, folder / "quarantine" / "planted.parquet")
    pq.write_table(rows, layout.datasets / "deduplicated" / PLANTED_ID / "index.parquet")


def test_planted_files_never_show(data):
    layout, results = data
    before = _counts(layout)
    _plant(layout, results)
    refresh_catalog(layout)
    assert _counts(layout) == before
    layout.catalog.unlink()  # a rebuild reads only what manifests list, too
    assert _counts(layout) == before
    _, [(planted,)] = query(layout, "SELECT count(*) FROM documents WHERE url LIKE '%planted%'")
    _, [(quarantined,)] = query(layout, "SELECT count(*) FROM quarantine WHERE reason = 'planted'")
    assert planted == quarantined == 0


def test_a_copied_data_folder_answers_from_its_own_catalog(data, tmp_path):
    layout, _ = data
    expected = _dump(layout)
    copy = DataLayout(tmp_path / "restored")
    shutil.copytree(layout.root, copy.root)
    layout.root.rename(tmp_path / "moved-away")
    assert _dump(copy) == expected
    _, [(n,)] = query(copy, "SELECT count(*) FROM documents")
    assert n == len(expected["documents"])


def test_compliance_impact_answers_from_the_copy(data, tmp_path):
    from provenance.erasure import impact
    from records.requests import record_request

    layout, results = data
    url = pq.read_table(layout.datasets / results[-1].manifest.ref / "index.parquet").column("url")[0].as_py()
    request = record_request(layout, "url", url)
    expected = {v.ref for v in impact(layout, request).versions}
    copy = DataLayout(tmp_path / "restored")
    shutil.copytree(layout.root, copy.root)
    layout.root.rename(tmp_path / "moved-away")
    assert {v.ref for v in impact(copy, request).versions} == expected
    assert {r.manifest.ref for r in results} <= expected


def test_no_absolute_path_anywhere_in_the_catalog(data):
    layout, _ = data
    root = str(layout.root)
    con = duckdb.connect(str(layout.catalog), read_only=True)
    try:
        views = con.execute("SELECT sql FROM duckdb_views() WHERE NOT internal").fetchall()
        assert views and not any(root in sql for (sql,) in views)
    finally:
        con.close()
    for name, rows in _dump(layout).items():
        assert not any(root in str(v) for row in rows for v in row), name


def _new_version(layout: DataLayout, results) -> str:
    """Seal a deduplicated version whose index holds one document of the last one under a new URL."""
    staging = layout.work / "staging" / "extra"
    staging.mkdir(parents=True)
    rows = pq.read_table(layout.datasets / results[-1].manifest.ref / "index.parquet").slice(0, 1)
    rows = rows.set_column(rows.schema.get_field_index("url"), "url", pa.array(["https://new.example/"]))
    pq.write_table(rows, staging / "index.parquet")
    manifest, created = seal(staging, layout.datasets, asset="deduplicated", snapshot="small")
    assert created
    return manifest.ref


def test_a_new_version_reads_no_other_versions_files(data):
    from records.catalog import add_version_to_catalog

    layout, results = data
    before = _counts(layout)
    ref = _new_version(layout, results)
    for result in results:  # after cataloguing, no old version's rows can be read again
        for name in ("index.parquet", "exclusions.parquet"):
            (layout.datasets / result.manifest.ref / name).write_bytes(b"not parquet any more")
    add_version_to_catalog(layout, ref)
    assert _counts(layout) == (before[0] + 1, before[1], before[2], before[3] + 1)
    _, rows = query(layout, f"SELECT url FROM documents WHERE dataset_version = '{ref.split('/')[1]}'")
    assert rows == [("https://new.example/",)]
    refresh_catalog(layout)  # nothing missing: nothing read
    assert _counts(layout) == (before[0] + 1, before[1], before[2], before[3] + 1)


def test_refresh_adds_missing_versions_and_ledger_entries_and_equals_a_rebuild(data):
    from records.requests import record_request

    layout, results = data
    ref = _new_version(layout, results)  # sealed, not added: refresh (or the next query) finds it
    record_request(layout, "url", "https://new.example/")
    _, [(n,)] = query(layout, f"SELECT count(*) FROM dataset_versions WHERE dataset_version = '{ref[-64:]}'")
    _, [(kind,)] = query(layout, 'SELECT event_type FROM ledger_entries ORDER BY "index" DESC LIMIT 1')
    assert (n, kind) == (1, "erasure_requested")
    incremental = _dump(layout)
    layout.catalog.unlink()
    refresh_catalog(layout)
    assert _dump(layout) == incremental


def test_a_tampered_listed_file_is_refused_naming_it(data):
    from records.catalog import add_version_to_catalog

    layout, results = data
    ref = _new_version(layout, results)
    index = layout.datasets / ref / "index.parquet"
    index.write_bytes(index.read_bytes() + b"\0")
    with pytest.raises(ValueError, match=r"index\.parquet: sha256 differs"):
        add_version_to_catalog(layout, ref)
    with pytest.raises(ValueError, match=r"index\.parquet: sha256 differs"):
        query(layout, "SELECT 1")  # the next query would catalogue it: refused too
    con = duckdb.connect(str(layout.catalog), read_only=True)
    try:  # and nothing of it was written
        assert con.execute(
            "SELECT count(*) FROM document_index WHERE url = 'https://new.example/'"
        ).fetchone() == (0,)
    finally:
        con.close()


def test_an_older_catalog_of_views_is_rebuilt_as_tables(data, tmp_path):
    layout, _ = data
    expected = _dump(layout)
    other = tmp_path / "elsewhere.parquet"
    pq.write_table(pa.table({"url": ["https://elsewhere.example/"]}), other)
    layout.catalog.unlink()
    con = duckdb.connect(str(layout.catalog))
    con.execute(f"CREATE VIEW documents AS SELECT * FROM read_parquet('{other}')")
    con.close()
    _, [(n,)] = query(layout, "SELECT count(*) FROM documents")
    assert n == len(expected["documents"])
    assert _dump(layout) == expected


def test_a_query_waits_for_a_writer_instead_of_failing(data):
    layout, _ = data
    writer = (
        "import sys, time, duckdb\n"
        "from records.catalog.fill import catalog_lock\n"
        "from records.layout import DataLayout\n"
        "layout = DataLayout(sys.argv[1])\n"
        "with catalog_lock(layout):\n"
        "    con = duckdb.connect(str(layout.catalog))\n"
        "    print('writing', flush=True)\n"
        "    time.sleep(1.5)\n"
        "    con.close()\n"
    )
    process = subprocess.Popen(
        [sys.executable, "-c", writer, str(layout.root)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert process.stdout.readline().strip() == "writing"
        _, [(n,)] = query(layout, "SELECT count(*) FROM dataset_versions")
        assert n == 4
    finally:
        assert process.wait(timeout=30) == 0


def test_new_ledger_entries_are_appended_without_rereading_old_ones(data):
    from records.request_index import load_index
    from records.requests import record_request

    layout, _ = data
    load_index(layout)  # built before the change, as where requests were recorded: it reads only new entries
    _, before = query(layout, 'SELECT * FROM ledger_entries ORDER BY "index"')
    entries = layout.ledger / "entries.jsonl"
    text = entries.read_bytes()
    # Same length, so the next append still finds its place; a catalog re-reading entry 0 would
    # find it no longer matches its leaf hash.
    entries.write_bytes(text.replace(b'"snapshot":"small"', b'"snapshot":"SMALL"', 1))
    assert entries.read_bytes() != text
    record_request(layout, "url", "https://new.example/")
    _, after = query(layout, 'SELECT * FROM ledger_entries ORDER BY "index"')
    assert after[: len(before)] == before and len(after) == len(before) + 1


def test_a_new_entry_not_matching_its_leaf_hash_is_refused(data):
    layout, _ = data
    with open(layout.ledger / "entries.jsonl", "ab") as f:
        f.write(b'{"event_type":"rollback","index":4,"payload":{},"timestamp":"2026-01-01T00:00:00Z"}\n')
    with open(layout.ledger / "leaf_hashes.bin", "ab") as f:
        f.write(b"\0" * 32)
    with pytest.raises(ValueError, match=r"entries\.jsonl: entry 4 does not match its leaf hash"):
        query(layout, "SELECT count(*) FROM ledger_entries")


def test_byte_identical_versions_of_two_assets_are_both_catalogued(tmp_path):
    """Two steps that seal the same bytes get two versions (the asset is in the sealed lineage), and
    the catalog holds both."""
    layout = DataLayout(tmp_path / "data")
    for asset in ("tokenizer", "quality_classifier"):
        staging = tmp_path / "staging" / asset
        staging.mkdir(parents=True)
        (staging / "model.txt").write_text("identical bytes\n")
        seal(staging, layout.datasets, asset=asset, snapshot=None)
    refresh_catalog(layout)
    _, rows = query(layout, "SELECT asset, dataset_version FROM dataset_versions ORDER BY asset")
    assert [r[0] for r in rows] == ["quality_classifier", "tokenizer"]
    assert rows[0][1] != rows[1][1]


def test_a_step_adds_its_version_without_listing_or_reading_any_other(data):
    """add_version_to_catalog (what finish_step calls) reads only the new version: a broken folder
    elsewhere (a garbage manifest, another version's index replaced by garbage) stops the full
    refresh, which lists datasets/*/, but not a step's update."""
    from records.catalog import add_version_to_catalog

    layout, results = data
    new, other = results[-1].manifest, results[0].manifest
    aside = layout.root / "aside"
    shutil.move(layout.datasets / new.ref, aside)
    layout.catalog.unlink()
    refresh_catalog(layout)  # a catalog of every version but `new`
    before = _counts(layout)
    shutil.move(aside, layout.datasets / new.ref)
    (layout.datasets / new.asset / PLANTED_ID).mkdir()
    (layout.datasets / new.asset / PLANTED_ID / "manifest.json").write_text("not a manifest")
    (layout.datasets / other.ref / "index.parquet").write_bytes(b"garbage")

    add_version_to_catalog(layout, new.ref)

    index_rows = pq.read_metadata(layout.datasets / new.ref / "index.parquet").num_rows
    con = duckdb.connect(str(layout.catalog), read_only=True)  # `query` would refresh first
    try:
        (docs,) = con.execute("SELECT count(*) FROM document_index").fetchone()
        refs = {
            r
            for (r,) in con.execute("SELECT asset || '/' || dataset_version FROM dataset_versions").fetchall()
        }
    finally:
        con.close()
    assert docs == before[0] + index_rows and len(refs) == before[3] + 1
    assert new.ref in refs and f"{new.asset}/{PLANTED_ID}" not in refs
    with pytest.raises(ValueError, match="not a readable manifest"):
        refresh_catalog(layout)


def test_the_held_ledger_count_is_a_state_row_kept_equal_to_the_rows(data):
    from records.ledger import Ledger

    layout, _ = data
    con = duckdb.connect(str(layout.catalog), read_only=True)
    try:
        (held,) = con.execute("SELECT value FROM catalog_state WHERE name = 'ledger_entries'").fetchone()
        (rows,) = con.execute("SELECT count(*) FROM ledger_entries").fetchone()
    finally:
        con.close()
    assert held == rows == Ledger(layout.ledger).size() > 0
