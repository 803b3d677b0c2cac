"""Lookup files (format apertus.lookup/3): layout on disk, answers equal to a scan, size, checks.

Runs on a copy of the shared `curated` data folder; ground truth is read from the versions'
index and exclusions Parquet with pyarrow and hashlib, independently of the lookup code.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import struct
from collections import Counter
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from records import lookup
from records.layout import DataLayout
from records.lookup import LEGACY_LOOKUP, find_rows, lookup_path
from records.lookup_build import build_lookup, build_missing_lookups, lookup_problems
from records.lookup_file import FORMAT, LookupFile
from records.manifest import seal
from records.versions import load_versions


@pytest.fixture
def copy(curated, tmp_path) -> tuple[DataLayout, list]:
    layout, results, _ = curated
    shutil.copytree(
        layout.root, tmp_path / "data", ignore=shutil.ignore_patterns("work", "*.lock", ".catalog.lock")
    )
    data = DataLayout(tmp_path / "data")
    return data, [r.manifest for r in results]


def _table_rows(folder: Path) -> list[dict]:
    kept = [{**r, "kept": True} for r in pq.read_table(folder / "index.parquet").to_pylist()]
    return kept + [{**r, "kept": False} for r in pq.read_table(folder / "exclusions.parquet").to_pylist()]


def test_file_layout_is_as_documented(copy):
    data, manifests = copy
    raw = manifests[0]  # raw_documents: the most rows, exact duplicates share a sha256
    folder = data.datasets / raw.ref
    path = build_lookup(data, raw, folder)
    rows = _table_rows(folder)
    blob = path.read_bytes()
    assert blob[:8] == b"APLOOKUP"
    (size,) = struct.unpack(">I", blob[8:12])
    header = json.loads(blob[12 : 12 + size])
    recorded = {f.path: f.sha256 for f in raw.files}
    assert header["format"] == FORMAT and header["rows"] == len(rows)
    assert header["sources"] == [[raw.ref, t, recorded[t]] for t in ("index.parquet", "exclusions.parquet")]
    start, length = header["sections"]["sha256"]
    assert blob[start : start + length] == b"".join(sorted(bytes.fromhex(r["sha256"]) for r in rows))
    start, length = header["sections"]["url_keys"]
    keys = [blob[i : i + 12] for i in range(start, start + length, 12)]
    assert keys == sorted(keys) and len(keys) == sum(r["url"] is not None for r in rows)
    assert Counter(k[:8] for k in keys) == Counter(
        hashlib.sha256(r["url"].encode()).digest()[:8] for r in rows if r["url"] is not None
    )
    names = ("sha256", "url_keys", "block_offsets", "blocks", "block_hashes")
    sections = [header["sections"][s] for s in names]
    assert sections[0][0] == 12 + size and sections[-1][0] + sections[-1][1] == len(blob)
    assert all(a[0] + a[1] == b[0] for a, b in zip(sections, sections[1:], strict=False))
    # block_hashes: sha256 of every 16 KiB piece of what precedes it; the root is their sha256.
    start, length = header["sections"]["block_hashes"]
    pieces = [blob[i : min(i + 16384, start)] for i in range(0, start, 16384)]
    assert blob[start:] == b"".join(hashlib.sha256(p).digest() for p in pieces)
    with LookupFile(path) as opened:
        assert opened.root() == hashlib.sha256(blob[start:]).hexdigest()


def test_every_row_is_found_by_url_and_by_sha256_as_in_the_tables(copy):
    data, manifests = copy
    for manifest in (manifests[0], manifests[3]):  # raw (duplicates), deduplicated (clusters, drops)
        folder = data.datasets / manifest.ref
        build_lookup(data, manifest, folder)
        rows = _table_rows(folder)
        by_sha = Counter(r["sha256"] for r in rows)
        assert max(by_sha.values()) > 1 or manifest is manifests[3]
        for r in rows[:: max(1, len(rows) // 150)] + [r for r in rows if not r["kept"]][:50]:
            found = find_rows(data, [manifest.ref], sha256s=[r["sha256"]])
            assert len(found) == by_sha[r["sha256"]]
            (same,) = [f for f in found if f.doc_id == r["doc_id"]]
            assert (same.url, same.snapshot, same.kept) == (r["url"], r["snapshot"], r["kept"])
            assert (same.step, same.reason, same.details) == (
                (r.get("step"), r.get("reason"), r.get("details")) if not r["kept"] else (None, None, None)
            )
            assert (same.minhash_cluster_id, same.minhash_cluster_size) == (
                r["minhash_cluster_id"], r["minhash_cluster_size"],
            )  # fmt: skip
            if r["url"] is not None:
                by_url = find_rows(data, [manifest.ref], url=r["url"])
                assert r["doc_id"] in {f.doc_id for f in by_url} and all(f.url == r["url"] for f in by_url)
        assert find_rows(data, [manifest.ref], sha256s=["ab" * 32], url="https://nowhere.example/") == []
        # Answers from the file equal those of the DuckDB scan it replaces.
        sample = rows[len(rows) // 2]
        assert find_rows(data, [manifest.ref], url=sample["url"]) == lookup._scan(
            data, [manifest.ref], sample["url"], []
        )


def test_lookup_is_smaller_than_the_tables_it_indexes(copy):
    data, manifests = copy
    for manifest in manifests:
        folder = data.datasets / manifest.ref
        parquet = sum((folder / t).stat().st_size for t in ("index.parquet", "exclusions.parquet"))
        assert build_lookup(data, manifest, folder).stat().st_size < parquet


def test_format_1_files_are_replaced_by_index(copy):
    data, manifests = copy
    shutil.rmtree(data.lookup)
    legacy = lookup_path(data, manifests[1].ref).with_name(LEGACY_LOOKUP)
    legacy.parent.mkdir(parents=True)
    legacy.write_bytes(b"SQLite format 3\x00")
    versions = load_versions(data)
    assert build_missing_lookups(data, versions) == sorted(m.ref for m in manifests)
    assert not legacy.exists() and lookup_path(data, manifests[1].ref).exists()
    assert build_missing_lookups(data, versions) == []


def test_check_names_a_lying_a_damaged_or_a_foreign_lookup_file(copy):
    data, manifests = copy
    dedup = manifests[3]
    folder = data.datasets / dedup.ref
    path = build_lookup(data, dedup, folder)
    assert lookup_problems(data, dedup, folder) == []
    # A well-formed file whose rows lie: one drop reason changed (built from doctored tables).
    doctored = folder.parent / "doctored"
    shutil.copytree(folder, doctored)
    exclusions = pq.read_table(doctored / "exclusions.parquet")
    reasons = exclusions.column("reason").to_pylist()
    reasons[reasons.index("near_duplicate")] = "near_duplicatE"
    exclusions = exclusions.set_column(
        exclusions.schema.get_field_index("reason"), "reason", pa.array(reasons)
    )
    pq.write_table(exclusions, doctored / "exclusions.parquet")
    build_lookup(data, dedup, doctored)
    assert any(r.reason == "near_duplicatE" for r in _all_rows(path))
    assert lookup_problems(data, dedup, folder) == [
        f"{path}: its rows differ from {dedup.ref}'s index and exclusions; rebuild it"
    ]
    # One flipped bit in the digests.
    build_lookup(data, dedup, folder)
    with LookupFile(path) as f:
        at = f.sections["sha256"][0] + 5
    blob = bytearray(path.read_bytes())
    blob[at] ^= 0x01
    path.write_bytes(bytes(blob))
    assert lookup_problems(data, dedup, folder)[0].startswith(f"{path}: its rows differ")
    # A truncated file, and another version's file.
    path.write_bytes(bytes(blob[: len(blob) // 2]))
    assert lookup_problems(data, dedup, folder)[0].startswith(f"{path}: unreadable")
    shutil.copy(build_lookup(data, manifests[2], data.datasets / manifests[2].ref), path)
    assert lookup_problems(data, dedup, folder)[0].startswith(f"{path}: built from other tables")


def _all_rows(path: Path):
    with LookupFile(path) as f:
        return [lookup.Row("x", *f.row(r)) for r in range(f.rows)]


def test_a_bad_sha256_in_a_table_is_named(tmp_path):
    staging = tmp_path / "staging"
    staging.mkdir()
    good = hashlib.sha256(b"a").hexdigest()
    columns = {"doc_id": ["d0", "d1", "d2"], "url": ["u0", None, "u2"], "snapshot": ["s"] * 3,
               "sha256": [good, good, good.upper()], "minhash_cluster_id": [None] * 3,
               "minhash_cluster_size": pa.array([None] * 3, pa.int64())}  # fmt: skip
    pq.write_table(pa.table(columns), staging / "index.parquet")
    extra = {"step": ["x"], "reason": ["y"], "details": ["{}"]}
    pq.write_table(pa.table({k: v[:1] for k, v in columns.items()} | extra), staging / "exclusions.parquet")
    layout = DataLayout(tmp_path / "data")
    manifest, _ = seal(staging, layout.datasets, asset="raw_documents", snapshot="s")
    with pytest.raises(ValueError, match=r"row 2 has sha256 '[0-9A-F]{64}'; expected 64 lowercase hex"):
        build_lookup(layout, manifest, layout.datasets / manifest.ref)
