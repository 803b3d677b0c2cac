"""``SnapshotReader``: every file of a snapshot folder as documents, and every bad record in quarantine."""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Iterator
from pathlib import PurePosixPath
from typing import BinaryIO

from datatrove.data import Document, DocumentsPipeline
from datatrove.io import DataFolderLike, _get_true_fs
from datatrove.pipeline.readers.base import BaseDiskReader
from datatrove.utils.logging import logger
from fsspec.implementations.local import LocalFileSystem

from pipelines import fields, reasons
from pipelines.readers.base import Bad, Record
from pipelines.readers.budgets import DEFAULT_BUDGETS, ByteBudgets
from pipelines.readers.jsonl import read_jsonl
from pipelines.readers.parquet import read_parquet
from pipelines.readers.quarantine import QuarantineWriter, as_datafolder
from pipelines.readers.warc import read_warc
from records.layout import validate_snapshot_name

FORMATS = {  # suffix -> format; compression is decided by a file's first bytes, not by its suffix
    ".jsonl.gz": "jsonl", ".json.gz": "jsonl", ".jsonl.zst": "jsonl", ".json.zst": "jsonl",
    ".jsonl": "jsonl", ".parquet": "parquet", ".warc.gz": "warc", ".warc": "warc",
}  # fmt: skip
# Record fields kept under another name: the reader's own keys mean something else downstream
# (``language`` is what language identification finds; the input's claim is ``declared_language``).
RENAMED = {"language": "declared_language"}
_RESERVED = {v for k, v in vars(fields).items() if k.isupper() and isinstance(v, str)} | {"declared_language"}
WARC_KEYS = ("text", "id", "url")  # the field names read_warc gives its records
_MISSING = object()


def _describe(value: object) -> str:
    if value is None:
        return "null"
    return "empty" if value == "" else f"{repr(value)[:40]} ({type(value).__name__})"


def file_format(path: str) -> str | None:
    """The format ``SnapshotReader`` reads ``path`` as, from its suffix; None when unsupported."""
    name = path.lower()
    return next((fmt for suffix, fmt in FORMATS.items() if name.endswith(suffix)), None)


def metadata_key(name: str) -> str:
    """Where a record field goes in the metadata: its own name unless that is one of ours."""
    if name in RENAMED:
        return RENAMED[name]
    return f"record_{name}" if name in _RESERVED else name


class SnapshotReader(BaseDiskReader):
    """Reads every file of a snapshot folder (local path or fsspec URL) as documents.

    Files are split over tasks from the sorted listing of the folder (round-robin), so a task count
    always gives the same split. Formats by suffix: ``.jsonl``, ``.jsonl.gz``, ``.json.gz``,
    ``.jsonl.zst``, ``.parquet``, ``.warc``, ``.warc.gz`` (main text by trafilatura); compression
    (gzip, zstd or none) by the first bytes, whatever the suffix says. In a local folder, symbolic
    links (to files or folders) and special files are listed, never followed nor opened: each is one
    quarantine row (``symlink``, naming link and target; ``not_a_regular_file``).

    A document's id is ``"{snapshot}/{file}#{offset}"`` (line, row or WARC byte offset) and its
    metadata holds ``SNAPSHOT``, ``SOURCE_ID`` (the record's own id, or None), ``SOURCE_FILE``,
    ``SOURCE_OFFSET``, ``URL`` and every other record field under its own name (``language`` as
    ``declared_language``). Nothing bad stops the run: each bad record or file becomes a row of
    ``quarantine_folder/{rank:05d}.parquet`` with its reason (``pipelines.reasons``), and a stat.
    Files are streamed; ``max_document_bytes`` caps a record's raw size (the JSON line, the text
    value, the WARC payload), and a record over it is quarantined without being read whole;
    ``budgets`` (``ByteBudgets``) caps a file's decompressed bytes and a Parquet column chunk.
    """

    name = "📸 Apertus snapshot"

    def __init__(
        self,
        snapshot_dir: DataFolderLike | os.PathLike,
        snapshot: str,
        quarantine_folder: DataFolderLike | os.PathLike,
        *,
        max_document_bytes: int = 10_000_000,
        text_key: str = "text",
        id_key: str = "id",
        url_key: str = "url",
        batch_size: int = 1024,
        budgets: ByteBudgets = DEFAULT_BUDGETS,
    ):
        super().__init__(
            as_datafolder(snapshot_dir), text_key=text_key, id_key=id_key, recursive=True, add_file_path=False
        )
        self.snapshot = validate_snapshot_name(snapshot)
        self.budgets = budgets
        self.quarantine_folder = as_datafolder(quarantine_folder)
        self.max_document_bytes = max_document_bytes
        self.url_key = url_key
        self.batch_size = batch_size
        self._quarantine: QuarantineWriter | None = None
        self._not_files: dict[str, Bad] = {}  # path -> why it is not read (links, special files)

    def run(self, data: DocumentsPipeline = None, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        if data:
            yield from data
        with QuarantineWriter(self.quarantine_folder, rank) as quarantine:
            self._quarantine = quarantine
            files = self._listing()
            if not files:  # as BaseDiskReader: an empty snapshot folder is an error, not an empty version
                raise RuntimeError(f"No files found on {self.data_folder.path}!")
            for document in self.read_files_shard(files[rank::world_size]):
                self.update_doc_stats(document)
                yield document

    def _listing(self) -> list[str]:
        """Every entry of the snapshot folder, relative and sorted. A local folder is walked without
        following links, and entries that are not regular files are noted in ``_not_files``."""
        if not isinstance(_get_true_fs(self.data_folder.fs), LocalFileSystem):
            return self.data_folder.list_files(recursive=True)
        root = self.data_folder.path
        paths = []
        for parent, dirs, files in os.walk(root):  # os.walk lists a link to a folder in dirs, unfollowed
            for name in dirs + files:
                path = os.path.join(parent, name)
                relative = os.path.relpath(path, root).replace(os.sep, "/")
                mode = os.lstat(path).st_mode
                if stat.S_ISLNK(mode):
                    target = os.readlink(path)
                    detail = f"symbolic link {relative} -> {target}: links are not followed"
                    self._not_files[relative] = Bad(None, reasons.SYMLINK, detail, target, 0)
                elif stat.S_ISDIR(mode):
                    continue
                elif not stat.S_ISREG(mode):
                    detail = f"{relative} is not a regular file (mode {stat.filemode(mode)}): not opened"
                    self._not_files[relative] = Bad(None, reasons.NOT_A_REGULAR_FILE, detail, "", 0)
                paths.append(relative)
        return sorted(paths)

    def read_file(self, filepath: str) -> DocumentsPipeline:
        if filepath in self._not_files:
            self._reject(filepath, self._not_files[filepath])
            return
        fmt = file_format(filepath)
        keys = WARC_KEYS if fmt == "warc" else (self.text_key, self.id_key, self.url_key)
        for item in self._items(filepath, fmt):
            if isinstance(item, Record):
                with self.track_time():
                    item = self._document(filepath, item, *keys)
            if isinstance(item, Bad):
                self._reject(filepath, item)
            else:
                yield item

    def _items(self, filepath: str, fmt: str | None) -> Iterator[Record | Bad]:
        """The records of one file; a file that cannot be read at all is one ``Bad``."""
        if fmt is None:
            suffix = "".join(PurePosixPath(filepath).suffixes) or "(none)"
            yield Bad(None, reasons.UNREADABLE_FILE, f"unsupported file type: suffix {suffix}")
            return
        last = None
        try:
            if self.data_folder.size(filepath) == 0:
                yield Bad(None, reasons.EMPTY_FILE, "0 bytes", raw_bytes=0)
                return
            with self.data_folder.open(filepath, "rb") as f:
                for item in self._parse(f, fmt):
                    last = item.offset if item.offset is not None else last
                    yield item
        except Exception as error:  # whatever a file does, the run goes on and the file is quarantined
            logger.opt(exception=error).warning(f"{filepath}: unexpected {type(error).__name__}, quarantined")
            where = "" if last is None else f" after offset {last}"
            yield Bad(None, reasons.UNREADABLE_FILE, f"{type(error).__name__}{where}: {error}")

    def _parse(self, stream: BinaryIO, fmt: str) -> Iterator[Record | Bad]:
        max_file_bytes = self.budgets.max_file_bytes
        if fmt == "warc":
            return read_warc(
                stream, max_document_bytes=self.max_document_bytes, max_file_bytes=max_file_bytes
            )
        if fmt == "parquet":
            return read_parquet(
                stream,
                text_key=self.text_key,
                batch_size=self.batch_size,
                max_column_chunk_bytes=self.budgets.max_column_chunk_bytes,
                max_file_bytes=max_file_bytes,
            )
        return read_jsonl(stream, max_document_bytes=self.max_document_bytes, max_file_bytes=max_file_bytes)

    def _document(
        self, filepath: str, record: Record, text_key: str, id_key: str, url_key: str
    ) -> Document | Bad:
        values = record.fields
        text = values.pop(text_key, _MISSING)
        if not isinstance(text, str) or not text.strip():
            detail = (
                f"no field {text_key!r}" if text is _MISSING else f"field {text_key!r} is {_describe(text)}"
            )
            if text is not _MISSING:
                values[text_key] = text
            raw = (
                record.raw if record.raw is not None else json.dumps(values, ensure_ascii=False, default=str)
            )
            size = record.raw_bytes if record.raw_bytes is not None else len(raw.encode("utf-8"))
            return Bad(record.offset, reasons.NO_TEXT, detail, raw, size)
        # Cheap bounds first: a character is 1 to 4 UTF-8 bytes.
        if len(text) > self.max_document_bytes or (
            len(text) * 4 > self.max_document_bytes and len(text.encode("utf-8")) > self.max_document_bytes
        ):
            size = len(text.encode("utf-8"))
            detail = f"text of {size} bytes exceeds max_document_bytes={self.max_document_bytes}"
            return Bad(record.offset, reasons.DOCUMENT_TOO_LARGE, detail, text, size)
        source_id = values.pop(id_key, None)
        metadata = {
            fields.SNAPSHOT: self.snapshot,
            fields.SOURCE_ID: None if source_id is None else str(source_id),
            fields.SOURCE_FILE: filepath,
            fields.SOURCE_OFFSET: record.offset,
            fields.URL: values.pop(url_key, None),
        }
        for name, value in values.items():
            metadata[metadata_key(name)] = value
        return Document(text=text, id=f"{self.snapshot}/{filepath}#{record.offset}", metadata=metadata)

    def _reject(self, filepath: str, bad: Bad) -> None:
        if bad.offset is None:
            # Whole-file problem: its size, and its first bytes unless they are compressed or binary.
            if bad.raw_bytes is None:
                bad.raw_bytes = self._size(filepath)
            if bad.raw is None and not filepath.lower().endswith((".gz", ".zst", ".parquet")):
                bad.raw = self._head(filepath)
        self._quarantine.write(self.snapshot, filepath, bad)
        self.stat_update("quarantined", f"quarantined_{bad.reason}")

    def _size(self, filepath: str) -> int | None:
        try:
            return self.data_folder.size(filepath)
        except OSError:
            return None

    def _head(self, filepath: str) -> bytes | None:
        """The first bytes of a file, for the excerpt of a whole-file problem (best effort)."""
        try:
            with self.data_folder.open(filepath, "rb") as f:
                return f.read(2048)
        except OSError:
            return None
