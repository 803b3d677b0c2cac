"""Document shards: the on-disk form of every curated dataset version.

A shard is a Parquet file with one row per document and a fixed schema (``SHARD_SCHEMA``): the
text, the stable id, and one column per key of ``pipelines.fields``. Keys a block adds beyond those
travel in ``extra`` (a JSON object string). A fixed schema keeps every shard readable by DuckDB
and Polars as one table, whatever a given task happened to see first.
"""

from __future__ import annotations

import json
import sys
from collections import Counter
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from datatrove.data import Document, DocumentsPipeline
from datatrove.io import DataFolderLike
from datatrove.pipeline.readers.base import BaseDiskReader
from datatrove.pipeline.writers.parquet import ParquetWriter
from datatrove.utils.typeshelper import StatHints

from pipelines import fields
from pipelines.readers.budgets import DEFAULT_BUDGETS

# (metadata key, arrow type), in column order after "id" and "text".
METADATA_COLUMNS: tuple[tuple[str, pa.DataType], ...] = (
    (fields.SNAPSHOT, pa.string()),
    (fields.SOURCE_ID, pa.string()),
    (fields.SOURCE_FILE, pa.string()),
    (fields.SOURCE_OFFSET, pa.int64()),
    (fields.URL, pa.string()),
    (fields.SHA256, pa.string()),
    (fields.LANGUAGE, pa.string()),
    (fields.LANGUAGE_SCORE, pa.float64()),
    (fields.SCRIPT, pa.string()),
    (fields.QUALITY_SCORE, pa.float64()),
    (fields.QUALITY_PERCENTILE, pa.float64()),
    (fields.MINHASH_CLUSTER_ID, pa.string()),
    (fields.MINHASH_CLUSTER_SIZE, pa.int64()),
    (fields.PII_REDACTIONS, pa.int64()),
    (fields.FILTER_REASON, pa.string()),
    (fields.FILTER_DETAILS, pa.string()),
)
_COLUMN_NAMES = {name for name, _ in METADATA_COLUMNS}

SHARD_SCHEMA = pa.schema(
    [pa.field("id", pa.string(), nullable=False), pa.field("text", pa.string(), nullable=False)]
    + [pa.field(name, dtype) for name, dtype in METADATA_COLUMNS]
    + [pa.field("extra", pa.string())]
)


def document_to_row(document: Document) -> dict:
    """Flatten a document into a row of ``SHARD_SCHEMA``; unknown metadata goes to ``extra``."""
    metadata = document.metadata
    row = {"id": document.id, "text": document.text}
    for name, _ in METADATA_COLUMNS:
        value = metadata.get(name)
        if name == fields.FILTER_DETAILS and isinstance(value, dict):
            value = json.dumps(value, sort_keys=True, ensure_ascii=False)
        row[name] = value
    extra = {k: v for k, v in metadata.items() if k not in _COLUMN_NAMES}
    row["extra"] = json.dumps(extra, sort_keys=True, ensure_ascii=False, default=str) if extra else None
    return row


def row_to_document(row: dict) -> Document:
    """The inverse of ``document_to_row``: null columns are left out of the metadata."""
    metadata = {name: row[name] for name, _ in METADATA_COLUMNS if row.get(name) is not None}
    if row.get("extra"):
        metadata.update(json.loads(row["extra"]))
    return Document(text=row["text"], id=row["id"], metadata=metadata)


def _writer_adapter(_writer, document: Document) -> dict:
    return document_to_row(document)


class DocumentShardWriter(ParquetWriter):
    """Writes documents as shards of ``SHARD_SCHEMA``, one file per task: ``{rank:05d}.parquet``.

    Compression and page layout are fixed so that the same documents in the same order give
    byte-identical files, which is what makes a dataset version's id reproducible. The buffer is
    written as a row group every 1,000 documents or as soon as its strings take ``max_buffer_bytes``
    of memory, whichever comes first: memory is bounded by bytes, not by a count of documents of any
    size (one document over the budget is one row group).
    """

    name = "📒 Apertus shard"

    def __init__(
        self,
        output_folder: DataFolderLike | Path,
        output_filename: str = "${rank}.parquet",
        *,
        max_buffer_bytes: int = DEFAULT_BUDGETS.max_shard_buffer_bytes,
    ):
        super().__init__(
            str(output_folder) if isinstance(output_folder, Path) else output_folder,
            output_filename=output_filename,
            compression="zstd",
            adapter=_writer_adapter,
            batch_size=1000,
            max_file_size=-1,
            schema=SHARD_SCHEMA,
            use_content_defined_chunking=False,
            write_page_index=False,
        )
        self.max_buffer_bytes = max_buffer_bytes
        self._buffered_bytes: Counter[str] = Counter()
        self._row_slices: dict[str, list[pa.RecordBatch]] = {}  # write_rows' buffer, per file

    def _write(self, document: dict, file_handler, filename: str) -> None:
        super()._write(document, file_handler, filename)  # max_file_size=-1: ``filename`` is the key
        if not self._batches.get(filename):  # written just now (the count was reached)
            return
        # sys.getsizeof is O(1) and counts what the buffer really holds (1, 2 or 4 bytes a character).
        self._buffered_bytes[filename] += sum(
            sys.getsizeof(v) for v in document.values() if isinstance(v, str)
        )
        if self._buffered_bytes[filename] >= self.max_buffer_bytes:
            self._write_batch(filename)

    def _write_batch(self, filename: str) -> None:
        self._buffered_bytes.pop(filename, None)
        rows = self._row_slices.pop(filename, None)
        if rows:  # from write_rows: one contiguous row group, as from_pylist of the same rows gives
            self._writers[filename].write_batch(pa.Table.from_batches(rows).combine_chunks().to_batches()[0])
        super()._write_batch(filename)

    def write_rows(self, rows: pa.RecordBatch, rank: int = 0) -> None:
        """Append ``rows`` (of ``SHARD_SCHEMA``) as ``write`` would append, one by one, the documents
        they are the ``document_to_row`` of: the same file, the same row groups (every 1,000 rows
        or at ``max_buffer_bytes``), the same bytes, without a Python object per row. The output
        name may use ``${rank}`` only; do not mix with ``write`` on one file.

        Cost: O(rows) in Arrow. The byte budget is counted per row (a Python pass over the strings
        of the buffered rows) only when an upper bound (4 bytes a character) could reach it."""
        filename = self.output_filename.substitute({"rank": str(rank).zfill(5)})
        if self._batches.get(filename):
            raise RuntimeError(
                f"DocumentShardWriter: {filename} has documents from write(); use one or the other"
            )
        if not rows.num_rows:
            return
        self.stat_update(self.output_filename.substitute({"rank": "XXXXX"}), value=rows.num_rows)
        self.stat_update(StatHints.total, value=rows.num_rows)
        if filename not in self._writers:
            self._writers[filename] = pq.ParquetWriter(
                self._get_output_file_with_retry(filename), schema=self.schema, compression=self.compression,
                use_content_defined_chunking=self.use_content_defined_chunking,
                write_page_index=self.write_page_index,
            )  # fmt: skip
        pending = self._row_slices.setdefault(filename, [])
        sizes = None  # None while no row can reach the budget: then only the count cuts
        if sum(map(_string_bytes_bound, pending)) + _string_bytes_bound(rows) >= self.max_buffer_bytes:
            sizes = _string_sizes(rows)
            self._buffered_bytes[filename] = sum(sum(_string_sizes(r)) for r in pending)
        start = 0
        while start < rows.num_rows:
            room = self.batch_size - sum(r.num_rows for r in pending)
            end = min(rows.num_rows, start + room)
            if sizes is not None:  # _write adds a row's bytes unless its count cut the batch
                buffered = self._buffered_bytes[filename]
                for i in range(start, end - (end - start == room)):
                    buffered += sizes[i]
                    if buffered >= self.max_buffer_bytes:
                        end = i + 1
                        break
                self._buffered_bytes[filename] = buffered
            pending.append(rows.slice(start, end - start))
            if end - start == room or self._buffered_bytes[filename] >= self.max_buffer_bytes:
                self._write_batch(filename)
                pending = self._row_slices.setdefault(filename, [])
            start = end


def _string_columns(rows: pa.RecordBatch) -> list[pa.Array]:
    return [rows.column(i) for i, f in enumerate(rows.schema) if pa.types.is_string(f.type)]


def _string_sizes(rows: pa.RecordBatch) -> list[int]:
    """Per row, what ``DocumentShardWriter._write`` counts: ``sys.getsizeof`` of each string value."""
    columns = [c.to_pylist() for c in _string_columns(rows)]
    return [sum(sys.getsizeof(v) for v in values if v is not None) for values in zip(*columns, strict=True)]


def _string_bytes_bound(rows: pa.RecordBatch) -> int:
    """At least ``sum(_string_sizes(rows))``: CPython stores a string in at most 4 bytes a
    character (a character is at least one UTF-8 byte) plus a header under 100 bytes."""
    return sum((pc.sum(pc.binary_length(c)).as_py() or 0) * 4 + 100 * len(c) for c in _string_columns(rows))


class DocumentShardReader(BaseDiskReader):
    """Reads shards written by ``DocumentShardWriter`` back into documents, metadata intact."""

    name = "📒 Apertus shard"

    def __init__(
        self, data_folder: DataFolderLike | Path, glob_pattern: str = "*.parquet", batch_size: int = 1000
    ):
        super().__init__(
            str(data_folder) if isinstance(data_folder, Path) else data_folder,
            glob_pattern=glob_pattern,
            recursive=False,
            add_file_path=False,
        )
        self.batch_size = batch_size

    def read_file(self, filepath: str) -> DocumentsPipeline:
        with self.data_folder.open(filepath, "rb") as f, pq.ParquetFile(f) as parquet_file:
            for batch in parquet_file.iter_batches(batch_size=self.batch_size):
                for row in batch.to_pylist():
                    with self.track_time():
                        document = row_to_document(row)
                    yield document


def read_rows(path, columns: list[str] | None = None) -> list[dict]:
    """All rows of one shard as dicts (for tests and small inspections, not for whole datasets)."""
    return pq.read_table(path, columns=columns).to_pylist()
