"""What a format reader yields: a ``Record`` that may become a document, or a ``Bad`` that goes to
quarantine. Format readers (``jsonl``, ``parquet``, ``warc``) only parse; ``SnapshotReader`` turns
records into documents and bad items into quarantine rows."""

from __future__ import annotations

from dataclasses import dataclass

EXCERPT_CHARS = 500


@dataclass
class Record:
    """One parsed input record. ``offset`` is its line (JSONL), row (Parquet) or byte offset (WARC);
    ``fields`` the record as a dict (``raw_bytes`` its size in the file, for quarantine)."""

    offset: int
    fields: dict
    raw_bytes: int | None  # None: the reader does not know it (Parquet rows)
    raw: bytes | str | None = None  # what an excerpt is cut from if the record is rejected later


@dataclass
class Bad:
    """A record (``offset`` set) or a whole file (``offset`` None) that cannot become a document."""

    offset: int | None
    reason: str  # one of pipelines.reasons
    detail: str
    raw: bytes | str | None = None
    raw_bytes: int | None = None


def excerpt(raw: bytes | str | None, limit: int = EXCERPT_CHARS) -> str | None:
    """The first ``limit`` characters of ``raw``; bytes are decoded with ``errors='replace'``, so an
    excerpt of bad bytes still shows where they are."""
    if raw is None:
        return None
    if isinstance(raw, bytes | bytearray | memoryview):
        # 4 bytes per character at most: decode only what the excerpt can show.
        return bytes(raw[: limit * 4]).decode("utf-8", errors="replace")[:limit]
    return raw[:limit]
