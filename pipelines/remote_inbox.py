"""A remote inbox: snapshot folders delivered to an fsspec URL (an object store, an SFTP drop, a
mounted share named by URL) instead of the local ``<data>/inbox/``.

Curation reads local files, so a new remote snapshot is first copied into the local inbox, whole,
through a staging folder renamed into place at the end: a half-copied snapshot is never seen as one.
Which filesystems are available depends on the fsspec implementations installed (``file://`` and
``memory://`` always are); the URL itself is the operator's setting, ``APERTUS_INBOX_URL``.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import fsspec

from provenance.layout import DataLayout

INBOX_URL_ENV = "APERTUS_INBOX_URL"


def inbox_url() -> str | None:
    """The remote inbox's URL from ``APERTUS_INBOX_URL``, or None (local inbox only)."""
    return os.environ.get(INBOX_URL_ENV) or None


def remote_snapshots(url: str) -> list[str]:
    """Names of the snapshot folders at ``url``, sorted (hidden ones, starting with '.', left out:
    a delivery in progress can be written under a hidden name and renamed when complete)."""
    fs, root = fsspec.core.url_to_fs(url)
    if not fs.exists(root):
        raise ValueError(f"{url}: the remote inbox does not exist")
    names = [
        Path(entry["name"].rstrip("/")).name
        for entry in fs.ls(root, detail=True)
        if entry["type"] == "directory"
    ]
    return sorted(n for n in names if not n.startswith("."))


def fetch_snapshot(url: str, name: str, layout: DataLayout) -> Path:
    """Copy snapshot ``name`` from the remote inbox at ``url`` into the local inbox; return its folder.
    A snapshot already in the local inbox is left as it is (snapshots are immutable)."""
    target = layout.snapshot_dir(name)
    if target.exists():
        return target
    fs, root = fsspec.core.url_to_fs(url)
    source = f"{root.rstrip('/')}/{name}"
    staging = layout.inbox / f".fetching-{name}"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    for remote in fs.find(source):
        relative = remote[len(source) :].lstrip("/")
        local = staging / relative
        local.parent.mkdir(parents=True, exist_ok=True)
        fs.get_file(remote, str(local))
    os.rename(staging, target)
    return target
