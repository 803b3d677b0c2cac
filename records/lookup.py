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
are derived but sealed: ``build_lookup`` rebuilds them from the version's tables (pyarrow and
numpy; the same tables give the same bytes, so the same root), ``lookup_problems`` compares them
with those tables, and a query checks every piece it reads against the pinned root
(``LookupIntegrityError``, never an answer, when one differs). A version without a lookup file is
answered by a DuckDB scan of its tables, after checking their sha256 against the manifest.
"""

from __future__ import annotations

import hashlib
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

from records.documents import TABLES
from records.layout import DataLayout
from records.lookup_file import (
    BLOCK_ROWS,
    HASH_BLOCK,
    NULL_INT,
    NULL_LENGTH,
    SECTIONS,
    SHA_WIDTH,
    STRINGS,
    URL_WIDTH,
    LookupFile,
    LookupIntegrityError,
    block_hashes,
    header,
)
from records.manifest import MANIFEST, Manifest
from records.versions import holds_documents

LOOKUP = "lookup.bin"
LEGACY_LOOKUP = "lookup.sqlite"  # format 1; build_lookup removes it, nothing reads it
ANSWER_COLUMNS = (
    "sha256", "doc_id", "url", "snapshot", "kept", "step", "reason", "details",
    "minhash_cluster_id", "minhash_cluster_size",
)  # fmt: skip
ZLIB_LEVEL = 6


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


# Building ------------------------------------------------------------------------------------


class _Content(NamedTuple):  # not a dataclass: creating one costs `contains` start-up time
    """Everything a lookup file holds, uncompressed, in file order."""

    rows: int
    sha256: bytes
    url_keys: bytes
    blocks: list[bytes]  # uncompressed


def build_lookup(layout: DataLayout, manifest: Manifest, folder: Path) -> Path:
    """Write the lookup file of the version in ``folder`` (replacing any); return its path."""
    import uuid
    from concurrent.futures import ThreadPoolExecutor
    from functools import partial

    target = lookup_path(layout, manifest.ref)
    target.parent.mkdir(parents=True, exist_ok=True)
    content = _content(folder)
    with ThreadPoolExecutor() as pool:  # zlib releases the GIL
        compressed = list(pool.map(partial(zlib.compress, level=ZLIB_LEVEL), content.blocks))
    offsets, position = [], 0
    for blob in compressed:
        offsets.append(position)
        position += len(blob)
    offsets.append(position)
    bodies = {"sha256": content.sha256, "url_keys": content.url_keys,
              "block_offsets": struct.pack(f">{len(offsets)}Q", *offsets)}  # fmt: skip
    lengths = {**{k: len(v) for k, v in bodies.items()}, "blocks": position}
    fields = {
        "sources": _sources(manifest),
        "rows": content.rows,
        "url_rows": len(content.url_keys) // URL_WIDTH,
    }
    head = header(fields, lengths)
    staging = target.with_name(f".{LOOKUP}-{uuid.uuid4().hex[:8]}")
    with open(staging, "w+b") as f:
        f.write(head)
        for name in SECTIONS[:3]:
            f.write(bodies[name])
        for blob in compressed:
            f.write(blob)
        f.seek(0)
        hashes = b"".join(block_hashes(piece) for piece in iter(lambda: f.read(HASH_BLOCK), b""))
        f.write(hashes)
    staging.replace(target)
    (target.parent / LEGACY_LOOKUP).unlink(missing_ok=True)
    return target


def _sources(manifest: Manifest) -> list[list]:
    recorded = {f.path: f.sha256 for f in manifest.files}
    return [[manifest.ref, t, recorded.get(t)] for t in TABLES]


def _content(folder: Path) -> _Content:
    """The rows of a version's index and exclusions, sorted by sha256, encoded as in the file."""
    import numpy as np

    table = _read_tables(folder)
    digests = _digests(table.column("sha256"), folder)
    order = _sort_order(digests)
    table = table.take(order)
    strings = {column: _strings(table.column(column)) for column in STRINGS}
    lengths = {}
    for column, (_, offsets, valid) in strings.items():
        lengths[column] = np.diff(offsets).astype("<u4")
        lengths[column][~valid] = NULL_LENGTH
    kept = table.column("kept").to_numpy().astype(np.uint8)
    sizes = table.column("minhash_cluster_size").fill_null(NULL_INT).to_numpy().astype("<i8")
    # A block of n rows, before compression: for each of STRINGS, n lengths (little-endian uint32,
    # NULL_LENGTH for NULL); n bytes of kept (0/1); n minhash_cluster_size (little-endian int64,
    # NULL_INT for NULL); then each of STRINGS's UTF-8 bytes back to back. Like strings sit
    # together, so zlib finds their common parts.
    blocks = []
    for start in range(0, table.num_rows, BLOCK_ROWS):
        end = min(table.num_rows, start + BLOCK_ROWS)
        parts = [lengths[column][start:end].tobytes() for column in STRINGS]
        parts += [kept[start:end].tobytes(), sizes[start:end].tobytes()]
        parts += [data[offsets[start] : offsets[end]].tobytes() for data, offsets, _ in strings.values()]
        blocks.append(b"".join(parts))
    return _Content(table.num_rows, digests[order].tobytes(), _url_keys(strings["url"]), blocks)


def _read_tables(folder: Path):
    """index (kept) and exclusions (dropped) of a version as one table of the answer columns."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    parts = []
    for name, kept in zip(TABLES, (True, False), strict=True):
        path = folder / name
        wanted = {*STRINGS, "sha256", "minhash_cluster_size"}
        table = pq.read_table(path, columns=[c for c in pq.read_schema(path).names if c in wanted])
        missing = {"sha256", "doc_id", "url", "snapshot"} - set(table.column_names)
        if missing:
            raise ValueError(f"{path}: no column(s) {sorted(missing)}; not a dataset version table")
        n = table.num_rows
        columns = {}
        for column in STRINGS:
            values = table.column(column) if column in table.column_names else pa.nulls(n, pa.string())
            columns[column] = values.cast(pa.large_string())  # 64-bit offsets: a column may pass 2 GiB
        columns["sha256"] = table.column("sha256").cast(pa.large_string())
        columns["kept"] = pa.array([kept] * n, pa.bool_())
        size = table.column("minhash_cluster_size") if "minhash_cluster_size" in table.column_names else None
        columns["minhash_cluster_size"] = (size if size is not None else pa.nulls(n)).cast(pa.int64())
        if kept:
            for column in ("step", "reason", "details"):
                columns[column] = pa.nulls(n, pa.large_string())
        parts.append(pa.table(columns))
    return pa.concat_tables(parts).combine_chunks()


_NIBBLES = bytes(
    [int(chr(c), 16) if chr(c) in "0123456789abcdef" else 255 for c in range(256)]
)  # hex digit -> value


def _digests(column, folder: Path):
    """(n, 32) uint8 array of the sha256 column; ValueError naming the first bad row."""
    import numpy as np
    import pyarrow.compute as pc

    array = column.combine_chunks() if hasattr(column, "combine_chunks") else column
    data, offsets = _buffers(array)
    text = data[offsets[0] : offsets[-1]].tobytes()
    try:
        raw = bytes.fromhex(text.decode("ascii")) if text == text.lower() else b""
    except (UnicodeDecodeError, ValueError):
        raw = b""
    lengths = pc.binary_length(array).fill_null(0).to_numpy(zero_copy_only=False)
    if len(raw) != SHA_WIDTH * len(array) or (lengths != 64).any():  # find the row to name
        nibbles = np.frombuffer(_NIBBLES, np.uint8)
        bad = next(
            i for i in range(len(array))
            if lengths[i] != 64 or (nibbles[data[offsets[i] : offsets[i + 1]]] == 255).any()
        )  # fmt: skip
        raise ValueError(
            f"{folder}: index/exclusions row {bad} has sha256 {array[bad].as_py()!r}; "
            "expected 64 lowercase hex digits"
        )
    return np.frombuffer(raw, np.uint8).reshape(-1, SHA_WIDTH)


def _sort_order(digests):
    """Row order by digest (as bytes), ties in their original order."""
    import numpy as np

    first = digests[:, :8].copy().view(">u8").ravel().astype(np.uint64)
    order = np.argsort(first, kind="stable")
    ties = np.flatnonzero(first[order][1:] == first[order][:-1])  # rare beyond exact duplicates
    start = 0
    for i in ties:
        if i < start:
            continue
        end = i + 1
        while end < len(order) and first[order[end]] == first[order[i]]:
            end += 1
        order[i:end] = sorted(order[i:end], key=lambda r: (digests[r].tobytes(), r))
        start = end
    return order


def _buffers(array):
    """(data bytes as uint8 array, offsets as int64 array) of a string array, nulls as empty."""
    import numpy as np
    import pyarrow as pa

    array = array.fill_null("") if array.null_count else array
    if not isinstance(array, pa.Array):
        array = array.combine_chunks()
    _, offsets, data = array.buffers()
    width = np.int64 if pa.types.is_large_string(array.type) else np.int32
    offsets = np.frombuffer(offsets, width)[array.offset : array.offset + len(array) + 1].astype(np.int64)
    return (np.frombuffer(data, np.uint8) if data is not None else np.zeros(0, np.uint8)), offsets


def _strings(column):
    """(data, offsets, valid) of a string column: what blocks and URL keys are made from."""
    import numpy as np

    array = column.combine_chunks() if hasattr(column, "combine_chunks") else column
    valid = (
        np.ones(len(array), bool) if not array.null_count else array.is_valid().to_numpy(zero_copy_only=False)
    )
    data, offsets = _buffers(array)
    return data, offsets, valid


def _url_keys(urls) -> bytes:
    """The url_keys section: (url key, row) for every row with a URL, ascending."""
    import numpy as np

    data, offsets, valid = urls
    rows = np.flatnonzero(valid)
    view = memoryview(data.tobytes())
    starts, ends = offsets[rows].tolist(), offsets[rows + 1].tolist()
    keys = b"".join(hashlib.sha256(view[s:e]).digest()[:8] for s, e in zip(starts, ends, strict=True))
    entries = np.empty(len(rows), dtype=[("key", ">u8"), ("row", ">u4")])
    entries["key"] = np.frombuffer(keys, ">u8")
    entries["row"] = rows
    order = np.lexsort((rows, np.frombuffer(keys, ">u8").astype(np.uint64)))
    return entries[order].tobytes()


def build_missing_lookups(layout: DataLayout, versions: dict[str, Manifest]) -> list[str]:
    """Build the lookup file of every version of documents that has none (or an older format one);
    return the refs built. Models, tokenizers, examples and other versions without documents have none."""
    built = []
    for ref, manifest in sorted(versions.items()):
        if holds_documents(manifest) and not has_lookup(layout, ref):
            build_lookup(layout, manifest, layout.datasets / ref)
            built.append(ref)
    return built


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
    con = duckdb.connect()
    try:
        rows = []
        for ref in refs:
            select = f"SELECT {', '.join(ANSWER_COLUMNS)} FROM ({source_select(layout.datasets / ref)}) WHERE {where}"
            rows += [Row(ref, *r) for r in con.execute(select, params).fetchall()]
        return rows
    finally:
        con.close()


# Checking ------------------------------------------------------------------------------------


def file_root(path: Path) -> str:
    """The lookup_root of the lookup file at ``path`` as it is now (what to pin after building it)."""
    with LookupFile(path) as lookup:
        return lookup.root()


def lookup_problems(
    layout: DataLayout, manifest: Manifest, folder: Path, root: str | None = None, where: str = ""
) -> list[str]:
    """What is wrong with a version's lookup file: unreadable, other bytes than the pinned ``root``
    (when given; ``where`` names the entry), built from other tables, or rows that differ."""
    path = lookup_path(layout, manifest.ref)
    try:
        with LookupFile(path, root, where) as lookup:
            if lookup.header.get("sources") != _sources(manifest):
                return [
                    f"{path}: built from other tables than {manifest.ref}'s; rebuild it (apertus audit index --rebuild)"
                ]
            expected = _content(folder)
            same = (
                lookup.rows == expected.rows
                and lookup.sha256s() == expected.sha256
                and lookup.url_keys() == expected.url_keys
                and all(lookup.block(b) == block for b, block in enumerate(expected.blocks))
            )
    except LookupIntegrityError as e:
        return [str(e)]
    except (OSError, ValueError, KeyError, TypeError, struct.error) as e:
        return [f"{path}: unreadable ({e}); rebuild it (apertus audit index --rebuild)"]
    if not same:
        return [f"{path}: its rows differ from {manifest.ref}'s index and exclusions; rebuild it"]
    return []
