"""The first two dedup stages: signatures per input task, then candidate pairs per band.

Files under the work folder (``rank`` = input task, ``band`` = ``b000``..``b013`` or ``exact``)::

    signatures/sigs/{rank:05d}.npy          (docs, P) uint32 MinHash signatures, in reading order
    signatures/docs/{rank:05d}.parquet      id, sha256 of each document, in reading order
    signatures/bands/{band}/{rank:05d}.npy  BUCKET_DTYPE records sorted by (key, id_hash)
    edges/{band}-{part:03d}.npy             (E, 2) uint64 node pairs that share a bucket

A node is ``rank << 32 | index``: where the filter stage, reading the same input with the same
tasks, meets the document again. The exact "band" keys documents by their sha256, so exact
duplicates are found by the same bucket machinery, in memory bounded by one band part.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from datatrove.data import DocumentsPipeline
from datatrove.io import DataFolder, DataFolderLike, get_datafolder
from datatrove.pipeline.base import PipelineStep
from fsspec.implementations.local import LocalFileSystem

from pipelines import fields
from pipelines.dedup.config import DedupConfig
from pipelines.dedup.shingles import band_keys, id_hash, sha256_key, signatures
from pipelines.shards import DocumentShardReader

BUCKET_DTYPE = np.dtype([("key", "<u8"), ("id_hash", "<u8"), ("rank", "<u4"), ("index", "<u4")])
EXACT_BAND = "exact"
BATCH_SIZE = 512


def band_names(config: DedupConfig) -> list[str]:
    """The bucket families: one per MinHash band, plus the exact (sha256) one."""
    return [f"b{band:03d}" for band in range(config.num_bands)] + [EXACT_BAND]


def nodes_of(rank: np.ndarray, index: np.ndarray) -> np.ndarray:
    return (rank.astype(np.uint64) << np.uint64(32)) | index.astype(np.uint64)


def open_work_file(folder: DataFolder, path: str, mode: str = "rb"):
    """``folder.open(path, mode)`` (parent folders made for writing); on a local folder Python's
    own ``open``: fsspec's local layer cost more than the read or write of a small band or pair
    file, and a run opens about 5 per band."""
    if not isinstance(folder.fs, LocalFileSystem):
        return folder.open(path, mode)
    full = os.path.join(folder.path, path)
    if "r" not in mode:
        os.makedirs(os.path.dirname(full), exist_ok=True)
    return open(full, mode)  # noqa: SIM115  (the caller closes it, as folder.open's)


def _save_npy(folder, path: str, array: np.ndarray) -> None:
    with open_work_file(folder, path, "wb") as f:
        np.save(f, array)


class MinhashSignatures(PipelineStep):
    """Stage 1: computes every document's MinHash signature and writes, per task, the signatures,
    the ids and sha256s, and one sorted bucket file per band. Passes no documents on."""

    type = "🫂 - DEDUP"
    name = "🎯 MinHash signatures (rensa)"

    def __init__(self, work_folder: DataFolderLike, config: DedupConfig | None = None):
        super().__init__()
        self.folder = get_datafolder(work_folder)
        self.config = config or DedupConfig()

    def run(self, data: DocumentsPipeline, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        self._sign_batches(rank, self._batches(data))
        return
        yield

    def _batches(self, data: DocumentsPipeline) -> Iterator[tuple[list[str], list, list[str], list]]:
        """(ids, sha256s, texts, languages) of ``BATCH_SIZE`` documents at a time."""
        batch = []
        for document in data:
            batch.append(document)
            if len(batch) == BATCH_SIZE:
                yield self._columns(batch)
                batch = []
        if batch:
            yield self._columns(batch)

    @staticmethod
    def _columns(batch: list) -> tuple[list[str], list, list[str], list]:
        return (
            [d.id for d in batch],
            [d.metadata.get(fields.SHA256) for d in batch],
            [d.text for d in batch],
            [d.metadata.get(fields.LANGUAGE) for d in batch],
        )

    def _sign_batches(self, rank: int, batches) -> None:
        sig_chunks, has_sig_chunks, ids, shas = [], [], [], []
        for batch_ids, batch_shas, texts, languages in batches:
            self.stat_update("documents", value=len(batch_ids))
            if not all(batch_shas):
                doc_id = batch_ids[[bool(sha) for sha in batch_shas].index(False)]
                raise ValueError(
                    f"document {doc_id!r} has no metadata[{fields.SHA256!r}]: run the reader first"
                )
            ids += batch_ids
            shas += batch_shas
            with self.track_time():
                sig_bp, has_sig_b = signatures(texts, languages, self.config)
            sig_chunks.append(sig_bp)
            has_sig_chunks.append(has_sig_b)
        with self.track_time():
            sig_dp = (
                np.concatenate(sig_chunks) if sig_chunks else np.zeros((0, self.config.num_perm), np.uint32)
            )
            has_sig_d = np.concatenate(has_sig_chunks) if has_sig_chunks else np.zeros(0, bool)
            self._write(rank, sig_dp, has_sig_d, ids, shas)

    def _write(
        self, rank: int, sig_dp: np.ndarray, has_sig_d: np.ndarray, ids: list[str], shas: list[str]
    ) -> None:
        _save_npy(self.folder, f"signatures/sigs/{rank:05d}.npy", sig_dp)
        with self.folder.open(f"signatures/docs/{rank:05d}.parquet", "wb") as f:
            pq.write_table(
                pa.table({"id": pa.array(ids, pa.string()), "sha256": pa.array(shas, pa.string())}), f
            )
        records = np.zeros(len(ids), dtype=BUCKET_DTYPE)
        records["id_hash"] = np.fromiter((id_hash(i) for i in ids), dtype=np.uint64, count=len(ids))
        records["rank"] = rank
        records["index"] = np.arange(len(ids), dtype=np.uint32)
        keys_db = band_keys(sig_dp, self.config)
        # Each band file is sorted as np.sort(order=["key", "id_hash"]) sorts (the other fields break
        # ties; rank is this task's): records ordered by (id_hash, index) once, then a stable sort
        # by key per band. Sorting the structured records per band was 5x slower.
        records = records[np.lexsort((records["index"], records["id_hash"]))]
        has_sig_d = has_sig_d[records["index"]]
        shas_d = [shas[i] for i in records["index"].tolist()]
        for band, name in enumerate(band_names(self.config)):
            if name == EXACT_BAND:
                records["key"] = np.fromiter(
                    (sha256_key(s) for s in shas_d), dtype=np.uint64, count=len(shas)
                )
                chosen = records
            else:
                records["key"] = keys_db[records["index"], band]
                chosen = records[has_sig_d]  # a document without shingles has no near-duplicates
            order = np.argsort(chosen["key"], kind="stable")
            _save_npy(self.folder, f"signatures/bands/{name}/{rank:05d}.npy", chosen[order])


class MinhashShardSignatures(MinhashSignatures):
    """``DocumentShardReader(input_folder)`` -> ``MinhashSignatures`` as one block that reads only
    the columns a signature needs (id, text, sha256, language) from this task's shards, a batch at
    a time, with no document objects: the same files (the reader's task split and order), without
    its per-document Python, about a fifth of this stage's time on the near-duplicate bench. It
    reads its own input: the only block of its pipeline."""

    name = "🎯 MinHash signatures (rensa, shards)"

    def __init__(
        self, input_folder: DataFolderLike, work_folder: DataFolderLike, config: DedupConfig | None = None
    ):
        super().__init__(work_folder, config)
        self.reader = DocumentShardReader(input_folder)

    def run(self, data: DocumentsPipeline, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        self._sign_batches(rank, self._shard_batches(rank, world_size))
        return
        yield

    def _shard_batches(self, rank: int, world_size: int):
        reader, names = self.reader, ["id", fields.SHA256, "text", fields.LANGUAGE]
        files = reader.data_folder.get_shard(
            rank, world_size, recursive=reader.recursive, glob_pattern=reader.glob_pattern
        )
        for path in files:
            with reader.data_folder.open(path, "rb") as f, pq.ParquetFile(f) as parquet_file:
                for batch in parquet_file.iter_batches(batch_size=BATCH_SIZE, columns=names):
                    yield tuple(batch.column(name).to_pylist() for name in names)


class BandBuckets(PipelineStep):
    """Stage 2: the unit ``u`` of work is part ``u % bucket_splits`` of the key range of band
    ``u // bucket_splits``, read from every signature task; it writes the pairs (first member,
    other member) of each bucket with two or more documents, members ordered by id hash. Task t
    does the units t, t + T, t + 2T … of T = ``num_tasks()`` tasks: at most ``max_tasks``, since
    each task pays a fixed start-up (a process, its logging) that 33 one-band tasks of a small
    snapshot spent more on than on their bands. Units and output files do not depend on T."""

    type = "🫂 - DEDUP"
    name = "🪣 MinHash buckets"

    def __init__(
        self, work_folder: DataFolderLike, config: DedupConfig | None = None, max_tasks: int | None = None
    ):
        super().__init__()
        self.folder = get_datafolder(work_folder)
        self.config = config or DedupConfig()
        self.max_tasks = max_tasks

    def num_units(self) -> int:
        return len(band_names(self.config)) * self.config.bucket_splits

    def num_tasks(self) -> int:
        return min(self.num_units(), self.max_tasks or self.num_units())

    def run(self, data: DocumentsPipeline, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        with self.track_time():
            files = sorted(self.folder.list_files("signatures/bands"))  # one listing for all units
            for unit in range(rank, self.num_units(), self.num_tasks()):
                self._bucket(unit, files)
        return
        yield

    def _bucket(self, unit: int, files: list[str]) -> None:
        splits = self.config.bucket_splits
        name, part = band_names(self.config)[unit // splits], unit % splits
        low, high = (part << 64) // splits, ((part + 1) << 64) // splits
        chunks = []
        for path in (p for p in files if p.startswith(f"signatures/bands/{name}/")):
            with open_work_file(self.folder, path) as f:
                records = np.load(f)
            keys = records["key"]
            lo = np.searchsorted(keys, np.uint64(low), side="left")
            hi = len(keys) if high >= 1 << 64 else np.searchsorted(keys, np.uint64(high), side="left")
            chunks.append(records[lo:hi])
        records = np.concatenate(chunks) if chunks else np.zeros(0, BUCKET_DTYPE)
        if len(chunks) > 1:  # one signature task's file is sorted so already (ties in index order)
            records = records[np.lexsort((records["id_hash"], records["key"]))]
        keys = records["key"]
        is_first = np.ones(len(keys), dtype=bool)
        is_first[1:] = keys[1:] != keys[:-1]
        first_of = np.flatnonzero(is_first)[np.cumsum(is_first) - 1]
        nodes = nodes_of(records["rank"], records["index"])
        edges_e2 = np.stack([nodes[first_of[~is_first]], nodes[~is_first]], axis=1)
        self.stat_update("edges", value=len(edges_e2))
        _save_npy(self.folder, f"edges/{name}-{part:03d}.npy", edges_e2)
