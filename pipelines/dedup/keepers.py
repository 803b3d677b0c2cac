"""Stage 3, parallel, part 2: from settled component labels (components.py) to decisions.

Three rounds of T tasks; a component's label (its smallest node) is owned by ``shard_of(label)``::

    keep/{owner:05d}/{t:05d}-keepers.parquet   label, count, id, node: task t's smallest (id, node) per label
    keep/{owner:05d}/{t:05d}-exact.parquet     label, sha256, id: task t's smallest id per (label, sha256)
    reply/{t:05d}/{owner:05d}-keepers.parquet  label, size, keeper_id, keeper_node, for t's labels
    reply/{t:05d}/{owner:05d}-exact.parquet    label, sha256, first_id, for t's (label, sha256) pairs
    summary/{t:05d}.json                       task t's drops per reason and kept clusters per size

1. ``KeeperPartials``: each task reduces its nodes to one row per label and per (label, sha256)
   before sending, so a component spread over many tasks costs its owner one row per task, not
   one per member: memory stays O(N / T) per task even for a giant component.
2. ``KeeperCombine``: the owner of a label takes the smallest (id, node) (the keeper, whose id is
   the cluster id), the size, and the smallest id per sha256, and answers each sender.
3. ``ClusterDecide``: each task writes the decisions of its input tasks, as the one-task
   reference (clusters.py) does: the keeper is kept; a member with a smaller-id member of the same
   sha256 is an exact duplicate of the smallest such member; any other member is a near duplicate
   of the keeper, with the Jaccard its signature estimates against the keeper's.

The exact groups are "same component, same sha256": the reference's exact sets are the components
of confirmed exact pairs, which are the same sets (equal sha256s share a bucket of the exact band,
and their pairs to the bucket's first member are confirmed), unless two different sha256s share
the 64-bit bucket key in one bucket.
"""

from __future__ import annotations

import json
from collections import defaultdict

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from datatrove.data import DocumentsPipeline
from datatrove.io import DataFolderLike, get_datafolder
from datatrove.pipeline.base import PipelineStep

from pipelines import reasons
from pipelines.dedup.clusters import DECISION_SCHEMA, DETAILS_JSON, Signatures
from pipelines.dedup.components import ROOT, shard_of


def read_labels(folder, rounds: int, rank: int) -> tuple[np.ndarray, np.ndarray]:
    """(N_t,) nodes, sorted, and (N_t,) their settled labels: task ``rank``'s last round's file."""
    path = f"{ROOT}/labels/{rounds:03d}/{rank:05d}.npy"
    if not folder.exists(path):
        return np.zeros(0, np.uint64), np.zeros(0, np.uint64)
    with folder.open(path, "rb") as f:
        state = np.load(f)
    return state[:, 0], state[:, 1]


def node_docs(folder, nodes: np.ndarray) -> pa.Table:
    """node, id, sha256 of sorted ``nodes``, reading one input task's table at a time."""
    ranks = nodes >> np.uint64(32)
    parts = []
    for rank in np.unique(ranks).tolist():
        index = (nodes[ranks == rank] & np.uint64(0xFFFFFFFF)).astype(np.int64)
        with folder.open(f"signatures/docs/{rank:05d}.parquet", "rb") as f:
            parts.append(pq.read_table(f, columns=["id", "sha256"]).take(index))
    docs = (
        pa.concat_tables(parts)
        if parts
        else pa.table({"id": pa.array([], pa.string()), "sha256": pa.array([], pa.string())})
    )
    return docs


def first_of_groups(table: pa.Table, keys: list[str]) -> np.ndarray:
    """(n,) bool: the first row of each run of equal ``keys`` in a table sorted by them."""
    first = np.ones(table.num_rows, bool)
    if table.num_rows:
        first[1:] = False
        for key in keys:
            column = table.column(key).to_numpy(zero_copy_only=False)
            first[1:] |= column[1:] != column[:-1]
    return first


def _write_parquet(folder, path: str, table: pa.Table) -> None:
    with folder.open(path, "wb") as f:
        pq.write_table(table, f)


def _read_parquets(folder, subdir: str, suffix: str) -> list[tuple[int, pa.Table]]:
    """(sender task, table) of every ``*{suffix}`` file under ``subdir``, by sender."""
    out = []
    for path in sorted(folder.list_files(subdir)):
        if path.endswith(suffix):
            with folder.open(path, "rb") as f:
                out.append((int(path.rsplit("/", 1)[1][:5]), pq.read_table(f)))
    return out


class _KeeperRound(PipelineStep):
    type = "🫂 - DEDUP"

    def __init__(self, work_folder: DataFolderLike, num_shards: int, rounds: int):
        super().__init__()
        self.folder = get_datafolder(work_folder)
        self.num_shards = num_shards
        self.rounds = rounds  # the propagation round whose labels are final


class KeeperPartials(_KeeperRound):
    """Round 1 (module docstring). Memory: the task's nodes with their ids and sha256s."""

    name = "👑 MinHash clusters: keeper partials"

    def run(self, data: DocumentsPipeline, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        with self.track_time():
            nodes, labels = read_labels(self.folder, self.rounds, rank)
            docs = node_docs(self.folder, nodes)
            table = pa.table({"label": labels, "node": nodes, "id": docs["id"], "sha256": docs["sha256"]})
            by_id = table.sort_by([("label", "ascending"), ("id", "ascending"), ("node", "ascending")])
            first = first_of_groups(by_id, ["label"])
            keepers = by_id.filter(first).select(["label", "id", "node"])
            keepers = keepers.append_column(
                "count", pa.array(np.diff(np.append(np.flatnonzero(first), len(first))))
            )
            by_sha = table.sort_by([("label", "ascending"), ("sha256", "ascending"), ("id", "ascending")])
            exact = by_sha.filter(first_of_groups(by_sha, ["label", "sha256"])).select(
                ["label", "sha256", "id"]
            )
            for kind, part in (("keepers", keepers), ("exact", exact)):
                owners = shard_of(part.column("label").to_numpy(), self.num_shards)
                for owner in np.unique(owners).tolist():
                    path = f"{ROOT}/keep/{owner:05d}/{rank:05d}-{kind}.parquet"
                    _write_parquet(self.folder, path, part.filter(owners == owner))
        return
        yield


class KeeperCombine(_KeeperRound):
    """Round 2 (module docstring). Memory: one row per (sender, label) and per (sender, label,
    sha256) owned by the task."""

    name = "👑 MinHash clusters: keepers"

    def run(self, data: DocumentsPipeline, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        with self.track_time():
            keepers = _read_parquets(self.folder, f"{ROOT}/keep/{rank:05d}", "-keepers.parquet")
            exact = _read_parquets(self.folder, f"{ROOT}/keep/{rank:05d}", "-exact.parquet")
            if not keepers:
                return
            merged = pa.concat_tables([t for _, t in keepers])
            merged = merged.sort_by([("label", "ascending"), ("id", "ascending"), ("node", "ascending")])
            first = first_of_groups(merged, ["label"])
            sizes = np.add.reduceat(merged.column("count").to_numpy(), np.flatnonzero(first))
            combined = pa.table({
                "label": merged.column("label").filter(first),
                "size": pa.array(sizes, pa.int64()),
                "keeper_id": merged.column("id").filter(first),
                "keeper_node": merged.column("node").filter(first),
            })  # fmt: skip
            merged = pa.concat_tables([t for _, t in exact])
            merged = merged.sort_by([("label", "ascending"), ("sha256", "ascending"), ("id", "ascending")])
            firsts = merged.filter(first_of_groups(merged, ["label", "sha256"])).rename_columns(
                ["label", "sha256", "first_id"]
            )
            for sender, table in keepers:
                reply = table.select(["label"]).join(combined, "label")
                _write_parquet(self.folder, f"{ROOT}/reply/{sender:05d}/{rank:05d}-keepers.parquet", reply)
            for sender, table in exact:
                reply = table.select(["label", "sha256"]).join(firsts, ["label", "sha256"])
                _write_parquet(self.folder, f"{ROOT}/reply/{sender:05d}/{rank:05d}-exact.parquet", reply)
        return
        yield


class ClusterDecide(_KeeperRound):
    """Round 3 (module docstring): writes ``decisions/{rank:05d}.parquet`` for each input task the
    task owns that has a clustered document, and its summary counts. Memory: the task's nodes and
    their answers; signatures memory-mapped at the rows of near duplicates and their keepers."""

    name = "📝 MinHash clusters: decisions"

    def run(self, data: DocumentsPipeline, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        with self.track_time():
            nodes, labels = read_labels(self.folder, self.rounds, rank)
            docs = node_docs(self.folder, nodes)
            keeper = {}
            for _, table in _read_parquets(self.folder, f"{ROOT}/reply/{rank:05d}", "-keepers.parquet"):
                for row in table.to_pylist():
                    keeper[row["label"]] = (row["size"], row["keeper_id"], row["keeper_node"])
            first_id = {}
            for _, table in _read_parquets(self.folder, f"{ROOT}/reply/{rank:05d}", "-exact.parquet"):
                for row in table.to_pylist():
                    first_id[row["label"], row["sha256"]] = row["first_id"]
            rows, near = [], []
            sizes, removed = defaultdict(int), defaultdict(int)
            ids, shas = docs.column("id").to_pylist(), docs.column("sha256").to_pylist()
            for node, label, doc_id, sha in zip(nodes.tolist(), labels.tolist(), ids, shas, strict=True):
                size, cluster_id, keeper_node = keeper[label]
                row = {"index": node & 0xFFFFFFFF, "id": doc_id, "reason": None, "cluster_id": cluster_id,
                       "cluster_size": size, "details": None}  # fmt: skip
                rows.append((node, row))
                if node == keeper_node:
                    sizes[size] += 1
                    continue
                same_text = first_id[label, sha]
                if same_text != doc_id:
                    row["reason"] = reasons.EXACT_DUPLICATE
                    row["details"] = {"duplicate_of": same_text, "sha256": sha, "cluster_id": cluster_id,
                                      "cluster_size": size}  # fmt: skip
                else:
                    row["reason"] = reasons.NEAR_DUPLICATE
                    near.append((node, keeper_node, row))
                removed[row["reason"]] += 1
            if near:
                a_e, b_e = (np.array(side, dtype=np.uint64) for side in list(zip(*near, strict=True))[:2])
                for (_, _, row), jaccard in zip(
                    near, Signatures(self.folder).agreement(a_e, b_e).tolist(), strict=True
                ):
                    row["details"] = {"cluster_id": row["cluster_id"], "cluster_size": row["cluster_size"],
                                      "duplicate_of": row["cluster_id"], "estimated_jaccard": round(jaccard, 4)}  # fmt: skip
            self._write(rows)
            with self.folder.open(f"{ROOT}/summary/{rank:05d}.json", "w") as f:
                json.dump({"removed": removed, "sizes": sizes}, f, sort_keys=True)
        return
        yield

    def _write(self, rows: list[tuple[int, dict]]) -> None:
        by_rank = defaultdict(list)
        for node, row in rows:
            if row["details"] is not None:
                row["details"] = DETAILS_JSON.encode(row["details"])
            by_rank[node >> 32].append(row)
        for input_rank, rank_rows in by_rank.items():
            with self.folder.open(f"decisions/{input_rank:05d}.parquet", "wb") as f:
                pq.write_table(pa.Table.from_pylist(rank_rows, schema=DECISION_SCHEMA), f)
