"""The ``deduplicated`` step: exact and MinHash near-deduplication of a folder of document shards."""

from __future__ import annotations

import json
import shutil
from collections.abc import Sequence
from pathlib import Path

import pyarrow.parquet as pq

from pipelines.dedup.cluster_stage import cluster_decisions, cluster_tasks
from pipelines.dedup.config import DedupConfig, DedupSummary
from pipelines.dedup.cross import CrossSnapshotMatches, apply_matches
from pipelines.dedup.filter import DedupShardFilter
from pipelines.dedup.minhash import BandBuckets, MinhashShardSignatures
from pipelines.executor import ExecutorConfig, run_pipeline
from pipelines.shards import DocumentShardWriter


def deduplicate(
    input_folder: str,
    output_folder: str,
    excluded_folder: str,
    work_dir: str,
    *,
    config: DedupConfig = DedupConfig(),  # noqa: B008  (frozen: a shared default is safe)
    executor: ExecutorConfig | None = None,
    earlier: Sequence[str] = (),
    resume: bool = False,
) -> DedupSummary:
    """Drop exact duplicates (same ``sha256``) and MinHash near-duplicates of ``input_folder``.

    Writes the kept documents to ``output_folder`` and the dropped ones, with ``filter_reason``
    ``exact_duplicate`` or ``near_duplicate`` and their ``filter_details``, to ``excluded_folder``
    (both as document shards, one per task). Every document carries ``minhash_cluster_id`` (the id of
    its cluster's kept document: the smallest id) and ``minhash_cluster_size``. Which document is kept
    depends only on the documents, never on task or worker count; the same input and tasks give
    byte-identical shards. ``work_dir`` (a local folder) holds the intermediate files and can be
    deleted afterwards.

    ``earlier``: segment folders of the cross-snapshot index (pipelines.dedup.scope), oldest first.
    After the in-snapshot decisions, every cluster with a member that duplicates a document kept
    there is dropped, each member naming the earlier document and its version
    (pipelines.dedup.cross). Cost: the in-snapshot stages, plus a probe per document that grows with
    the log of the index's size.

    ``resume``: ``work_dir`` holds a failed run's files for the same input, config, earlier segments
    and tasks (pipelines.steps decides when that holds): the task stages (signatures, buckets,
    cross-snapshot probes, filter) skip their completed tasks. The cluster stage (all its rounds,
    its ``clusters/`` round files cleared first) and the merge of cross-snapshot matches always run
    again: they rewrite the decisions whole, and the filter's completed tasks read the same
    decisions, since they depend only on the documents.
    """
    executor = executor or ExecutorConfig()  # built per call: it reads APERTUS_RAY_ADDRESS now
    work = Path(work_dir)
    # Decisions are addressed by (task, index): files of an earlier run must not survive, and the
    # decisions are rebuilt whole even on a resume (the cross-snapshot merge rewrites them in place).
    stale = ("decisions", "summary.json", "clusters", "logs/clusters")
    if not resume:
        stale += ("signatures", "edges", "cross", "logs")
    for name in stale:
        path = work / name
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()
    logs = work / "logs"
    tasks = executor.tasks
    run_pipeline(
        [MinhashShardSignatures(input_folder, str(work), config)],
        logging_dir=logs / "signatures", config=executor, tasks=tasks, resume=resume,
    )  # fmt: skip
    buckets = BandBuckets(str(work), config, max_tasks=tasks)
    run_pipeline(
        [buckets], logging_dir=logs / "buckets", config=executor, tasks=buckets.num_tasks(), resume=resume
    )
    cluster_decisions(str(work), config, executor, logs / "clusters", cluster_tasks(str(work), tasks))
    if earlier:
        run_pipeline(
            [CrossSnapshotMatches(str(work), list(earlier), config)],
            logging_dir=logs / "cross", config=executor, tasks=tasks, resume=resume,
        )  # fmt: skip
        apply_matches(work, tasks)
    run_pipeline(
        [
            DedupShardFilter(
                input_folder, str(work), DocumentShardWriter(output_folder), DocumentShardWriter(excluded_folder)
            )
        ],
        logging_dir=logs / "filter", config=executor, tasks=tasks, resume=resume,
    )  # fmt: skip
    return _summary(work)


def _summary(work: Path) -> DedupSummary:
    stats = json.loads((work / "summary.json").read_text())
    num_documents = sum(
        pq.read_metadata(path).num_rows for path in (work / "signatures" / "docs").glob("*.parquet")
    )
    removed = stats["removed"]
    histogram = {int(size): count for size, count in stats["cluster_size_histogram"].items()}
    return DedupSummary(
        num_documents=num_documents,
        num_kept=num_documents - sum(removed.values()),
        removed=removed,
        num_clusters=sum(histogram.values()),
        cluster_size_histogram=histogram,
    )
