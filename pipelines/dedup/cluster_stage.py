"""Stage 3 as parallel tasks: candidate pairs to decisions, with no task holding the snapshot.

The driver of components.py (pairs to components) and keepers.py (components to decisions): each
round is one ``run_pipeline`` call of T tasks (so it runs on Ray as well), and the rounds exchange
their state through files under ``clusters/`` in the work folder. Its decisions and summary are
byte-identical to the one-task reference ``clusters.ClusterDecisions`` (tested on random graphs).
"""

from __future__ import annotations

import json
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np
from datatrove.io import get_datafolder

from pipelines.dedup.clusters import ClusterDecisions
from pipelines.dedup.components import ROOT, PropagateLabels, ScatterPairs, VerifyPairs
from pipelines.dedup.config import DedupConfig
from pipelines.dedup.keepers import ClusterDecide, KeeperCombine, KeeperPartials
from pipelines.executor import ExecutorConfig, run_pipeline

# Candidate pairs per cluster task (before the bands' repeats are merged). A task peaked at about
# 360 bytes per pair over a 300 MB baseline (1.65 M pairs in one task: 900 MB), so about 1 GB here.
# Locally each round with more than one worker starts a process pool (3 to 6 s on a loaded 2-core
# host) while the stage's work is about 6 us per pair over all rounds (bench/RESULTS.md): below
# this a task costs more to start than it works.
PAIRS_PER_TASK = 1 << 21


def cluster_tasks(work_dir: str, max_tasks: int) -> int:
    """How many tasks each cluster round runs: ``max_tasks`` (the step's tasks), fewer when the
    bucket stage's pairs give a task less than ``PAIRS_PER_TASK``; at least 1. The decisions do not
    depend on it. Cost: reads the header of each pair file (none when ``max_tasks`` is 1)."""
    if max_tasks <= 1:  # nothing to count: one task either way
        return 1
    folder = get_datafolder(work_dir)
    pairs = 0
    for path in folder.list_files("edges"):
        with folder.open(path, "rb") as f:
            read_header = {(1, 0): np.lib.format.read_array_header_1_0}.get(
                np.lib.format.read_magic(f), np.lib.format.read_array_header_2_0
            )
            pairs += read_header(f)[0][0]
    return max(1, min(max_tasks, -(-pairs // PAIRS_PER_TASK)))


def _remove(folder, subdir: str) -> None:
    for path in folder.list_files(subdir):
        folder.rm(path)


def cluster_decisions(
    work_dir: str, config: DedupConfig, executor: ExecutorConfig, logging_dir: str | Path, tasks: int
) -> int:
    """Write ``decisions/{rank:05d}.parquet`` and ``summary.json`` in ``work_dir`` from the bucket
    stage's pairs, with ``tasks`` tasks per round; return the number of propagation rounds (0 when
    ``tasks`` is 1: then the one-task reference ``clusters.ClusterDecisions`` runs, same bytes).

    Rounds: scatter, verify, R propagation rounds (1 with one task; at most d + 1 for the largest
    component's diameter d in confirmed pairs, in practice the task boundaries a label crosses),
    then keeper partials, keepers and decisions: R + 5 ``run_pipeline`` calls, each paying the
    executor's start-up (a process pool locally with more than one worker: seconds). Per task: O((E + N) / T) memory and
    disk per round for E candidate pairs and N documents with a pair (components.py). Expects no
    ``clusters/`` files of an earlier run (``run.deduplicate`` clears them)."""
    folder = get_datafolder(work_dir)
    logs = Path(logging_dir)
    if tasks == 1:
        # One task holds every pair either way: the one-task reference gives the same bytes in one
        # run_pipeline call instead of R + 5 (each with its start-up), which on a small snapshot
        # cost more than the work (0.53 s against about 0.1 s for the sample's 200 documents).
        run_pipeline([ClusterDecisions(work_dir, config)], logging_dir=logs, config=executor, tasks=1)
        return 0

    def run(step, name: str) -> None:
        run_pipeline([step], logging_dir=logs / name, config=executor, tasks=tasks)

    run(ScatterPairs(work_dir, tasks, config), "scatter")
    run(VerifyPairs(work_dir, tasks, config), "verify")
    rounds = 0
    while True:
        rounds += 1
        run(PropagateLabels(work_dir, tasks, rounds), f"propagate-{rounds:03d}")
        sent = 0
        for path in folder.list_files(f"{ROOT}/sent/{rounds:03d}"):
            with folder.open(path, "r") as f:
                sent += int(f.read())
        if rounds > 1:  # round k reads only round k - 1's files
            _remove(folder, f"{ROOT}/labels/{rounds - 1:03d}")
            _remove(folder, f"{ROOT}/msg/{rounds - 1:03d}")
        if sent == 0:
            break
    print(f"apertus: clusters: components settled after {rounds} label propagation rounds", file=sys.stderr)
    run(KeeperPartials(work_dir, tasks, rounds), "keeper-partials")
    run(KeeperCombine(work_dir, tasks, rounds), "keepers")
    run(ClusterDecide(work_dir, tasks, rounds), "decisions")
    _write_summary(folder)
    return rounds


def _write_summary(folder) -> None:
    """``summary.json`` from the tasks' counts, in the reference's form and bytes."""
    removed, sizes = defaultdict(int), defaultdict(int)
    for path in sorted(folder.list_files(f"{ROOT}/summary")):
        with folder.open(path, "r") as f:
            part = json.load(f)
        for reason, count in part["removed"].items():
            removed[reason] += count
        for size, count in part["sizes"].items():
            sizes[int(size)] += count
    summary = {
        "removed": dict(sorted(removed.items())),
        "cluster_size_histogram": dict(sorted(sizes.items())),
    }
    with folder.open("summary.json", "w") as f:
        json.dump(summary, f, sort_keys=True)
