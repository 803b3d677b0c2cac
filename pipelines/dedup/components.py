"""Stage 3, parallel, part 1: candidate pairs to connected components, as rounds of T tasks.

Shapes and names: T = cluster tasks, E = candidate pairs, N = documents with a pair, node = ``rank
<< 32 | index`` (minhash.py). A node belongs to shard ``shard_of(node) = rank % T``: the task that
owns a node reads its input task's tables alone and writes its decisions file without a merge.

Files under the work folder's ``clusters/`` (``t`` = task, ``k`` = round)::

    sha/{rank:05d}.npy                 (docs,) bytes: sha256 per document, memory-mapped by verify
    scatter/{owner:05d}/{t:05d}-{kind}.npy  (E_t, 2) candidate pairs (low, high), kind exact | near
    adj/{owner:05d}/{t:05d}.npy        (2 E_t, 2) confirmed pairs, both directions, by source owner
    labels/{k:03d}/{t:05d}.npy         (N_t, 2) node, label after round k
    msg/{k:03d}/{owner:05d}/{t:05d}.npy  (M, 2) node, smaller label found for it in round k
    sent/{k:03d}/{t:05d}.txt           messages task t sent in round k

Connected components by min-label propagation: a node's label starts as the node itself and falls
to the smallest label among its neighbours. In each round a task applies the messages it received,
settles its labels over its own pairs to a fixpoint (``settle_locally``), and sends each label that
fell to the owners of its neighbours in other tasks, pre-reduced to one message per neighbour; the
labels are final when no task sends. One task: one round. Otherwise at most d + 1 rounds for the
largest component diameter d (in pairs), in practice the task boundaries a label crosses on the
longest path: the bucket stage links each bucket's members to one of them (a star), so d stays
small unless near duplicates chain (A~B~C with A !~ C). The label is the node, a uint64, not the
document id: components do not depend on which label is minimized, so the ids (strings) travel
once, in the keeper rounds (keepers.py), instead of in every round, and no sort of the ids is
needed.

Memory per task: its shard of pairs (16 bytes per pair per direction), labels (16 bytes per node)
and one round's messages (at most one per neighbour), so O((E + N) / T) with shards as even as
the input tasks; disk per round about the same. Never the corpus: signatures and sha256s are
memory-mapped and read at the rows of the task's pairs only.
"""

from __future__ import annotations

import numpy as np
import pyarrow.parquet as pq
from datatrove.data import DocumentsPipeline
from datatrove.io import DataFolderLike, get_datafolder
from datatrove.pipeline.base import PipelineStep

from pipelines.dedup.clusters import Signatures, unique_pairs
from pipelines.dedup.config import DedupConfig
from pipelines.dedup.minhash import EXACT_BAND
from pipelines.dedup.verify import confirm

ROOT = "clusters"
NO_PAIRS = np.zeros((0, 2), np.uint64)


def shard_of(nodes: np.ndarray, num_shards: int) -> np.ndarray:
    """(n,) int64: the task that owns each node: its input task modulo ``num_shards``."""
    return ((nodes >> np.uint64(32)) % np.uint64(num_shards)).astype(np.int64)


def save_npy(folder, path: str, array: np.ndarray) -> None:
    with folder.open(path, "wb") as f:
        np.save(f, array)


def load_pairs(folder, subdir: str, suffix: str = ".npy") -> np.ndarray:
    """(n, 2) uint64: the concatenated pair files under ``subdir`` (none: empty)."""
    chunks = []
    for path in sorted(folder.list_files(subdir)):
        if path.endswith(suffix):
            with folder.open(path, "rb") as f:
                chunks.append(np.load(f))
    return np.concatenate(chunks) if chunks else NO_PAIRS


def write_by_owner(folder, pattern: str, pairs: np.ndarray, owners: np.ndarray, num_shards: int) -> None:
    """Write ``pairs`` grouped by owner to ``pattern.format(owner=...)``; empty groups write nothing."""
    for owner in np.unique(owners).tolist():
        save_npy(folder, pattern.format(owner=owner), pairs[owners == owner])


class _Round(PipelineStep):
    type = "🫂 - DEDUP"

    def __init__(self, work_folder: DataFolderLike, num_shards: int, config: DedupConfig | None = None):
        super().__init__()
        self.folder = get_datafolder(work_folder)
        self.num_shards = num_shards
        self.config = config or DedupConfig()


class ScatterPairs(_Round):
    """Round 0: task t reads the bucket stage's pair files t, t + T, … and sends each pair (low,
    high) to the owner of its low node; it also writes the sha256 table of input tasks t, t + T, …
    for verify to memory-map. Memory: the task's pair files."""

    name = "🔀 MinHash clusters: scatter pairs"

    def run(self, data: DocumentsPipeline, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        with self.track_time():
            files = sorted(self.folder.list_files("edges"))[rank :: self.num_shards]
            for kind in ("exact", "near"):
                chosen = [p for p in files if p.startswith(f"edges/{EXACT_BAND}-") == (kind == "exact")]
                chunks = []
                for path in chosen:
                    with self.folder.open(path, "rb") as f:
                        pairs = np.load(f)
                    chunks.append(np.stack([pairs.min(axis=1), pairs.max(axis=1)], axis=1))
                pairs = unique_pairs(np.concatenate(chunks)) if chunks else NO_PAIRS
                pattern = f"{ROOT}/scatter/{{owner:05d}}/{rank:05d}-{kind}.npy"
                write_by_owner(
                    self.folder, pattern, pairs, shard_of(pairs[:, 0], self.num_shards), self.num_shards
                )
            docs = sorted(self.folder.list_files("signatures/docs"))
            for path in docs[rank :: self.num_shards]:
                with self.folder.open(path, "rb") as f:
                    shas = pq.read_table(f, columns=["sha256"]).column("sha256").to_pylist()
                input_rank = int(path.rsplit("/", 1)[1].split(".")[0])
                save_npy(self.folder, f"{ROOT}/sha/{input_rank:05d}.npy", np.array(shas, dtype=np.bytes_))
        return
        yield


class NodeRows:
    """Rows of a per-input-task array (``{rank:05d}.npy`` under ``subdir``) gathered by node,
    through memory maps: reads only the pages of the rows asked for."""

    def __init__(self, folder, subdir: str):
        self.folder, self.subdir = folder, subdir
        self._maps: dict[int, np.ndarray] = {}

    def gather(self, nodes: np.ndarray) -> np.ndarray:
        ranks = (nodes >> np.uint64(32)).astype(np.int64)
        index = (nodes & np.uint64(0xFFFFFFFF)).astype(np.int64)
        chosen = {}
        for rank in np.unique(ranks).tolist():
            if rank not in self._maps:
                path = self.folder.resolve_paths(f"{self.subdir}/{rank:05d}.npy")
                self._maps[rank] = np.load(path, mmap_mode="r")
            chosen[rank] = self._maps[rank][index[ranks == rank]]
        # the widest rank's dtype: a byte string of another rank is never cut
        out = np.empty(len(nodes), np.result_type(*chosen.values()) if chosen else np.bytes_)
        for rank, rows in chosen.items():
            out[ranks == rank] = rows
        return out


class VerifyPairs(_Round):
    """Round 0': task t confirms the pairs sent to it (exact: equal sha256, all 256 bits; near:
    ``verify.confirm`` on the two signatures) and sends each confirmed pair, both directions, to
    the owner of its source. Memory: the task's pairs; signatures and sha256s are memory-mapped."""

    name = "✅ MinHash clusters: verify pairs"

    def run(self, data: DocumentsPipeline, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        with self.track_time():
            exact = unique_pairs(load_pairs(self.folder, f"{ROOT}/scatter/{rank:05d}", "-exact.npy"))
            near = unique_pairs(load_pairs(self.folder, f"{ROOT}/scatter/{rank:05d}", "-near.npy"))
            if len(exact):
                sha = NodeRows(self.folder, f"{ROOT}/sha")
                exact = exact[sha.gather(exact[:, 0]) == sha.gather(exact[:, 1])]
            if len(near) and self.config.min_jaccard > 0:
                confirmed = confirm(Signatures(self.folder).gather, near[:, 0], near[:, 1], self.config)
                self.stat_update("near_pairs_rejected", value=int((~confirmed).sum()))
                near = near[confirmed]
            pairs = unique_pairs(np.concatenate([exact, near]))
            both = np.concatenate([pairs, pairs[:, ::-1]])
            pattern = f"{ROOT}/adj/{{owner:05d}}/{rank:05d}.npy"
            write_by_owner(self.folder, pattern, both, shard_of(both[:, 0], self.num_shards), self.num_shards)
        return
        yield


def settle_locally(nodes: np.ndarray, labels: np.ndarray, src_i: np.ndarray, dst_i: np.ndarray, owned) -> int:
    """Lower ``labels`` (of sorted ``nodes``) in place to a fixpoint over the task's own pairs
    (``src_i``, ``dst_i``: indices into ``nodes``; both directions are the task's), jumping each
    label that is a node of ``owned`` (a bool function of labels) to that node's label. Returns the
    passes: about the log of the longest chain of the task's own pairs, each O(pairs + nodes)."""
    passes = 0
    while True:
        before = labels.copy()
        np.minimum.at(labels, src_i, labels[dst_i])
        mine = np.flatnonzero(owned(labels))
        at = np.searchsorted(nodes, labels[mine])
        labels[mine] = np.minimum(labels[mine], labels[at])
        passes += 1
        if np.array_equal(before, labels):
            return passes


class PropagateLabels(_Round):
    """Round k >= 1 of min-label propagation (module docstring): task t lowers the labels of its
    nodes with the messages of round k - 1 (round 1: with its neighbours' nodes, their first
    labels), settles them over its own pairs (``settle_locally``), writes them, and sends the
    labels that fell to the owners of their other-task neighbours; it records how many messages
    it sent (none from every task: the labels are final). Memory: the task's adjacency, labels and
    incoming messages."""

    name = "🏷️ MinHash clusters: propagate labels"

    def __init__(self, work_folder: DataFolderLike, num_shards: int, round_index: int):
        super().__init__(work_folder, num_shards)
        self.round_index = round_index

    def run(self, data: DocumentsPipeline, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        with self.track_time():
            k = self.round_index
            adj = load_pairs(self.folder, f"{ROOT}/adj/{rank:05d}")
            if k == 1:
                nodes = np.unique(adj[:, 0])
                labels, incoming = nodes, adj
            else:
                with self.folder.open(f"{ROOT}/labels/{k - 1:03d}/{rank:05d}.npy", "rb") as f:
                    state = np.load(f)
                nodes, labels = state[:, 0], state[:, 1]
                incoming = load_pairs(self.folder, f"{ROOT}/msg/{k - 1:03d}/{rank:05d}")
            new = labels.copy()
            np.minimum.at(new, np.searchsorted(nodes, incoming[:, 0]), incoming[:, 1])
            source = np.searchsorted(nodes, adj[:, 0])
            local = shard_of(adj[:, 1], self.num_shards) == rank
            passes = settle_locally(
                nodes, new, source[local], np.searchsorted(nodes, adj[local, 1]),
                lambda labels: shard_of(labels, self.num_shards) == rank,
            )  # fmt: skip
            changed = new < labels
            save_npy(self.folder, f"{ROOT}/labels/{k:03d}/{rank:05d}.npy", np.stack([nodes, new], axis=1))
            sent = changed[source] & ~local
            messages = np.stack([adj[sent, 1], new[source[sent]]], axis=1)
            if len(messages):  # one message per neighbour: the smallest label sent to it
                messages = messages[np.lexsort((messages[:, 1], messages[:, 0]))]
                first = np.ones(len(messages), bool)
                first[1:] = messages[1:, 0] != messages[:-1, 0]
                messages = messages[first]
            pattern = f"{ROOT}/msg/{k:03d}/{{owner:05d}}/{rank:05d}.npy"
            write_by_owner(
                self.folder, pattern, messages, shard_of(messages[:, 0], self.num_shards), self.num_shards
            )
            with self.folder.open(f"{ROOT}/sent/{k:03d}/{rank:05d}.txt", "w") as f:
                f.write(str(len(messages)))
            self.stat_update("labels_lowered", value=int(changed.sum()))
            self.stat_update("local_passes", value=passes)
            self.stat_update("messages_sent", value=len(messages))
        return
        yield
