"""The curation steps: each turns input versions into one new, sealed dataset version.

    ingest_snapshot      snapshot folder   -> raw_documents        (read, quarantine, normalize)
    identify_languages   raw_documents     -> language_identified  (fastText lid.176, selection)
    filter_quality       language_ident.   -> quality_filtered     (Gopher, C4, FineWeb rules; PII)
    deduplicate_version  quality_filtered  -> deduplicated         (exact, then MinHash)

A step builds its datatrove blocks inside the function (never at import: datatrove's worker
processes re-import modules), runs them through ``pipelines.executor``, writes the auditor tables,
seals the folder (``records.manifest.seal``), pins the new version in the ledger and refreshes
the catalog. Running a step again on the same input, config and code gives the same version id
and creates nothing new.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

from pipelines.config import CurationConfig
from pipelines.executor import ExecutorConfig, run_pipeline
from pipelines.shards import DocumentShardReader, DocumentShardWriter
from pipelines.tables import TableStats, build_tables
from records.assets import DEDUPLICATED, LANGUAGE_IDENTIFIED, QUALITY_FILTERED, RAW_DOCUMENTS
from records.catalog import add_version_to_catalog
from records.documents import EXCLUDED, INDEX, QUARANTINE, SHARDS
from records.layout import (
    Attempt,
    DataLayout,
    checkout_relative,
    discard_on_failure,
    new_staging,
    resumable_staging,
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
    layout: DataLayout, staging: Path, *, asset: str, snapshot: str, parents: tuple[str, ...], config: dict
) -> StepResult:
    counts, kept, excluded = build_tables(staging, asset)
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
    pinned = pin_version(layout, manifest, folder, sealed_now=created)
    ledger_index = pinned if created else None
    add_version_to_catalog(layout, manifest.ref)  # O(this version): no other version is read
    record_version(layout, manifest)  # the retraining schedule's state index (records.retrain_state)
    return StepResult(
        manifest, created, manifest.stats["kept"], manifest.stats["excluded"], folder, ledger_index
    )


def pin_version(layout: DataLayout, manifest: Manifest, folder: Path, *, sealed_now: bool = True) -> int:
    """Build the version's audit lookup and ensure its creation entry pins the lookup's root; return
    the entry's ledger index.

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
        root = file_root(build_lookup(layout, manifest, folder))
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


@contextmanager
def step_staging(
    layout: DataLayout, asset: str, snapshot: str | None, inputs: str, config: dict
) -> Iterator[Attempt]:
    """The staging folder of a step whose output is decided by ``inputs`` (the parent version's ref,
    or the snapshot's fingerprint), ``config`` (its lineage config, task count included) and the
    code version: a failed attempt's folder, with its completed tasks, when all of them match
    (``records.layout.resumable_staging``), else a fresh one (always, for a version of no snapshot)."""
    if snapshot is None:
        staging = new_staging(layout, asset)
        with discard_on_failure(staging):
            yield Attempt(staging, task_logs(layout, staging), resume=False, resumed=False)
        return
    key = {"asset": asset, "inputs": inputs, "config": config, "code_version": code_version()}
    with resumable_staging(layout, asset, snapshot, key) as attempt:
        if attempt.resumed:
            print(f"apertus: {asset}: resuming the failed attempt in {attempt.staging}", file=sys.stderr)
        yield attempt


def excluded_writer(staging: Path, block: str) -> DocumentShardWriter:
    # One file per block and task: two filters of a step must not write the same file.
    return DocumentShardWriter(staging / EXCLUDED, output_filename=f"{block}-${{rank}}.parquet")


def ingest_snapshot(
    layout: DataLayout, snapshot: str, config: CurationConfig, executor: ExecutorConfig
) -> StepResult:
    """Read every shard of ``inbox/<snapshot>`` (or of ``<APERTUS_INBOX_URL>/<snapshot>``, in place:
    ``pipelines.remote_inbox.snapshot_source``) into ``raw_documents``; bad records go to quarantine;
    documents named by a recorded erasure request are dropped (``pipelines.suppression``), and so are
    pages whose host's robots.txt in ``<data>/robots/`` disallows an AI crawler (``pipelines.robots``)."""
    from pipelines.normalize import Normalizer
    from pipelines.readers import SnapshotReader
    from pipelines.remote_inbox import snapshot_fingerprint, snapshot_source
    from pipelines.robots import latest_robots, robots_blocks
    from pipelines.suppression import suppression_blocks, suppression_config
    from records.request_keys_build import refresh_keys

    source = snapshot_source(layout, snapshot)  # a local folder or a URL, read in place
    # Once, at step start: O(new ledger entries + new requests + log n); the workers probe its
    # key segments on disk and compile its patterns (records.request_keys).
    index = refresh_keys(layout)
    lineage_config = {
        "max_document_bytes": config.max_document_bytes,
        "budgets": asdict(config.budgets),  # they decide what is read and how shards are cut
        "tasks": executor.tasks,
        "robots": asdict(config.robots),
        **suppression_config(index),  # the ledger size and root, not every request id
    }
    # What the tasks read besides the config: the snapshot's files and the robots files in force.
    robots = latest_robots(layout.robots, config.robots.as_of)
    inputs = json.dumps([snapshot_fingerprint(source), sorted(robots.items())], default=str)
    with step_staging(layout, RAW_DOCUMENTS, snapshot, inputs, lineage_config) as attempt:
        staging = attempt.staging
        blocks = [
            SnapshotReader(
                source,
                snapshot,
                str(staging / QUARANTINE),
                max_document_bytes=config.max_document_bytes,
                budgets=config.budgets,
            ),
            Normalizer(),
            *suppression_blocks(index, staging),
            *robots_blocks(layout.robots, staging, config.robots),
            DocumentShardWriter(staging / SHARDS, max_buffer_bytes=config.budgets.max_shard_buffer_bytes),
        ]
        run_pipeline(blocks, logging_dir=attempt.logs, config=executor, resume=attempt.resume)
        attempt.sealing()
        return finish_step(
            layout, staging, asset=RAW_DOCUMENTS, snapshot=snapshot, parents=(), config=lineage_config
        )


def transform_version(
    layout: DataLayout,
    parent: Manifest,
    *,
    asset: str,
    blocks: Callable[[Path], list],
    config: dict,
    executor: ExecutorConfig,
) -> StepResult:
    """A step that streams ``parent``'s documents through ``blocks(staging)`` into a new version.

    ``blocks`` gets the staging folder so that filters can write their exclusions there.
    """
    config = {**config, "tasks": executor.tasks}
    with step_staging(layout, asset, parent.snapshot, parent.ref, config) as attempt:
        staging = attempt.staging
        shards = layout.datasets / parent.asset / parent.version_id / SHARDS
        if has_documents(shards):  # else an empty version: nothing kept, nothing excluded
            pipeline = [
                DocumentShardReader(shards),
                *blocks(staging),
                DocumentShardWriter(staging / SHARDS),
            ]
            run_pipeline(pipeline, logging_dir=attempt.logs, config=executor, resume=attempt.resume)
        attempt.sealing()
        return finish_step(
            layout, staging, asset=asset, snapshot=parent.snapshot, parents=(parent.ref,), config=config
        )


def identify_languages(
    layout: DataLayout, parent: Manifest, config: CurationConfig, executor: ExecutorConfig
) -> StepResult:
    """Label every document's language and script; drop those outside the selection."""
    from pipelines.langid import LanguageIdentifier, LanguageSelector

    def blocks(staging: Path) -> list:
        return [
            LanguageIdentifier(config.language),
            LanguageSelector(config.language, exclusion_writer=excluded_writer(staging, "language")),
        ]

    return transform_version(
        layout,
        parent,
        asset=LANGUAGE_IDENTIFIED,
        blocks=blocks,
        config={"language": asdict(config.language)},
        executor=executor,
    )


def filter_quality(
    layout: DataLayout, parent: Manifest, config: CurationConfig, executor: ExecutorConfig
) -> StepResult:
    """Apply the heuristic quality rules per language, then redact PII in what is kept."""
    from pipelines.pii import PIIRedactor
    from pipelines.quality import quality_blocks

    def blocks(staging: Path) -> list:
        return [*quality_blocks(config.quality, lambda name: excluded_writer(staging, name)), PIIRedactor()]

    return transform_version(
        layout,
        parent,
        asset=QUALITY_FILTERED,
        blocks=blocks,
        config={"quality": asdict(config.quality)},
        executor=executor,
    )


def deduplicate_version(
    layout: DataLayout, parent: Manifest, config: CurationConfig, executor: ExecutorConfig
) -> StepResult:
    """Drop exact duplicates, then MinHash near-duplicates; kept documents carry their cluster.

    In ``global`` dedup scope (the default) documents kept by snapshots registered earlier count
    too: a page already kept there is dropped here, naming that document and its version; the
    index version checked against enters this version's lineage, and this version's kept documents
    join the index (pipelines.dedup.scope). ValueError when an earlier snapshot has no
    deduplicated version yet. Cost: this snapshot's documents, plus log(index size) per probe.
    """
    from pipelines.dedup import deduplicate
    from pipelines.dedup.scope import prepare, register

    view = prepare(layout, parent.snapshot, config.dedup)
    lineage_config = {"dedup": asdict(config.dedup), "tasks": executor.tasks}
    if view:
        lineage_config["cross_snapshot"] = view.lineage()
    shards = layout.datasets / parent.asset / parent.version_id / SHARDS
    with step_staging(layout, DEDUPLICATED, parent.snapshot, parent.ref, lineage_config) as attempt:
        staging = attempt.staging
        # Named after the attempt: a retry with the same inputs finds the failed run's work files
        # (its completed stages); they are kept only while the attempt can be resumed.
        work_dir = layout.work / "dedup" / staging.name
        keep_work = False
        try:
            if has_documents(shards):  # else an empty version
                try:
                    deduplicate(
                        str(shards),
                        str(staging / SHARDS),
                        str(staging / EXCLUDED),
                        str(work_dir),
                        config=config.dedup,
                        executor=executor,
                        earlier=view.segments() if view else (),
                        resume=attempt.resumed,
                    )
                except BaseException:
                    keep_work = attempt.resume
                    raise
            attempt.sealing()
            result = finish_step(
                layout,
                staging,
                asset=DEDUPLICATED,
                snapshot=parent.snapshot,
                parents=(parent.ref,),
                config=lineage_config,
            )
            if view:
                register(view, result.manifest.ref, work_dir, config.dedup)
            return result
        finally:
            if not keep_work:
                shutil.rmtree(work_dir, ignore_errors=True)


def curate_snapshot(
    layout: DataLayout, snapshot: str, config: CurationConfig, executor: ExecutorConfig
) -> list[StepResult]:
    """All four steps in order, from plain Python (what the Dagster assets run one by one)."""
    raw = ingest_snapshot(layout, snapshot, config, executor)
    languages = identify_languages(layout, raw.manifest, config, executor)
    quality = filter_quality(layout, languages.manifest, config, executor)
    deduplicated = deduplicate_version(layout, quality.manifest, config, executor)
    return [raw, languages, quality, deduplicated]


__all__ = [
    "DEDUPLICATED",
    "LANGUAGE_IDENTIFIED",
    "QUALITY_FILTERED",
    "RAW_DOCUMENTS",
    "StepResult",
    "TableStats",
    "curate_snapshot",
    "deduplicate_version",
    "filter_quality",
    "identify_languages",
    "ingest_snapshot",
]
