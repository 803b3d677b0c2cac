"""Pinning a sealed version in the ledger, idempotently: every version gets exactly one creation entry
that counts (``dataset_version_created`` for data, ``model_trained`` for models), whichever run
sealed it.

A data version's payload names the version, its snapshot and parents, the code that made it, the
sha256 of its manifest as sealed (so ``apertus audit verify`` catches a manifest rewritten after
the fact) and, for a version of documents, the ``lookup_root`` of its lookup file
(records.lookup_file), so ``contains`` answers only from lookup bytes that were pinned.

After the append, a pin marker is written outside the sealed folder:

    <data>/pins/<asset>/<version id>.json    {"index": N, "entry": "<the entry's line as stored>"}

Asking "is this version pinned" reads that one file, and ``read_pin`` checks its copy of the entry
against the ledger's leaf hash at index N (one 32-byte read), so a step or a query never scans the
ledger. A version sealed by an earlier run but never pinned (the append failed, or the process was
killed between seal and append) has no marker: the next run that reaches it scans the ledger once
for its entry (O(ledger entries), only on that repair path), and if there is none appends one with
``"repinned": true``. Every append also adds the version to the audit index (records.audit_index)
and carries the index's new root as ``audit_index_root``, so the entry pins the index too. ``apertus audit verify`` notes such versions as "pinned late, at entry N";
``repin_all`` (``apertus audit repin``) does the same for a whole older data folder in one batch.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from records.hashing import sha256_file
from records.layout import DataLayout
from records.ledger.format import DATASET_VERSION_CREATED, ENTRIES, LEAF_HASHES
from records.manifest import MANIFEST, Manifest
from records.merkle import HASH_SIZE, leaf_hash

# (records.ledger loads its writer and its cryptography only on first use, so `contains` can check
# a pin without them at start-up.)
PINS = "pins"
REPINNED = "repinned"  # payload flag of a creation entry appended by a run that did not seal the version


@dataclass(frozen=True)
class Pin:
    """The ledger entry that pins a version: its index, its line as stored, and its payload."""

    index: int
    line: str
    payload: dict

    def where(self, layout: DataLayout) -> str:
        return f"{layout.ledger / ENTRIES} entry {self.index}"


def marker_path(layout: DataLayout, ref: str) -> Path:
    return layout.root / PINS / f"{ref}.json"


def read_pin(layout: DataLayout, ref: str) -> Pin | None:
    """The pin of ``ref`` from its marker, or None when it has none.

    The marker's copy of the entry is checked against the ledger's leaf hash at its index (one
    32-byte read): cost O(1) in the ledger's size. ValueError naming the marker when it disagrees
    with the ledger or names another version (fix: ``apertus audit repin`` rewrites markers).
    """
    path = marker_path(layout, ref)
    try:
        marker = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except ValueError as e:
        raise ValueError(f"{path}: not a pin marker ({e}); rewrite it with `apertus audit repin`") from None
    try:
        index, line = marker["index"], marker["entry"]
        entry = json.loads(line)
        payload = entry["payload"]
        named = payload.get("dataset_version") or payload.get("model_version")
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        raise ValueError(f"{path}: not a pin marker ({e}); rewrite it with `apertus audit repin`") from None
    hashes = layout.ledger / LEAF_HASHES
    if named != ref or entry.get("index") != index or not committed(layout, index, line):
        raise ValueError(
            f"{path}: its copy of ledger entry {index} does not match {hashes} (or names another "
            "version); the marker or the ledger was changed: run `apertus audit verify`, then "
            "`apertus audit repin` to rewrite markers from the ledger"
        )
    return Pin(index, line, payload)


def committed(layout: DataLayout, index, line: str) -> bool:
    """Whether ``line`` is the ledger's entry ``index`` as committed: its leaf hash equals the
    ledger's at that index (one 32-byte read, O(1) in the ledger's size)."""
    hashes = layout.ledger / LEAF_HASHES
    recorded = b""
    if type(index) is int and index >= 0 and hashes.exists():
        with open(hashes, "rb") as f:
            f.seek(index * HASH_SIZE)
            recorded = f.read(HASH_SIZE)
    return recorded == leaf_hash(line.encode())


def write_pin(layout: DataLayout, ref: str, index: int, line: str) -> None:
    """Write (atomically) the marker saying entry ``index`` (stored as ``line``) pins ``ref``."""
    path = marker_path(layout, ref)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps({"index": index, "entry": line}) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def dataset_payload(layout: DataLayout, manifest: Manifest, lookup_root: str | None) -> dict:
    """The ``dataset_version_created`` payload of a sealed version (lookup_root: its lookup's, if any)."""
    folder = layout.datasets / manifest.asset / manifest.version_id
    payload = {
        "dataset_version": manifest.ref,
        "snapshot": manifest.snapshot,
        "parents": list(manifest.parents),
        "code_version": manifest.code_version,
        "manifest_sha256": sha256_file(folder / MANIFEST),
    }
    if lookup_root is not None:
        payload["lookup_root"] = lookup_root
    return payload


def ensure_pinned(layout: DataLayout, ref: str, event_type: str, payload: dict, *, sealed_now: bool) -> int:
    """Make sure ``ref`` has its creation entry and marker; return the entry's ledger index.

    ``sealed_now``: this run sealed the version, so it appends. Otherwise (a retry, or a run that
    found the version sealed) the marker answers in O(1); without one, the ledger is scanned once
    for an entry with the same payload (O(ledger entries): only after a failed append or in a
    folder older than markers), and only if there is none is an entry appended, flagged
    ``repinned``.
    """
    from records.ledger import Ledger

    if not sealed_now:
        pin = read_pin(layout, ref)
        if pin is not None:
            return pin.index
        found = _creation_entry(layout, ref)
        if found is not None and all(found.payload.get(k) == v for k, v in payload.items()):
            write_pin(layout, ref, found.index, found.line)
            return found.index
        payload = {**payload, REPINNED: True}
    from records.audit_index import INDEX_ROOT
    from records.audit_index_build import indexing

    # The audit index gains the version under its lock, and the entry pins the new index state.
    with indexing(layout, ref, payload.get("lookup_root")) as update:
        if update.root is not None:
            payload = {**payload, INDEX_ROOT: update.root}
        entry = Ledger(layout.ledger).append(event_type, payload)
        update.commit(entry.index, entry.canonical_json)
    write_pin(layout, ref, entry.index, entry.canonical_json)
    return entry.index


def pin_dataset_version(
    layout: DataLayout, manifest: Manifest, *, lookup_root: str | None = None, sealed_now: bool = True
) -> int:
    """Ensure the version's ``dataset_version_created`` entry (see ensure_pinned); return its index."""
    payload = dataset_payload(layout, manifest, lookup_root)
    return ensure_pinned(layout, manifest.ref, DATASET_VERSION_CREATED, payload, sealed_now=sealed_now)


def _creation_entry(layout: DataLayout, ref: str) -> Pin | None:
    """The last creation entry of ``ref`` in the ledger (a full scan: the repair path only)."""
    from records.versions import ledger_records

    record = ledger_records(layout).get(ref)
    hashes = layout.ledger / LEAF_HASHES
    committed = hashes.stat().st_size // HASH_SIZE if hashes.exists() else 0
    if record is None or record.index >= committed:  # a line an interrupted append left uncommitted
        return None
    return Pin(record.index, record.line, record.payload)
