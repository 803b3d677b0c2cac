"""The audit index: one global, sealed index of every pinned version, so ``apertus audit contains``
and ``lineage`` never open every manifest and every lookup (format "apertus.audit_index/1",
docs/audit.md). This module owns its names and format and reads it with the standard library only;
records.audit_index_build writes it.

    <data>/audit_index/state.json            the segments, newest last, and the ledger entry pinning them
    <data>/audit_index/<root>.seg            one immutable segment (named by its root)

A segment covers a set of versions (each version is in exactly one segment) and is laid out as a
lookup file is (records.lookup_file: MAGIC, JSON header, sections, then ``block_hashes``, the
sha256 of each 16 KiB piece before it; the segment's root is the sha256 of that section):

    names          every version's ref, ascending, joined by newlines (UTF-8): ordinal i is the i-th
    flags          one byte per version: DOCUMENTS (it holds documents), KEYED (its lookup's keys are
                   in this segment)
    facts_offsets  (versions + 1) big-endian uint64: where each version's facts start in ``facts``
    facts          per version, canonical JSON {"created_at", "parents", "snapshot"}
    sha256         36 bytes per (document sha256, version ordinal): the digest, then the ordinal as a
                   big-endian uint32; ascending, one row per distinct pair
    url_keys       12 bytes per (url key, ordinal): the lookup's URL key (first 8 bytes of
                   sha256(url)), then the ordinal; ascending
    parents        the refs named as a parent by a version of documents here, distinct, ascending,
                   joined by newlines (a version of documents is a chain end unless one names it)

Trust (the lookups' rule, one level up): ``state.json`` names each segment with its root, and the
state's root (sha256 of the canonical JSON of its segment list) is pinned in the ledger: in the
``dataset_version_created`` (or ``model_trained``) entry of the version whose pin made that state,
as ``audit_index_root``, or in an ``audit_index_rebuilt`` entry. The state carries a copy of that
entry, checked against the ledger's leaf hash at its index (one 32-byte read). Every segment byte
is then checked against its piece hash before use; a difference raises ``LookupIntegrityError``
naming the file and the piece, never an answer.

Segments merge like a binary counter (records.audit_index_build), so there are at most
log2(versions) + 1 of them and a key probe costs O(log versions) segments x O(log keys) pieces.
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
from dataclasses import dataclass
from pathlib import Path

from records.canonical import canonical_json
from records.layout import DataLayout
from records.lookup_file import HashedFile, LookupIntegrityError, sectioned_header

AUDIT_INDEX = "audit_index"
STATE = "audit_state.json"
STATE_SEGMENTS = "segment_list"  # the state's key for its segments (their names and roots)
SEGMENT_SUFFIX = ".seg"
INDEX_ROOT = "audit_index_root"  # the ledger payload key pinning a state's root
MAGIC = b"APAUDIDX"
FORMAT = "apertus.audit_index/1"
SECTIONS = ("names", "flags", "facts_offsets", "facts", "sha256", "url_keys", "parents", "block_hashes")
DOCUMENTS, KEYED = 1, 2  # version flags
SHA_ROW, URL_ROW = 36, 12
REBUILD = "rebuild it (apertus audit index --audit)"


@dataclass(frozen=True)
class Facts:
    """What the answers need of a version besides its documents, without its manifest."""

    parents: tuple[str, ...]
    snapshot: str | None
    created_at: str | None
    documents: bool  # a version of documents (records.versions.holds_documents)
    keyed: bool  # its documents' keys are in the index (else: ask its lookup or tables)


def index_folder(layout: DataLayout) -> Path:
    return layout.root / AUDIT_INDEX


def state_path(layout: DataLayout) -> Path:
    return index_folder(layout) / STATE


def state_root(segments: list[dict]) -> str:
    """The root a state is pinned by: hex sha256 of the canonical JSON of its segment list."""
    return hashlib.sha256(canonical_json(segments)).hexdigest()


def segment_header(lengths: dict[str, int], counts: dict[str, int]) -> bytes:
    return sectioned_header(MAGIC, {"format": FORMAT, **counts}, SECTIONS, lengths)


class Segment(HashedFile):
    """One segment opened for reading, checked against its root (see HashedFile for the costs)."""

    MAGIC, FORMAT, KIND, REBUILD, REWRITE = MAGIC, FORMAT, "audit index segment", REBUILD, REBUILD

    def _parse(self, header: dict) -> None:
        self.count, self.sha_rows, self.url_rows = header["versions"], header["sha_rows"], header["url_rows"]

    def names(self) -> list[str]:
        """Every version's ref, by ordinal: one read and one split, O(versions)."""
        return self.section("names").decode().split("\n") if self.count else []

    def flags(self) -> bytes:
        return self.section("flags")

    def facts(self, ordinal: int) -> dict:
        base = self.sections["facts_offsets"][0] + 8 * ordinal
        start, end = struct.unpack(">QQ", self._read(base, base + 16))
        facts = self.sections["facts"][0]
        return json.loads(self._read(facts + start, facts + end))

    def parents(self) -> list[str]:
        data = self.section("parents")
        return data.decode().split("\n") if data else []

    def _ordinals(self, section: str, width: int, count: int, key: bytes) -> list[int]:
        base, found = self.sections[section][0], []
        i = self._first(section, width, count, key)
        while i < count:
            row = self._read(base + i * width, base + (i + 1) * width)
            if row[: len(key)] != key:
                break
            found.append(struct.unpack(">I", row[len(key) :])[0])
            i += 1
        return found

    def ordinals_with_sha256(self, digest: bytes) -> list[int]:
        """Ordinals of the versions holding a document with this sha256 (32 bytes). O(log rows)."""
        return self._ordinals("sha256", SHA_ROW, self.sha_rows, digest)

    def ordinals_with_url_key(self, key: bytes) -> list[int]:
        """Ordinals of the versions holding a document whose URL has this key (8 bytes); a key may
        be shared by another URL, so the version's lookup is asked for the URL itself."""
        return self._ordinals("url_keys", URL_ROW, self.url_rows, key)


@dataclass(frozen=True)
class State:
    """The checked state: its segments' (file name, root), and where its root is pinned."""

    segments: list[dict]
    where: str


def read_state(layout: DataLayout) -> State | None:
    """The index's state, checked against the ledger entry that pins it (its copy of the entry
    against the ledger's leaf hash: one 32-byte read); None when the data folder has no index.
    LookupIntegrityError naming the state file when it does not match."""
    from records.pins import committed

    path = state_path(layout)
    try:
        state = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except ValueError as e:
        raise LookupIntegrityError(f"{path}: not an audit index state ({e}); {REBUILD}") from None
    try:
        segments, index, line = state[STATE_SEGMENTS], state["pin"]["index"], state["pin"]["entry"]
        entry = json.loads(line)
        pinned = entry["payload"].get(INDEX_ROOT)
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        raise LookupIntegrityError(f"{path}: not an audit index state ({e}); {REBUILD}") from None
    where = f"ledger entry {index}"
    if entry.get("index") != index or not committed(layout, index, line):
        raise LookupIntegrityError(
            f"{path}: its copy of {where} does not match the ledger; the state or the ledger was "
            f"changed: run `apertus audit verify`, then {REBUILD}"
        )
    if pinned != state_root(segments):
        raise LookupIntegrityError(
            f"{path}: its segment list does not match the root pinned in {where}; the state was "
            f"changed after it was pinned: {REBUILD}"
        )
    return State(segments, where)


def open_segments(layout: DataLayout, state: State) -> list[Segment]:
    """Every segment of ``state``, opened and checked against its root (close them when done)."""
    opened: list[Segment] = []
    try:
        for segment in state.segments:
            path = index_folder(layout) / segment["file"]
            try:
                opened.append(Segment(path, segment["root"], state.where))
            except FileNotFoundError:
                if read_state(layout) == state:  # not replaced meanwhile: it is gone
                    raise LookupIntegrityError(
                        f"{path}: missing (named in {state_path(layout)}); {REBUILD}"
                    ) from None
                raise
    except BaseException:
        for s in opened:
            s.__exit__()
        raise
    return opened


def open_index(layout: DataLayout) -> tuple[State | None, list[Segment]]:
    """The checked state and its open segments ((None, []) without an index). A writer replaces
    the state and then deletes the segments it no longer names, so a segment missing after the
    state was read is retried once with the new state (an open segment stays readable)."""
    for attempt in range(2):
        state = read_state(layout)
        if state is None:
            return None, []
        try:
            return state, open_segments(layout, state)
        except FileNotFoundError:
            if attempt:
                raise
    raise AssertionError("unreachable")


def disk_refs(layout: DataLayout) -> set[str]:
    """``asset/id`` of every folder under datasets/ (one listing per asset: no file is opened)."""
    if not layout.datasets.is_dir():
        return set()
    found = set()
    with os.scandir(layout.datasets) as assets:
        for asset in assets:
            if asset.is_dir() and not asset.name.startswith("."):
                found.update(
                    f"{asset.name}/{name}" for name in os.listdir(asset.path) if not name.startswith(".")
                )
    return found
