"""Cross-snapshot stages: after the in-snapshot decisions, drop what earlier snapshots already kept;
after the filter, turn this snapshot's kept documents into a segment of the index.

Stage 3b (``CrossSnapshotMatches``, one task per signature task) probes the index segments
(records.dedup_index) with each document's sha256 key and band keys, and writes
``cross/{rank:05d}.parquet``: per matched document the earlier document it duplicates. A match is
exact when the full sha256 agrees, near when a band agrees and the signatures confirm the pair
as in the snapshot (``verify.similarity``: estimated Jaccard at least ``min_jaccard`` or
containment at least ``min_containment``; every candidate when ``min_jaccard`` is 0). Per document
the best match wins: exact first, then the highest estimated Jaccard, then the earliest registered.

``apply_matches`` (one process) then treats an in-snapshot cluster as a whole, as the cluster stage
does: if any member matches an earlier document, every member is dropped (the earlier document is
the cluster's copy), each naming the earlier document it matches itself or, failing that, the
cluster's best match. It rewrites ``decisions/`` and ``summary.json`` for the filter stage.
Cost: probing O(docs x bands x segments x log(index rows)); applying O(matches + cluster rows).
"""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from datatrove.data import DocumentsPipeline
from datatrove.pipeline.base import PipelineStep

from pipelines import reasons
from pipelines.dedup.clusters import DECISION_SCHEMA, EDGE_CHUNK
from pipelines.dedup.config import DedupConfig
from pipelines.dedup.minhash import band_names
from pipelines.dedup.shingles import band_keys, sha256_key
from pipelines.dedup.verify import similarity
from records.dedup_index import Segment, write_segment

MATCH_SCHEMA = pa.schema(
    [("index", pa.uint32()), ("exact", pa.bool_()), ("jaccard", pa.float64()), ("order", pa.int64()),
     ("duplicate_of", pa.string()), ("duplicate_of_sha256", pa.string()), ("duplicate_of_version", pa.string()),
     ("duplicate_of_snapshot", pa.string())]
)  # fmt: skip


def _task_files(
    work: Path, rank: int, config: DedupConfig
) -> tuple[np.ndarray, list[str], list[str], np.ndarray]:
    """Stage 1's output for one task: signatures (D, P), ids, sha256s and the signed mask (D,)."""
    sig_dp = np.load(work / f"signatures/sigs/{rank:05d}.npy")
    docs = pq.read_table(work / f"signatures/docs/{rank:05d}.parquet").to_pydict()
    signed_d = np.zeros(len(docs["id"]), bool)
    first_band = work / f"signatures/bands/{band_names(config)[0]}/{rank:05d}.npy"
    if first_band.exists():  # its records are the documents that have shingles
        signed_d[np.load(first_band)["index"]] = True
    return sig_dp, docs["id"], docs["sha256"], signed_d


def _decisions(work: Path, rank: int) -> dict[int, dict]:
    path = work / f"decisions/{rank:05d}.parquet"
    return {row["index"]: row for row in pq.read_table(path).to_pylist()} if path.exists() else {}


class CrossSnapshotMatches(PipelineStep):
    """Stage 3b: each task probes the earlier snapshots' segments with its documents."""

    type = "🫂 - DEDUP"
    name = "🗂️ cross-snapshot matches"

    def __init__(self, work_folder: str, segments: list[str], config: DedupConfig):
        super().__init__()
        self.work, self.segments, self.config = Path(work_folder), list(segments), config

    def run(self, data: DocumentsPipeline, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        if not (self.work / f"signatures/docs/{rank:05d}.parquet").exists():
            return
        with self.track_time():
            sig_dp, ids, shas, signed_d = _task_files(self.work, rank, self.config)
            best: dict[int, tuple] = {}  # doc -> (rank key, segment, row, exact, jaccard)
            exact_q = np.fromiter((sha256_key(s) for s in shas), np.uint64, len(shas))
            signed = np.flatnonzero(signed_d)
            keys_db = band_keys(sig_dp[signed], self.config)
            for position, folder in enumerate(self.segments):
                segment = Segment.open(Path(folder))
                self._probe(segment, position, exact_q, shas, sig_dp, signed, keys_db, best)
            rows, by_segment = [], defaultdict(list)
            for doc in sorted(best):
                by_segment[best[doc][1]].append(doc)
            described = {}
            for position, docs in by_segment.items():
                found = Segment.open(Path(self.segments[position])).describe([best[d][2] for d in docs])
                described.update(zip(docs, found, strict=True))
            for doc in sorted(best):
                _, position, row, exact, jaccard = best[doc]
                doc_id, sha, version, snapshot = described[doc]
                rows.append({"index": doc, "exact": exact, "jaccard": jaccard, "order": position << 32 | row,
                             "duplicate_of": doc_id, "duplicate_of_sha256": sha, "duplicate_of_version": version,
                             "duplicate_of_snapshot": snapshot})  # fmt: skip
            self.stat_update("matched", value=len(rows))
            (self.work / "cross").mkdir(exist_ok=True)
            pq.write_table(
                pa.Table.from_pylist(rows, schema=MATCH_SCHEMA), self.work / f"cross/{rank:05d}.parquet"
            )
        return
        yield

    def _probe(self, segment: Segment, position, exact_q, shas, sig_dp, signed, keys_db, best) -> None:
        query, rows = segment.exact_candidates(exact_q)
        if len(query):
            found = segment.describe(rows)
            for q, row, (_, sha, _, _) in zip(query.tolist(), rows.tolist(), found, strict=True):
                if sha == shas[q]:  # the key is 64 bits of the sha256: confirm all 256
                    _offer(best, q, (0, -1.0, position, row), position, row, True, 1.0)
        pairs = [segment.band_candidates(band, keys_db[:, band]) for band in range(self.config.num_bands)]
        query = np.concatenate([p[0] for p in pairs]) if pairs else np.zeros(0, np.int64)
        if not len(query):
            return
        signed_rows = np.concatenate([p[1] for p in pairs])
        pair_e2 = np.unique(np.stack([query, signed_rows], axis=1), axis=0)
        docs_e, sigrow_e = signed[pair_e2[:, 0]], pair_e2[:, 1]
        unique_u, inverse_e = np.unique(sigrow_e, return_inverse=True)
        earlier_up = np.asarray(segment.array("signatures")[unique_u])  # only the candidate rows are read
        agreement = np.empty(len(docs_e))
        keep = np.empty(len(docs_e), dtype=bool)
        for start in range(0, len(docs_e), EDGE_CHUNK):  # memory per chunk, not per candidate set
            chunk = slice(start, start + EDGE_CHUNK)
            jaccard_e, containment_e = similarity(sig_dp[docs_e[chunk]], earlier_up[inverse_e[chunk]])
            agreement[chunk] = jaccard_e
            # The rule of the cluster stage (verify.confirm): a match within a snapshot is one across.
            keep[chunk] = (jaccard_e >= self.config.min_jaccard) | (
                containment_e >= self.config.min_containment
            )
        if self.config.min_jaccard == 0:
            keep[:] = True
        rows = segment.rows_of_signed(sigrow_e[keep])
        for doc, row, jaccard in zip(
            docs_e[keep].tolist(), rows.tolist(), agreement[keep].tolist(), strict=True
        ):
            _offer(best, doc, (1, -jaccard, position, row), position, row, False, round(jaccard, 4))


def _offer(
    best: dict, doc: int, rank_key: tuple, position: int, row: int, exact: bool, jaccard: float
) -> None:
    if doc not in best or rank_key < best[doc][0]:
        best[doc] = (rank_key, position, row, exact, jaccard)


def apply_matches(work: Path, num_tasks: int) -> dict[str, int]:
    """Rewrite the decisions so that every in-snapshot cluster with a cross-snapshot match is dropped,
    and update ``summary.json``; return the documents dropped for earlier snapshots, per reason."""
    matches, matched_in = {}, defaultdict(list)  # (rank, index) -> match row; rank -> indexes
    for rank in range(num_tasks):
        path = work / f"cross/{rank:05d}.parquet"
        if path.exists():
            for row in pq.read_table(path).to_pylist():
                matches[rank, row["index"]] = row
                matched_in[rank].append(row["index"])
    if not matches:
        return {}
    decisions = {rank: _decisions(work, rank) for rank in range(num_tasks)}
    cluster_of = {(rank, i): row["cluster_id"] for rank, rows in decisions.items() for i, row in rows.items()}
    best_of_cluster: dict[str, dict] = {}
    for node, match in matches.items():
        cluster = cluster_of.get(node)
        if cluster is not None:
            current = best_of_cluster.get(cluster)
            if current is None or _match_key(match) < _match_key(current):
                best_of_cluster[cluster] = match
    summary = json.loads((work / "summary.json").read_text())
    removed, histogram = (
        defaultdict(int, summary["removed"]),
        defaultdict(int, summary["cluster_size_histogram"]),
    )
    cross = defaultdict(int)
    docs_of = {}
    for rank, rows in decisions.items():
        affected = sorted(
            set(matched_in[rank]) | {i for i, row in rows.items() if row["cluster_id"] in best_of_cluster}
        )
        if not affected:
            continue
        if rank not in docs_of:
            docs_of[rank] = (
                pq.read_table(work / f"signatures/docs/{rank:05d}.parquet").column("id").to_pylist()
            )
        for index in affected:
            old = rows.get(index) or {"index": index, "id": docs_of[rank][index], "reason": None,
                                      "cluster_id": docs_of[rank][index], "cluster_size": 1, "details": None}  # fmt: skip
            own = matches.get((rank, index))
            match = own or best_of_cluster[old["cluster_id"]]
            reason = reasons.EXACT_DUPLICATE if own and own["exact"] else reasons.NEAR_DUPLICATE
            details = {"duplicate_of": match["duplicate_of"], "duplicate_of_version": match["duplicate_of_version"],
                       "duplicate_of_snapshot": match["duplicate_of_snapshot"], "cluster_id": old["cluster_id"],
                       "cluster_size": old["cluster_size"]}  # fmt: skip
            if own is None:
                details["via_cluster"] = old["cluster_id"]  # a cluster member matched; this one not directly
            elif own["exact"]:
                details["sha256"] = own["duplicate_of_sha256"]
            else:
                details["estimated_jaccard"] = own["jaccard"]
            if old["reason"] is not None:
                removed[old["reason"]] -= 1
            elif old["cluster_size"] > 1:
                histogram[str(old["cluster_size"])] -= 1  # its cluster is no longer kept here
            removed[reason] += 1
            cross[reason] += 1
            rows[index] = {**old, "reason": reason, "details": json.dumps(details, sort_keys=True)}
        table = pa.Table.from_pylist([rows[i] for i in sorted(rows)], schema=DECISION_SCHEMA)
        (work / "decisions").mkdir(exist_ok=True)
        pq.write_table(table, work / f"decisions/{rank:05d}.parquet")
    summary["removed"] = {k: v for k, v in sorted(removed.items()) if v}
    summary["cluster_size_histogram"] = {
        k: v for k, v in sorted(histogram.items(), key=lambda kv: int(kv[0])) if v
    }
    summary["cross_snapshot"] = dict(sorted(cross.items()))
    (work / "summary.json").write_text(json.dumps(summary, sort_keys=True))
    return dict(cross)


def _match_key(match: dict) -> tuple:
    return (not match["exact"], -match["jaccard"], match["order"])


def write_kept_segment(work: Path, dest: Path, *, version: str, snapshot: str, config: DedupConfig) -> None:
    """Write the kept documents of a finished dedup run (stage 1's files and the final decisions in
    ``work``) as the index segment ``dest`` of ``version``. Reads the signatures once; memory
    O(kept documents x permutations)."""
    ids, shas, sig_chunks, signed_chunks = [], [], [], []
    for rank in range(len(list((work / "signatures/docs").glob("*.parquet")))):
        sig_dp, rank_ids, rank_shas, signed_d = _task_files(work, rank, config)
        dropped = {i for i, row in _decisions(work, rank).items() if row["reason"] is not None}
        kept = np.array([i not in dropped for i in range(len(rank_ids))], bool)
        ids += [d for d, k in zip(rank_ids, kept, strict=True) if k]
        shas += [s for s, k in zip(rank_shas, kept, strict=True) if k]
        sig_chunks.append(sig_dp[kept & signed_d])
        signed_chunks.append(signed_d[kept])
    signed_n = np.concatenate(signed_chunks) if signed_chunks else np.zeros(0, bool)
    sig_sp = np.concatenate(sig_chunks) if sig_chunks else np.zeros((0, config.num_perm), np.uint32)
    write_segment(
        dest,
        versions=[version],
        snapshots=[snapshot],
        ids=ids,
        sha256_hex=shas,
        sources=np.zeros(len(ids), np.uint32),
        exact_keys=np.fromiter((sha256_key(s) for s in shas), np.uint64, len(shas)),
        signatures=sig_sp,
        signed_rows=np.flatnonzero(signed_n).astype(np.uint32),
        band_keys=band_keys(sig_sp, config),
    )
