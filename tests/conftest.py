"""Shared fixtures: a small generated crawl snapshot in a temporary data folder."""

from __future__ import annotations

import os

import pytest

# Sovereign by construction: no test may phone home, whatever the developer's environment says.
os.environ["DAGSTER_DISABLE_TELEMETRY"] = "1"
os.environ["RAY_USAGE_STATS_ENABLED"] = "0"
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ.setdefault("OMP_NUM_THREADS", "1")


@pytest.fixture(scope="session")
def small_snapshot(tmp_path_factory):
    """A 600-document crawl snapshot generated from the bundled sample; returns (folder, truth)."""
    from pipelines.sample_crawl import generate_snapshot

    root = tmp_path_factory.mktemp("snapshots")
    folder = root / "small"
    truth = generate_snapshot(folder, seed=7, num_documents=600)
    return folder, truth


@pytest.fixture(scope="session")
def curated(small_snapshot, tmp_path_factory):
    """The small snapshot curated once through all four steps (plain Python, 2 tasks, 1 worker).

    Returns (layout, step results, ground truth as a Polars frame). Tests must not modify it.
    """
    import shutil

    import polars as pl

    from pipelines.config import CurationConfig
    from pipelines.executor import ExecutorConfig
    from pipelines.steps import curate_snapshot
    from provenance.layout import DataLayout

    folder, truth = small_snapshot
    layout = DataLayout(tmp_path_factory.mktemp("data"))
    shutil.copytree(folder, layout.snapshot_dir("small"))
    results = curate_snapshot(layout, "small", CurationConfig(), ExecutorConfig(tasks=2, workers=1))
    return layout, results, pl.read_parquet(truth)
