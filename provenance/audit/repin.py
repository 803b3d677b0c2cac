"""``apertus audit repin``: pin what an older or interrupted data folder left unpinned, in one batch.

For every sealed version (parents before children):
- no creation entry in the ledger (an append failed after sealing, or the folder predates
  idempotent pinning): if its files match its manifest, append one flagged ``"repinned": true``
  (a version of documents gets its lookup rebuilt first and the lookup's root in that entry);
- a version of documents whose entry pins no ``lookup_root`` (lookups older than format 3), or
  whose lookup file is missing or no longer gives the pinned root: rebuild the lookup from the
  version's tables; if that gives the pinned root, nothing is appended (the file is restored),
  otherwise a new creation entry flagged ``repinned`` pins the new root (the last creation entry
  of a version is the one that counts);
- a version whose manifest differs from its entry is left alone and named: that is tampering or
  damage for ``apertus audit verify`` to report, not something a repair may paper over.
All new entries go in one ``Ledger.append_many`` batch; then every version's pin marker
(``<data>/pins/``) is rewritten from the ledger. A deliberate full pass: it reads the whole
ledger once and, for versions it pins, re-hashes their files and rebuilds their lookups.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from records.assets import FINETUNED_MODEL, MODEL_ASSETS
from records.hashing import sha256_file
from records.layout import DataLayout
from records.ledger.format import MODEL_TRAINED
from records.lookup import file_root, lookup_path
from records.lookup_build import build_lookup
from records.manifest import MANIFEST, Manifest, verify_version
from records.models import RECORD
from records.pins import DATASET_VERSION_CREATED, REPINNED, dataset_payload, write_pin
from records.versions import (
    CREATION_EVENTS,
    LedgerRecord,
    depth,
    holds_documents,
    ledger_records,
    load_versions,
)


@dataclass
class RepinResult:
    """What ``repin`` appended (version -> its new entry index), how many markers it wrote, and
    the versions it would not pin, each with why."""

    pinned: dict[str, int] = field(default_factory=dict)
    markers: int = 0
    problems: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {"pinned": self.pinned, "markers": self.markers, "problems": self.problems}


def repin(layout: DataLayout) -> RepinResult:
    """Pin every sealed version that lacks its creation entry (or its lookup root); see the module doc."""
    from records.ledger import Ledger

    ledger = Ledger(layout.ledger)
    versions = load_versions(layout)
    committed = ledger.size()
    records = {r: rec for r, rec in ledger_records(layout).items() if rec.index < committed}
    result = RepinResult()
    batch: list[tuple[str, str, dict]] = []
    for ref in sorted(versions, key=lambda r: (depth(versions, r), r)):
        event = _needed(layout, ref, versions[ref], records.get(ref), result)
        if event is not None:
            batch.append((ref, *event))
    entries = ledger.append_many([(event_type, payload) for _, event_type, payload in batch])
    for (ref, _, _), entry in zip(batch, entries, strict=True):
        result.pinned[ref] = entry.index
        records[ref] = LedgerRecord(entry.index, entry.canonical_json, entry.payload)
    for ref in versions:
        if ref in records:
            write_pin(layout, ref, records[ref].index, records[ref].line)
            result.markers += 1
    return result


def _needed(
    layout: DataLayout, ref: str, manifest: Manifest, record: LedgerRecord | None, result: RepinResult
) -> tuple[str, dict] | None:
    """The (event type, payload) to append for ``ref``, or None when its pin stands."""
    folder = layout.datasets / ref
    manifest_sha = sha256_file(folder / MANIFEST)
    if record is not None and record.payload.get("manifest_sha256") != manifest_sha:
        result.problems.append(
            f"{folder / MANIFEST}: differs from the manifest_sha256 of entry {record.index}; "
            "not repinned (run `apertus audit verify`)"
        )
        return None
    documents = holds_documents(manifest)
    if record is not None and not documents:
        return None
    if record is not None and record.payload.get("lookup_root") is not None:
        path = lookup_path(layout, ref)
        if path.exists() and _root_or_none(path) == record.payload["lookup_root"]:
            return None
    problems = verify_version(folder)  # pin only files that match the manifest already pinned or sealed
    if problems:
        result.problems += [f"{p} (not repinned)" for p in problems]
        return None
    root = file_root(build_lookup(layout, manifest, folder)) if documents else None
    if record is not None and record.payload.get("lookup_root") == root:
        return None  # the rebuilt lookup is the one that was pinned
    if manifest.asset in MODEL_ASSETS:
        return MODEL_TRAINED, {**_model_payload(folder, manifest, manifest_sha), REPINNED: True}
    return DATASET_VERSION_CREATED, {**dataset_payload(layout, manifest, root), REPINNED: True}


def _root_or_none(path) -> str | None:
    try:
        return file_root(path)
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _model_payload(folder, manifest: Manifest, manifest_sha: str) -> dict:
    """The ``model_trained`` payload of a model version, from its provenance record (as sealing writes it)."""
    record = json.loads((folder / RECORD).read_text(encoding="utf-8"))
    finetune = manifest.asset == FINETUNED_MODEL
    payload = {
        CREATION_EVENTS[MODEL_TRAINED]: manifest.ref,
        "kind": "finetune" if finetune else "pretrain",
        "parents": list(manifest.parents),
        "manifest_sha256": manifest_sha,
        "record_sha256": sha256_file(folder / RECORD),
        "model_sha256": record["export"].get("sha256"),
    }
    if finetune:
        payload |= {"examples_root": record["examples"]["root"], "certifiable": record["certifiable"]}
    return payload
