"""Stage 3, the one-task reference: candidate pairs to clusters, and a decision for every
document in a cluster.

Writes ``decisions/{rank:05d}.parquet`` (index, id, reason, cluster_id, cluster_size, details) for
the documents of each input task that belong to a cluster, and ``summary.json``. Memory holds every
document that has a candidate pair and every pair, in one process. ``deduplicate`` runs the
parallel stage (cluster_stage.py: rounds of tasks, memory per task O((E + N) / T)), which writes
the same bytes; this one is the specification it is tested against on random graphs
(tests/pipelines/test_dedup_clusters.py) and the baseline of bench/cluster_stage.py.

Rules, all by document id so that neither task nor worker count changes a decision:
- documents with the same sha256 (an exact group) are exact duplicates of the group's smallest id;
- a near pair is confirmed when its signatures estimate a Jaccard of at least ``min_jaccard`` or a
  containment of at least ``min_containment`` (``verify.confirm``);
- a cluster is a connected component of exact and confirmed pairs; its smallest id is kept and is
  the cluster id; the other members are near duplicates of it, unless they are exact duplicates.
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
from pipelines.dedup.config import DedupConfig
from pipelines.dedup.minhash import EXACT_BAND, open_work_file
from pipelines.dedup.verify import confirm

DECISION_SCHEMA = pa.schema(
    [("index", pa.uint32()), ("id", pa.string()), ("reason", pa.string()), ("cluster_id", pa.string()),
     ("cluster_size", pa.int64()), ("details", pa.string())]
)  # fmt: skip
EDGE_CHUNK = 1 << 16
# json.dumps(details, sort_keys=True), without building an encoder per call (2.5x faster a row)
DETAILS_JSON = json.JSONEncoder(sort_keys=True)


class UnionFind:
    """Disjoint sets over integer nodes, with path halving and union by size."""

    def __init__(self):
        self.parent: dict[int, int] = {}
        self.size: dict[int, int] = {}

    def find(self, x: int) -> int:
        parent = self.parent
        if x not in parent:
            parent[x], self.size[x] = x, 1
            return x
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    def union(self, a: int, b: int) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra == rb:
            return
        if self.size[ra] < self.size[rb]:
            ra, rb = rb, ra
        self.parent[rb] = ra
        self.size[ra] += self.size[rb]

    def groups(self) -> list[list[int]]:
        members = defaultdict(list)
        for x in self.parent:
            members[self.find(x)].append(x)
        return list(members.values())


class Signatures:
    """Random access to the signatures of stage 1 by node, through memory maps."""

    def __init__(self, folder):
        self.folder = folder
        self._maps: dict[int, np.ndarray] = {}

    def _map(self, rank: int) -> np.ndarray:
        if rank not in self._maps:
            self._maps[rank] = np.load(
                self.folder.resolve_paths(f"signatures/sigs/{rank:05d}.npy"), mmap_mode="r"
            )
        return self._maps[rank]

    def agreement(self, a_e: np.ndarray, b_e: np.ndarray) -> np.ndarray:
        """(E,) float: fraction of permutations on which nodes a and b agree (estimated Jaccard)."""
        out = np.empty(len(a_e))
        for start in range(0, len(a_e), EDGE_CHUNK):
            a, b = a_e[start : start + EDGE_CHUNK], b_e[start : start + EDGE_CHUNK]
            out[start : start + len(a)] = (self.gather(a) == self.gather(b)).mean(axis=1)
        return out

    def gather(self, nodes: np.ndarray) -> np.ndarray:
        ranks, index = (
            (nodes >> np.uint64(32)).astype(np.int64),
            (nodes & np.uint64(0xFFFFFFFF)).astype(np.int64),
        )
        rows = None
        for rank in np.unique(ranks):
            mask = ranks == rank
            chosen = self._map(int(rank))[index[mask]]
            rows = np.empty((len(nodes), chosen.shape[1]), np.uint32) if rows is None else rows
            rows[mask] = chosen
        return rows if rows is not None else np.zeros((0, 0), np.uint32)


def _load_edges(folder, exact: bool) -> np.ndarray:
    prefix = f"edges/{EXACT_BAND}-" if exact else "edges/b"
    chunks = []
    for path in sorted(folder.list_files("edges")):
        if path.startswith(prefix):
            with open_work_file(folder, path) as f:
                chunks.append(np.load(f))
    edges = np.concatenate(chunks) if chunks else np.zeros((0, 2), np.uint64)
    return unique_pairs(edges)


def unique_pairs(pairs: np.ndarray) -> np.ndarray:
    """(n, 2) the distinct rows of ``pairs``, sorted; a two-key sort, several times faster than
    ``np.unique(axis=0)``, which sorts the rows as opaque bytes."""
    pairs = pairs[np.lexsort((pairs[:, 1], pairs[:, 0]))]
    keep = np.ones(len(pairs), bool)
    keep[1:] = (pairs[1:] != pairs[:-1]).any(axis=1)
    return pairs[keep]


def _doc_table(folder, nodes: list[int]) -> dict[int, tuple[str, str]]:
    """node -> (id, sha256), reading one signature task's table at a time."""
    by_rank = defaultdict(list)
    for node in nodes:
        by_rank[node >> 32].append(node)
    table = {}
    for rank, members in sorted(by_rank.items()):
        with folder.open(f"signatures/docs/{rank:05d}.parquet", "rb") as f:
            docs = pq.read_table(f, columns=["id", "sha256"])
        # Only the rows of documents with a pair become Python strings (a task's table holds every
        # document it signed: converting it whole was most of a small run's cluster stage).
        rows = docs.take(pa.array([node & 0xFFFFFFFF for node in members], pa.int64()))
        pairs = zip(rows.column("id").to_pylist(), rows.column("sha256").to_pylist(), strict=True)
        table.update(zip(members, pairs, strict=True))
    return table


class ClusterDecisions(PipelineStep):
    """Stage 3, reference (one task): union-find over exact and confirmed near pairs; writes
    decisions. Cost: O(E log E) time and O(E + N) memory in one process for E pairs, N nodes."""

    type = "🫂 - DEDUP"
    name = "🔗 MinHash clusters"

    def __init__(self, work_folder: DataFolderLike, config: DedupConfig | None = None):
        super().__init__()
        self.folder = get_datafolder(work_folder)
        self.config = config or DedupConfig()

    def run(self, data: DocumentsPipeline, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        with self.track_time():
            sigs = Signatures(self.folder)
            exact_e2 = _load_edges(self.folder, exact=True)
            near_e2 = _load_edges(self.folder, exact=False)
            if len(near_e2) and self.config.min_jaccard > 0:
                confirmed = confirm(sigs.gather, near_e2[:, 0], near_e2[:, 1], self.config)
                self.stat_update("near_pairs_rejected", value=int((~confirmed).sum()))
                near_e2 = near_e2[confirmed]
            docs = _doc_table(self.folder, np.unique(np.concatenate([exact_e2, near_e2]).ravel()).tolist())
            exact_sets, clusters = UnionFind(), UnionFind()
            for a, b in exact_e2.tolist():
                if docs[a][1] == docs[b][1]:  # the bucket key is 64 bits of the sha256: check all 256
                    exact_sets.union(a, b)
                    clusters.union(a, b)
            for a, b in near_e2.tolist():
                clusters.union(a, b)
            self._write(self._decide(clusters, exact_sets, docs, sigs))
        return
        yield

    def _decide(self, clusters: UnionFind, exact_sets: UnionFind, docs, sigs: Signatures) -> dict[int, dict]:
        exact_keeper = {}  # exact-set root -> node with the smallest id
        for group in exact_sets.groups():
            keeper = min(group, key=lambda n: docs[n][0])
            exact_keeper[exact_sets.find(group[0])] = keeper
        rows, near = {}, []
        for group in clusters.groups():
            keeper = min(group, key=lambda n: docs[n][0])
            cluster_id, size = docs[keeper][0], len(group)
            for node in group:
                row = {
                    "id": docs[node][0],
                    "reason": None,
                    "cluster_id": cluster_id,
                    "cluster_size": size,
                    "details": None,
                }
                rows[node] = row
                if node == keeper:
                    continue
                same_text = exact_keeper.get(exact_sets.find(node)) if node in exact_sets.parent else None
                if same_text is not None and same_text != node:
                    row["reason"] = reasons.EXACT_DUPLICATE
                    row["details"] = {"duplicate_of": docs[same_text][0], "sha256": docs[node][1],
                                      "cluster_id": cluster_id, "cluster_size": size}  # fmt: skip
                else:
                    near.append((node, keeper))
        if near:
            a_e, b_e = (np.array(side, dtype=np.uint64) for side in zip(*near, strict=True))
            for (node, _), jaccard in zip(near, sigs.agreement(a_e, b_e).tolist(), strict=True):
                row = rows[node]
                row["reason"] = reasons.NEAR_DUPLICATE
                row["details"] = {"cluster_id": row["cluster_id"], "cluster_size": row["cluster_size"],
                                  "duplicate_of": row["cluster_id"], "estimated_jaccard": round(jaccard, 4)}  # fmt: skip
        return rows

    def _write(self, rows: dict[int, dict]) -> None:
        by_rank = defaultdict(list)
        for node in sorted(rows):
            by_rank[node >> 32].append(node)
        for rank, nodes in by_rank.items():
            # Column by column (the table from_pylist of the rows gives, without a dict per row).
            chosen = [rows[node] for node in nodes]
            columns = {"index": [node & 0xFFFFFFFF for node in nodes]}
            columns |= {
                name: [row[name] for row in chosen] for name in ("id", "reason", "cluster_id", "cluster_size")
            }
            columns["details"] = [
                None if row["details"] is None else DETAILS_JSON.encode(row["details"]) for row in chosen
            ]
            with self.folder.open(f"decisions/{rank:05d}.parquet", "wb") as f:
                pq.write_table(pa.table(columns, schema=DECISION_SCHEMA), f)
        sizes = defaultdict(int)
        removed = defaultdict(int)
        for row in rows.values():
            if row["reason"] is None:
                sizes[row["cluster_size"]] += 1
            else:
                removed[row["reason"]] += 1
        summary = {
            "removed": dict(sorted(removed.items())),
            "cluster_size_histogram": dict(sorted(sizes.items())),
        }
        with self.folder.open("summary.json", "w") as f:
            json.dump(summary, f, sort_keys=True)
