"""``apertus audit verify``: recompute every hash and proof, and name exactly what differs.

For each dataset version in scope (all of them, or the named one and its ancestors):
1. re-hash every file against its manifest and recompute the version id
   (``records.manifest.verify_version``; for a version of manifest format 2, also that its sealed
   ``lineage.json`` is canonical and agrees with the manifest's copy of every lineage field);
   check that each parent version exists;
2. find the ledger entry that pinned the version (``dataset_version_created``, or ``model_trained``
   for a model); check that its ``manifest_sha256``
   is the sha256 of the manifest as it is now (a rewritten manifest is caught even when the files
   agree with it), and that the entry's inclusion proof verifies offline against the latest
   signed tree head (``records.ledger.verify_entry_offline``);
3. if the version has a lookup file, check its bytes against the ``lookup_root`` pinned in that
   entry (a lookup with no pinned root is a problem: ``apertus audit repin`` pins it), and that it
   was built from the version's index and exclusions and holds exactly their rows; check that the
   version's pin marker (``<data>/pins/``), if any, copies the entry that pins it.
A version whose creation entry carries ``"repinned": true`` (appended by a run that did not seal
it: a step's retry, or ``apertus audit repin``) is not a problem but a note: "pinned late, at
entry N".
Then the whole ledger: ``Ledger.verify()`` (every entry, leaf hash, tree head and signature).
Each problem is one line that starts with the file it concerns.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

from records.layout import DataLayout
from records.ledger.format import ENTRIES, TREE_HEADS
from records.lookup import has_lookup, lookup_path
from records.lookup_build import lookup_problems
from records.manifest import MANIFEST, verify_version
from records.pins import REPINNED
from records.versions import LedgerRecord, ancestors, ledger_records, load_versions, resolve


@dataclass
class Report:
    """What was checked and every problem found (empty: all intact)."""

    versions: list[str] = field(default_factory=list)
    num_files: int = 0
    ledger_entries: int = 0
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # facts worth knowing that are not failures

    @property
    def ok(self) -> bool:
        return not self.problems

    def to_dict(self) -> dict:
        return {"ok": self.ok, "versions": self.versions, "num_files": self.num_files,
                "ledger_entries": self.ledger_entries, "problems": self.problems,
                "notes": self.notes}  # fmt: skip


def verify(layout: DataLayout, ref: str | None = None) -> Report:
    """Check ``ref`` and its ancestors (or every version when None) and the ledger; see the module doc."""
    from records.ledger import Ledger

    unreadable: list[str] = []
    versions = load_versions(layout, unreadable)
    try:
        scope = sorted(versions) if ref is None else ancestors(versions, resolve(versions, ref))
    except ValueError:
        if not unreadable:
            raise
        return Report(problems=unreadable)  # the named version's own manifest is what is broken
    report = Report(versions=[r for r in scope if r in versions], problems=unreadable)
    ledger = Ledger(layout.ledger)
    records = ledger_records(layout)
    head, proofs_usable = _latest_head(ledger, report)
    for version in scope:
        if version not in versions:
            continue  # reported as a missing parent by the child that names it
        manifest = versions[version]
        folder = layout.datasets / version
        report.num_files += len(manifest.files)
        folder_problems = verify_version(folder)
        report.problems += folder_problems
        for parent in manifest.parents:
            if parent not in versions:
                report.problems.append(
                    f"{folder / MANIFEST}: parent {parent} does not exist in {layout.datasets}"
                )
        record = records.get(version)
        if record is None:
            report.problems.append(
                f"{folder / MANIFEST}: no entry pinning {version} in {ledger.root / ENTRIES}"
            )
        else:
            report.problems += _check_record(layout, ledger, record, folder, head if proofs_usable else None)
            report.problems += _check_marker(layout, version, record)
            if record.payload.get(REPINNED):
                report.notes.append(f"{folder / MANIFEST}: pinned late, at entry {record.index}")
        if has_lookup(layout, version) and not folder_problems:
            report.problems += _check_lookup(layout, ledger, manifest, folder, record)
    if ref is None:
        for version, record in sorted(records.items()):
            if version not in versions and not (layout.datasets / version / MANIFEST).exists():
                report.problems.append(
                    f"{layout.datasets / version}: missing, but entry {record.index} of "
                    f"{ledger.root / ENTRIES} records its creation"
                )
    report.ledger_entries = ledger.size()
    report.problems += [f"{ledger.root}/{p}" for p in ledger.verify()]
    return report


def _latest_head(ledger, report: Report) -> tuple[str | None, bool]:
    path = ledger.root / TREE_HEADS
    if not path.exists():
        return None, False
    try:
        return ledger.tree_head().to_json(), True
    except ValueError as e:
        report.problems.append(f"{path}: the latest tree head cannot be read: {e}")
        return None, False


def _check_marker(layout: DataLayout, version: str, record: LedgerRecord) -> list[str]:
    from records.pins import marker_path, read_pin

    try:
        pin = read_pin(layout, version)
    except ValueError as e:
        return [str(e)]
    if pin is not None and pin.index != record.index:
        return [
            f"{marker_path(layout, version)}: names entry {pin.index}, but entry {record.index} is the "
            "last that pins the version; rewrite markers with `apertus audit repin`"
        ]
    return []


def _check_lookup(
    layout: DataLayout, ledger, manifest, folder: Path, record: LedgerRecord | None
) -> list[str]:
    root = None if record is None else record.payload.get("lookup_root")
    if record is not None and root is None:
        return [
            f"{lookup_path(layout, manifest.ref)}: no lookup_root pinned for it in entry {record.index} "
            "(a folder older than lookup format 3): `apertus audit index --rebuild`, then `apertus audit repin`"
        ]
    where = "" if record is None else f"{ledger.root / ENTRIES} entry {record.index}"
    return lookup_problems(layout, manifest, folder, root, where)


def _check_record(
    layout: DataLayout, ledger, record: LedgerRecord, folder: Path, head: str | None
) -> list[str]:
    problems = []
    where = f"{ledger.root / ENTRIES} line {record.index + 1} (entry {record.index})"
    manifest_sha = hashlib.sha256((folder / MANIFEST).read_bytes()).hexdigest()
    if record.payload.get("manifest_sha256") != manifest_sha:
        problems.append(
            f"{folder / MANIFEST}: sha256 {manifest_sha[:16]}… differs from manifest_sha256 "
            f"{str(record.payload.get('manifest_sha256'))[:16]}… recorded in {where}"
        )
    if head is not None:
        from records.ledger import verify_entry_offline

        try:
            proof = ledger.inclusion_proof(record.index)
        except ValueError as e:
            problems.append(f"{where}: no inclusion proof against the latest tree head ({e})")
            return problems
        if not verify_entry_offline(record.line, record.index, proof, head, ledger.public_key_pem()):
            problems.append(f"{where}: inclusion proof does not verify against the latest signed tree head")
    return problems
