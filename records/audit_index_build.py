"""Writing the audit index (the format and the reader: records.audit_index).

``indexing`` adds a version when it is pinned (records.pins.ensure_pinned): its facts from its
manifest and its documents' keys from its lookup file (checked against the lookup root being
pinned), as a one-version segment, then merges like a binary counter: while the newest segment
holds no more versions than the new one, they become one. Segments' sizes so strictly decrease,
there are at most log2(versions) + 1 of them, and each version's keys are rewritten at most
log2(versions) times over the index's life: a pin costs O(its rows) plus, amortized,
O(log versions) times that. ``rebuild_index`` writes the whole index again from the manifests and
the pinned lookups (a data folder made before the index, or a damaged one) as one segment,
pinned by an ``audit_index_rebuilt`` ledger entry. numpy does the sorting; queries never import
this module.
"""

from __future__ import annotations

import logging
import os
import struct
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import NamedTuple

from records.audit_index import (
    DOCUMENTS,
    INDEX_ROOT,
    KEYED,
    SEGMENT_SUFFIX,
    SHA_ROW,
    STATE,
    STATE_SEGMENTS,
    URL_ROW,
    Segment,
    index_folder,
    open_segments,
    read_state,
    segment_header,
    state_path,
    state_root,
)
from records.canonical import canonical_json
from records.file_lock import exclusive
from records.layout import DataLayout
from records.lookup import lookup_path
from records.lookup_file import LookupFile, write_rooted
from records.manifest import Manifest, load_manifest
from records.versions import holds_documents

LOCK = ".audit_index.lock"  # serializes the index's writers: read state, add, pin, write state
log = logging.getLogger(__name__)


class Part(NamedTuple):
    """A segment's content before it is written: versions (ref, flags, facts JSON) in ref order,
    and its key rows as numpy uint8 arrays, sorted and distinct."""

    versions: list[tuple[str, int, bytes]]
    sha: object  # (rows, SHA_ROW)
    url: object  # (rows, URL_ROW)
    parents: list[str]  # refs named as a parent by its versions of documents, distinct, ascending


def version_part(layout: DataLayout, manifest: Manifest, root: str | None) -> Part:
    """The one-version part of ``manifest``'s version: its keys from its lookup file, checked
    against ``root`` (the lookup_root its entry pins; None: its keys are not indexed). O(its rows)."""
    import numpy as np

    documents = holds_documents(manifest)
    facts = canonical_json(
        {"created_at": manifest.created_at, "parents": list(manifest.parents), "snapshot": manifest.snapshot}
    )
    sha, url = np.zeros((0, 32), np.uint8), np.zeros((0, 8), np.uint8)
    keyed = documents and root is not None and lookup_path(layout, manifest.ref).exists()
    if keyed:
        with LookupFile(lookup_path(layout, manifest.ref), root, "the entry being pinned") as lookup:
            sha = np.frombuffer(lookup.sha256s(), np.uint8).reshape(-1, 32)
            url = np.frombuffer(lookup.url_keys(), np.uint8).reshape(-1, 12)[:, :8]
    sha = np.unique(np.hstack([sha, np.zeros((len(sha), 4), np.uint8)]), axis=0)
    url = np.unique(np.hstack([url, np.zeros((len(url), 4), np.uint8)]), axis=0)
    parents = sorted(set(manifest.parents)) if documents else []
    flags = (DOCUMENTS if documents else 0) | (KEYED if keyed else 0)
    return Part([(manifest.ref, flags, facts)], sha, url, parents)


def merge(parts: list[Part]) -> Part:
    """One part holding the versions and keys of ``parts`` (no version in two of them), ordinals
    renumbered in ref order. O(their rows log rows)."""
    import numpy as np

    versions = sorted(v for part in parts for v in part.versions)
    position = {ref: i for i, (ref, _, _) in enumerate(versions)}
    if len(position) != len(versions):
        raise ValueError("a version is in two audit index segments")
    shas, urls = [], []
    for part in parts:
        remap = np.array([position[ref] for ref, _, _ in part.versions], ">u4")
        for rows, into, width in ((part.sha, shas, 32), (part.url, urls, 8)):
            old = rows[:, width:].copy().view(">u4").ravel()
            new = remap[old].astype(">u4").view(np.uint8).reshape(-1, 4)
            into.append(np.hstack([rows[:, :width], new]))
    sha = np.unique(np.vstack(shas), axis=0) if shas else np.zeros((0, SHA_ROW), np.uint8)
    url = np.unique(np.vstack(urls), axis=0) if urls else np.zeros((0, URL_ROW), np.uint8)
    parents = sorted({p for part in parts for p in part.parents})
    return Part(versions, sha, url, parents)


def read_part(segment: Segment) -> Part:
    """A segment's content, every byte checked against its root as it is read."""
    import numpy as np

    data = segment.section("facts")
    facts = [data[a:b] for a, b in _pairs(segment.section("facts_offsets"))]
    flags = segment.flags()
    versions = [(ref, flags[i], facts[i]) for i, ref in enumerate(segment.names())]

    def rows(name: str, width: int):
        return np.frombuffer(segment.section(name), np.uint8).reshape(-1, width)

    return Part(versions, rows("sha256", SHA_ROW), rows("url_keys", URL_ROW), segment.parents())


def _pairs(offsets: bytes) -> list[tuple[int, int]]:
    values = struct.unpack(f">{len(offsets) // 8}Q", offsets)
    return list(zip(values[:-1], values[1:], strict=True))


def write_segment(layout: DataLayout, part: Part) -> dict:
    """Write ``part`` as a segment file named by its root; return its state record
    {"file", "root", "versions"}. Writing the same part again gives the same bytes."""
    for ref, _, _ in part.versions:
        if "\n" in ref or "\n" in "".join(part.parents):
            raise ValueError(f"{ref}: a ref holding a newline cannot be indexed")
    facts = b"".join(f for _, _, f in part.versions)
    offsets, position = [0], 0
    for _, _, f in part.versions:
        position += len(f)
        offsets.append(position)
    bodies = {
        "names": "\n".join(ref for ref, _, _ in part.versions).encode(),
        "flags": bytes(flags for _, flags, _ in part.versions),
        "facts_offsets": struct.pack(f">{len(offsets)}Q", *offsets),
        "facts": facts,
        "sha256": part.sha.tobytes(),
        "url_keys": part.url.tobytes(),
        "parents": "\n".join(part.parents).encode(),
    }
    counts = {
        "versions": len(part.versions),
        "sha_rows": len(part.sha),
        "url_rows": len(part.url),
    }
    content = segment_header({k: len(v) for k, v in bodies.items()}, counts) + b"".join(bodies.values())
    name, root = write_rooted(index_folder(layout), content, SEGMENT_SUFFIX)
    return {"file": name, "root": root, "versions": len(part.versions)}


@dataclass
class Update:
    """An index update in progress (see ``indexing``): ``root`` goes into the pinning entry."""

    layout: DataLayout
    segments: list[dict] = field(default_factory=list)
    root: str | None = None

    def commit(self, index: int, line: str) -> None:
        """Write the state the ledger entry ``index`` (stored as ``line``) pins; drop old segments."""
        if self.root is None:
            return
        try:
            write_state(self.layout, self.segments, index, line)
        except OSError as e:  # the entry is appended: the pin goes on, the index stays as it was
            log.warning("audit index state not written (%s); run `apertus audit index --audit`", e)


def write_state(layout: DataLayout, segments: list[dict], index: int, line: str) -> None:
    path = state_path(layout)
    tmp = path.with_name(f".{STATE}.{os.getpid()}.tmp")
    tmp.write_bytes(
        canonical_json({"pin": {"entry": line, "index": index}, STATE_SEGMENTS: segments}) + b"\n"
    )
    os.replace(tmp, path)
    keep = {s["file"] for s in segments}
    for old in index_folder(layout).glob(f"*{SEGMENT_SUFFIX}"):
        if old.name not in keep:
            old.unlink(missing_ok=True)


@contextmanager
def locked(layout: DataLayout):
    with exclusive(index_folder(layout) / LOCK):
        yield


@contextmanager
def indexing(layout: DataLayout, ref: str, lookup_root_: str | None):
    """Hold the index's lock while ``ref`` is pinned: yields an ``Update`` whose ``root`` (None if
    the version could not be indexed) the caller puts in the entry, then calls ``commit`` with it.

    The index is derived: a failure to read or write it is logged and leaves the version out of
    it (queries then read that version's manifest and lookup: correct, slower; `apertus audit
    index --audit` writes it again), never a failed pin."""
    with locked(layout):
        update = Update(layout)
        try:
            update.segments = _added(layout, ref, lookup_root_)
            update.root = state_root(update.segments) if update.segments is not None else None
        except (OSError, ValueError, ImportError) as e:
            log.warning("%s: not added to the audit index (%s); run `apertus audit index --audit`", ref, e)
            update.root = None
        yield update


def _added(layout: DataLayout, ref: str, root: str | None) -> list[dict] | None:
    """The segment list with ``ref`` added and merged; None if it is indexed already."""
    state = read_state(layout)
    segments = [] if state is None else list(state.segments)
    part = version_part(layout, load_manifest(layout.datasets / ref), root)
    if state is not None:
        opened = open_segments(layout, state)
        try:
            if any(ref in s.names() for s in opened):  # only a rebuilt index holds unpinned versions
                return None
            while segments and segments[-1]["versions"] <= len(part.versions):
                segments.pop()
                part = merge([read_part(opened.pop()), part])
        finally:
            for s in opened:
                s.__exit__()
    return [*segments, write_segment(layout, part)]


def rebuild_index(layout: DataLayout) -> int:
    """Write the audit index again from every version's manifest and pinned lookup, pinned by an
    ``audit_index_rebuilt`` entry; return the number of versions. The versions go in pin order
    (ledger index; unpinned ones last) into the segments the binary counter would have made for
    them (4096 + 2048 + ... for 6,300), so a rebuilt index has the segments, roots and answers of
    an incremental one. O(all rows): for a folder made before the index, or a damaged one."""
    from records.ledger import Ledger
    from records.ledger.format import AUDIT_INDEX_REBUILT
    from records.pins import read_pin
    from records.versions import load_versions

    versions = load_versions(layout)
    with locked(layout):
        ordered = []
        for ref, manifest in versions.items():
            try:
                pin = read_pin(layout, ref)
            except ValueError:  # a bad marker: its lookup root is not trusted, its keys not indexed
                pin = None
            position = (0, pin.index, ref) if pin is not None else (1, 0, ref)
            root = None if pin is None else pin.payload.get("lookup_root")
            ordered.append((position, manifest, root))
        ordered.sort(key=lambda item: item[0])
        segments, start = [], 0
        for bit in reversed(range(len(ordered).bit_length())):
            size = 1 << bit
            if len(ordered) & size:
                chunk = ordered[start : start + size]
                segments.append(
                    write_segment(layout, merge([version_part(layout, m, r) for _, m, r in chunk]))
                )
                start += size
        entry = Ledger(layout.ledger).append(
            AUDIT_INDEX_REBUILT, {INDEX_ROOT: state_root(segments), "versions": len(versions)}
        )
        write_state(layout, segments, entry.index, entry.canonical_json)
    return len(versions)


def index_content(layout: DataLayout) -> dict:
    """What the index says, independent of how it is cut into segments (to compare a rebuilt index
    with an incremental one): ref -> (flags, facts, sorted sha256 hex, sorted url keys hex), and
    the parent hashes."""
    state = read_state(layout)
    if state is None:
        return {}
    opened = open_segments(layout, state)
    try:
        part = merge([read_part(s) for s in opened])
    finally:
        for s in opened:
            s.__exit__()
    refs = [ref for ref, _, _ in part.versions]
    by_ref: dict = {ref: (flags, facts.decode(), [], []) for ref, flags, facts in part.versions}
    for rows, column, width in ((part.sha, 2, 32), (part.url, 3, 8)):
        for row in rows:
            key, ordinal = bytes(row[:width]).hex(), int.from_bytes(bytes(row[width:]), "big")
            by_ref[refs[ordinal]][column].append(key)
    return {"versions": by_ref, "parents": part.parents}
