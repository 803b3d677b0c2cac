"""Lookup files: each version's documents indexed by URL and by content hash, for fast membership.

A membership question (``apertus audit contains --url/--sha256``) must answer in well under a
second over millions of documents, process start included, so it cannot scan every row of every
version, nor even pay for loading a query engine. For each dataset version this module writes,
beside the data (not inside the sealed version folder, whose files the manifest fixes):

    <data>/lookup/<asset>/<version id>/lookup.sqlite     (SQLite 3, one table)

    documents(url_key INTEGER, sha_key INTEGER, sha256 TEXT, doc_id TEXT, url TEXT, snapshot TEXT,
              kept INTEGER, step TEXT, reason TEXT, details TEXT,
              minhash_cluster_id TEXT, minhash_cluster_size INTEGER)
    indexes on url_key and on sha_key
    source(version TEXT, path TEXT, sha256 TEXT): the index and exclusions files it was built from

One row per document of the version's ``index.parquet`` (kept = 1) and ``exclusions.parquet``
(kept = 0, with the step, reason and details). ``url_key`` is the first 8 bytes of
sha256(url as UTF-8) and ``sha_key`` the first 8 bytes of the document's sha256, each read as a
signed big-endian 64-bit integer: small keys keep the indexes small; a query always compares the
full ``url``/``sha256`` too. Python's standard library reads it, so ``contains`` starts without
DuckDB or pyarrow. The files are derived: ``build_lookup`` rebuilds them from the version's own
tables, ``verify`` compares their rows with those tables, and a version without a lookup file is
answered by a DuckDB scan of its tables.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import uuid
from dataclasses import dataclass
from pathlib import Path

from provenance.layout import DataLayout
from provenance.manifest import Manifest

LOOKUP = "lookup.sqlite"
TABLES = ("index.parquet", "exclusions.parquet")
ANSWER_COLUMNS = (
    "sha256", "doc_id", "url", "snapshot", "kept", "step", "reason", "details",
    "minhash_cluster_id", "minhash_cluster_size",
)  # fmt: skip
_SCHEMA = """
CREATE TABLE documents (url_key INTEGER, sha_key INTEGER, sha256 TEXT, doc_id TEXT, url TEXT, snapshot TEXT,
                        kept INTEGER, step TEXT, reason TEXT, details TEXT,
                        minhash_cluster_id TEXT, minhash_cluster_size INTEGER);
CREATE TABLE source (version TEXT, path TEXT, sha256 TEXT);
"""
_INDEXES = """
CREATE INDEX documents_url_key ON documents (url_key);
CREATE INDEX documents_sha_key ON documents (sha_key);
"""
BATCH_ROWS = 65_536


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


def url_key(url: str) -> int:
    """The lookup key of a URL: the first 8 bytes of sha256(url) as a signed big-endian int64."""
    return int.from_bytes(hashlib.sha256(url.encode()).digest()[:8], "big", signed=True)


def sha_key(sha256: str) -> int:
    """The lookup key of a document hash: its first 8 bytes as a signed big-endian int64."""
    return int.from_bytes(bytes.fromhex(sha256[:16]), "big", signed=True)


def lookup_path(layout: DataLayout, ref: str) -> Path:
    return layout.lookup / ref / LOOKUP


def has_lookup(layout: DataLayout, ref: str) -> bool:
    return lookup_path(layout, ref).exists()


def source_select(folder: Path) -> str:
    """DuckDB SQL over a version folder's index and exclusions giving ANSWER_COLUMNS."""
    common = "sha256, doc_id, url, snapshot"
    cluster = "minhash_cluster_id, minhash_cluster_size::BIGINT AS minhash_cluster_size"
    index, exclusions = (_sql_path(folder / name) for name in TABLES)
    return f"""SELECT {common}, true AS kept, NULL::VARCHAR AS step, NULL::VARCHAR AS reason,
                      NULL::VARCHAR AS details, {cluster} FROM read_parquet({index})
               UNION ALL
               SELECT {common}, false AS kept, step, reason, details, {cluster} FROM read_parquet({exclusions})"""


def _sql_path(path: Path) -> str:
    return "'" + str(path).replace("'", "''") + "'"


def source_rows(folder: Path):
    """Yield batches of ANSWER_COLUMNS tuples from a version's index and exclusions (DuckDB)."""
    import duckdb

    con = duckdb.connect()
    try:
        result = con.execute(source_select(folder))
        while batch := result.fetchmany(BATCH_ROWS):
            yield batch
    finally:
        con.close()


def build_lookup(layout: DataLayout, manifest: Manifest, folder: Path) -> Path:
    """Write the lookup file of the version in ``folder`` (replacing any); return its path."""
    target = lookup_path(layout, manifest.ref)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = target.with_name(f".{LOOKUP}-{uuid.uuid4().hex[:8]}")
    con = sqlite3.connect(staging)
    try:
        con.execute("PRAGMA journal_mode = OFF")
        con.execute("PRAGMA synchronous = OFF")
        con.executescript(_SCHEMA)
        recorded = {f.path: f.sha256 for f in manifest.files}
        con.executemany(
            "INSERT INTO source VALUES (?, ?, ?)", [(manifest.ref, t, recorded.get(t)) for t in TABLES]
        )
        for batch in source_rows(folder):
            con.executemany(
                "INSERT INTO documents VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [(url_key(r[2]) if r[2] is not None else None, sha_key(r[0]), *r) for r in batch],
            )
        con.executescript(_INDEXES)
        con.commit()
    finally:
        con.close()
    staging.replace(target)
    return target


def build_missing_lookups(layout: DataLayout, versions: dict[str, Manifest]) -> list[str]:
    """Build the lookup file of every version that has none; return the refs built."""
    built = []
    for ref, manifest in sorted(versions.items()):
        if not has_lookup(layout, ref):
            build_lookup(layout, manifest, layout.datasets / ref)
            built.append(ref)
    return built


def _answer(values) -> tuple:
    """ANSWER_COLUMNS values with ``kept`` as a bool (SQLite stores it as 0/1)."""
    values = tuple(values)
    return values[:4] + (bool(values[4]),) + values[5:]


def _open(path: Path) -> sqlite3.Connection:
    return sqlite3.connect(f"file:{path}?mode=ro", uri=True)


def find_rows(
    layout: DataLayout, refs: list[str], *, url: str | None = None, sha256s: list[str] | None = None
) -> list[Row]:
    """Every row of the versions ``refs`` whose url equals ``url`` or whose sha256 is in ``sha256s``.

    Versions with a lookup file are answered from it (two index probes); the others by a DuckDB
    scan of their index and exclusions.
    """
    hashes = sorted(set(sha256s or []))
    rows: list[Row] = []
    slow = []
    columns = ", ".join(ANSWER_COLUMNS)
    for ref in refs:
        path = lookup_path(layout, ref)
        if not path.exists():
            slow.append(ref)
            continue
        con = _open(path)
        try:
            if url is not None:
                found = con.execute(
                    f"SELECT {columns} FROM documents WHERE url_key = ? AND url = ?", (url_key(url), url)
                )
                rows += [Row(ref, *_answer(r)) for r in found]
            for h in hashes:
                found = con.execute(
                    f"SELECT {columns} FROM documents WHERE sha_key = ? AND sha256 = ?", (sha_key(h), h)
                )
                rows += [Row(ref, *_answer(r)) for r in found]
        finally:
            con.close()
    if slow:
        rows += _scan(layout, slow, url, hashes)
    return rows


def _scan(layout: DataLayout, refs: list[str], url: str | None, hashes: list[str]) -> list[Row]:
    import duckdb

    if url is not None:
        where, params = "url = ?", [url]
    elif hashes:
        where, params = "sha256 IN (" + ", ".join("?" for _ in hashes) + ")", hashes
    else:
        return []
    con = duckdb.connect()
    try:
        rows = []
        for ref in refs:
            select = f"SELECT {', '.join(ANSWER_COLUMNS)} FROM ({source_select(layout.datasets / ref)}) WHERE {where}"
            rows += [Row(ref, *_answer(r)) for r in con.execute(select, params).fetchall()]
        return rows
    finally:
        con.close()


def lookup_problems(layout: DataLayout, manifest: Manifest, folder: Path) -> list[str]:
    """What is wrong with a version's lookup file: built from other tables, or rows that differ."""
    path = lookup_path(layout, manifest.ref)
    recorded = {f.path: f.sha256 for f in manifest.files}
    try:
        con = _open(path)
        try:
            sources = con.execute("SELECT version, path, sha256 FROM source").fetchall()
            query = f"SELECT {', '.join(ANSWER_COLUMNS)}, url_key, sha_key FROM documents"
            stored = _digest((_answer(r[:-2]), r[-2:]) for r in con.execute(query))
        finally:
            con.close()
    except sqlite3.Error as e:
        return [f"{path}: unreadable ({e})"]
    if sorted(sources) != sorted((manifest.ref, t, recorded.get(t)) for t in TABLES):
        return [
            f"{path}: built from other tables than {manifest.ref}'s; rebuild it (apertus audit index --rebuild)"
        ]
    expected = _digest(
        (_answer(r), (url_key(r[2]) if r[2] is not None else None, sha_key(r[0])))
        for batch in source_rows(folder)
        for r in batch
    )
    if stored != expected:
        return [f"{path}: its rows differ from {manifest.ref}'s index and exclusions; rebuild it"]
    return []


def _digest(rows) -> tuple[int, int]:
    """(row count, sum of row hashes mod 2**128): equal for equal multisets of rows, in any order."""
    count, total = 0, 0
    for values, keys in rows:
        encoded = json.dumps([list(values), list(keys)], ensure_ascii=False, default=str).encode()
        total = (total + int.from_bytes(hashlib.sha256(encoded).digest()[:16], "big")) % (1 << 128)
        count += 1
    return count, total
