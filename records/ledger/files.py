"""Reading the ends of the ledger's append-only files without reading them whole.

An append writes its entry line(s), then their leaf hashes, then a tree head. These helpers let
the next append find the last committed line by reading only the lines after it, not the whole log.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import BinaryIO

from records.merkle import HASH_SIZE

_CHUNK = 1 << 16


def rfind_newline(f: BinaryIO, before: int) -> int:
    """Return the offset of the last b"\\n" strictly before offset `before`, or -1 if there is none."""
    pos = before
    while pos > 0:
        start = max(0, pos - _CHUNK)
        f.seek(start)
        found = f.read(pos - start).rfind(b"\n")
        if found >= 0:
            return start + found
        pos = start
    return -1


def last_line_bounds(f: BinaryIO, end: int) -> tuple[int, int]:
    """Return (start, newline offset) of the last newline-terminated line in f[:end]; (0, -1) if none."""
    newline = rfind_newline(f, end)
    if newline < 0:
        return 0, -1
    return rfind_newline(f, newline) + 1, newline


def last_line(path: Path) -> bytes:
    """Return the last complete line of a file, without its newline; b"" if it has none."""
    with open(path, "rb") as f:
        start, newline = last_line_bounds(f, f.seek(0, os.SEEK_END))
        if newline < 0:
            return b""
        f.seek(start)
        return f.read(newline - start)


def entries_end(f: BinaryIO, end: int, num_committed: int, path: Path) -> int:
    """Return the offset just past the line of entry num_committed - 1 in entries file `f` of length `end`.

    Bytes after the last newline are a torn line, and complete lines with indices num_committed,
    num_committed + 1, ... lost their leaf hashes: all come from a single interrupted append (one
    entry, or a batch from append_many) and lie past the returned offset. Only those lines are
    read. Anything else means the files disagree beyond repair: ValueError naming them.
    """
    expected = None  # the index the next line back must have, once an uncommitted line is seen
    while True:
        start, newline = last_line_bounds(f, end)
        if newline < 0:
            if num_committed or expected not in (None, -1):
                raise ValueError(
                    f"{path} has no complete line but {num_committed} leaf hashes exist; run verify()"
                )
            return 0
        f.seek(start)
        try:
            index = json.loads(f.read(newline - start))["index"]
        except (ValueError, KeyError, TypeError):
            raise ValueError(
                f"{path}: the line at offset {start} is not a ledger entry; run verify()"
            ) from None
        if index == num_committed - 1 and expected in (None, index):
            return newline + 1
        if index >= num_committed and expected in (None, index):
            expected, end = index - 1, start  # uncommitted: look at the line before it
            continue
        raise ValueError(
            f"{path}: the entry at offset {start} has index {index} but {num_committed} leaf hashes "
            "are committed; run verify()"
        )


def read_leaf_hashes(path: Path, start: int, stop: int) -> list[bytes]:
    """Return the 32-byte leaf hashes start..stop-1 from a leaf_hashes.bin file."""
    if stop <= start:
        return []
    with open(path, "rb") as f:
        f.seek(start * HASH_SIZE)
        data = f.read((stop - start) * HASH_SIZE)
    assert len(data) == (stop - start) * HASH_SIZE, f"{path} is shorter than {stop} hashes"
    return [data[i : i + HASH_SIZE] for i in range(0, len(data), HASH_SIZE)]
