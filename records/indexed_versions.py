"""The versions of a data folder as the audit index sees them (records.audit_index), with the
manifests loaded only when asked for: what ``contains`` and ``lineage`` use instead of
records.versions.load_versions, which parses every manifest.

Opening costs one read of the index's state and of each segment's ``versions`` section (128 bytes
per version, hashed as read) and one directory listing per asset under datasets/; a version
whose folder is there but is not in the index (pinned before the index existed, by a run whose
index update failed, or not pinned) is read from its manifest, as before, and one in the index
whose folder is gone is left out. So the answers are those of the manifests, at the index's cost
when it is complete and at the old cost for what it lacks.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping

from records.audit_index import DOCUMENTS as DOCUMENTS_FLAG
from records.audit_index import Facts, disk_refs, open_index
from records.layout import DataLayout
from records.lookup import url_key
from records.manifest import MANIFEST, Manifest, load_manifest
from records.versions import holds_documents


class IndexedVersions(Mapping):
    """``asset/version_id`` -> Manifest (loaded on first access), plus each version's Facts from the
    index, and which versions hold a document key. Use as a context manager (segments stay open)."""

    def __init__(self, layout: DataLayout):
        self.layout = layout
        self._manifests: dict[str, Manifest] = {}
        self._where: dict[str, tuple[int, int]] = {}  # ref -> (segment, ordinal)
        self._ordinals: list[list[str]] = []  # each segment's refs by ordinal
        self._documents: set[str] = set()  # versions of documents
        self._unkeyed: set[str] = set()  # versions of documents whose keys the index lacks
        present = disk_refs(layout)
        _, self._segments = open_index(layout)
        for s, segment in enumerate(self._segments):
            names, flags = segment.names(), segment.flags()
            self._ordinals.append(names)
            self._where.update((ref, (s, i)) for i, ref in enumerate(names))
            documents = [ref for ref, flag in zip(names, flags, strict=True) if flag & DOCUMENTS_FLAG]
            self._documents.update(documents)
            self._unkeyed.update(
                ref for ref, flag in zip(names, flags, strict=True) if flag == DOCUMENTS_FLAG
            )
        gone = self._where.keys() - present
        for ref in gone:  # in the index, its folder removed since
            del self._where[ref]
        self._documents -= gone
        self._unkeyed -= gone
        for ref in sorted(present - self._where.keys()):  # not in the index: as load_versions reads it
            folder = layout.datasets / ref
            if (folder / MANIFEST).exists():
                try:
                    self._manifests[ref] = load_manifest(folder)
                except (ValueError, KeyError, TypeError) as e:
                    raise ValueError(f"{folder / MANIFEST}: not a readable manifest ({e})") from None
                if holds_documents(self._manifests[ref]):
                    self._documents.add(ref)
                    self._unkeyed.add(ref)
        self._unindexed = sorted(self._manifests)
        self._refs = sorted([*self._where, *self._unindexed])

    def __enter__(self) -> IndexedVersions:
        return self

    def __exit__(self, *exc) -> None:
        for segment in self._segments:
            segment.__exit__()

    def __iter__(self) -> Iterator[str]:
        return iter(self._refs)

    def __len__(self) -> int:
        return len(self._refs)

    def __contains__(self, ref) -> bool:
        return ref in self._where or ref in self._manifests

    def __getitem__(self, ref: str) -> Manifest:
        if ref not in self._manifests:
            if ref not in self._where:
                raise KeyError(ref)
            self._manifests[ref] = load_manifest(self.layout.datasets / ref)
        return self._manifests[ref]

    def facts(self, ref: str) -> Facts:
        """The version's facts: from the index (one small read) or, unindexed, its manifest."""
        if ref in self._where:
            s, ordinal = self._where[ref]
            f = self._segments[s].facts(ordinal)
            documents = ref in self._documents
            return Facts(tuple(f["parents"]), f["snapshot"], f["created_at"], documents,
                         documents and ref not in self._unkeyed)  # fmt: skip
        m = self[ref]
        return Facts(tuple(m.parents), m.snapshot, m.created_at, holds_documents(m), False)

    def holds_documents(self, ref: str) -> bool:
        return ref in self._documents

    def documents(self) -> set[str]:
        """Every version of documents."""
        return set(self._documents)

    def leaves(self) -> list[str]:
        """As records.versions.leaves, from the index's flags and parent lists: the versions of
        documents that no version of documents names as a parent. O(versions), in C loops."""
        used = {p for s in self._segments for p in s.parents()}
        used.update(p for r in self._unindexed if r in self._documents for p in self[r].parents)
        return sorted(self._documents - used)

    def holding(self, *, url: str | None = None, sha256: str | None = None) -> set[str]:
        """Versions the index says may hold a document with this URL (same URL key) or sha256, plus
        every version of documents whose keys it does not hold (their lookups must be asked).
        O(segments x log keys)."""
        found: set[str] = set()
        for s, segment in enumerate(self._segments):
            if url is not None:
                ordinals = segment.ordinals_with_url_key(url_key(url))
            else:
                ordinals = segment.ordinals_with_sha256(bytes.fromhex(sha256 or ""))
            found.update(self._ordinals[s][o] for o in ordinals)
        return (found & self._where.keys()) | self._unkeyed
