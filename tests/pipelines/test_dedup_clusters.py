"""The parallel cluster stage (cluster_stage.py) against the one-task reference (clusters.py):
on random candidate graphs, spread over random input tasks and cut into random task counts, both
write byte-identical decision files and summary."""

from __future__ import annotations

import hashlib
import random
import shutil
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipelines.dedup import cluster_stage
from pipelines.dedup.cluster_stage import cluster_decisions
from pipelines.dedup.clusters import ClusterDecisions
from pipelines.dedup.config import DedupConfig
from pipelines.executor import ExecutorConfig, run_pipeline

EXECUTOR = ExecutorConfig(tasks=1, workers=1, ray_address=None)
PERM = DedupConfig().num_perm


def node(rank: int, index: int) -> int:
    return rank << 32 | index


def random_work(work: Path, seed: int) -> None:
    """Stage 1 and 2 files of a random snapshot: exact groups (a star of pairs from a bucket's first
    member, as the bucket stage writes), near pairs that chain into paths, stars and cycles, with
    signatures near enough that some pairs are confirmed and some rejected; pairs repeat across
    band files, in either order."""
    rng = random.Random(seed)
    ranks = rng.randint(1, 5)
    sizes = [rng.randint(0, 40) for _ in range(ranks)]
    nodes = [node(r, i) for r in range(ranks) for i in range(sizes[r])]
    order = rng.sample(range(10_000), len(nodes))  # ids in no relation to the nodes
    ids = {n: f"doc-{order[k]:05d}" for k, n in enumerate(nodes)}
    base = np.random.default_rng(seed).integers(0, 4, (len(nodes), PERM), dtype=np.uint32)
    sigs = {n: base[k] for k, n in enumerate(nodes)}
    shas, exact, near = {}, [], []
    rest = nodes[:]
    rng.shuffle(rest)
    while rest:
        group = [rest.pop() for _ in range(min(len(rest), rng.choice([1, 1, 1, 2, 3])))]
        text = hashlib.sha256(str(group[0]).encode()).hexdigest()
        for member in group:
            shas[member], sigs[member] = text, sigs[group[0]]
            if member != group[0]:
                exact.append((group[0], member))
    for _ in range(rng.randint(0, 3 * len(nodes))):
        a, b = rng.sample(nodes, 2) if len(nodes) > 1 else (None, None)
        if a is None:
            break
        if rng.random() < 0.5:  # a near copy of a: confirmed, or rejected when the noise is large
            noise = np.random.default_rng(rng.randint(0, 1 << 30)).random(PERM) < rng.choice([0.1, 0.3, 0.7])
            sigs[b] = np.where(noise, sigs[b], sigs[a])
        near.append((a, b) if rng.random() < 0.5 else (b, a))
    for r in range(ranks):
        folder = work / "signatures"
        (folder / "sigs").mkdir(parents=True, exist_ok=True)
        (folder / "docs").mkdir(parents=True, exist_ok=True)
        members = [node(r, i) for i in range(sizes[r])]
        np.save(
            folder / "sigs" / f"{r:05d}.npy",
            np.array([sigs[n] for n in members], np.uint32).reshape(-1, PERM),
        )
        pq.write_table(
            pa.table({"id": pa.array([ids[n] for n in members], pa.string()),
                      "sha256": pa.array([shas[n] for n in members], pa.string())}),
            folder / "docs" / f"{r:05d}.parquet",
        )  # fmt: skip
    (work / "edges").mkdir(parents=True)
    for name, pairs, files in (("exact", exact, 2), ("b", near, 5)):
        for part in range(files):
            chosen = [p for p in pairs if rng.random() < 0.6] if name == "b" else pairs[part::files]
            path = f"{name}-{part:03d}.npy" if name == "exact" else f"b{part:03d}-000.npy"
            np.save(work / "edges" / path, np.array(chosen, np.uint64).reshape(-1, 2))


def decision_bytes(work: Path) -> dict[str, bytes]:
    files = sorted((work / "decisions").glob("*.parquet")) + [work / "summary.json"]
    return {path.name: path.read_bytes() for path in files}


# Four graphs in make test, four more in make test-all (each about 3 s of rounds).
@pytest.mark.parametrize(
    "seed", [*range(1, 5), *(pytest.param(s, marks=pytest.mark.slow) for s in range(5, 9))]
)
def test_parallel_clusters_equal_the_one_task_reference(tmp_path, seed):
    reference, parallel = tmp_path / "reference", tmp_path / "parallel"
    random_work(reference, seed)
    shutil.copytree(reference, parallel)
    config = DedupConfig()
    run_pipeline(
        [ClusterDecisions(str(reference), config)], logging_dir=reference / "logs", config=EXECUTOR, tasks=1
    )
    tasks = seed % 3 + 2  # 2 to 4 tasks, over 1 to 5 input tasks (one task runs the reference itself)
    assert cluster_decisions(str(parallel), config, EXECUTOR, parallel / "logs", tasks) >= 1  # rounds ran
    expected = decision_bytes(reference)
    assert decision_bytes(parallel) == expected
    assert len(expected) > 1  # the graph has clusters: decisions were compared


def test_cluster_tasks_follow_the_pairs_up_to_the_step_tasks(tmp_path, monkeypatch):
    monkeypatch.setattr(cluster_stage, "PAIRS_PER_TASK", 10)
    (tmp_path / "edges").mkdir()
    assert cluster_stage.cluster_tasks(str(tmp_path), 4) == 1  # no pairs: one task
    np.save(tmp_path / "edges" / "b000-000.npy", np.zeros((15, 2), np.uint64))
    np.save(tmp_path / "edges" / "exact-000.npy", np.zeros((6, 2), np.uint64))
    assert cluster_stage.cluster_tasks(str(tmp_path), 4) == 3  # 21 pairs, 10 a task
    assert cluster_stage.cluster_tasks(str(tmp_path), 2) == 2  # never more than the step's tasks
