"""Compression decided by a file's first bytes, never by its name: a ``.jsonl.gz`` that is plain text
is read as plain text, and a ``.jsonl`` that is gzip is decompressed."""

from __future__ import annotations

import gzip
import io
from typing import BinaryIO

import pyarrow as pa

GZIP_MAGIC = b"\x1f\x8b"
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"


class _Prefixed(io.RawIOBase):
    """``head`` then the rest of ``stream``: puts back the bytes read to sniff a non-seekable stream."""

    def __init__(self, head: bytes, stream: BinaryIO):
        self.head, self.stream = head, stream

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        if self.head:
            n = min(len(buffer), len(self.head))
            buffer[:n], self.head = self.head[:n], self.head[n:]
            return n
        data = self.stream.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)


def sniff_compression(stream: BinaryIO) -> tuple[str | None, BinaryIO]:
    """(``"gzip"``, ``"zstd"`` or None, a stream positioned at the start) from the first bytes."""
    head = stream.read(4)
    if stream.seekable():
        stream.seek(0)
    else:
        stream = io.BufferedReader(_Prefixed(head, stream))
    if head.startswith(GZIP_MAGIC):
        return "gzip", stream
    if head.startswith(ZSTD_MAGIC):
        return "zstd", stream
    return None, stream


def decompressed(stream: BinaryIO) -> tuple[str | None, BinaryIO]:
    """(compression, a stream of the decompressed bytes): gzip (concatenated members too) and zstd
    by their magic bytes, anything else as it is. Errors surface on read: ``EOFError`` for a gzip cut
    short, ``OSError`` (``gzip.BadGzipFile``, Arrow's zstd errors) for bad bytes."""
    compression, stream = sniff_compression(stream)
    if compression == "gzip":
        return compression, gzip.GzipFile(fileobj=stream, mode="rb")
    if compression == "zstd":
        raw = pa.CompressedInputStream(pa.PythonFile(stream, mode="r"), "zstd")
        return compression, io.BufferedReader(raw)
    return compression, stream
