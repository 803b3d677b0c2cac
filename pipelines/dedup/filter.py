"""Stage 4: re-reads the input with the same tasks as stage 1 and applies the decisions.

``DedupFilter`` is the document block (the reference, and what a custom chain composes);
``DedupShardFilter`` does the same to shards as Arrow batches, byte for byte, and is what
``deduplicate`` runs: the per-document Python of reading, filtering and writing was most of this
stage's time, and the same work as datatrove's filter (bench/RESULTS.md, near-duplicates).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from datatrove.data import Document, DocumentsPipeline
from datatrove.io import DataFolderLike, get_datafolder
from datatrove.pipeline.base import PipelineStep
from datatrove.pipeline.filters.base_filter import BaseFilter
from datatrove.pipeline.writers.disk_base import DiskWriter
from datatrove.utils.typeshelper import StatHints

from pipelines import fields
from pipelines.shards import (
    SHARD_SCHEMA,
    DocumentShardReader,
    DocumentShardWriter,
    document_to_row,
    row_to_document,
)


def apply_decision(doc: Document, decision: dict | None) -> str | None:
    """Set the cluster fields of ``doc`` from its decision row (None: in no cluster, its own of
    size 1); return the reason it is dropped (with its details set), or None if kept."""
    if decision is None:
        doc.metadata[fields.MINHASH_CLUSTER_ID] = doc.id
        doc.metadata[fields.MINHASH_CLUSTER_SIZE] = 1
        return None
    if decision["id"] != doc.id:
        raise AssertionError(f"input changed between stages: {decision['id']} != {doc.id}")
    doc.metadata[fields.MINHASH_CLUSTER_ID] = decision["cluster_id"]
    doc.metadata[fields.MINHASH_CLUSTER_SIZE] = decision["cluster_size"]
    if decision["reason"] is None:
        return None
    doc.metadata[fields.FILTER_DETAILS] = json.loads(decision["details"])
    return decision["reason"]


def _as_written(details: pa.Array) -> pa.Array:
    """The decisions' details as ``document_to_row`` writes them (``ensure_ascii=False``). The
    decision writers dump with ``sort_keys=True``; without a ``\\u`` escape such a string is what
    the round trip gives, so only the escaped ones (non-ASCII text) are parsed again."""
    escaped = pc.match_substring(details, "\\u").to_numpy(zero_copy_only=False)
    if not escaped.any():
        return details
    values = details.to_pylist()
    for i in np.flatnonzero(escaped):
        values[i] = json.dumps(json.loads(values[i]), sort_keys=True, ensure_ascii=False)
    return pa.array(values, pa.string())


class DedupFilter(BaseFilter):
    """Keeps the documents stage 3 did not drop, and sets on every document its cluster id and size
    (a document in no cluster is its own cluster of size 1). A dropped document carries the reason
    (``exact_duplicate`` or ``near_duplicate``) and its details: whom it duplicates, and how closely."""

    name = "🫂 MinHash filter"

    def __init__(self, work_folder: DataFolderLike, exclusion_writer: DiskWriter | None = None):
        super().__init__(exclusion_writer=exclusion_writer)
        self.folder = get_datafolder(work_folder)
        self._decisions: dict[int, dict] = {}
        self._index = 0

    def run(self, data: DocumentsPipeline, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        path = f"decisions/{rank:05d}.parquet"
        self._decisions = {}
        if self.folder.exists(path):
            with self.folder.open(path, "rb") as f:
                self._decisions = {row["index"]: row for row in pq.read_table(f).to_pylist()}
        self._index = 0
        yield from super().run(data, rank, world_size)

    def filter(self, doc: Document) -> bool | tuple[bool, str]:
        reason = apply_decision(doc, self._decisions.get(self._index))
        self._index += 1
        return True if reason is None else (False, reason)


class DedupShardFilter(PipelineStep):
    """``DocumentShardReader(input_folder)`` -> ``DedupFilter(work_folder, exclusion_writer)`` ->
    ``output_writer`` as one block on Arrow batches, writing the same files byte for byte (tested
    against that chain): the decisions are index arrays, the cluster columns are set by index,
    and kept and dropped rows go to the writers whole (``DocumentShardWriter.write_rows``). A batch
    with ``extra`` metadata, or not of ``SHARD_SCHEMA``, goes through the documents, as the chain.
    It reads its own input: the only block of its pipeline.

    Cost per task: O(documents) in Arrow and numpy, a JSON round trip per dropped document, and the
    task's decisions (one row per document in a cluster) in memory."""

    type = "🫂 - DEDUP"
    name = "🫂 MinHash filter (shards)"

    def __init__(
        self,
        input_folder: DataFolderLike | Path,
        work_folder: DataFolderLike,
        output_writer: DocumentShardWriter,
        exclusion_writer: DocumentShardWriter,
        batch_size: int = 1000,
    ):
        super().__init__()
        self.reader = DocumentShardReader(input_folder, batch_size=batch_size)
        self.folder = get_datafolder(work_folder)
        self.output_writer = output_writer
        self.exclusion_writer = exclusion_writer

    def run(self, data: DocumentsPipeline, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        decisions = self._read_decisions(rank)
        index = decisions.column("index").to_numpy().astype(np.int64)
        reader = self.reader
        files = reader.data_folder.get_shard(
            rank, world_size, recursive=reader.recursive, glob_pattern=reader.glob_pattern
        )
        start = 0
        with self.output_writer, self.exclusion_writer:
            for path in files:
                with reader.data_folder.open(path, "rb") as f, pq.ParquetFile(f) as parquet_file:
                    for batch in parquet_file.iter_batches(batch_size=reader.batch_size):
                        with self.track_time():
                            kept, dropped = self._apply(batch, start, index, decisions)
                        start += batch.num_rows
                        self.stat_update(StatHints.total, value=batch.num_rows)
                        self.stat_update(StatHints.forwarded, value=kept.num_rows)
                        self.stat_update(StatHints.dropped, value=dropped.num_rows)
                        self.output_writer.write_rows(kept, rank)
                        self.exclusion_writer.write_rows(dropped, rank)
        return
        yield

    def _read_decisions(self, rank: int) -> pa.Table:
        path = f"decisions/{rank:05d}.parquet"
        if not self.folder.exists(path):
            return pa.table({"index": pa.array([], pa.uint32())})
        with self.folder.open(path, "rb") as f:
            table = pq.read_table(f)
        return table.take(np.argsort(table.column("index").to_numpy(), kind="stable"))

    def _apply(self, batch: pa.RecordBatch, start: int, index: np.ndarray, decisions: pa.Table):
        """(kept rows, dropped rows) of ``batch``, whose first row is the task's ``start``-th;
        ``index``: the decisions' document indexes (sorted)."""
        lo, hi = np.searchsorted(index, [start, start + batch.num_rows])
        own = decisions.slice(lo, hi - lo)
        if not batch.schema.equals(SHARD_SCHEMA) or batch.column("extra").null_count < batch.num_rows:
            return self._apply_documents(batch, start, own)
        n = batch.num_rows
        local = index[lo:hi] - start
        ids = batch.column("id")
        if pc.all(pc.equal(ids.take(local), own.column("id"))).as_py() not in (True, None):
            raise AssertionError(
                f"input changed between stages: decisions of task rows {start}+ name other ids"
            )
        pick = np.arange(n)
        pick[local] = n + np.arange(len(local))  # a decided row takes its decision's value
        cluster_id = pa.concat_arrays([ids, own.column("cluster_id").combine_chunks()]).take(pick)
        cluster_size = np.ones(n, dtype=np.int64)
        cluster_size[local] = own.column("cluster_size").to_numpy()
        dropped_d = own.column("reason").is_valid().to_numpy(zero_copy_only=False)
        dropped_rows = local[dropped_d]
        details = _as_written(own.column("details").filter(dropped_d).combine_chunks())
        pick_dropped = np.arange(n)
        pick_dropped[dropped_rows] = n + np.arange(len(dropped_rows))
        columns = dict(zip(batch.schema.names, batch.columns, strict=True))
        columns[fields.MINHASH_CLUSTER_ID] = cluster_id
        columns[fields.MINHASH_CLUSTER_SIZE] = pa.array(cluster_size)
        columns[fields.FILTER_REASON] = pa.concat_arrays(
            [columns[fields.FILTER_REASON], own.column("reason").filter(dropped_d).combine_chunks()]
        ).take(pick_dropped)
        columns[fields.FILTER_DETAILS] = pa.concat_arrays([columns[fields.FILTER_DETAILS], details]).take(
            pick_dropped
        )
        out = pa.RecordBatch.from_arrays(list(columns.values()), schema=SHARD_SCHEMA)
        keep = np.ones(n, dtype=bool)
        keep[dropped_rows] = False
        self._count_reasons(own.column("reason").filter(dropped_d).to_pylist())
        return out.filter(pa.array(keep)), out.filter(pa.array(~keep))

    def _apply_documents(self, batch: pa.RecordBatch, start: int, own: pa.Table):
        """``_apply`` through documents, as the reader, ``DedupFilter`` and the writer do."""
        by_index = {row["index"] - start: row for row in own.to_pylist()}
        kept, dropped = [], []
        for i, row in enumerate(batch.to_pylist()):
            doc = row_to_document(row)
            reason = apply_decision(doc, by_index.get(i))
            if reason is not None:
                doc.metadata[fields.FILTER_REASON] = reason
                self._count_reasons([reason])
            (kept if reason is None else dropped).append(document_to_row(doc))
        return tuple(pa.RecordBatch.from_pylist(rows, schema=SHARD_SCHEMA) for rows in (kept, dropped))

    def _count_reasons(self, reasons: list[str]) -> None:
        for reason in set(reasons):
            self.stat_update(f"dropped_{reason}", value=reasons.count(reason))
