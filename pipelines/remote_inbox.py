"""Where a snapshot is read from: the local ``<data>/inbox/<name>/``, or a remote inbox at an fsspec
URL (``s3://bucket/prefix``, ``gs://``, an SFTP drop, ``file://`` a mounted share), read in place.

Nothing is copied: the sensor lists the remote inbox and checks each new snapshot's object keys
(``check_remote_snapshot``), and the ingest step's tasks open the objects where they are, each
task its own share of the files (``pipelines.readers.SnapshotReader`` over a datatrove
``DataFolder``). Which filesystems are available depends on the fsspec implementations installed
(``s3fs`` is pinned; ``file://`` and ``memory://`` always are). The URL is the operator's setting,
``APERTUS_INBOX_URL``; credentials come from the environment of every process that reads
(the Dagster code server and each Ray node): for S3, ``AWS_ACCESS_KEY_ID``,
``AWS_SECRET_ACCESS_KEY`` (or any source of botocore's chain) and, for an S3-compatible server,
``AWS_ENDPOINT_URL``. A version's id depends on the snapshot's content and name only, never on
where it was read from (docs/scale.md, "Object storage").
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
from pathlib import PurePosixPath

import fsspec
from fsspec.implementations.local import LocalFileSystem

from records.layout import DataLayout, validate_snapshot_name

INBOX_URL_ENV = "APERTUS_INBOX_URL"


def inbox_url() -> str | None:
    """The remote inbox's URL from ``APERTUS_INBOX_URL``, or None (local inbox only)."""
    return os.environ.get(INBOX_URL_ENV) or None


def remote_snapshots(url: str) -> list[str]:
    """Names of the snapshot folders at ``url``, sorted (hidden ones, starting with '.', left out:
    a delivery in progress can be written under a hidden name and renamed when complete)."""
    fs, root = fsspec.core.url_to_fs(url)
    fs.invalidate_cache()  # a long-lived sensor process must see deliveries made since its last tick
    if not fs.exists(root):
        raise ValueError(f"{url}: the remote inbox does not exist")
    names = [
        PurePosixPath(entry["name"].rstrip("/")).name
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


def _objects(fs, folder: str) -> list[dict]:
    """Every object (file or symbolic link) under ``folder``, links listed, never descended into."""
    found = []
    for entry in fs.ls(folder, detail=True):
        if entry["type"] == "directory" and not entry.get("islink"):
            found += _objects(fs, entry["name"])
        else:
            found.append(entry)
    return found


def check_remote_snapshot(url: str, name: str) -> int:
    """Check every object key of snapshot ``name`` at the remote inbox ``url`` and return how many
    objects it holds; ValueError naming the first key that would leave the snapshot's folder
    (``staged_path``), or for a snapshot with no objects. Nothing is read but the listing; the
    sensor registers a snapshot only after this passed. Cost: one listing of the snapshot."""
    fs, root = fsspec.core.url_to_fs(url)
    source = f"{root.rstrip('/')}/{validate_snapshot_name(name)}"
    objects = _objects(fs, source)
    for entry in objects:
        key = entry["name"]
        if not key.startswith(source + "/"):
            raise ValueError(f"{url}/{name}: object {key!r} is listed outside the snapshot")
        staged_path(key[len(source) + 1 :])
    if not objects:
        raise ValueError(f"{url}/{name}: the snapshot holds no objects")
    return len(objects)


def snapshot_source(layout: DataLayout, name: str) -> str:
    """Where snapshot ``name`` is read from: ``<data>/inbox/<name>`` when that folder exists, else
    ``<APERTUS_INBOX_URL>/<name>`` when the remote inbox holds it (read there, in place); ValueError
    naming both places otherwise. Cost: at most one stat of each place."""
    local = layout.snapshot_dir(name)
    if local.is_dir():
        return str(local)
    url = inbox_url()
    if url:
        remote = f"{url.rstrip('/')}/{name}"
        fs, path = fsspec.core.url_to_fs(remote)
        if fs.isdir(path):
            return remote
    where = f"{local}" + (f" nor {url.rstrip('/')}/{name}" if url else "")
    raise ValueError(
        f"{where}: no such snapshot folder (add one with `apertus ingest PATH --snapshot {name}`"
        + (", or deliver it to the remote inbox)" if url else ")")
    )


def snapshot_fingerprint(source: str) -> str:
    """A hash of a snapshot's listing: every entry's path relative to ``source``, size and version
    (ETag or modification time, whichever the filesystem gives; a link's target). Two reads of the
    same unchanged snapshot give the same fingerprint; a file added, removed, resized or rewritten
    changes it. It decides whether a failed ingest may be resumed, never a version id. A local
    folder is walked without following links (as the reader lists it). Cost: one listing."""
    fs, root = fsspec.core.url_to_fs(source)
    root = root.rstrip("/")
    rows = []
    if isinstance(fs, LocalFileSystem):
        for parent, dirs, files in os.walk(root):  # links to folders come in dirs, not followed
            for name in dirs + files:
                path = os.path.join(parent, name)
                info = os.lstat(path)
                if stat.S_ISDIR(info.st_mode):
                    continue
                target = os.readlink(path) if stat.S_ISLNK(info.st_mode) else None
                rows.append([os.path.relpath(path, root), info.st_size, info.st_mtime_ns, target])
    else:
        for path, info in fs.find(root, detail=True, withdirs=False).items():
            version = next((info[k] for k in ("ETag", "etag", "mtime", "LastModified") if k in info), None)
            rows.append([path[len(root) + 1 :], info.get("size"), str(version), None])
    return hashlib.sha256(json.dumps(sorted(rows)).encode()).hexdigest()
