"""The curation steps: each turns input versions into one new, sealed dataset version.

    ingest_snapshot      snapshot folder   -> raw_documents        (read, quarantine, normalize)
    identify_languages   raw_documents     -> language_identified  (fastText lid.176, selection)
    filter_quality       language_ident.   -> quality_filtered     (Gopher, C4, FineWeb rules; PII)
    deduplicate_version  quality_filtered  -> deduplicated         (exact, then MinHash)

A step builds its datatrove blocks inside the function (never at import: datatrove's worker
processes re-import modules), runs them through ``pipelines.executor``, then a last stage of tasks
that writes each shard's part of the auditor tables and of the lookup (``table_tasks``); its own
process merges the parts (``finish_step``: its memory does not grow with the version),
seals the folder (``records.manifest.seal``), pins the new version in the ledger and refreshes
the catalog. Running a step again on the same input, config and code gives the same version id
and creates nothing new; a step whose input is a version then runs nothing at all, reusing the version
its earlier run made (``records.step_memo``).
"""

from __future__ import annotations

import json
import shutil
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path

from pipelines.config import CurationConfig
from pipelines.executor import ExecutorConfig, run_pipeline
from pipelines.shards import DocumentShardReader, DocumentShardWriter
from pipelines.step_finish import (  # noqa: F401  (re-exported: other steps import them from here)
    PIPELINES_DIR,
    StepResult,
    code_version,
    finish_step,
    has_documents,
    pin_version,
    remember_version,
    reuse_version,
    step_inputs,
    task_logs,
)
from pipelines.tables import TableStats, table_tasks
from records.assets import DEDUPLICATED, LANGUAGE_IDENTIFIED, QUALITY_FILTERED, RAW_DOCUMENTS
from records.documents import EXCLUDED, QUARANTINE, SHARDS
from records.layout import (
    Attempt,
    DataLayout,
    discard_on_failure,
    new_staging,
    resumable_staging,
)
from records.manifest import Manifest


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
    with resumable_staging(layout, asset, snapshot, step_inputs(asset, inputs, config)) as attempt:
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
        parts = table_tasks(attempt, RAW_DOCUMENTS, executor)
        attempt.sealing()
        return finish_step(
            layout,
            staging,
            asset=RAW_DOCUMENTS,
            snapshot=snapshot,
            parents=(),
            config=lineage_config,
            parts=parts,
        )


def seal_child(
    layout: DataLayout, attempt: Attempt, asset: str, parent: Manifest, config: dict, executor: ExecutorConfig
) -> StepResult:
    """Once a step's blocks ran: its table tasks, then the version of ``asset`` made from ``parent``
    sealed, pinned and recorded (``finish_step``)."""
    parts = table_tasks(attempt, asset, executor)
    attempt.sealing()
    return finish_step(
        layout, attempt.staging, asset=asset, snapshot=parent.snapshot, parents=(parent.ref,), config=config,
        parts=parts,
    )  # fmt: skip


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
    if (reused := reuse_version(layout, asset, parent, config)) is not None:
        return reused
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
        result = seal_child(layout, attempt, asset, parent, config, executor)
    return remember_version(layout, parent, config, result)


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
    if (reused := reuse_version(layout, DEDUPLICATED, parent, lineage_config)) is not None:
        return reused  # the index holds it already: registered before its memo was written
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
            result = seal_child(layout, attempt, DEDUPLICATED, parent, lineage_config, executor)
            if view:
                register(view, result.manifest.ref, work_dir, config.dedup)
            return remember_version(layout, parent, lineage_config, result)
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
