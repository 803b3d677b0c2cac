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
from pathlib import Path, PurePosixPath

import fsspec

from records.layout import DataLayout

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
        if entry["type"] == "directory" and not entry.get("islink")
    ]
    return sorted(n for n in names if not n.startswith("."))


def staged_path(key: str) -> PurePosixPath:
    """An object key below a snapshot, as a relative path that stays inside the snapshot's folder;
    ValueError for a key that would leave it (``..``, absolute, a backslash, an empty part)."""
    parts = key.split("/")
    if (
        not key
        or "\\" in key
        or key.startswith("/")
        or any(part in ("", ".", "..") for part in parts)
        or any(ord(c) < 32 for c in key)
    ):
        raise ValueError(
            f"object key {key!r} would leave the snapshot folder (no '..', '.', empty parts, leading '/', "
            "backslashes or control characters): rename the object"
        )
    return PurePosixPath(*parts)


def _entries(fs, folder: str) -> list[dict]:
    """Every file and symbolic link under ``folder`` (links are listed, never descended into)."""
    found = []
    for entry in fs.ls(folder, detail=True):
        if entry.get("islink"):
            found.append(entry)
        elif entry["type"] == "directory":
            found += _entries(fs, entry["name"])
        else:
            found.append(entry)
    return found


def fetch_snapshot(url: str, name: str, layout: DataLayout) -> Path:
    """Copy snapshot ``name`` from the remote inbox at ``url`` into the local inbox; return its folder.
    A snapshot already in the local inbox is left as it is (snapshots are immutable).

    Every object key is checked before anything is copied (``staged_path``): a key that leaves the
    snapshot's folder refuses the whole snapshot with a ValueError naming it. A symbolic link (a
    ``file://`` drop) is recreated as a link, never copied as its target, so the reader quarantines it
    (reason ``symlink``). Cost grows with the snapshot's number of objects and bytes.
    """
    target = layout.snapshot_dir(name)
    if target.exists():
        return target
    fs, root = fsspec.core.url_to_fs(url)
    source = f"{root.rstrip('/')}/{name}"
    entries = []
    for entry in _entries(fs, source):
        remote = entry["name"]
        if not remote.startswith(source + "/"):
            raise ValueError(f"{url}/{name}: object {remote!r} is listed outside the snapshot")
        entries.append((entry, staged_path(remote[len(source) + 1 :])))
    staging = layout.inbox / f".fetching-{name}"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    for entry, relative in entries:
        local = staging.joinpath(*relative.parts)
        assert local.resolve(strict=False).is_relative_to(staging.resolve()), local
        local.parent.mkdir(parents=True, exist_ok=True)
        if entry.get("islink"):
            os.symlink(os.readlink(entry["name"]), local)
        else:
            fs.get_file(entry["name"], str(local))
    os.rename(staging, target)
    return target
