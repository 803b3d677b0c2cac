"""Sorted runs of lookup rows and their streaming merge (the lookup format: records.lookup_file).

A lookup file holds every row of a version's index and exclusions, sorted by sha256. No process
sorts a whole version: each piece of rows (one shard's rows, written by the step's tasks through
pipelines.tables; or one batch of the version's tables, for a rebuild or a check) is sorted alone
into a *run*, and ``merge_runs`` merges the runs (a k-way merge) into the file's sections.

A run ``<stem>`` is two files: ``<stem>.rows.arrow`` (Arrow IPC: the answer columns and the
32-byte digest, sorted by digest, ties in their order in the piece) and ``<stem>.urls.bin`` (one
big-endian (8-byte url key, 4-byte position in the run) per row with a URL, ascending). Runs
are work files of one build, never part of a version; this module alone spells their names.

Merging runs given in the tables' order (index pieces, then exclusions pieces, each in row
order) breaks ties by run, then position, so the rows come out in the order a stable sort of the
concatenated tables gives: the same tables give the same bytes however they were cut into runs.
"""

from __future__ import annotations

import hashlib
import heapq
import struct
from array import array
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import NamedTuple

from records.lookup_file import BLOCK_ROWS, NULL_INT, NULL_LENGTH, SHA_WIDTH, STRINGS, URL_WIDTH

ROWS_SUFFIX, URLS_SUFFIX, MAP_SUFFIX = ".rows.arrow", ".urls.bin", ".rows.map"
BATCH_ROWS = 4096  # rows per run held in memory during a merge
TABLE_RUN_ROWS = 1 << 18  # rows per run cut from a version's tables (a rebuild, a check)
_ANSWER = (*STRINGS, "kept", "minhash_cluster_size")
_URL_ENTRY = [("key", ">u8"), ("row", ">u4")]


class Merged(NamedTuple):
    """What ``merge_runs`` wrote: the row count, the url_keys count and the two sections' files."""

    rows: int
    url_rows: int
    sha256: Path
    url_keys: Path


def answer_table(table, kept: bool, where: str, first_row: int = 0):
    """The answer columns of index (``kept``) or exclusions rows, plus ``digest`` (the sha256 as 32
    bytes). ValueError naming ``where`` and the row (counted from ``first_row``) of a sha256 that is
    not 64 lowercase hex digits, or the columns a version's table must have."""
    import numpy as np
    import pyarrow as pa

    missing = {"sha256", "doc_id", "url", "snapshot"} - set(table.column_names)
    if missing:
        raise ValueError(f"{where}: no column(s) {sorted(missing)}; not a dataset version table")
    n = table.num_rows
    columns = {}
    for column in STRINGS:
        present = column in table.column_names and not (kept and column in ("step", "reason", "details"))
        columns[column] = (table.column(column) if present else pa.nulls(n, pa.string())).cast(
            pa.large_string()
        )
    columns["kept"] = pa.array(np.full(n, kept), pa.bool_())
    size = table.column("minhash_cluster_size") if "minhash_cluster_size" in table.column_names else None
    columns["minhash_cluster_size"] = (size if size is not None else pa.nulls(n)).cast(pa.int64())
    digests = _digests(table.column("sha256").cast(pa.large_string()), where, first_row)
    columns["digest"] = pa.FixedSizeBinaryArray.from_buffers(
        pa.binary(SHA_WIDTH), n, [None, pa.py_buffer(digests.tobytes())]
    )
    return pa.table(columns)


def write_run(answers, stem: Path) -> None:
    """Sort one piece's answer table (``answer_table``) by digest and write it as the run ``stem``.
    Cost: O(n log n) for the piece's n rows, memory O(n)."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.ipc as ipc

    digests = np.frombuffer(answers.column("digest").combine_chunks().buffers()[1], np.uint8)
    digests = digests[: answers.num_rows * SHA_WIDTH].reshape(-1, SHA_WIDTH)
    order = _sort_order(digests)
    answers = answers.take(pa.array(order, pa.int64()))
    with ipc.new_file(str(stem) + ROWS_SUFFIX, answers.schema) as writer:
        writer.write_table(answers, max_chunksize=BATCH_ROWS)
    urls = answers.column("url").combine_chunks()
    positions = np.flatnonzero(urls.is_valid().to_numpy(zero_copy_only=False))
    keys = np.array(
        [
            int.from_bytes(hashlib.sha256(u.encode()).digest()[:8], "big")
            for u in urls.filter(urls.is_valid()).to_pylist()
        ],
        np.uint64,
    )
    entries = np.empty(len(positions), dtype=_URL_ENTRY)
    entries["key"], entries["row"] = keys, positions
    entries[np.lexsort((positions, keys))].tofile(str(stem) + URLS_SUFFIX)


def table_runs(folder: Path, tables: tuple[str, str], work: Path) -> list[Path]:
    """Cut a version's index and exclusions (``tables``, kept first) into runs in ``work``, one per
    TABLE_RUN_ROWS rows, in table order; return their stems. Memory O(TABLE_RUN_ROWS rows)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    stems, first_row = [], 0
    for name, kept in zip(tables, (True, False), strict=True):
        path = folder / name
        with pq.ParquetFile(path) as parquet:
            wanted = {*STRINGS, "sha256", "minhash_cluster_size"}
            columns = [c for c in parquet.schema_arrow.names if c in wanted]
            missing = {"sha256", "doc_id", "url", "snapshot"} - set(columns)
            if missing:
                raise ValueError(f"{path}: no column(s) {sorted(missing)}; not a dataset version table")
            for batch in parquet.iter_batches(batch_size=TABLE_RUN_ROWS, columns=columns):
                answers = answer_table(pa.Table.from_batches([batch]), kept, str(folder), first_row)
                stems.append(work / f"{len(stems):06d}")
                write_run(answers, stems[-1])
                first_row += batch.num_rows
    return stems


def merge_runs(stems: list[Path], work: Path, on_block: Callable[[bytes], None]) -> Merged:
    """Merge the runs ``stems`` (in table order) into a lookup's sections: ``on_block`` gets every
    block of BLOCK_ROWS rows, uncompressed, in order; the sha256 and url_keys sections are written
    to files in ``work``. Cost: O(rows log k) time for k runs, memory O(k * BATCH_ROWS rows),
    whatever the number of rows."""
    sha_path, url_path = work / "sha256.section", work / "url_keys.section"
    rows = 0
    maps = [_RowMap(Path(str(stem) + MAP_SUFFIX)) for stem in stems]
    block: list[tuple] = []
    with open(sha_path, "wb") as sha:
        for digest, run, values in heapq.merge(*(_run_rows(stem, r) for r, stem in enumerate(stems))):
            sha.write(digest)
            maps[run].append(rows)
            rows += 1
            block.append(values)
            if len(block) == BLOCK_ROWS:
                on_block(encode_block(block))
                block = []
    if block:
        on_block(encode_block(block))
    for row_map in maps:
        row_map.close()
    url_rows = _merge_urls(stems, url_path)
    return Merged(rows, url_rows, sha_path, url_path)


def encode_block(rows: list[tuple]) -> bytes:
    """A block of n rows (each STRINGS, then kept, then minhash_cluster_size), uncompressed: for each
    of STRINGS n lengths (little-endian uint32, NULL_LENGTH for NULL); n bytes of kept (0/1); n
    minhash_cluster_size (little-endian int64, NULL_INT for NULL); then each of STRINGS's UTF-8 bytes
    back to back. Like strings sit together, so zlib finds their common parts."""
    columns = list(zip(*rows, strict=True))
    lengths, data = [], []
    for values in columns[: len(STRINGS)]:
        encoded = [None if v is None else v.encode() for v in values]
        lengths.append(array("I", [NULL_LENGTH if e is None else len(e) for e in encoded]))
        data.append(b"".join(e for e in encoded if e))
    sizes = array("q", [NULL_INT if s is None else s for s in columns[-1]])
    parts = [_little(a) for a in lengths] + [bytes(columns[-2]), _little(sizes)]
    return b"".join(parts + data)


def _little(values: array) -> bytes:
    if struct.pack("=H", 1) != struct.pack("<H", 1):
        values = array(values.typecode, values)
        values.byteswap()
    return values.tobytes()


def _run_rows(stem: Path, run: int) -> Iterator[tuple[bytes, int, tuple]]:
    """(digest, run, answer values) of a run's rows in order, BATCH_ROWS at a time from disk."""
    import pyarrow as pa
    import pyarrow.ipc as ipc

    # Read, not memory-mapped: the mapped pages of every run would stay resident (and counted)
    # after the merge passed them.
    with pa.OSFile(str(stem) + ROWS_SUFFIX) as source:
        reader = ipc.open_file(source)
        for b in range(reader.num_record_batches):
            batch = reader.get_batch(b)
            digests = batch.column("digest").to_pylist()
            values = zip(*(batch.column(c).to_pylist() for c in _ANSWER), strict=True)
            for digest, row in zip(digests, values, strict=True):
                yield digest, run, row


class _RowMap:
    """A run's position -> row in the merged order, appended in position order, kept on disk."""

    def __init__(self, path: Path):
        self.path, self.buffer = path, array("I")
        self.file = open(path, "wb")  # noqa: SIM115 (closed by close(), once the merge has run)

    def append(self, row: int) -> None:
        self.buffer.append(row)
        if len(self.buffer) >= BATCH_ROWS:
            self.flush()

    def flush(self) -> None:
        self.file.write(self.buffer.tobytes())  # native order: read back on this machine only
        self.buffer = array("I")

    def close(self) -> None:
        self.flush()
        self.file.close()


def _run_urls(stem: Path) -> Iterator[tuple[int, int]]:
    """(url key, row in the merged order) of a run's URLs, ascending, BATCH_ROWS at a time."""
    import numpy as np

    urls = Path(str(stem) + URLS_SUFFIX)
    count = urls.stat().st_size // URL_WIDTH
    if not count:
        return
    # Memory-mapped: positions come in key order, so lookups are random. 4 bytes a row of clean
    # file pages, which the kernel takes back under pressure; no heap memory grows with the rows.
    rows = np.memmap(str(stem) + MAP_SUFFIX, np.uint32, mode="r")
    with open(urls, "rb") as f:
        for _ in range(0, count, BATCH_ROWS):
            entries = np.fromfile(f, dtype=_URL_ENTRY, count=BATCH_ROWS)
            yield from zip(entries["key"].tolist(), rows[entries["row"]].tolist(), strict=True)


def _merge_urls(stems: list[Path], path: Path) -> int:
    """Write the url_keys section: every run's (key, row) merged by key, then row. Returns its count."""
    count, pending = 0, []
    with open(path, "wb") as out:
        for entry in heapq.merge(*(_run_urls(stem) for stem in stems)):
            pending.append(entry)
            if len(pending) >= BATCH_ROWS:
                count += _write_entries(out, pending)
                pending = []
        count += _write_entries(out, pending)
    return count


def _write_entries(out, entries: list[tuple[int, int]]) -> int:
    import numpy as np

    out.write(np.array(entries, dtype=_URL_ENTRY).tobytes() if entries else b"")
    return len(entries)


_NIBBLES = bytes(
    [int(chr(c), 16) if chr(c) in "0123456789abcdef" else 255 for c in range(256)]
)  # hex digit -> value


def _digests(array_, where: str, first_row: int):
    """(n, 32) uint8 array of a large_string sha256 column; ValueError naming the first bad row."""
    import numpy as np
    import pyarrow.compute as pc

    array_ = array_.combine_chunks() if hasattr(array_, "combine_chunks") else array_
    filled = array_.fill_null("") if array_.null_count else array_
    _, offsets, data = filled.buffers()
    offsets = np.frombuffer(offsets, np.int64)[filled.offset : filled.offset + len(filled) + 1]
    data = np.frombuffer(data, np.uint8) if data is not None else np.zeros(0, np.uint8)
    text = data[offsets[0] : offsets[-1]].tobytes()
    try:
        raw = bytes.fromhex(text.decode("ascii")) if text == text.lower() else b""
    except (UnicodeDecodeError, ValueError):
        raw = b""
    lengths = pc.binary_length(array_).fill_null(0).to_numpy(zero_copy_only=False)
    if len(raw) != SHA_WIDTH * len(array_) or (lengths != 64).any():  # find the row to name
        nibbles = np.frombuffer(_NIBBLES, np.uint8)
        bad = next(
            i for i in range(len(array_))
            if lengths[i] != 64 or (nibbles[data[offsets[i] : offsets[i + 1]]] == 255).any()
        )  # fmt: skip
        raise ValueError(
            f"{where}: index/exclusions row {first_row + bad} has sha256 {array_[bad].as_py()!r}; "
            "expected 64 lowercase hex digits"
        )
    return np.frombuffer(raw, np.uint8).reshape(-1, SHA_WIDTH)


def _sort_order(digests):
    """Row order by digest (as bytes), ties in their original order."""
    import numpy as np

    first = digests[:, :8].copy().view(">u8").ravel().astype(np.uint64)
    order = np.argsort(first, kind="stable")
    ties = np.flatnonzero(first[order][1:] == first[order][:-1])  # rare beyond exact duplicates
    start = 0
    for i in ties:
        if i < start:
            continue
        end = i + 1
        while end < len(order) and first[order[end]] == first[order[i]]:
            end += 1
        order[i:end] = sorted(order[i:end], key=lambda r: (digests[r].tobytes(), r))
        start = end
    return order
