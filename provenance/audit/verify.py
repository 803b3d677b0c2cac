"""``apertus audit verify``: recompute every hash and proof, and name exactly what differs.

For each dataset version in scope (all of them, or the named one and its ancestors):
1. re-hash every file against its manifest and recompute the version id
   (``provenance.manifest.verify_version``); check that each parent version exists;
2. find the ledger entry that pinned the version (``dataset_version_created``, or ``model_trained``
   for a model); check that its ``manifest_sha256``
   is the sha256 of the manifest as it is now (a rewritten manifest is caught even when the files
   agree with it), and that the entry's inclusion proof verifies offline against the latest
   signed tree head (``provenance.ledger.verify_entry_offline``);
3. if the version has lookup files, check they were built from its index and exclusions and
   hold exactly their rows.
Then the whole ledger: ``Ledger.verify()`` (every entry, leaf hash, tree head and signature).
Each problem is one line that starts with the file it concerns.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

from provenance.audit.lookup import has_lookup, lookup_problems
from provenance.audit.versions import LedgerRecord, ancestors, ledger_records, load_versions, resolve
from provenance.layout import DataLayout
from provenance.manifest import MANIFEST, verify_version


@dataclass
class Report:
    """What was checked and every problem found (empty: all intact)."""

    versions: list[str] = field(default_factory=list)
    num_files: int = 0
    ledger_entries: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def to_dict(self) -> dict:
        return {"ok": self.ok, "versions": self.versions, "num_files": self.num_files,
                "ledger_entries": self.ledger_entries, "problems": self.problems}  # fmt: skip


def verify(layout: DataLayout, ref: str | None = None) -> Report:
    """Check ``ref`` and its ancestors (or every version when None) and the ledger; see the module doc."""
    from provenance.ledger import Ledger

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
                f"{folder / MANIFEST}: no entry pinning {version} in {ledger.root / 'entries.jsonl'}"
            )
        else:
            report.problems += _check_record(layout, ledger, record, folder, head if proofs_usable else None)
        if has_lookup(layout, version) and not folder_problems:
            report.problems += lookup_problems(layout, manifest, folder)
    if ref is None:
        for version, record in sorted(records.items()):
            if version not in versions and not (layout.datasets / version / MANIFEST).exists():
                report.problems.append(
                    f"{layout.datasets / version}: missing, but entry {record.index} of "
                    f"{ledger.root / 'entries.jsonl'} records its creation"
                )
    report.ledger_entries = ledger.size()
    report.problems += [f"{ledger.root}/{p}" for p in ledger.verify()]
    return report


def _latest_head(ledger, report: Report) -> tuple[str | None, bool]:
    path = ledger.root / "tree_heads.jsonl"
    if not path.exists():
        return None, False
    try:
        return ledger.tree_head().to_json(), True
    except ValueError as e:
        report.problems.append(f"{path}: the latest tree head cannot be read: {e}")
        return None, False


def _check_record(
    layout: DataLayout, ledger, record: LedgerRecord, folder: Path, head: str | None
) -> list[str]:
    problems = []
    where = f"{ledger.root / 'entries.jsonl'} line {record.index + 1} (entry {record.index})"
    manifest_sha = hashlib.sha256((folder / MANIFEST).read_bytes()).hexdigest()
    if record.payload.get("manifest_sha256") != manifest_sha:
        problems.append(
            f"{folder / MANIFEST}: sha256 {manifest_sha[:16]}… differs from manifest_sha256 "
            f"{str(record.payload.get('manifest_sha256'))[:16]}… recorded in {where}"
        )
    if head is not None:
        from provenance.ledger import verify_entry_offline

        try:
            proof = ledger.inclusion_proof(record.index)
        except ValueError as e:
            problems.append(f"{where}: no inclusion proof against the latest tree head ({e})")
            return problems
        if not verify_entry_offline(record.line, record.index, proof, head, ledger.public_key_pem()):
            problems.append(f"{where}: inclusion proof does not verify against the latest signed tree head")
    return problems
