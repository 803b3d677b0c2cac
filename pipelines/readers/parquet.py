"""Parquet tables, one record per row, read a record batch at a time."""

from __future__ import annotations

from collections.abc import Iterator
from typing import BinaryIO

import pyarrow as pa
import pyarrow.parquet as pq

from pipelines import reasons
from pipelines.readers.base import Bad, Record
from pipelines.readers.budgets import GiB, MiB


def _oversized_chunk(row_group, max_column_chunk_bytes: int) -> str | None:
    """Why ``row_group`` (its metadata) must not be decoded, or None: its largest column chunk."""
    sizes = [
        (row_group.column(j).total_uncompressed_size, row_group.column(j).path_in_schema)
        for j in range(row_group.num_columns)
    ]
    size, column = max(sizes, default=(0, None))
    if size > max_column_chunk_bytes:
        return (
            f"column {column!r} chunk of {size} bytes exceeds max_column_chunk_bytes={max_column_chunk_bytes}"
        )
    return None


def read_parquet(
    stream: BinaryIO,
    *,
    text_key: str,
    batch_size: int = 1024,
    max_column_chunk_bytes: int = 64 * MiB,
    max_file_bytes: int = 4 * GiB,
) -> Iterator[Record | Bad]:
    """Every row of the table in ``stream`` as a ``Record`` (offset: 0-based row), or a ``Bad``:
    ``unreadable_file`` (no valid footer, a corrupt page; the rows from there on), ``no_text_column``
    or ``empty_file`` for the whole file; ``column_chunk_too_large`` for a row group one of whose
    column chunks holds more than ``max_column_chunk_bytes`` uncompressed (one row at its first row,
    the detail names the rows; never decoded); ``file_too_large`` for the rest of a file past
    ``max_file_bytes`` uncompressed. Sizes come from the footer, before any page is decoded; memory
    holds one record batch of one row group at a time.
    """
    try:
        table = pq.ParquetFile(stream)
    except (pa.ArrowException, OSError, ValueError) as error:
        yield Bad(None, reasons.UNREADABLE_FILE, f"{type(error).__name__}: {error}")
        return
    with table:
        metadata = table.metadata
        columns = table.schema_arrow.names
        if text_key not in columns:
            detail = f"no column {text_key!r}; columns {', '.join(columns)}"
            yield Bad(None, reasons.NO_TEXT_COLUMN, detail, raw_bytes=metadata.serialized_size)
            return
        if metadata.num_rows == 0:
            yield Bad(None, reasons.EMPTY_FILE, "0 rows", raw_bytes=0)
            return
        row, num_bytes = 0, 0
        for i in range(metadata.num_row_groups):
            group = metadata.row_group(i)
            first, last = row, row + group.num_rows - 1
            num_bytes += group.total_byte_size
            if num_bytes > max_file_bytes:
                detail = f"{num_bytes} uncompressed bytes exceed max_file_bytes={max_file_bytes}; rows from {first} on are not read"
                yield Bad(first, reasons.FILE_TOO_LARGE, detail, raw_bytes=num_bytes)
                return
            if (why := _oversized_chunk(group, max_column_chunk_bytes)) is not None:
                detail = f"row group {i}, rows {first} to {last} ({group.num_rows} rows) not read: {why}"
                yield Bad(first, reasons.COLUMN_CHUNK_TOO_LARGE, detail, raw_bytes=group.total_byte_size)
                row = last + 1
                continue
            try:
                for batch in table.iter_batches(batch_size=batch_size, row_groups=[i]):
                    for fields in batch.to_pylist():
                        yield _record(row, fields, text_key)
                        row += 1
            except (pa.ArrowException, OSError) as error:
                yield Bad(
                    row,
                    reasons.UNREADABLE_FILE,
                    f"rows from {row} unreadable: {type(error).__name__}: {error}",
                )
                return
            row = last + 1


def _record(row: int, fields: dict, text_key: str) -> Record | Bad:
    text = fields.get(text_key)
    if isinstance(text, bytes):  # a binary column: its bytes must be UTF-8, as in JSONL
        try:
            fields[text_key] = text.decode("utf-8")
        except UnicodeDecodeError as error:
            return Bad(row, reasons.BAD_UTF8, str(error), text, len(text))
    return Record(row, fields, raw_bytes=None)
