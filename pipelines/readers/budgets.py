"""Byte budgets: how many decompressed bytes one record, one file, one Parquet column chunk and one
shard writer buffer may take. A small compressed file can inflate to gigabytes (a gzip of repeated
lines, a Parquet page of one huge cell); these caps bound memory by the budget, never by the input.

Every refusal is a quarantine row with its reason (``pipelines.reasons``) and a stat, never a crash.
Defaults suit a multilingual web crawl on a machine with a few GB per task; the curation config
overrides them (``budgets:`` in the YAML file, by these field names).
"""

from __future__ import annotations

from dataclasses import dataclass

MiB = 1 << 20
GiB = 1 << 30


@dataclass(frozen=True)
class ByteBudgets:
    """Caps in decompressed bytes. ``max_document_bytes`` (a record) stays in ``CurationConfig``."""

    max_file_bytes: int = 4 * GiB  # decompressed bytes read from one file; the rest is quarantined
    max_column_chunk_bytes: int = 64 * MiB  # one Parquet column chunk (metadata), checked before decoding
    max_shard_buffer_bytes: int = 64 * MiB  # the shard writer flushes its buffer when it holds this much

    def __post_init__(self) -> None:
        for name in ("max_file_bytes", "max_column_chunk_bytes", "max_shard_buffer_bytes"):
            value = getattr(self, name)
            if not isinstance(value, int) or value <= 0:
                raise ValueError(f"budgets.{name} = {value!r}: use a positive number of bytes")


class FileBudgetExceeded(Exception):
    """Raised by ``CountingReader`` when a file's decompressed bytes pass ``max_file_bytes``."""

    def __init__(self, num_bytes: int, limit: int):
        super().__init__(f"more than max_file_bytes={limit} decompressed bytes read ({num_bytes})")
        self.num_bytes = num_bytes
        self.limit = limit


class CountingReader:
    """A binary stream that counts the (decompressed) bytes read through it and raises
    ``FileBudgetExceeded`` once they pass ``limit``; a read never returns more than the budget allows
    plus one byte, so the overrun is seen without inflating it."""

    def __init__(self, stream, limit: int):
        self.stream = stream
        self.limit = limit
        self.num_bytes = 0

    def _count(self, data: bytes) -> bytes:
        self.num_bytes += len(data)
        if self.num_bytes > self.limit:
            raise FileBudgetExceeded(self.num_bytes, self.limit)
        return data

    def _cap(self, size: int) -> int:
        left = self.limit - self.num_bytes + 1
        return left if size is None or size < 0 else min(size, left)

    def read(self, size: int = -1) -> bytes:
        return self._count(self.stream.read(self._cap(size)))

    def readline(self, size: int = -1) -> bytes:
        return self._count(self.stream.readline(self._cap(size)))

    def readable(self) -> bool:
        return True


DEFAULT_BUDGETS = ByteBudgets()
