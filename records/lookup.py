"""Lookup files: each version's documents indexed by content hash and by URL, for fast membership.

A membership question (``apertus audit contains --url/--sha256``) must answer in well under a
second over millions of documents, process start included, so it cannot scan every row of every
version, nor even pay for loading a query engine. For each dataset version this module writes,
beside the data (not inside the sealed version folder, whose files the manifest fixes), one file

    <data>/lookup/<asset>/<version id>/lookup.bin      (format "apertus.lookup/3", docs/audit.md)

holding one row per document of the version's ``index.parquet`` (kept) and ``exclusions.parquet``
(dropped, with the step, reason and details), in five sections:

    sha256         the rows' 32-byte sha256 digests, ascending: row r is the r-th (binary search)
    url_keys       12 bytes per row with a URL: first 8 bytes of sha256(url), then the row number
                   as a big-endian uint32; ascending (binary search)
    block_offsets  where each block of BLOCK_ROWS rows starts in ``blocks`` (big-endian uint64)
    blocks         the other answer columns of each block, column by column, zlib-compressed
    block_hashes   sha256 of every HASH_BLOCK (16 KiB) piece of the file before this section; its
                   own sha256 is the file's root, pinned in the version's ledger entry

A probe is a binary search over a memory-mapped fixed-width section and the inflation of one
block, so a query reads a few pages per version; Python's standard library reads it all
(``records.lookup_file``: the format's constants, header and reader), so ``contains``
starts without DuckDB or pyarrow. The file is about the size of the version's own
Parquet tables (the 32-byte digests are half of it; the SQLite lookups of format 1 were 4x). The files
are derived but sealed: ``build_lookup`` (records.lookup_build) rebuilds them from the version's
tables (pyarrow and numpy; the same tables give the same bytes, so the same root), and
``lookup_problems`` there compares them with those tables; a query checks every piece it reads
against the pinned root (``LookupIntegrityError``, never an answer, when one differs). A version without a lookup file is
answered by a DuckDB scan of its tables, after checking their sha256 against the manifest.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from records.documents import TABLES
from records.layout import DataLayout
from records.lookup_file import LookupFile, LookupIntegrityError
from records.manifest import MANIFEST

LOOKUP = "lookup.bin"
LEGACY_LOOKUP = "lookup.sqlite"  # format 1; build_lookup removes it, nothing reads it
ANSWER_COLUMNS = (
    "sha256", "doc_id", "url", "snapshot", "kept", "step", "reason", "details",
    "minhash_cluster_id", "minhash_cluster_size",
)  # fmt: skip


@dataclass(frozen=True)
class Row:
    """One document in one dataset version: kept there, or dropped by that version's step."""

    version: str  # asset/version_id
    sha256: str
    doc_id: str
    url: str | None
    snapshot: str | None
    kept: bool
    step: str | None
    reason: str | None
    details: str | None
    minhash_cluster_id: str | None
    minhash_cluster_size: int | None


def url_key(url: str) -> bytes:
    """The lookup key of a URL: the first 8 bytes of sha256(url as UTF-8)."""
    return hashlib.sha256(url.encode()).digest()[:8]


def lookup_path(layout: DataLayout, ref: str) -> Path:
    return layout.lookup / ref / LOOKUP


def has_lookup(layout: DataLayout, ref: str) -> bool:
    return lookup_path(layout, ref).exists()


# Both tables of a version with ANSWER_COLUMNS; the two ? are the index's and the exclusions' paths.
SOURCE_SELECT = """SELECT sha256, doc_id, url, snapshot, true AS kept, NULL::VARCHAR AS step,
        NULL::VARCHAR AS reason, NULL::VARCHAR AS details, minhash_cluster_id,
        minhash_cluster_size::BIGINT AS minhash_cluster_size FROM read_parquet(?)
    UNION ALL
    SELECT sha256, doc_id, url, snapshot, false AS kept, step, reason, details, minhash_cluster_id,
        minhash_cluster_size::BIGINT AS minhash_cluster_size FROM read_parquet(?)"""


def find_rows(
    layout: DataLayout, refs: list[str], *, url: str | None = None, sha256s: list[str] | None = None
) -> list[Row]:
    """Every row of the versions ``refs`` whose url equals ``url`` or whose sha256 is in ``sha256s``.

    Versions with a lookup file are answered from it, checked against the lookup_root pinned in
    the version's ledger entry (the pin marker, records.pins): binary searches and one block
    per hit, each 16 KiB piece read hashed once, so the cost grows with log(rows) per version and
    the file's size / 512 for its block hashes, never with the ledger. The others are answered by
    a DuckDB scan of their index and exclusions, once their sha256 match the manifest. Raises
    LookupIntegrityError (a ValueError naming the file) when a file differs from what was pinned.
    """
    hashes = sorted(set(sha256s or []))
    rows: list[Row] = []
    slow = []
    for ref in refs:
        path = lookup_path(layout, ref)
        if not path.exists():
            slow.append(ref)
            continue
        root, where = pinned_root(layout, ref)
        with LookupFile(path, root, where) as lookup:
            if url is not None:
                found = (lookup.row(r) for r in lookup.rows_with_url_key(url_key(url)))
                rows += [Row(ref, *values) for values in found if values[2] == url]
            for h in hashes:
                rows += [Row(ref, *lookup.row(r)) for r in lookup.rows_with_sha256(bytes.fromhex(h))]
    if slow:
        rows += _scan(layout, slow, url, hashes)
    return rows


def pinned_root(layout: DataLayout, ref: str) -> tuple[str, str]:
    """(lookup_root, where it is pinned) of ``ref``'s lookup; LookupIntegrityError if none is pinned."""
    from records.pins import read_pin

    path = lookup_path(layout, ref)
    pin = read_pin(layout, ref)
    root = None if pin is None else pin.payload.get("lookup_root")
    if root is None:
        where = "no pin marker" if pin is None else f"no lookup_root in {pin.where(layout)}"
        raise LookupIntegrityError(
            f"{path}: no root pinned for it ({where}), so its answers cannot be checked; "
            "pin it with `apertus audit repin` (after `apertus audit index --rebuild` for a folder "
            "older than lookup format 3)"
        )
    return root, pin.where(layout)


def _check_tables(layout: DataLayout, ref: str) -> None:
    """The version's index and exclusions hash as its manifest records (O(their bytes))."""
    from records.hashing import sha256_file
    from records.manifest import load_manifest

    folder = layout.datasets / ref
    recorded = {f.path: f.sha256 for f in load_manifest(folder).files}
    for name in TABLES:
        if recorded.get(name) is None or sha256_file(folder / name) != recorded[name]:
            raise LookupIntegrityError(
                f"{folder / name}: its sha256 differs from {folder / MANIFEST} (or it is not "
                "recorded there); run `apertus audit verify`"
            )


def _scan(layout: DataLayout, refs: list[str], url: str | None, hashes: list[str]) -> list[Row]:
    import duckdb

    if url is not None:
        where, params = "url = ?", [url]
    elif hashes:
        where, params = "sha256 IN (" + ", ".join("?" for _ in hashes) + ")", hashes
    else:
        return []
    for ref in refs:
        _check_tables(layout, ref)
    select = f"SELECT {', '.join(ANSWER_COLUMNS)} FROM ({SOURCE_SELECT}) WHERE {where}"
    con = duckdb.connect()
    try:
        rows = []
        for ref in refs:
            tables = [str(layout.datasets / ref / name) for name in TABLES]
            rows += [Row(ref, *r) for r in con.execute(select, tables + params).fetchall()]
        return rows
    finally:
        con.close()


# Checking ------------------------------------------------------------------------------------


def file_root(path: Path) -> str:
    """The lookup_root of the lookup file at ``path`` as it is now (what to pin after building it)."""
    with LookupFile(path) as lookup:
        return lookup.root()
