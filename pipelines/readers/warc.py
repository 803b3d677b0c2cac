"""WARC files (``.warc``, ``.warc.gz``): each HTML response becomes a record of its main text.

Offsets are the byte offset of the WARC record (of its gzip member when compressed), as
``warcio``'s ``ArchiveIterator.get_record_offset`` gives them. Non-page records (warcinfo, request,
metadata) and responses that are neither HTML nor plain text are not documents and are passed over.
"""

from __future__ import annotations

import re
import zlib
from collections.abc import Iterator
from typing import BinaryIO

from warcio.archiveiterator import ArchiveIterator
from warcio.exceptions import ArchiveLoadFailed
from warcio.limitreader import LimitReader

from pipelines import reasons
from pipelines.readers.base import Bad, Record
from pipelines.readers.budgets import GiB
from pipelines.readers.html import extract_main_text

_HTML_TYPES = ("text/html", "application/xhtml+xml")
_CHARSET = re.compile(r"charset\s*=\s*[\"']?([\w.:-]+)", re.I)
_HTML_LANG = re.compile(rb"<html[^>]*?\slang\s*=\s*[\"']?([A-Za-z]{2,3}(?:[-_][A-Za-z0-9]+)*)", re.I)
_CHUNK = 1 << 20


def _read_up_to(stream: BinaryIO, limit: int) -> bytes:
    """Up to ``limit`` bytes; stream reads may come back short before the end."""
    parts, size = [], 0
    while size < limit and (chunk := stream.read(min(_CHUNK, limit - size))):
        parts.append(chunk)
        size += len(chunk)
    return b"".join(parts)


def _page(record, payload: bytes, offset: int, content_type: str) -> Record | Bad:
    url = record.rec_headers.get_header("WARC-Target-URI")
    match = _CHARSET.search(content_type)
    charset = match.group(1).lower() if match else "utf-8"
    try:
        page = payload.decode(charset)
    except (UnicodeDecodeError, LookupError) as error:
        return Bad(
            offset, reasons.BAD_UTF8, f"payload is not valid {charset}: {error}", payload, len(payload)
        )
    if content_type.startswith("text/plain"):
        text = page
    else:
        text = extract_main_text(page, url)
        if not text.strip():
            detail = f"trafilatura extracted no main text from {len(payload)} bytes of HTML"
            return Bad(offset, reasons.HTML_EXTRACTION_FAILED, detail, payload, len(payload))
    language = _HTML_LANG.search(payload[:4096])
    fields = {
        "id": record.rec_headers.get_header("WARC-Record-ID"), "url": url, "text": text,
        "date": record.rec_headers.get_header("WARC-Date"),
        "language": language.group(1).decode("ascii") if language else None,
    }  # fmt: skip
    return Record(offset, fields, len(payload), payload)


MAX_HEADER_LINE_BYTES = 1 << 20  # a WARC or HTTP header line; real ones are a few KB


class HeaderTooLarge(ValueError):
    """A header line, or a record's header lines together, over their budget."""


class _CappedHeaders:
    """Bounds what warcio reads line by line (WARC and HTTP headers, the blank lines between records):
    one line to ``MAX_HEADER_LINE_BYTES``, a record's lines together to ``max_record_bytes``. warcio's
    own ``readline`` reads to the newline however far it is, so a gzip of one long header line would
    inflate whole."""

    def __init__(self, reader, max_record_bytes: int):
        self.readline_uncapped = reader.readline
        self.max_record_bytes = max_record_bytes
        self.num_bytes = 0  # since the last record was handed out
        reader.readline = self.readline

    def readline(self, length=None) -> bytes:
        cap = MAX_HEADER_LINE_BYTES + 1
        line = self.readline_uncapped(cap if not length or length < 0 else min(length, cap))
        if len(line) > MAX_HEADER_LINE_BYTES:
            raise HeaderTooLarge(f"a header line longer than {MAX_HEADER_LINE_BYTES} bytes")
        self.num_bytes += len(line)
        if self.num_bytes > self.max_record_bytes:
            raise HeaderTooLarge(f"header lines of one record over {self.max_record_bytes} bytes")
        return line


def read_warc(
    stream: BinaryIO, *, max_document_bytes: int, max_file_bytes: int = 4 * GiB
) -> Iterator[Record | Bad]:
    """Every HTML (or plain-text) response of the WARC in ``stream`` as a ``Record`` whose text is the
    page's main text, or a ``Bad``: ``truncated_file`` (a record shorter than its Content-Length, or
    the archive cut inside headers), ``document_too_large`` (payload over ``max_document_bytes``,
    never read whole), ``bad_utf8``, ``html_extraction_failed``, ``unreadable_file`` (also a header
    line over ``MAX_HEADER_LINE_BYTES``, or a record's header lines over ``max_document_bytes``,
    never read whole), ``empty_file``,
    ``file_too_large`` (the records from the one whose Content-Length takes the file past
    ``max_file_bytes``, not read).
    """
    iterator = ArchiveIterator(stream)
    headers_read = _CappedHeaders(iterator.reader, max_document_bytes)
    num_records, num_bytes = 0, 0
    try:
        for record in iterator:
            headers_read.num_bytes = 0
            num_records += 1
            num_bytes += max(record.length or 0, 0)
            if num_bytes > max_file_bytes:
                detail = (
                    f"Content-Lengths add up to {num_bytes} bytes, over max_file_bytes={max_file_bytes}; "
                    "this record and the rest of the file are not read"
                )
                yield Bad(iterator.get_record_offset(), reasons.FILE_TOO_LARGE, detail, raw_bytes=num_bytes)
                return
            if record.rec_type not in ("response", "resource"):
                continue
            headers = record.http_headers or record.rec_headers
            content_type = (headers.get_header("Content-Type") or "").lower()
            content = record.content_stream()
            payload = _read_up_to(content, max_document_bytes + 1)
            size = len(payload)
            if size > max_document_bytes:
                payload = payload[:2048]  # only an excerpt is kept of a payload too large to use
                while chunk := content.read(_CHUNK):
                    size += len(chunk)
            cut = isinstance(record.raw_stream, LimitReader) and record.raw_stream.limit > 0
            offset = iterator.get_record_offset()
            if cut:
                detail = (
                    f"record ends {record.raw_stream.limit} bytes before its Content-Length {record.length}"
                )
                yield Bad(offset, reasons.TRUNCATED_FILE, detail, payload, size)
            elif size > max_document_bytes:
                detail = f"payload of {size} bytes exceeds max_document_bytes={max_document_bytes}"
                yield Bad(offset, reasons.DOCUMENT_TOO_LARGE, detail, payload, size)
            elif content_type.startswith(_HTML_TYPES + ("text/plain",)):
                yield _page(record, payload, offset, content_type)
    except (ArchiveLoadFailed, EOFError, zlib.error, OSError, ValueError) as error:
        reason = reasons.TRUNCATED_FILE if isinstance(error, EOFError) else reasons.UNREADABLE_FILE
        yield Bad(iterator.offset if num_records else None, reason, f"{type(error).__name__}: {error}")
        return
    if num_records == 0:
        yield Bad(None, reasons.EMPTY_FILE, "no WARC records", raw_bytes=0)
