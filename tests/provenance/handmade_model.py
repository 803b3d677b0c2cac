"""A model version built by hand over a copy of the curated fixture: a real tokenizer, a one-stage
curriculum over the deduplicated documents, real token shards, and a provenance record sealed into
``datasets/trained_model`` by ``records.models.seal_model`` (no weights are trained: the erasure
and compliance code read records, never weights)."""

from __future__ import annotations

import hashlib
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from model.config import tiny
from pipelines.token_shards import TokenShardConfig, build_token_shards
from pipelines.tokenizer import TokenizerConfig, train_tokenizer
from records.layout import DataLayout
from records.manifest import Manifest, seal, version_folder
from records.models import seal_model

PARAMETERS = {"total": 5_432_100, "active": 1_234_500}
STAGE = "0-main"


def build_model(
    layout: DataLayout, source: Manifest, *, untrained_doc: str | None = None, record_use: bool = True
) -> dict:
    """Tokenizer, one-stage curriculum over ``source`` (every kept document once), token shards and a
    sealed trained_model version. Every sequence is marked trained once, except those holding
    ``untrained_doc`` (held out instead). Without ``record_use`` the model has no
    sequence_use.parquet (a run that did not record which sequences it drew). Returns the refs and
    the record."""
    tokenizer = train_tokenizer(layout, source, config=TokenizerConfig(vocab_size=512)).manifest
    index = pq.read_table(version_folder(layout.datasets, source.ref) / "index.parquet").to_pylist()
    staging = layout.work / "handmade-stages"
    (staging / "stages").mkdir(parents=True)
    stage = pa.table({
        "stage": ["main"] * len(index), "stage_index": [0] * len(index), "position": list(range(len(index))),
        "doc_id": [r["doc_id"] for r in index], "sha256": [r["sha256"] for r in index],
        "source_version": [source.ref] * len(index), "shard": [r["shard"] for r in index],
        "row": [r["row"] for r in index], "language": [r["language"] for r in index],
        "multiplicity": [1] * len(index), "num_tokens_est": [r["num_tokens_est"] for r in index],
    })  # fmt: skip
    pq.write_table(stage, staging / "stages" / f"{STAGE}.parquet")
    stages, _ = seal(
        staging, layout.datasets, asset="curriculum_stages", snapshot=None, parents=(source.ref,)
    )
    config = TokenShardConfig(seq_len=64, sequences_per_shard=10_000, batch_documents=100, seed=3)
    shards = build_token_shards(layout, stages, tokenizer, config=config).manifest
    shards_folder = version_folder(layout.datasets, shards.ref)
    sequences = pq.read_table(shards_folder / "stages" / STAGE / "sequences.parquet").to_pylist()
    num_sequences = max(r["sequence"] for r in sequences) + 1
    held = sorted({r["sequence"] for r in sequences if r["doc_id"] == untrained_doc})
    trained = [s for s in range(num_sequences) if s not in set(held)]

    run = layout.work / "handmade-run"
    run.mkdir()
    weights = np.arange(64, dtype=np.float32).tobytes()
    (run / "model.safetensors").write_bytes(weights)
    if record_use:
        pq.write_table(
            pa.table({
                "stage": [STAGE] * num_sequences, "sequence": trained + held,
                "times_trained": [1] * len(trained) + [0] * len(held),
                "held_out": [False] * len(trained) + [True] * len(held),
            }),
            run / "sequence_use.parquet",
        )  # fmt: skip
    run_config = asdict(tiny())
    run_config["model"]["vocab_size"] = 512
    record = {
        "format": "apertus.provenance-record/1",
        "model": {"recipe": "tiny", "config": run_config["model"], "parameters": PARAMETERS},
        "export": {"path": "model.safetensors", "sha256": hashlib.sha256(weights).hexdigest()},
        "checkpoint": {"latest": "step-40", "step": 40, "files": {}},
        "datasets": {
            "token_shards": shards.ref,
            "tokenizer": tokenizer.ref,
            "curriculum_stages": stages.ref,
            "stages": [
                {
                    "stage": "main",
                    "index": 0,
                    "path": f"stages/{STAGE}",
                    "sequences": num_sequences,
                    "tokens": num_sequences * 64 + 1,
                    "sequences_trained": len(trained) if record_use else None,
                    "held_out_sequences": len(held) if record_use else None,
                    "dataset_versions": [source.ref],
                }
            ],
        },  # fmt: skip
        "code": {"commit": "0" * 40, "dirty": False, "diff_sha256": None},
        "config": {"run": run_config, "deepspeed": {"train_micro_batch_size_per_gpu": 8}},
        "dependencies": {"sha256": "1" * 64, "count": 1, "lock_sha256": "2" * 64},
        "hardware": {"cpu": "test cpu", "cpu_count": 2, "accelerators": ["cpu"], "torch": "2.x"},
        "seeds": {"train": 0, "token_shards": 3},
        "metrics": {
            "steps": 40,
            "first_loss": 6.2,
            "final_loss": 4.1,
            "tokens_per_s_median": 1234.5,
            "perplexity_after_stage": [{"stage": STAGE, "overall": 61.5, "by_language": {"en": 55.0}}],
        },  # fmt: skip
        "orchestration": {},
    }
    manifest, _ = seal_model(layout, Path(run), record)
    return {"model": manifest.ref, "tokenizer": tokenizer.ref, "stages": stages.ref, "token_shards": shards.ref,
            "record": record, "trained": trained, "held": held}  # fmt: skip
