"""The lookup file format ("apertus.lookup/3", docs/audit.md): its constants, header and reader.

A file is MAGIC, the JSON header's length (big-endian uint32), the JSON header, then the
sections in SECTIONS order at the offsets the header names. ``records.lookup`` builds
the files and answers queries with ``LookupFile``; this module needs only the standard library,
so ``contains`` starts fast.

A lookup is a sealed derived record: the last section, ``block_hashes``, holds the sha256 of
every HASH_BLOCK bytes of the file before it (the last piece may be shorter), and the file's
root is the sha256 of that section (``lookup_root``). The root is pinned in the version's
ledger entry (records.pins). Opened with a root, ``LookupFile`` checks the section against
it, then the hash of every piece it reads before using a byte of it, so a changed byte raises
``LookupIntegrityError`` instead of changing an answer.
"""

from __future__ import annotations

import hashlib
import json
import mmap
import os
import struct
import zlib
from pathlib import Path

MAGIC = b"APLOOKUP"
FORMAT = "apertus.lookup/3"
STRINGS = ("doc_id", "url", "snapshot", "step", "reason", "details", "minhash_cluster_id")
BLOCK_ROWS = 256
NULL_LENGTH = 0xFFFFFFFF  # a string's length in a block when it is NULL
NULL_INT = -(1 << 63)  # minhash_cluster_size in a block when it is NULL
SHA_WIDTH, URL_WIDTH = 32, 12
SECTIONS = ("sha256", "url_keys", "block_offsets", "blocks", "block_hashes")
HASH_BLOCK = 16 * 1024  # bytes per hashed piece: a probe hashes a few of them, not the file
REBUILD = "rebuild it (apertus audit index --rebuild), then pin it (apertus audit repin)"


class LookupIntegrityError(ValueError):
    """A lookup file whose bytes differ from those its pinned root names: answer nothing from it."""


def block_hashes(content: bytes | memoryview) -> bytes:
    """The block_hashes section of a file whose bytes before that section are ``content``."""
    view = memoryview(content)
    return b"".join(
        hashlib.sha256(view[i : i + HASH_BLOCK]).digest() for i in range(0, len(view), HASH_BLOCK)
    )


def block_hashes_length(content_length: int) -> int:
    return -(-content_length // HASH_BLOCK) * SHA_WIDTH


def lookup_root(hashes: bytes) -> str:
    """The root a lookup file is pinned by: hex sha256 of its block_hashes section."""
    return hashlib.sha256(hashes).hexdigest()


def write_rooted(folder: Path, content: bytes, suffix: str) -> tuple[str, str]:
    """Write ``content`` and its block hashes to ``folder/<root><suffix>`` (whole or not at all;
    a file of that name already holds the same bytes, so it is kept); return (file name, root).
    A sealed derived file named by its root: the audit index's and the request key index's
    segments."""
    hashes = block_hashes(content)
    root = lookup_root(hashes)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{root}{suffix}"
    if not path.exists():
        tmp = folder / f".{path.name}.{os.getpid()}.tmp"
        tmp.write_bytes(content + hashes)
        os.replace(tmp, path)
    return path.name, root


def header(fields: dict, lengths: dict[str, int]) -> bytes:
    """MAGIC, the header's length, the JSON header: ``fields`` plus format, block size, columns and
    the sections' [offset, length] for sections of ``lengths`` bytes, which follow it in order
    (all but block_hashes, whose length follows from where it starts)."""
    meta = {"format": FORMAT, **fields, "block_rows": BLOCK_ROWS,
            "columns": [*STRINGS, "kept", "minhash_cluster_size"]}  # fmt: skip
    return sectioned_header(MAGIC, meta, SECTIONS, lengths)


def sectioned_header(magic: bytes, meta: dict, sections: tuple[str, ...], lengths: dict[str, int]) -> bytes:
    """``magic``, the header's length, the JSON header: ``meta`` plus ``"sections"``, each section's
    [offset, length] for sections of ``lengths`` bytes following the header in ``sections`` order,
    the last being block_hashes (its length follows from where it starts). Any file read with
    ``HashedFile`` is laid out so: lookups, and the audit index's segments (records.audit_index)."""
    meta = {**meta, "sections": {}}
    # Offsets depend on the header's own length: pad the header to a fixed size first.
    text = json.dumps({**meta, "sections": {k: [0, 0] for k in sections}})
    size = len(magic) + 4 + len(text) + 128  # room for the offsets' and lengths' digits
    position = size
    for name in sections[:-1]:
        meta["sections"][name] = [position, lengths[name]]
        position += lengths[name]
    meta["sections"][sections[-1]] = [position, block_hashes_length(position)]
    text = json.dumps(meta).encode()
    text += b" " * (size - len(magic) - 4 - len(text))
    return magic + struct.pack(">I", len(text)) + text


class HashedFile:
    """A sealed derived file opened for reading: memory-mapped, header parsed, every byte checked
    against ``root`` before use (when given). Use as a context manager. Subclasses name their
    ``MAGIC``, ``FORMAT``, ``KIND`` (in messages), ``REBUILD`` and ``REWRITE`` (the fixes) and check their header's
    own fields in ``_parse``.

    With ``root``, opening costs one sha256 over the block_hashes section (32 bytes per HASH_BLOCK
    of file), each read one sha256 per HASH_BLOCK piece it touches for the first time. ``where``
    names the pin in errors. A difference raises ``LookupIntegrityError``."""

    MAGIC, FORMAT, KIND, REBUILD = MAGIC, FORMAT, "lookup file", REBUILD
    REWRITE = "rebuild it (apertus audit index)"  # the fix for a file of another kind or format

    def __init__(self, path: Path, root: str | None = None, where: str = ""):
        self.path = path
        self._hashes: bytes | None = None
        self._checked: set[int] = set()
        with open(path, "rb") as f:
            self._map = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
        try:
            if root is not None:  # check the bytes before parsing any of them
                self._open_checked(root, where)
            if self._read(0, len(self.MAGIC)) != self.MAGIC:
                raise ValueError(f"{path}: not a {self.KIND} (format {self.FORMAT}); {self.REWRITE}")
            try:
                (size,) = struct.unpack_from(">I", self._map, len(self.MAGIC))
                self.header = json.loads(self._read(len(self.MAGIC) + 4, len(self.MAGIC) + 4 + size))
                if self.header.get("format") != self.FORMAT:
                    raise ValueError(
                        f"format {self.header.get('format')!r}, expected {self.FORMAT!r}; {self.REBUILD}"
                    )
                self._parse(self.header)
                self.sections = {k: tuple(v) for k, v in self.header["sections"].items()}
                end = max(start + length for start, length in self.sections.values())
            except LookupIntegrityError:
                raise
            except (ValueError, KeyError, TypeError, AttributeError, struct.error) as e:
                raise ValueError(
                    f"{path}: not a readable {self.KIND.removesuffix(' file')} header ({e})"
                ) from None
            if end != len(self._map):
                raise ValueError(f"{path}: {len(self._map)} bytes, its header says {end}; rebuild it")
            if root is not None and self.sections.get("block_hashes") != (
                self._content_end,
                len(self._hashes),
            ):
                raise LookupIntegrityError(f"{path}: its header misplaces the block hashes; {self.REBUILD}")
        except Exception:
            self._map.close()
            raise

    def _parse(self, header: dict) -> None:
        """Read the subclass's own header fields (KeyError or ValueError if absent)."""

    def _open_checked(self, root: str, where: str) -> None:
        """Find the block_hashes section from the file's size alone (content of L bytes is followed
        by 32 bytes per started HASH_BLOCK, and only one L fits a size), check it against ``root``."""
        total = len(self._map)
        pieces = -(-total // (HASH_BLOCK + SHA_WIDTH))
        content_end = total - pieces * SHA_WIDTH
        if pieces == 0 or block_hashes_length(content_end) != pieces * SHA_WIDTH:
            raise LookupIntegrityError(
                f"{self.path}: {total} bytes cannot hold its block hashes; {self.REBUILD}"
            )
        hashes = self._map[content_end:]
        if lookup_root(hashes) != root:
            raise LookupIntegrityError(
                f"{self.path}: its block hashes do not match the root pinned in {where or 'the ledger'}; "
                f"the file was changed after it was pinned: {self.REBUILD}"
            )
        self._hashes, self._content_end = hashes, content_end

    def _read(self, start: int, end: int) -> bytes:
        """Bytes [start, end) of the file, each HASH_BLOCK piece checked on first read (when rooted)."""
        if self._hashes is not None:
            if start < 0 or end > self._content_end:
                raise LookupIntegrityError(f"{self.path}: a read outside its hashed content; {self.REBUILD}")
            for piece in range(start // HASH_BLOCK, (end - 1) // HASH_BLOCK + 1):
                if piece in self._checked:
                    continue
                lo = piece * HASH_BLOCK
                digest = hashlib.sha256(self._map[lo : min(lo + HASH_BLOCK, self._content_end)]).digest()
                if digest != self._hashes[piece * SHA_WIDTH : (piece + 1) * SHA_WIDTH]:
                    raise LookupIntegrityError(
                        f"{self.path}: bytes {lo}..{lo + HASH_BLOCK} differ from their pinned hash "
                        f"(piece {piece}); the file was changed after it was pinned: {self.REBUILD}"
                    )
                self._checked.add(piece)
        return self._map[start:end]

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self._map.close()

    def _first(self, section: str, width: int, count: int, key: bytes) -> int:
        """Position of the first entry of ``section`` whose leading bytes are >= key."""
        base, size = self.sections[section][0], len(key)
        low, high = 0, count
        while low < high:
            middle = (low + high) // 2
            at = base + middle * width
            if self._read(at, at + size) < key:
                low = middle + 1
            else:
                high = middle
        return low

    def section(self, name: str) -> bytes:
        """The whole section ``name``, checked."""
        start, length = self.sections[name]
        return self._read(start, start + length) if length else b""

    def section_bytes(self, name: str, start: int, end: int) -> bytes:
        """Bytes [start, end) of section ``name`` (clipped to it), checked."""
        offset, length = self.sections[name]
        end = min(end, length)
        return self._read(offset + start, offset + end) if end > start else b""

    def root(self) -> str:
        """The file's root as it is now (what building it gave, if it is intact)."""
        start, length = self.sections["block_hashes"]
        return lookup_root(self._map[start : start + length])


class LookupFile(HashedFile):
    """A lookup file opened for probes (see HashedFile for what is checked and what it costs)."""

    def _parse(self, header: dict) -> None:
        self.rows, self.block_rows = header["rows"], header["block_rows"]

    def rows_with_sha256(self, digest: bytes) -> list[int]:
        """Row numbers whose sha256 is ``digest`` (32 bytes)."""
        base = self.sections["sha256"][0]
        found, row = [], self._first("sha256", SHA_WIDTH, self.rows, digest)
        while row < self.rows and self._read(base + row * SHA_WIDTH, base + (row + 1) * SHA_WIDTH) == digest:
            found.append(row)
            row += 1
        return found

    def rows_with_url_key(self, key: bytes) -> list[int]:
        """Row numbers whose URL hashes to ``key`` (8 bytes); compare the URL itself to be sure."""
        base, count = self.sections["url_keys"][0], self.header["url_rows"]
        found, i = [], self._first("url_keys", URL_WIDTH, count, key)
        while i < count and self._read(base + i * URL_WIDTH, base + i * URL_WIDTH + 8) == key:
            (row,) = struct.unpack(">I", self._read(base + i * URL_WIDTH + 8, base + (i + 1) * URL_WIDTH))
            found.append(row)
            i += 1
        return found

    def block(self, number: int) -> bytes:
        """Block ``number``, inflated."""
        offsets, blocks = self.sections["block_offsets"][0], self.sections["blocks"][0]
        start, end = struct.unpack(">QQ", self._read(offsets + 8 * number, offsets + 8 * number + 16))
        try:
            return zlib.decompress(self._read(blocks + start, blocks + end))
        except zlib.error as e:
            raise ValueError(f"{self.path}: block {number} is damaged ({e}); rebuild it") from None

    def block_size(self, number: int) -> int:
        return min(self.block_rows, self.rows - number * self.block_rows)

    def row(self, row: int) -> tuple:
        """ANSWER_COLUMNS of row number ``row``."""
        number, j = divmod(row, self.block_rows)
        values = _decode_row(self.block(number), self.block_size(number), j)
        base = self.sections["sha256"][0] + row * SHA_WIDTH
        return (self._read(base, base + SHA_WIDTH).hex(), *values)

    def sha256s(self) -> bytes:
        start, length = self.sections["sha256"]
        return self._read(start, start + length)

    def url_keys(self) -> bytes:
        start, length = self.sections["url_keys"]
        return self._read(start, start + length)


def _decode_row(block: bytes, n: int, j: int) -> tuple:
    """Row ``j`` of an inflated block of ``n`` rows, as ANSWER_COLUMNS without sha256."""
    strings: dict[str, str | None] = {}
    position = len(STRINGS) * 4 * n + n + 8 * n  # where the first column's bytes start
    for c, column in enumerate(STRINGS):
        lengths = struct.unpack_from(f"<{n}I", block, c * 4 * n)
        skip = sum(length for length in lengths[:j] if length != NULL_LENGTH)
        own = lengths[j]
        strings[column] = (
            None if own == NULL_LENGTH else block[position + skip : position + skip + own].decode()
        )
        position += sum(length for length in lengths if length != NULL_LENGTH)
    kept = block[len(STRINGS) * 4 * n + j]
    (size,) = struct.unpack_from("<q", block, len(STRINGS) * 4 * n + n + 8 * j)
    return (
        strings["doc_id"], strings["url"], strings["snapshot"], bool(kept), strings["step"], strings["reason"],
        strings["details"], strings["minhash_cluster_id"], None if size == NULL_INT else size,
    )  # fmt: skip
