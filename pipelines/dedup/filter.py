"""Stage 4: re-reads the input with the same tasks as stage 1 and applies the decisions."""

from __future__ import annotations

import json

import pyarrow.parquet as pq
from datatrove.data import Document, DocumentsPipeline
from datatrove.io import DataFolderLike, get_datafolder
from datatrove.pipeline.filters.base_filter import BaseFilter
from datatrove.pipeline.writers.disk_base import DiskWriter

from pipelines import fields


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
        decision = self._decisions.get(self._index)
        self._index += 1
        if decision is None:
            doc.metadata[fields.MINHASH_CLUSTER_ID] = doc.id
            doc.metadata[fields.MINHASH_CLUSTER_SIZE] = 1
            return True
        assert decision["id"] == doc.id, f"input changed between stages: {decision['id']} != {doc.id}"
        doc.metadata[fields.MINHASH_CLUSTER_ID] = decision["cluster_id"]
        doc.metadata[fields.MINHASH_CLUSTER_SIZE] = decision["cluster_size"]
        if decision["reason"] is None:
            return True
        doc.metadata[fields.FILTER_DETAILS] = json.loads(decision["details"])
        return False, decision["reason"]
