"""The lookup file format ("apertus.lookup/2", docs/audit.md): its constants, header and reader.

A file is MAGIC, the JSON header's length (big-endian uint32), the JSON header, then the
sections in SECTIONS order at the offsets the header names. ``provenance.audit.lookup`` builds
the files and answers queries with ``LookupFile``; this module needs only the standard library,
so ``contains`` starts fast.
"""

from __future__ import annotations

import json
import mmap
import struct
import zlib
from pathlib import Path

MAGIC = b"APLOOKUP"
FORMAT = "apertus.lookup/2"
STRINGS = ("doc_id", "url", "snapshot", "step", "reason", "details", "minhash_cluster_id")
BLOCK_ROWS = 256
NULL_LENGTH = 0xFFFFFFFF  # a string's length in a block when it is NULL
NULL_INT = -(1 << 63)  # minhash_cluster_size in a block when it is NULL
SHA_WIDTH, URL_WIDTH = 32, 12
SECTIONS = ("sha256", "url_keys", "block_offsets", "blocks")


def header(fields: dict, lengths: dict[str, int]) -> bytes:
    """MAGIC, the header's length, the JSON header: ``fields`` plus format, block size, columns and
    the sections' [offset, length] for sections of ``lengths`` bytes, which follow it in order."""
    meta = {"format": FORMAT, **fields, "block_rows": BLOCK_ROWS,
            "columns": [*STRINGS, "kept", "minhash_cluster_size"], "sections": {}}  # fmt: skip
    # Offsets depend on the header's own length: pad the header to a fixed size first.
    text = json.dumps({**meta, "sections": {k: [0, v] for k, v in lengths.items()}})
    size = len(MAGIC) + 4 + len(text) + 64  # room for the offsets' digits
    position = size
    for name in SECTIONS:
        meta["sections"][name] = [position, lengths[name]]
        position += lengths[name]
    text = json.dumps(meta).encode()
    text += b" " * (size - len(MAGIC) - 4 - len(text))
    return MAGIC + struct.pack(">I", len(text)) + text


class LookupFile:
    """A lookup file opened for probes: memory-mapped, header parsed. Use as a context manager."""

    def __init__(self, path: Path):
        self.path = path
        with open(path, "rb") as f:
            self._map = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
        try:
            if self._map[: len(MAGIC)] != MAGIC:
                raise ValueError(
                    f"{path}: not a lookup file (format {FORMAT}); rebuild it (apertus audit index)"
                )
            (size,) = struct.unpack_from(">I", self._map, len(MAGIC))
            self.header = json.loads(self._map[len(MAGIC) + 4 : len(MAGIC) + 4 + size])
            if self.header.get("format") != FORMAT:
                raise ValueError(f"{path}: format {self.header.get('format')!r}, expected {FORMAT!r}")
            self.rows, self.block_rows = self.header["rows"], self.header["block_rows"]
            self.sections = {k: tuple(v) for k, v in self.header["sections"].items()}
            end = max(start + length for start, length in self.sections.values())
            if end != len(self._map):
                raise ValueError(f"{path}: {len(self._map)} bytes, its header says {end}; rebuild it")
        except Exception:
            self._map.close()
            raise

    def __enter__(self) -> LookupFile:
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
            if self._map[at : at + size] < key:
                low = middle + 1
            else:
                high = middle
        return low

    def rows_with_sha256(self, digest: bytes) -> list[int]:
        """Row numbers whose sha256 is ``digest`` (32 bytes)."""
        base = self.sections["sha256"][0]
        found, row = [], self._first("sha256", SHA_WIDTH, self.rows, digest)
        while row < self.rows and self._map[base + row * SHA_WIDTH : base + (row + 1) * SHA_WIDTH] == digest:
            found.append(row)
            row += 1
        return found

    def rows_with_url_key(self, key: bytes) -> list[int]:
        """Row numbers whose URL hashes to ``key`` (8 bytes); compare the URL itself to be sure."""
        base, count = self.sections["url_keys"][0], self.header["url_rows"]
        found, i = [], self._first("url_keys", URL_WIDTH, count, key)
        while i < count and self._map[base + i * URL_WIDTH : base + i * URL_WIDTH + 8] == key:
            (row,) = struct.unpack_from(">I", self._map, base + i * URL_WIDTH + 8)
            found.append(row)
            i += 1
        return found

    def block(self, number: int) -> bytes:
        """Block ``number``, inflated."""
        offsets, blocks = self.sections["block_offsets"][0], self.sections["blocks"][0]
        start, end = struct.unpack_from(">QQ", self._map, offsets + 8 * number)
        try:
            return zlib.decompress(self._map[blocks + start : blocks + end])
        except zlib.error as e:
            raise ValueError(f"{self.path}: block {number} is damaged ({e}); rebuild it") from None

    def block_size(self, number: int) -> int:
        return min(self.block_rows, self.rows - number * self.block_rows)

    def row(self, row: int) -> tuple:
        """ANSWER_COLUMNS of row number ``row``."""
        number, j = divmod(row, self.block_rows)
        values = _decode_row(self.block(number), self.block_size(number), j)
        base = self.sections["sha256"][0] + row * SHA_WIDTH
        return (self._map[base : base + SHA_WIDTH].hex(), *values)

    def sha256s(self) -> bytes:
        start, length = self.sections["sha256"]
        return self._map[start : start + length]

    def url_keys(self) -> bytes:
        start, length = self.sections["url_keys"]
        return self._map[start : start + length]


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
