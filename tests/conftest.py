"""Shared fixtures: a small generated crawl snapshot in a temporary data folder."""

from __future__ import annotations

import os

import pytest

# Sovereign by construction: no test may phone home, whatever the developer's environment says.
os.environ["DAGSTER_DISABLE_TELEMETRY"] = "1"
os.environ["RAY_USAGE_STATS_ENABLED"] = "0"
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ.setdefault("OMP_NUM_THREADS", "1")


@pytest.fixture(scope="session", autouse=True)
def instance_keys(tmp_path_factory):
    """One key folder for the whole session, as `apertus init` makes it, named by APERTUS_KEYS in
    os.environ so every ledger append (in this process or a subprocess) can sign. Tests that need
    no key folder, or another one, monkeypatch APERTUS_KEYS. Returns the folder."""
    from records.keys import KEYS_ENV, create_identity

    folder = tmp_path_factory.mktemp("instance-keys")
    create_identity(folder)
    os.environ[KEYS_ENV] = str(folder)
    return folder


@pytest.fixture(scope="session")
def small_snapshot(tmp_path_factory):
    """A 600-document crawl snapshot generated from the bundled sample; returns (folder, truth)."""
    from sample.crawl import generate_snapshot

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
    from records.layout import DataLayout

    folder, truth = small_snapshot
    layout = DataLayout(tmp_path_factory.mktemp("data"))
    shutil.copytree(folder, layout.snapshot_dir("small"))
    results = curate_snapshot(layout, "small", CurationConfig(), ExecutorConfig(tasks=2, workers=1))
    return layout, results, pl.read_parquet(truth)


@pytest.fixture(scope="session")
def trained(curated, tmp_path_factory):
    """A copy of the curated data folder carried through the whole chain to a real model version:
    quality classifier and scores, the `sample` curriculum, a 2,048-token tokenizer, token shards of 64
    tokens, the tiny recipe trained 16 steps over them (model.staged_training), sealed with its provenance
    record and pinned in the ledger.

    Returns (layout, model manifest, token_shards manifest). Tests must not modify it (copy it)."""
    import dataclasses
    import shutil
    from pathlib import Path

    from model.config import tiny
    from model.staged_training import train_on_stages
    from pipelines.curriculum.config import load_curriculum
    from pipelines.curriculum.stages import build_curriculum_stages
    from pipelines.executor import ExecutorConfig
    from pipelines.quality_model import score_quality, train_quality_classifier
    from pipelines.token_shards import TokenShardConfig, build_token_shards
    from pipelines.tokenizer import TokenizerConfig, train_tokenizer
    from records.layout import DataLayout
    from records.models import build_record, seal_model

    source, results, _ = curated
    layout = DataLayout(tmp_path_factory.mktemp("trained") / "data")
    shutil.copytree(source.root, layout.root)
    raw, languages, filtered, deduplicated = (r.manifest for r in results)
    classifier = train_quality_classifier(layout, raw, (languages, filtered), seed=0).manifest
    scored = score_quality(layout, deduplicated, classifier, ExecutorConfig(tasks=2, workers=1)).manifest
    sample = Path(__file__).resolve().parents[1] / "configs" / "curriculum" / "sample.yaml"
    stages = build_curriculum_stages(layout, [scored], load_curriculum(sample), where=str(sample)).manifest
    tokenizer = train_tokenizer(layout, deduplicated, config=TokenizerConfig(vocab_size=2048)).manifest
    shards = build_token_shards(layout, stages, tokenizer, config=TokenShardConfig(seq_len=64, seed=3))
    base = tiny()
    run = dataclasses.replace(
        base,
        train=dataclasses.replace(
            base.train, seq_len=64, micro_batch_size=4, max_steps=16, warmup_steps=2, decay_steps=4
        ),
    )
    out = layout.work / "runs" / "fixture"
    train_on_stages(run, shards.folder, out, eval_sequences=16, log=lambda line: None)
    record = build_record(layout, out, recipe="tiny", orchestration={"orchestrator": "pytest"})
    model, _ = seal_model(layout, out, record)
    return layout, model, shards.manifest
