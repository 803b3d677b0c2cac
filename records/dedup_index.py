"""The cross-snapshot deduplication index: the kept documents of earlier snapshots' ``deduplicated``
versions, as exact keys, MinHash band keys and signatures, probed without reading a segment whole.

Layout (under the data folder; ``<fp>`` is the fingerprint of the signature settings, so documents
signed with other settings are never compared)::

    dedup_index/<fp>/dedup_index.json         the record: registrations and each snapshot's current version
    dedup_index/<fp>/segments/<version id>/   one immutable segment per deduplicated version (its kept documents)
    dedup_index/<fp>/merged/<block id>/       a segment merged from 2**k consecutive ones (built on demand)

A segment folder holds ``segment.json`` (format, the versions and snapshots of its rows, counts) and
``.npy`` arrays: ``doc_ids`` (N,) bytes, ``doc_sha256`` (N, 32) uint8, ``sources`` (N,) uint32 (row ->
position in the versions list), ``signatures`` (Ns, P) uint32 and ``signed_rows`` (Ns,) uint32 for the
rows that have a signature, ``exact_keys``/``exact_rows`` (N,) sorted by key (the first 64 bits of the
sha256), and ``band_keys``/``band_rows`` (bands, Ns), each band sorted by key. Probes ``np.load``
them as memory maps and binary-search the sorted keys: a probe of M documents against a segment of N
costs O(M log N) page reads, not O(N).

Merging: the segments of a registration prefix of length p are covered by the aligned blocks of
p's binary decomposition (p = 13 -> [0, 8), [8, 12), [12, 13)), so a probe opens at most log2(p) + 1
segments. A block of 2**k is built once from its two halves and named by the hash of its member
versions; when an earlier snapshot is re-curated, the blocks that hold it are rebuilt when next
needed. Over a history of n snapshots a document is copied into O(log n) blocks.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from records.canonical import canonical_json, read_record, write_record
from records.file_lock import exclusive
from records.hashing import sha256_bytes
from records.layout import DataLayout

DEDUP_INDEX = "dedup_index"
INDEX_RECORD = "dedup_index.json"
SEGMENTS = "segments"
MERGED = "merged"
SEGMENT_META = "segment.json"
INDEX_LOCK = ".dedup_index.lock"
INDEX_FORMAT = "apertus.dedup-index/1"
ARRAYS = ("doc_ids", "doc_sha256", "sources", "signatures", "signed_rows", "exact_keys", "exact_rows",
          "band_keys", "band_rows")  # fmt: skip


def index_folder(layout: DataLayout, fingerprint: str) -> Path:
    return layout.root / DEDUP_INDEX / fingerprint


def read_index_record(folder: Path) -> dict:
    """The index record (``{"format", "snapshots", "ledger"}``: per snapshot its registration and
    current version, and how far the ledger was read); an empty one when there is none."""
    path = folder / INDEX_RECORD
    if not path.exists():
        return {"format": INDEX_FORMAT, "snapshots": {}, "ledger": {"size": 0, "offset": 0}}
    record = read_record(path)
    if record.get("format") != INDEX_FORMAT:
        raise ValueError(f"{path}: format {record.get('format')!r}, expected {INDEX_FORMAT!r}")
    return record


def write_index_record(folder: Path, record: dict) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    write_record(folder / INDEX_RECORD, record)


@contextmanager
def locked(folder: Path) -> Iterator[None]:
    """Hold the index's exclusive lock (steps of several snapshots may register at once)."""
    with exclusive(folder / INDEX_LOCK):
        yield


def index_version(entries: list[tuple[str, str]]) -> str:
    """The id of an index state: sha256 of the canonical JSON list of (snapshot, deduplicated version
    ref), in registration order. A version's lineage records it; anyone can recompute it."""
    return sha256_bytes(canonical_json([list(e) for e in entries]))


def segment_path(folder: Path, version_id: str) -> Path:
    return folder / SEGMENTS / version_id


def write_segment(
    dest: Path,
    *,
    versions: list[str],
    snapshots: list[str],
    ids: list[str],
    sha256_hex: list[str],
    sources: np.ndarray,
    exact_keys: np.ndarray,
    signatures: np.ndarray,
    signed_rows: np.ndarray,
    band_keys: np.ndarray,
) -> None:
    """Write a segment to ``dest`` (whole or not at all; an existing one is kept: it is immutable).

    ``exact_keys`` (N,) uint64 per row; ``signatures`` (Ns, P) and ``band_keys`` (Ns, bands) uint64 for
    the rows ``signed_rows`` (documents without shingles have no near-duplicates). Cost: one sort
    per band, O(N log N) time and O(N) memory per band.
    """
    width = max([len(i.encode()) for i in ids] + [1])
    exact_order = np.argsort(exact_keys, kind="stable")
    band_order = np.argsort(band_keys.T, axis=1, kind="stable")  # (bands, Ns)
    arrays = {
        "doc_ids": np.array([i.encode() for i in ids], dtype=f"S{width}"),
        "doc_sha256": np.frombuffer(b"".join(bytes.fromhex(s) for s in sha256_hex), np.uint8).reshape(-1, 32),
        "sources": np.asarray(sources, np.uint32),
        "signatures": np.asarray(signatures, np.uint32),
        "signed_rows": np.asarray(signed_rows, np.uint32),
        "exact_keys": np.asarray(exact_keys, np.uint64)[exact_order],
        "exact_rows": exact_order.astype(np.uint32),
        "band_keys": np.take_along_axis(band_keys.T.astype(np.uint64), band_order, axis=1),
        "band_rows": band_order.astype(np.uint32),
    }
    meta = {"format": INDEX_FORMAT, "versions": versions, "snapshots": snapshots, "num_documents": len(ids),
            "num_signed": len(signed_rows), "num_bands": int(band_keys.shape[1]) if band_keys.ndim == 2 else 0}  # fmt: skip
    _write_folder(dest, arrays, meta)


def _write_folder(dest: Path, arrays: dict[str, np.ndarray], meta: dict) -> None:
    if dest.exists():
        return
    tmp = dest.with_name(f".{dest.name}.{uuid.uuid4().hex[:8]}.tmp")
    tmp.mkdir(parents=True)
    for name, array in arrays.items():
        np.save(tmp / f"{name}.npy", array)
    write_record(tmp / SEGMENT_META, meta)
    try:
        os.replace(tmp, dest)
    except OSError:  # another process wrote the same (content-addressed) segment first
        shutil.rmtree(tmp, ignore_errors=True)


@dataclass
class Segment:
    """A segment opened for probing: its record and its arrays as read-only memory maps."""

    folder: Path
    meta: dict
    _maps: dict[str, np.ndarray] = field(default_factory=dict, repr=False)

    @classmethod
    def open(cls, folder: Path) -> Segment:
        meta = read_record(folder / SEGMENT_META)
        if meta.get("format") != INDEX_FORMAT:
            raise ValueError(f"{folder / SEGMENT_META}: not a segment of {INDEX_FORMAT}")
        return cls(folder, meta)

    def array(self, name: str) -> np.ndarray:
        """One of the segment's arrays, memory-mapped (opened once per Segment)."""
        if name not in self._maps:
            self._maps[name] = np.load(self.folder / f"{name}.npy", mmap_mode="r")
        return self._maps[name]

    def exact_candidates(self, keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(query positions, rows) of the rows whose exact key equals a query key. O(M log N)."""
        return _lookup(self.array("exact_keys"), self.array("exact_rows"), keys)

    def band_candidates(self, band: int, keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(query positions, signed row positions) sharing band ``band``'s key. O(M log Ns)."""
        if self.meta["num_signed"] == 0:
            return np.zeros(0, np.int64), np.zeros(0, np.int64)
        return _lookup(self.array("band_keys")[band], self.array("band_rows")[band], keys)

    def rows_of_signed(self, signed: np.ndarray) -> np.ndarray:
        return self.array("signed_rows")[signed].astype(np.int64)

    def describe(self, rows: np.ndarray) -> list[tuple[str, str, str, str]]:
        """(doc id, sha256 hex, version ref, snapshot) of each row; reads only those rows."""
        ids, shas, sources = self.array("doc_ids"), self.array("doc_sha256"), self.array("sources")
        versions, snapshots = self.meta["versions"], self.meta["snapshots"]
        out = []
        for row in np.asarray(rows, np.int64).tolist():
            source = int(sources[row])
            out.append((ids[row].decode(), bytes(shas[row]).hex(), versions[source], snapshots[source]))
        return out


def _lookup(sorted_keys: np.ndarray, rows: np.ndarray, keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    # Searching in key order walks the memory map forwards: each page is faulted in at most once.
    order = np.argsort(np.asarray(keys, np.uint64), kind="stable")
    keys = np.asarray(keys, np.uint64)[order]
    lo = np.searchsorted(sorted_keys, keys, side="left")
    hi = np.searchsorted(sorted_keys, keys, side="right")
    counts = hi - lo
    query = np.repeat(order, counts)
    starts = np.repeat(lo, counts)
    within = np.arange(len(query)) - np.repeat(np.cumsum(counts) - counts, counts)
    return query, np.asarray(rows[starts + within], np.int64)


def prefix_blocks(length: int) -> list[tuple[int, int]]:
    """The aligned (start, size) blocks covering registration positions [0, length), largest first:
    one per set bit of ``length``."""
    blocks, start = [], 0
    for bit in reversed(range(length.bit_length())):
        if length >> bit & 1:
            blocks.append((start, 1 << bit))
            start += 1 << bit
    return blocks


def open_prefix(folder: Path, version_ids: list[str]) -> list[Segment]:
    """The segments to probe for the versions ``version_ids`` (in registration order): at most
    log2(len) + 1, merged blocks built where missing (O(documents of a missing block) once)."""
    return [
        _block(folder, version_ids[start : start + size]) for start, size in prefix_blocks(len(version_ids))
    ]


def _block(folder: Path, version_ids: list[str]) -> Segment:
    if len(version_ids) == 1:
        path = segment_path(folder, version_ids[0])
        if not path.exists():
            raise ValueError(f"{path}: missing segment of the dedup index (re-run that version's dedup step)")
        return Segment.open(path)
    dest = folder / MERGED / sha256_bytes(canonical_json(version_ids))
    if not dest.exists():
        half = len(version_ids) // 2
        _merge([_block(folder, version_ids[:half]), _block(folder, version_ids[half:])], dest)
    return Segment.open(dest)


def _merge(parts: list[Segment], dest: Path) -> None:
    """Concatenate segments (rows in order) and re-sort their keys. O(rows log rows)."""
    versions, snapshots, arrays = [], [], {name: [] for name in ARRAYS}
    num_rows = 0
    for part in parts:
        arrays["sources"].append(np.asarray(part.array("sources")) + len(versions))
        arrays["signed_rows"].append(np.asarray(part.array("signed_rows")) + num_rows)
        arrays["exact_rows"].append(np.asarray(part.array("exact_rows")) + num_rows)
        arrays["band_rows"].append(
            np.asarray(part.array("band_rows")) + sum(len(s) for s in arrays["signatures"])
        )
        for name in ("doc_ids", "doc_sha256", "signatures", "exact_keys", "band_keys"):
            arrays[name].append(np.asarray(part.array(name)))
        versions += part.meta["versions"]
        snapshots += part.meta["snapshots"]
        num_rows += part.meta["num_documents"]
    merged = {name: np.concatenate(arrays[name], axis=1 if name.startswith("band_") else 0) for name in ARRAYS
              if name != "doc_ids"}  # fmt: skip
    merged["doc_ids"] = np.concatenate([a.astype(f"S{max(x.dtype.itemsize for x in arrays['doc_ids'])}")
                                        for a in arrays["doc_ids"]])  # fmt: skip
    order = np.argsort(merged["exact_keys"], kind="stable")
    merged["exact_keys"], merged["exact_rows"] = merged["exact_keys"][order], merged["exact_rows"][order]
    order = np.argsort(merged["band_keys"], axis=1, kind="stable")
    merged["band_keys"] = np.take_along_axis(merged["band_keys"], order, axis=1)
    merged["band_rows"] = np.take_along_axis(merged["band_rows"], order, axis=1)
    meta = {"format": INDEX_FORMAT, "versions": versions, "snapshots": snapshots, "num_documents": num_rows,
            "num_signed": len(merged["signed_rows"]), "num_bands": parts[0].meta["num_bands"]}  # fmt: skip
    _write_folder(dest, merged, meta)
