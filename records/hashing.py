"""SHA-256 helpers used for every content hash in the pipeline (hex digests, lowercase)."""

from __future__ import annotations

import hashlib
from pathlib import Path

CHUNK_SIZE = 1 << 20  # 1 MiB: bounded memory for multi-GB shards, few syscalls


def sha256_bytes(data: bytes) -> str:
    """Return the lowercase hex SHA-256 of `data`."""
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: str | Path) -> str:
    """Return the lowercase hex SHA-256 of a file's bytes, read in 1 MiB chunks.

    A str containing '://' is opened with fsspec (s3://, gs://, file://, ...); anything else is a
    local path. The file is never loaded whole into memory.
    """
    digest = hashlib.sha256()
    remote = isinstance(path, str) and "://" in path
    if remote:
        import fsspec  # imported here so local hashing never pays fsspec's import cost
    with fsspec.open(path, "rb") if remote else open(path, "rb") as f:
        while chunk := f.read(CHUNK_SIZE):
            digest.update(chunk)
    return digest.hexdigest()
