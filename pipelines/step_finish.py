"""What every step does once its tasks are done, and what lets a rerun skip them: the auditor
tables, sealing, the ledger pin, the catalog row and the retraining state (``finish_step``); the code
version every manifest records; and the reuse of the version an earlier run made from the same input
version, config and code (``reuse_version``, ``records.step_memo``). ``pipelines.steps`` (the four
curation steps) and the other sealing steps (tokenizer, curriculum, token shards, quality model) call
these.
"""

from __future__ import annotations

import hashlib
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

from pipelines.tables import TABLE_PARTS, build_tables, part_runs
from records import step_memo
from records.catalog import add_version_to_catalog
from records.documents import INDEX, QUARANTINE
from records.layout import (
    DataLayout,
    checkout_relative,
    inputs_key,
)
from records.lookup import file_root
from records.lookup_build import build_lookup
from records.manifest import Manifest, seal
from records.pins import pin_dataset_version, read_pin
from records.retrain_state import record_version

PIPELINES_DIR = Path(__file__).resolve().parent


def code_version() -> str:
    """Hash of the curation code (every .py file of ``pipelines/``) and its vendored models.

    Part of every manifest; a change here marks the steps' outputs as made by other code.
    """
    digest = hashlib.sha256()
    sources = sorted(PIPELINES_DIR.rglob("*.py")) + sorted(
        (PIPELINES_DIR.parent / "resources/models").glob("*")
    )
    for path in sources:
        if "__pycache__" in path.parts or not path.is_file():
            continue
        digest.update(path.relative_to(PIPELINES_DIR.parent).as_posix().encode() + b"\0")
        digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()[:16]


@dataclass(frozen=True)
class StepResult:
    """A step's output version, whether this run created it, and what it kept and dropped."""

    manifest: Manifest
    created: bool
    kept: dict
    excluded: dict
    folder: Path
    ledger_index: int | None  # the ledger entry that pinned this version (None when reused)


def finish_step(
    layout: DataLayout,
    staging: Path,
    *,
    asset: str,
    snapshot: str,
    parents: tuple[str, ...],
    config: dict,
    parts: Path | None = None,
) -> StepResult:
    """Write the tables, seal ``staging``, build the lookup, pin the version, add its catalog rows.

    ``parts``: where the step's tasks wrote each shard's part of the tables and of the lookup
    (``table_tasks``); a shard without one (every shard, when None) gets it here, one at a time.
    The parts are deleted at the end. Cost in this process: a merge of the parts, O(rows) time
    without reading documents, memory bounded by a row group and the number of shards.
    """
    parts = parts or layout.work / TABLE_PARTS / staging.name
    try:
        return _finish(layout, staging, parts, asset=asset, snapshot=snapshot, parents=parents, config=config)
    finally:
        shutil.rmtree(parts, ignore_errors=True)


def _finish(
    layout: DataLayout, staging: Path, parts: Path, *, asset: str, snapshot: str, parents: tuple, config: dict
) -> StepResult:
    counts, kept, excluded = build_tables(staging, asset, parts)
    quarantine = _quarantine_stats(staging)
    stats = {"kept": kept.as_dict(), "excluded": excluded.as_dict()}
    if quarantine is not None:
        stats["quarantine"] = quarantine
    manifest, created = seal(
        staging,
        layout.datasets,
        asset=asset,
        snapshot=snapshot,
        parents=parents,
        config=checkout_relative(config),
        code_version=code_version(),
        stats=stats,
        counts=counts,
    )
    folder = layout.datasets / asset / manifest.version_id
    # Whether or not this run sealed it: a retry after a failed append (or a kill between seal and
    # append) pins the version here.
    pinned = pin_version(layout, manifest, folder, sealed_now=created, runs=part_runs(parts))
    ledger_index = pinned if created else None
    add_version_to_catalog(layout, manifest.ref)  # O(this version): no other version is read
    record_version(layout, manifest)  # the retraining schedule's state index (records.retrain_state)
    return StepResult(
        manifest, created, manifest.stats["kept"], manifest.stats["excluded"], folder, ledger_index
    )


def pin_version(
    layout: DataLayout,
    manifest: Manifest,
    folder: Path,
    *,
    sealed_now: bool = True,
    runs: list[Path] | None = None,
) -> int:
    """Build the version's audit lookup and ensure its creation entry pins the lookup's root; return
    the entry's ledger index. ``runs``: the lookup runs of its shards, in table order, when the
    step's tasks wrote them (pipelines.tables); else they are cut from its tables
    (records.lookup_build.build_lookup). Either way memory does not grow with the version.

    ``sealed_now``: this run sealed the version (it appends). Otherwise the version's pin marker
    answers in O(1) and nothing is built; a version sealed earlier but never pinned gets its lookup
    rebuilt (O(its rows)) and an entry flagged ``repinned`` (records.pins.ensure_pinned).
    """
    if not sealed_now:
        pin = read_pin(layout, manifest.ref)
        if pin is not None:
            return pin.index
    root = None
    if (folder / INDEX).exists():  # a version of documents (not a tokenizer, a report …)
        root = file_root(build_lookup(layout, manifest, folder, runs=runs or None))
    return pin_dataset_version(layout, manifest, lookup_root=root, sealed_now=sealed_now)


def _quarantine_stats(staging: Path) -> dict | None:
    folder = staging / QUARANTINE
    if not folder.exists():
        return None
    from pipelines.readers import read_quarantine

    rows = read_quarantine(folder)
    by_reason: dict[str, int] = {}
    for row in rows:
        by_reason[row["reason"]] = by_reason.get(row["reason"], 0) + 1
    return {"records": len(rows), "by_reason": dict(sorted(by_reason.items()))}


def has_documents(shards: Path) -> bool:
    """Whether a version's ``shards/`` folder holds any shard file (a version that kept nothing has
    none: the readers refuse an empty folder, so a step over it writes an empty version instead).
    Cost: one directory listing, stopped at the first shard."""
    return shards.is_dir() and next(shards.glob("*.parquet"), None) is not None


def task_logs(layout: DataLayout, staging: Path) -> Path:
    return layout.work / "logs" / staging.name


def step_inputs(asset: str, inputs: str, config: dict) -> dict:
    """Everything that decides a step's output: what names its resumable attempt and its memo."""
    return {"asset": asset, "inputs": inputs, "config": config, "code_version": code_version()}


def reuse_version(layout: DataLayout, asset: str, parent: Manifest, config: dict) -> StepResult | None:
    """The version this step made from ``parent`` with ``config`` and this code, when an earlier run
    sealed and pinned it (``records.step_memo``): noted in the catalog and the retraining state as a
    rerun that sealed it again would note it, and nothing is run. None: the step must run.
    Cost: O(1) reads (a memo, a manifest, a pin marker) and the two O(1) record updates."""
    key = inputs_key(step_inputs(asset, parent.ref, config))
    manifest = step_memo.recall(
        layout, key, asset=asset, snapshot=parent.snapshot, parents=(parent.ref,), config=config,
        code_version=code_version(),
    )  # fmt: skip
    if manifest is None:
        return None
    print(
        f"apertus: {asset}: {manifest.ref} was made from {parent.ref} by this code and config: reused",
        file=sys.stderr,
    )
    add_version_to_catalog(layout, manifest.ref)
    record_version(layout, manifest)
    folder = layout.datasets / asset / manifest.version_id
    return StepResult(manifest, False, manifest.stats["kept"], manifest.stats["excluded"], folder, None)


def remember_version(layout: DataLayout, parent: Manifest, config: dict, result: StepResult) -> StepResult:
    """Note, once everything a step does is done, which version ``parent`` and ``config`` gave."""
    step_memo.remember(
        layout, inputs_key(step_inputs(result.manifest.asset, parent.ref, config)), result.manifest
    )
    return result
