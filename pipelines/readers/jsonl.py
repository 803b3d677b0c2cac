"""JSON lines, plain, gzip or zstd (decided by the first bytes, not the name), one record per line.

Lines are read one at a time with a size cap, so neither a 1 GB file nor a 1 GB line is ever held
in memory; a line over the cap is skipped in chunks and reported with its first bytes only. The
decompressed bytes of the whole file are capped too (``max_file_bytes``): past the cap the rest of
the file is quarantined as one ``file_too_large`` row instead of being inflated.
"""

from __future__ import annotations

import json
import zlib
from collections.abc import Iterator
from typing import BinaryIO

from pipelines import reasons
from pipelines.readers.base import EXCERPT_CHARS, Bad, Record
from pipelines.readers.budgets import CountingReader, FileBudgetExceeded, GiB
from pipelines.readers.compression import decompressed

_SKIP_CHUNK = 1 << 20


def _lines(stream: BinaryIO, max_line_bytes: int) -> Iterator[tuple[bytes, int, bool]]:
    """(line or its head, size in bytes, whole) for each line; a line longer than
    ``max_line_bytes`` comes back as its first bytes with ``whole`` False."""
    while line := stream.readline(max_line_bytes + 1):
        if len(line) <= max_line_bytes or line.endswith(b"\n"):
            yield line, len(line), True
            continue
        head, size = line[: EXCERPT_CHARS * 4], len(line)
        del line
        while chunk := stream.readline(_SKIP_CHUNK):
            size += len(chunk)
            if chunk.endswith(b"\n"):
                break
        yield head, size, False


def parse_line(line: bytes, offset: int) -> Record | Bad:
    """One JSON line as a record, or why it is not one (invalid UTF-8 is never silently replaced)."""
    try:
        text = line.decode("utf-8")
    except UnicodeDecodeError as error:
        return Bad(offset, reasons.BAD_UTF8, str(error), line, len(line))
    if offset == 0:
        text = text.removeprefix("\ufeff")
    try:
        fields = json.loads(text)
    except (json.JSONDecodeError, RecursionError) as error:  # RecursionError: nesting too deep
        return Bad(offset, reasons.BAD_JSON, f"{type(error).__name__}: {error}", line, len(line))
    if not isinstance(fields, dict):
        return Bad(
            offset, reasons.BAD_JSON, f"a JSON {type(fields).__name__}, not an object", line, len(line)
        )
    return Record(offset, fields, len(line), line)


def read_jsonl(
    stream: BinaryIO, *, max_document_bytes: int, max_file_bytes: int = 4 * GiB
) -> Iterator[Record | Bad]:
    """Every line of ``stream`` as a ``Record`` (offset: 0-based line number) or a ``Bad``.

    Blank lines are skipped. A gzip or zstd stream cut short yields every complete line before the
    cut, then ``truncated_file`` at the line it reached; a file without records yields ``empty_file``;
    past ``max_file_bytes`` decompressed bytes, ``file_too_large`` at the line reached (the rest of the
    file, unread). Memory holds one line of at most ``max_document_bytes``.
    """
    compression, source = decompressed(stream)
    source = CountingReader(source, max_file_bytes)
    offset, num_records = 0, 0
    try:
        for line, size, whole in _lines(source, max_document_bytes):
            if whole and not line.strip():  # a blank line is no record, but it is a line
                offset += 1
                continue
            if whole:
                yield parse_line(line, offset)
            else:
                detail = f"record of {size} bytes exceeds max_document_bytes={max_document_bytes}"
                yield Bad(offset, reasons.DOCUMENT_TOO_LARGE, detail, line, size)
            num_records += 1
            offset += 1
    except FileBudgetExceeded as error:
        detail = f"{error}; lines from {offset} on are not read ({compression or 'uncompressed'} file)"
        yield Bad(offset, reasons.FILE_TOO_LARGE, detail, raw_bytes=error.num_bytes)
        return
    except EOFError as error:
        yield Bad(
            offset, reasons.TRUNCATED_FILE, f"compressed stream ends early after {offset} lines: {error}"
        )
        return
    except (OSError, zlib.error) as error:  # gzip.BadGzipFile is an OSError
        yield Bad(offset if offset else None, reasons.UNREADABLE_FILE, f"{type(error).__name__}: {error}")
        return
    if num_records == 0:
        yield Bad(None, reasons.EMPTY_FILE, f"no records in {offset} lines", raw_bytes=0)
