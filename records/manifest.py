"""Dataset versions: immutable, content-addressed folders described by a ``manifest.json``.

A step writes its files into a staging folder, then ``seal`` writes the version's ``lineage.json``
(asset, snapshot, parents, config, code version; see records/lineage.py) beside them, hashes every
file, derives the version id and moves the folder to ``<datasets root>/<asset>/<version id>/``. The
id is the RFC 6962 Merkle root over the sorted ``(path, sha256)`` pairs of every file in the folder
except the manifest itself (leaf data: ``path + "\\0" + sha256``), lineage.json included, so the
same bytes made the same way always give the same id, the same bytes made from other inputs give
another, and an auditor can recompute it from the files alone (see docs/data-model.md).

Manifest format 2 (``MANIFEST_FORMAT``) seals lineage.json; format 1, written by older code, has
none, and its id is the same Merkle rule over the files it has. Both load and verify. Every JSON
record of a version is written in the canonical form of records/canonical.py.

A version folder, once sealed, is never written again: sealing a folder whose id already exists
keeps the existing one and discards the staging copy.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from records import seal_stamps
from records.canonical import read_record, write_record
from records.hashing import sha256_file
from records.lineage import (
    LINEAGE,
    LINEAGE_FIELDS,
    lineage_problems,
    lineage_record,
    plain,
    write_lineage,
)
from records.merkle import merkle_root

MANIFEST = "manifest.json"
MANIFEST_FORMAT = "apertus.dataset-version/2"  # seals lineage.json
LEGACY_FORMAT = "apertus.dataset-version/1"  # older code: no lineage.json, lineage in the manifest only


@dataclass(frozen=True)
class FileEntry:
    """One file of a version: its path relative to the version folder, size, hash and counts."""

    path: str
    bytes: int
    sha256: str
    num_documents: int | None = None
    num_tokens: int | None = None


@dataclass(frozen=True)
class Manifest:
    """What a dataset version holds and how it was made. ``version_id`` is derived from ``files``."""

    version_id: str
    asset: str
    snapshot: str | None
    files: tuple[FileEntry, ...]
    parents: tuple[str, ...] = ()  # "asset/version_id" of every input version
    config: dict[str, Any] = field(default_factory=dict)
    code_version: str = ""
    created_at: str = ""
    stats: dict[str, Any] = field(default_factory=dict)
    format: str = MANIFEST_FORMAT

    @property
    def ref(self) -> str:
        """``asset/version_id``: how records name this version."""
        return f"{self.asset}/{self.version_id}"

    @property
    def short_id(self) -> str:
        return self.version_id[:12]

    def to_record(self) -> dict[str, Any]:
        """The manifest as plain JSON values, as ``write_record`` stores it."""
        return plain(asdict(self))

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Manifest:
        files = tuple(FileEntry(**f) for f in data["files"])
        return cls(**{**data, "files": files, "parents": tuple(data.get("parents", ()))})


def leaf_data(path: str, sha256: str) -> bytes:
    """The Merkle leaf of one file: its relative path and hex sha256, NUL-separated."""
    return f"{path}\0{sha256}".encode()


def version_id_of(files: list[FileEntry] | tuple[FileEntry, ...]) -> str:
    """The content address of a set of files: hex Merkle root over sorted (path, sha256) leaves."""
    ordered = sorted(files, key=lambda f: f.path)
    return merkle_root([leaf_data(f.path, f.sha256) for f in ordered]).hex()


def hash_folder(
    folder: Path,
    counts: dict[str, tuple[int | None, int | None]] | None = None,
    stamps: dict[str, seal_stamps.Stamp] | None = None,
) -> list[FileEntry]:
    """FileEntry for every file under ``folder`` except its own (top-level) manifest, sorted by path.

    ``counts`` maps a relative path to its (documents, tokens), recorded in its entry. ``stamps``,
    when given, gains the stamp of every file that did not change while it was hashed and was not
    written too recently to trust one (records.seal_stamps).
    """
    counts = counts or {}
    entries = []
    for path in sorted(p for p in folder.rglob("*") if p.is_file() and p != folder / MANIFEST):
        rel = path.relative_to(folder).as_posix()
        num_documents, num_tokens = counts.get(rel, (None, None))
        before = seal_stamps.stamp(path) if stamps is not None else None
        entries.append(FileEntry(rel, path.stat().st_size, sha256_file(path), num_documents, num_tokens))
        if stamps is not None:
            after = seal_stamps.take(path)
            if after is not None and after == before:
                stamps[rel] = after
    return entries


def seal(
    staging: Path,
    datasets_root: Path,
    *,
    asset: str,
    snapshot: str | None,
    parents: tuple[str, ...] = (),
    config: dict[str, Any] | None = None,
    code_version: str = "",
    stats: dict[str, Any] | None = None,
    counts: dict[str, tuple[int | None, int | None]] | None = None,
) -> tuple[Manifest, bool]:
    """Turn ``staging`` into an immutable version folder and return (its manifest, created).

    ``created`` is False when a version with the same id (same bytes, same lineage) already
    existed: the existing folder and manifest are kept untouched and ``staging`` is removed.
    """
    lineage = lineage_record(
        asset=asset, snapshot=snapshot, parents=tuple(parents), config=config or {}, code_version=code_version
    )
    write_lineage(staging, lineage)
    stamps: dict[str, seal_stamps.Stamp] = {}
    files = hash_folder(staging, counts, stamps)
    version_id = version_id_of(files)
    target = datasets_root / asset / version_id
    import shutil  # here, not at the top: a cold `apertus audit` imports this module, never seals

    if (target / MANIFEST).exists():
        shutil.rmtree(staging)
        return load_manifest(target), False
    manifest = Manifest(
        version_id=version_id,
        asset=asset,
        snapshot=snapshot,
        files=tuple(files),
        parents=tuple(parents),
        config=lineage["config"],
        code_version=code_version,
        created_at=datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z"),
        stats=stats or {},
    )
    write_record(staging / MANIFEST, manifest.to_record())
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.rename(staging, target)
    except OSError:
        # Another run sealed the same content first: theirs stands, ours is identical.
        if not (target / MANIFEST).exists():
            raise
        shutil.rmtree(staging)
        return load_manifest(target), False
    seal_stamps.remember(target, stamps)  # the renamed folder's files are the inodes just hashed
    return manifest, True


def load_manifest(version_folder: Path) -> Manifest:
    """Read ``manifest.json`` of a version folder, its lineage fields from the sealed lineage.json
    when the version has one (the manifest's copy is the fallback for versions of format 1)."""
    return manifest_of(read_manifest(version_folder), version_folder)


def read_manifest(version_folder: Path) -> dict[str, Any]:
    """The raw JSON of ``manifest.json`` of a version folder, as stored."""
    path = Path(version_folder) / MANIFEST
    if not path.exists():
        raise FileNotFoundError(f"{path}: not a dataset version (no {MANIFEST})")
    return read_record(path)


def manifest_of(raw: dict[str, Any], version_folder: Path, *, strict: bool = False) -> Manifest:
    """The Manifest of the raw manifest JSON ``raw`` of ``version_folder``, its lineage fields read
    from lineage.json when the version is of format 2 and holds it as the manifest lists it. A
    lineage.json that is missing or whose sha256 is not the listed one leaves the manifest's copy
    in place (``verify_version`` names the difference), or with ``strict`` is refused (ValueError),
    for readers that take only verified files (the catalog). Cost: reads one small file."""
    if raw.get("format", LEGACY_FORMAT) == LEGACY_FORMAT:
        return Manifest.from_dict(raw)
    path = Path(version_folder) / LINEAGE
    recorded = {f.get("path"): f.get("sha256") for f in raw.get("files", ())}
    if not path.is_file() or LINEAGE not in recorded or sha256_file(path) != recorded[LINEAGE]:
        if strict:
            raise ValueError(
                f"{path}: missing, or its sha256 differs from the one {MANIFEST} records; run `apertus audit verify`"
            )
        return Manifest.from_dict(raw)
    lineage = read_record(path)
    return Manifest.from_dict({**raw, **{name: lineage[name] for name in LINEAGE_FIELDS if name in lineage}})


def version_folder(datasets_root: Path, ref: str) -> Path:
    """The folder of ``asset/version_id`` (a unique prefix of the id is accepted)."""
    asset, _, version = ref.partition("/")
    if not version:
        raise ValueError(f"{ref!r}: a dataset version is named 'asset/version_id'")
    matches = sorted((datasets_root / asset).glob(f"{version}*"))
    if len(matches) != 1:
        found = "no" if not matches else f"{len(matches)}"
        raise ValueError(f"{ref!r}: {found} dataset versions match under {datasets_root / asset}")
    return matches[0]


def verify_version(folder: Path, *, since_sealing: bool = False) -> list[str]:
    """Re-hash a version folder against its manifest; return what differs (empty list = intact).

    ``since_sealing``: a file this process hashed when it sealed ``folder`` and whose stamp is
    unchanged since is taken as hashed then (records.seal_stamps: the step's own check, which
    would otherwise hash the version a second time); every other file is re-hashed. Cost: O(bytes
    of the files re-hashed) plus a ``stat`` per file.

    Every file at any depth is checked except the top-level manifest itself (a ``manifest.json``
    deeper down is an ordinary file). A version of format 2 must hold lineage.json in the canonical
    form, agreeing with the manifest's copy of its fields; one of format 1 (older code) has none. A sealed version holds only regular files and folders: every
    symbolic link inside it, to a file or a folder, is reported and never followed.
    """
    raw = read_manifest(folder)
    manifest = Manifest.from_dict(raw)  # the files as listed; lineage.json is checked on its own
    problems = []
    if raw.get("format", LEGACY_FORMAT) != LEGACY_FORMAT:
        problems += lineage_problems(folder, raw)
    recorded = {f.path: f for f in manifest.files}
    files, links = _walk(folder)
    for rel, target in sorted(links.items()):
        problems.append(
            f"{folder / rel}: a symbolic link (to {target}); a sealed version holds only regular files"
        )
    present = {
        rel: recorded[rel].sha256
        if since_sealing and rel in recorded and seal_stamps.unchanged_since_sealing(folder, rel)
        else sha256_file(folder / rel)
        for rel in files
    }
    for path in sorted(recorded.keys() - present.keys() - links.keys()):
        problems.append(f"{folder / path}: missing (recorded in {MANIFEST})")
    for path in sorted(present.keys() - recorded.keys()):
        problems.append(f"{folder / path}: not recorded in {MANIFEST}")
    for path in sorted(recorded.keys() & present.keys()):
        if recorded[path].sha256 != present[path]:
            problems.append(
                f"{folder / path}: sha256 {present[path][:16]}… differs from recorded {recorded[path].sha256[:16]}…"
            )
    if version_id_of(manifest.files) != manifest.version_id:
        problems.append(f"{folder / MANIFEST}: version_id does not match the Merkle root of its files")
    if folder.name != manifest.version_id:
        problems.append(f"{folder}: folder name differs from the manifest's version_id {manifest.version_id}")
    return problems


def _walk(folder: Path) -> tuple[list[str], dict[str, str]]:
    """(relative paths of the regular files under ``folder`` but its manifest, symlink path -> target),
    following no link."""
    files, links = [], {}
    for directory, subfolders, names in os.walk(folder, followlinks=False):
        base = Path(directory)
        for name in [*subfolders, *names]:
            path = base / name
            rel = path.relative_to(folder).as_posix()
            if path.is_symlink():
                links[rel] = os.readlink(path)
            elif name in names and path != folder / MANIFEST:
                files.append(rel)
        subfolders[:] = [d for d in subfolders if not (base / d).is_symlink()]
    return files, links
