"""The lineage of a dataset version: every version it derives from, down to the raw snapshot files.

Each node carries what an auditor needs to reproduce or challenge a step: the version id and the
sha256 of its manifest, the step's config and code version, its counts, and the ledger entry that
pinned it. A chain's root (``raw_documents``) also lists its snapshot folder's files, hashed now:
they are raw input, outside any sealed version, so nothing about them is taken from a cache.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

from records.hashing import sha256_file
from records.layout import DataLayout
from records.manifest import MANIFEST, FileEntry, Manifest
from records.versions import ledger_records, load_versions, resolve


@dataclass(frozen=True)
class SourceFile:
    path: str  # relative to the data folder
    bytes: int
    sha256: str


@dataclass
class Node:
    """One version of the chain; ``manifest`` is None when the version named as a parent is missing."""

    ref: str
    manifest: Manifest | None
    manifest_sha256: str | None = None
    ledger_index: int | None = None
    parents: list[Node] = field(default_factory=list)
    snapshot_folder: str | None = None  # for a root: the inbox folder it was read from
    snapshot_files: list[SourceFile] = field(default_factory=list)

    @property
    def files(self) -> tuple[FileEntry, ...]:
        return self.manifest.files if self.manifest else ()

    def walk(self) -> list[Node]:
        """This node and every node below it, each once, depth first."""
        seen: dict[str, Node] = {}
        stack = [self]
        while stack:
            node = stack.pop()
            if node.ref not in seen:
                seen[node.ref] = node
                stack.extend(reversed(node.parents))
        return list(seen.values())


def lineage(layout: DataLayout, ref: str, *, use_index: bool = True) -> Node:
    """The lineage tree of ``ref`` (``asset/id`` or a unique prefix); ValueError if unknown.

    With ``use_index`` (the default) the versions are listed from the audit index
    (records.indexed_versions) and only the chain's manifests are read, each node's ledger entry
    from its pin marker (O(1) each; the ledger is scanned once only for a version without a good
    marker): the cost grows with the chain, not with the data folder. ``use_index=False`` reads
    every manifest and the whole ledger, with the same answer."""
    if use_index:
        from records.indexed_versions import IndexedVersions

        with IndexedVersions(layout) as versions:
            return _lineage(layout, versions, ref, _PinIndex(layout))
    return _lineage(layout, load_versions(layout), ref, ledger_records(layout))


class _PinIndex:
    """ref -> LedgerRecord-like (``.index``) from the pin markers, the ledger scanned only on a miss."""

    def __init__(self, layout: DataLayout):
        self.layout, self._scanned = layout, None

    def _record(self, ref: str):
        from records.pins import read_pin

        try:
            pin = read_pin(self.layout, ref)
        except ValueError:
            pin = None
        if pin is not None:
            return pin
        if self._scanned is None:
            self._scanned = ledger_records(self.layout)
        return self._scanned.get(ref)

    def __contains__(self, ref: str) -> bool:
        return self._record(ref) is not None

    def __getitem__(self, ref: str):
        return self._record(ref)


def _lineage(layout: DataLayout, versions, ref: str, records) -> Node:
    built: dict[str, Node] = {}

    def build(current: str) -> Node:
        if current in built:
            return built[current]
        manifest = versions.get(current)
        node = Node(current, manifest)
        built[current] = node
        if manifest is None:
            return node
        folder = layout.datasets / current
        node.manifest_sha256 = hashlib.sha256((folder / MANIFEST).read_bytes()).hexdigest()
        node.ledger_index = records[current].index if current in records else None
        node.parents = [build(p) for p in manifest.parents]
        if not manifest.parents and manifest.snapshot:
            node.snapshot_folder, node.snapshot_files = _snapshot_files(layout, manifest.snapshot)
        return node

    return build(resolve(versions, ref))


def _snapshot_files(layout: DataLayout, snapshot: str) -> tuple[str, list[SourceFile]]:
    folder = layout.snapshot_dir(snapshot)
    relative = folder.relative_to(layout.root).as_posix()
    if not folder.is_dir():
        return relative, []
    files = sorted(p for p in folder.rglob("*") if p.is_file())
    return relative, [
        SourceFile(f"{relative}/{p.relative_to(folder).as_posix()}", p.stat().st_size, sha256_file(p))
        for p in files
    ]


def config_summary(config: dict, limit: int = 6) -> str:
    """A one-line ``key=value`` digest of a step config's leaves (the first ``limit``)."""
    leaves = list(_leaves(config))
    shown = ", ".join(f"{k}={v}" for k, v in leaves[:limit])
    return shown + (f", … ({len(leaves) - limit} more)" if len(leaves) > limit else "")


def _leaves(value, prefix: str = ""):
    if isinstance(value, dict):
        for key in sorted(value):
            yield from _leaves(value[key], f"{prefix}{key}.")
    else:
        shown = f"[{len(value)} items]" if isinstance(value, list) and len(value) > 4 else value
        yield prefix.rstrip("."), shown
