"""What every export reads: a version and its ancestors, each checked against the ledger entry that pinned it.

An export restates hashes; it must never restate a record that changed after it was pinned. So each
version in scope must have its parents present, a ledger entry (``dataset_version_created`` or
``model_trained``) naming it, and a ``manifest.json`` whose sha256 is the one that entry recorded; a
model's ``provenance.json`` must match the entry's ``record_sha256`` and its weights the manifest. The
bytes of the data files are not re-hashed here: that is ``apertus audit verify``.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from records.assets import MODEL_ASSETS
from records.layout import DataLayout
from records.ledger.format import ENTRIES
from records.manifest import MANIFEST, Manifest
from records.merkle import leaf_hash
from records.models import EXPORT_FILE, RECORD, load_record
from records.versions import LedgerRecord, depth, ledger_records, load_versions, resolve


@dataclass(frozen=True)
class Version:
    """One version as an export states it: its manifest, where it lives, and its ledger entry."""

    manifest: Manifest
    folder: Path
    manifest_sha256: str
    ledger: LedgerRecord

    @property
    def ref(self) -> str:
        return self.manifest.ref

    @property
    def is_model(self) -> bool:
        return self.manifest.asset in MODEL_ASSETS

    @property
    def ledger_leaf_hash(self) -> str:
        """The RFC 6962 leaf hash of the pinning entry: what an inclusion proof starts from."""
        return leaf_hash(self.ledger.line.encode()).hex()


@dataclass(frozen=True)
class Scope:
    """The named version and every version it derives from, ancestors first (by depth, then time)."""

    layout: DataLayout
    target: str
    versions: dict[str, Version]

    @property
    def subject(self) -> Version:
        return self.versions[self.target]


def newest_model(layout: DataLayout) -> str:
    """The ref of the most recently sealed model version; ValueError if there is none."""
    models = [m for m in load_versions(layout).values() if m.asset in MODEL_ASSETS]
    if not models:
        raise ValueError(
            f"{layout.datasets}: no model version ({', '.join(MODEL_ASSETS)}); "
            "name a version to export (asset/version_id, a unique id prefix is enough)"
        )
    return max(models, key=lambda m: (m.created_at, m.ref)).ref


def load_scope(layout: DataLayout, ref: str | None) -> Scope:
    """The checked scope of ``ref`` (default: the newest model version); ValueError naming what is wrong."""
    versions = load_versions(layout)
    target = resolve(versions, ref if ref is not None else newest_model(layout))
    pins = ledger_records(layout)
    checked: dict[str, Version] = {}
    stack = [target]
    while stack:
        current = stack.pop()
        if current in checked:
            continue
        checked[current] = _checked(layout, versions[current], pins)
        for parent in versions[current].parents:
            if parent not in versions:
                raise ValueError(
                    f"{layout.datasets / current / MANIFEST}: parent {parent} is not in {layout.datasets}; "
                    "the lineage is incomplete (see `apertus audit verify`)"
                )
            stack.append(parent)
    order = sorted(checked, key=lambda r: (depth(versions, r), versions[r].created_at, r))
    return Scope(layout, target, {r: checked[r] for r in order})


def _checked(layout: DataLayout, manifest: Manifest, pins: dict[str, LedgerRecord]) -> Version:
    folder = layout.datasets / manifest.asset / manifest.version_id
    path = folder / MANIFEST
    entries = layout.ledger / ENTRIES
    if manifest.ref not in pins:
        raise ValueError(
            f"{path}: no ledger entry in {entries} pins {manifest.ref}; an unpinned version is not exported "
            "(see `apertus audit verify`)"
        )
    pin = pins[manifest.ref]
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    if digest != pin.payload.get("manifest_sha256"):
        raise ValueError(
            f"{path}: sha256 {digest} differs from manifest_sha256 {pin.payload.get('manifest_sha256')} "
            f"recorded in {entries} entry {pin.index}; the manifest changed after it was pinned "
            "(run `apertus audit verify`)"
        )
    version = Version(manifest, folder, digest, pin)
    if version.is_model:
        _check_model(version)
    return version


def _check_model(version: Version) -> None:
    record_path = version.folder / RECORD
    recorded = version.ledger.payload.get("record_sha256")
    digest = hashlib.sha256(record_path.read_bytes()).hexdigest() if record_path.exists() else None
    if digest is None or digest != recorded:
        raise ValueError(
            f"{record_path}: sha256 {digest} differs from record_sha256 {recorded} recorded in ledger entry "
            f"{version.ledger.index}; the provenance record changed after it was pinned"
        )
    weights = {f.path: f.sha256 for f in version.manifest.files}.get(EXPORT_FILE)
    claimed = load_record(version.folder)["export"]["sha256"]
    if weights != claimed:
        raise ValueError(
            f"{record_path}: export.sha256 {claimed} differs from the sha256 {weights} of {EXPORT_FILE} "
            f"in {version.folder / MANIFEST}"
        )


def model_record(version: Version) -> dict:
    """The provenance record of a model version (checked against the ledger by ``load_scope``)."""
    assert version.is_model, version.ref
    return load_record(version.folder)
