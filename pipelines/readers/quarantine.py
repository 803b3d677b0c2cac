"""Quarantine: every input record or file that could not become a document, kept with its reason.

One Parquet file per task, ``{rank:05d}.parquet``, schema ``QUARANTINE_SCHEMA``. Rows are written in
small row groups as they come, so a task that dies still leaves what it quarantined before.
"""

from __future__ import annotations

import os

import pyarrow as pa
import pyarrow.parquet as pq
from datatrove.io import DataFolderLike, get_datafolder

from pipelines.readers.base import Bad, excerpt

QUARANTINE_SCHEMA = pa.schema([
    pa.field("snapshot", pa.string(), nullable=False),
    pa.field("file", pa.string(), nullable=False),  # relative to the snapshot folder
    pa.field("offset", pa.int64()),  # line, row or byte offset; null for a whole-file problem
    pa.field("reason", pa.string(), nullable=False),  # one of pipelines.reasons
    pa.field("detail", pa.string()),  # the error message
    pa.field("excerpt", pa.string()),  # first ~500 characters of the raw record
    pa.field("raw_bytes", pa.int64()),  # size of the raw record (or file) in bytes
])  # fmt: skip


class QuarantineWriter:
    """Streams quarantine rows of one task to ``folder/{rank:05d}.parquet``.

    The file always exists after ``close()`` (empty when nothing was bad), so a finished task can be
    told from a missing one. Use as a context manager, or call ``close()``.
    """

    def __init__(self, folder: DataFolderLike | os.PathLike, rank: int, *, flush_every: int = 256):
        self.folder = as_datafolder(folder)
        self.path = f"{rank:05d}.parquet"
        self.flush_every = flush_every
        self._rows: list[dict] = []
        self._file = self.folder.open(self.path, "wb")
        self._writer = pq.ParquetWriter(self._file, QUARANTINE_SCHEMA, compression="zstd")
        self.num_rows = 0

    def write(self, snapshot: str, file: str, bad: Bad) -> None:
        """Append one row; rows reach the file every ``flush_every`` rows and on ``close()``."""
        self._rows.append({
            "snapshot": snapshot, "file": file, "offset": bad.offset, "reason": bad.reason,
            "detail": bad.detail, "excerpt": excerpt(bad.raw), "raw_bytes": bad.raw_bytes,
        })  # fmt: skip
        self.num_rows += 1
        if len(self._rows) >= self.flush_every:
            self._flush()

    def _flush(self) -> None:
        if self._rows:
            self._writer.write_table(pa.Table.from_pylist(self._rows, schema=QUARANTINE_SCHEMA))
            self._rows = []

    def close(self) -> None:
        if self._writer is None:
            return
        self._flush()
        self._writer.close()
        self._file.close()
        self._writer = None

    def __enter__(self) -> QuarantineWriter:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def as_datafolder(folder: DataFolderLike | os.PathLike):
    """datatrove's ``get_datafolder``, also taking a ``pathlib.Path``."""
    return get_datafolder(os.fspath(folder) if isinstance(folder, os.PathLike) else folder)


def read_quarantine(folder: DataFolderLike | os.PathLike) -> list[dict]:
    """Every quarantine row under ``folder`` (all tasks' files), ordered by file, offset and reason."""
    data_folder = as_datafolder(folder)
    rows = []
    for path in data_folder.list_files(glob_pattern="*.parquet", recursive=False):
        with data_folder.open(path, "rb") as f:
            rows.extend(pq.read_table(f, schema=QUARANTINE_SCHEMA).to_pylist())
    return sorted(
        rows, key=lambda r: (r["snapshot"], r["file"], r["offset"] is not None, r["offset"] or 0, r["reason"])
    )
