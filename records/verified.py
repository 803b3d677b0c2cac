"""Reading a file of a sealed version only as its manifest recorded it.

Every answer about a version (the catalog's rows, ``apertus audit contains``) reads the version's
files through here: a path the manifest does not list is never read (a file planted in the folder
is not evidence), and the bytes read are hashed and compared with the recorded sha256 before they
are decoded, so an answer always comes from the very bytes that were checked. A mismatch is a
ValueError naming the file and the fix (``apertus audit verify``), never an answer.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from records.hashing import sha256_bytes
from records.manifest import MANIFEST, Manifest

# A listed path is read only if it is plain: relative, no "..", no glob or quoting characters.
PLAIN_PATH = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9_.-]*(/[A-Za-z0-9_-][A-Za-z0-9_.-]*)*")


def is_listed(manifest: Manifest, path: str) -> bool:
    """Whether ``path`` is one of the files ``manifest`` seals."""
    return any(f.path == path for f in manifest.files)


def verified_bytes(folder: Path, manifest: Manifest, path: str) -> bytes:
    """The bytes of ``path`` (relative to the version ``folder``) after checking them against the
    sha256 ``manifest`` records for it. ValueError if it is not listed, not a plain path, reached
    through a symlink, or differs. Cost: O(the file's bytes)."""
    recorded = _listed(folder, manifest, path)
    data = (folder / path).read_bytes()
    if sha256_bytes(data) != recorded:
        raise _differs(folder, path)
    return data


def _listed(folder: Path, manifest: Manifest, path: str) -> str:
    """The sha256 ``manifest`` records for ``path``; ValueError as ``verified_bytes`` says."""
    recorded = next((f.sha256 for f in manifest.files if f.path == path), None)
    if recorded is None:
        raise ValueError(f"{folder / path}: not listed in {folder / MANIFEST}; run `apertus audit verify`")
    if not PLAIN_PATH.fullmatch(path) or ".." in path.split("/"):
        raise ValueError(f"{folder / MANIFEST}: lists {path!r}, not a plain relative path")
    parts = [folder.joinpath(*path.split("/")[: i + 1]) for i in range(path.count("/") + 1)]
    if any(p.is_symlink() for p in parts):
        raise ValueError(f"{folder / path}: a symlink inside a version; run `apertus audit verify`")
    return recorded


def _differs(folder: Path, path: str) -> ValueError:
    return ValueError(
        f"{folder / path}: sha256 differs from the one recorded in {folder / MANIFEST}; run `apertus audit verify`"
    )


@contextmanager
def verified_parquet_file(folder: Path, manifest: Manifest, path: str, scratch: Path) -> Iterator:
    """A listed Parquet file as a ``pyarrow.parquet.ParquetFile`` whose row groups can be read one at
    a time: its bytes are copied into a private file under ``scratch`` while they are hashed, and
    checked against the recorded sha256 before any is decoded (as ``verified_bytes``, without
    holding the file in memory). Cost: O(the file's bytes) read and written once; memory one copy
    buffer plus the row groups the caller reads."""
    import tempfile  # here, not at the top: it imports shutil, which a cold `contains` never needs

    import pyarrow.parquet as pq

    recorded = _listed(folder, manifest, path)
    scratch.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".verified-", dir=scratch) as work:
        copy = Path(work) / "copy.parquet"
        digest = hashlib.sha256()
        with open(folder / path, "rb") as source, open(copy, "wb") as target:
            for piece in iter(lambda: source.read(1 << 20), b""):
                digest.update(piece)
                target.write(piece)
        if digest.hexdigest() != recorded:
            raise _differs(folder, path)
        with pq.ParquetFile(copy) as parquet:
            yield parquet


def verified_parquet(folder: Path, manifest: Manifest, path: str, columns: list[str] | None = None):
    """The Parquet table of a listed file, decoded from the very bytes whose hash was checked
    (verified_bytes). Cost: O(the file's bytes)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    return pq.read_table(pa.BufferReader(verified_bytes(folder, manifest, path)), columns=columns)


def verified_json(folder: Path, manifest: Manifest, path: str):
    """The JSON value of a listed file, decoded from the checked bytes (verified_bytes)."""
    return json.loads(verified_bytes(folder, manifest, path).decode("utf-8"))
