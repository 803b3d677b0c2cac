"""Parquet tables, one record per row, read a record batch at a time."""

from __future__ import annotations

from collections.abc import Iterator
from typing import BinaryIO

import pyarrow as pa
import pyarrow.parquet as pq

from pipelines import reasons
from pipelines.readers.base import Bad, Record


def read_parquet(stream: BinaryIO, *, text_key: str, batch_size: int = 1024) -> Iterator[Record | Bad]:
    """Every row of the table in ``stream`` as a ``Record`` (offset: 0-based row), or a ``Bad`` for
    the whole file: ``unreadable_file`` (no valid footer, a corrupt page), ``no_text_column`` or
    ``empty_file``. Memory holds one record batch (and its row group) at a time.
    """
    try:
        table = pq.ParquetFile(stream)
    except (pa.ArrowException, OSError, ValueError) as error:
        yield Bad(None, reasons.UNREADABLE_FILE, f"{type(error).__name__}: {error}")
        return
    with table:
        columns = table.schema_arrow.names
        if text_key not in columns:
            detail = f"no column {text_key!r}; columns {', '.join(columns)}"
            yield Bad(None, reasons.NO_TEXT_COLUMN, detail, raw_bytes=table.metadata.serialized_size)
            return
        if table.metadata.num_rows == 0:
            yield Bad(None, reasons.EMPTY_FILE, "0 rows", raw_bytes=0)
            return
        row = 0
        try:
            for batch in table.iter_batches(batch_size=batch_size):
                for fields in batch.to_pylist():
                    yield _record(row, fields, text_key)
                    row += 1
        except (pa.ArrowException, OSError) as error:
            yield Bad(
                row, reasons.UNREADABLE_FILE, f"rows from {row} unreadable: {type(error).__name__}: {error}"
            )


def _record(row: int, fields: dict, text_key: str) -> Record | Bad:
    text = fields.get(text_key)
    if isinstance(text, bytes):  # a binary column: its bytes must be UTF-8, as in JSONL
        try:
            fields[text_key] = text.decode("utf-8")
        except UnicodeDecodeError as error:
            return Bad(row, reasons.BAD_UTF8, str(error), text, len(text))
    return Record(row, fields, raw_bytes=None)
