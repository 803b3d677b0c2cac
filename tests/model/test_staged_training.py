"""Training over the stages of a token_shards version: stages in order with the schedule aligned to them,
exact resume across a stage boundary, held-out documents never trained on, and per-language perplexity.

The version is built by hand with pipelines/token_shards.py's own stage writer from synthetic documents:
each language is a Markov chain over its own token range, so the languages are learnable and distinct.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from model.config import TrainConfig
from model.loop import EngineStep
from model.schedule import split_steps
from model.staged_training import EVALUATION_FILE, RUN_FILE, plan_stages, train_on_stages
from pipelines.token_shards import TokenShardConfig, _Stream, _write_stage
from records.canonical import write_record
from records.manifest import seal
from tests.model.conftest import tiny_run

SEQ_LEN = 32
# stage name -> (languages, documents); each language's tokens come from its own id range.
STAGES = {"00-broad": (["de", "en"], 120), "01-anneal": (["en", "fr"], 80)}
TOKEN_RANGE = {"en": (2, 66), "de": (66, 130), "fr": (130, 194)}
FRACTION = 0.1


def _documents(stage: str, languages: list[str], count: int, rng) -> list[tuple[str, str, np.ndarray]]:
    successors = {
        lang: np.random.default_rng(i).integers(*TOKEN_RANGE[lang], size=(256, 3))
        for i, lang in enumerate(TOKEN_RANGE)
    }
    docs = []
    for i in range(count):
        lang = languages[i % len(languages)]
        lo, _ = TOKEN_RANGE[lang]
        tokens = [int(rng.integers(*TOKEN_RANGE[lang]))]
        for _ in range(int(rng.integers(20, 90)) - 1):
            tokens.append(int(successors[lang][tokens[-1] - lo, rng.integers(3)]))
        docs.append((f"{stage}/doc{i}", lang, np.array(tokens)))
    return docs


def write_token_shards(datasets: Path, work: Path, seed: int = 0) -> Path:
    """Seal a curriculum_stages version (stage files with language per position) and a token_shards
    version of two synthetic stages under datasets; returns the token_shards version folder."""
    rng = np.random.default_rng(seed)
    stages_dir, shards_dir = work / "stages-staging", work / "shards-staging"
    (stages_dir / "stages").mkdir(parents=True)
    config = TokenShardConfig(seq_len=SEQ_LEN, sequences_per_shard=100, seed=seed)
    summaries, tables = [], {}
    for index, (name, (languages, count)) in enumerate(STAGES.items()):
        docs = _documents(name, languages, count, rng)
        table = pa.table({
            "stage": [name[3:]] * count, "stage_index": [index] * count, "position": list(range(count)),
            "doc_id": [d[0] for d in docs], "sha256": [hashlib.sha256(d[0].encode()).hexdigest() for d in docs],
            "source_version": ["synthetic/0"] * count, "shard": [0] * count, "row": list(range(count)),
            "language": [d[1] for d in docs], "multiplicity": [1] * count,
        })  # fmt: skip
        pq.write_table(table, stages_dir / "stages" / f"{name}.parquet")
        tables[name] = (table, docs)
    stages_manifest, _ = seal(stages_dir, datasets, asset="curriculum_stages", snapshot=None)
    for index, (name, (table, docs)) in enumerate(tables.items()):
        stream_path = work / f"{name}.tokens"
        pieces, starts, ends, position = [], [], [], 0
        for _, _, tokens in docs:
            starts.append(position)
            position += len(tokens)
            ends.append(position)
            position += 1
            pieces += [tokens, np.array([0])]
        np.concatenate(pieces).astype(np.uint16).tofile(stream_path)
        rows = np.arange(len(docs), dtype=np.int64)
        stream = _Stream(
            stream_path, position, table, rows, np.zeros_like(rows), np.array(starts), np.array(ends)
        )
        out = shards_dir / "stages" / name
        out.mkdir(parents=True)
        summaries.append(
            _write_stage(index, Path(f"{name}.parquet"), out, stream, np.dtype(np.uint16), config)
        )
    write_record(shards_dir / "index.json", {
        "format": "apertus.token-shards/1", "stages_version": stages_manifest.ref, "tokenizer": "tokenizer/synthetic",
        "vocab_size": 256, "end_of_text_id": 0, "dtype": "uint16", "seq_len": SEQ_LEN, "seed": seed, "stages": summaries,
    })  # fmt: skip
    manifest, _ = seal(
        shards_dir, datasets, asset="token_shards", snapshot=None, parents=(stages_manifest.ref,)
    )
    return datasets / "token_shards" / manifest.version_id


def _run(**overrides):
    run = tiny_run(seq_len=SEQ_LEN, max_steps=10, warmup_steps=2, decay_steps=2, checkpoint_every=0)
    return dataclasses.replace(run, train=dataclasses.replace(run.train, **overrides))


def _held_out_sequences(stage_dir: Path) -> set[int]:
    """Ground truth from the stage's sequence map: sequences holding tokens of a held-out document."""
    table = pq.read_table(stage_dir / "sequences.parquet").to_pylist()
    limit = int(FRACTION * (1 << 64))
    held = {
        r["sha256"]
        for r in table
        if int.from_bytes(hashlib.sha256(f"held-out:{r['sha256']}".encode()).digest()[:8], "big") < limit
    }
    return {r["sequence"] for r in table if r["sha256"] in held}


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    root = tmp_path_factory.mktemp("stages_data")
    return write_token_shards(root / "datasets", root / "work")


@pytest.fixture(scope="module")
def straight(shards, tmp_path_factory):
    """An uninterrupted run over both stages, recording which sequences each step trained on."""
    trained: dict[str, list[int]] = {}
    real_step = EngineStep.__call__

    def recording_step(self, batch, lr):
        data, idx = batch
        trained.setdefault(data.folder.name, []).extend(idx.tolist())
        return real_step(self, batch, lr)

    mp = pytest.MonkeyPatch()
    mp.setattr(EngineStep, "__call__", recording_step)
    out = tmp_path_factory.mktemp("straight")
    try:
        summary = train_on_stages(_run(), shards, out, held_out_fraction=FRACTION, log=lambda line: None)
    finally:
        mp.undo()
    return out, summary, trained


def test_split_steps_is_proportional_and_exact():
    assert split_steps([3486, 2126, 1381], 240) == [119, 73, 48]
    assert sum(split_steps([1, 1, 1], 10)) == 10 and min(split_steps([1000, 1], 5)) == 1
    plan = plan_stages(["a", "b", "c"], [300, 200, 100], 60, warmup=10, decay=5)
    assert plan.stages == (("a", 0, 30), ("b", 30, 20), ("c", 50, 10))
    # Warmup in the first stage, the decay across the whole last stage.
    assert (plan.warmup_end, plan.decay_start, plan.decay_end) == (10, 50, 60)
    loop = plan.loop_config(
        TrainConfig(seq_len=8, micro_batch_size=1, max_steps=60, peak_lr=1.0, final_lr=0.1)
    )
    assert loop.lr(49) == 1.0 and loop.lr(59) == pytest.approx(0.1)
    assert loop.checkpoint_at == (30, 50, 60)  # every stage's end
    assert plan.locate(30) == (1, 0) and plan.locate(59) == (2, 9)


def test_stages_train_in_order_and_loss_falls(straight, shards):
    out, summary, _ = straight
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    steps = [r for r in records if r.get("event") is None]
    (first, n0), (second, n1) = [(s[0], s[2]) for s in summary.plan.stages]
    assert (first, second) == tuple(STAGES) and n0 + n1 == 10 and n0 > n1  # stage 0 has more tokens
    assert [r["stage"] for r in steps] == [first] * n0 + [second] * n1
    assert [r["stage_step"] for r in steps] == list(range(n0)) + list(range(n1))
    assert [r["step"] for r in records if r.get("event") == "evaluation"] == [n0 - 1, 9]
    assert (
        steps[-1]["lr"] == pytest.approx(summary.plan.loop_config(_run().train).lr(9))
        and steps[-1]["lr"] < steps[n0 - 1]["lr"]
    )
    assert sum(r["lm_loss"] for r in steps[-3:]) / 3 < steps[0]["lm_loss"] - 1.0
    assert (out / "model.safetensors").exists()


def test_held_out_sequences_are_never_trained_on(straight, shards):
    _, _, trained = straight
    for name in STAGES:
        held = _held_out_sequences(shards / "stages" / name)
        assert held, name  # the fixture's fraction holds some documents out in every stage
        assert trained[name] and not held & set(trained[name])


def test_perplexity_per_language_of_the_held_out_documents(straight, shards):
    out, summary, _ = straight
    report = json.loads((out / EVALUATION_FILE).read_text())
    assert [e["stage"] for e in report["after_stage"]] == list(STAGES)
    languages = {lang for langs, _ in STAGES.values() for lang in langs}
    for evaluation in report["after_stage"]:
        assert set(evaluation["perplexity"]) <= languages and len(evaluation["perplexity"]) >= 2
        for lang, ppl in evaluation["perplexity"].items():
            assert 1 < ppl < 8192 * 1.5, (lang, ppl)  # finite, and no worse than about uniform
    # Training made the held-out documents more predictable than the untrained model (uniform: 8192).
    assert report["after_stage"][-1]["overall"]["perplexity"] < 2000
    run = json.loads((out / RUN_FILE).read_text())
    assert run["upstream"]["token_shards"] == f"token_shards/{shards.name}"
    assert run["upstream"]["curriculum_stages"].startswith("curriculum_stages/")
    assert run["status"] == "finished" and "model.safetensors" in run["files"]
    assert any(p.startswith("checkpoints/step_") for p in run["files"])
    # Both records are sealed into the model version: a path of this machine would make its id
    # depend on where the data folder is (and publish that path).
    for record in (RUN_FILE, EVALUATION_FILE):
        text = (out / record).read_text()
        assert str(shards.parent.parent) not in text and '"/' not in text, record


def test_resume_across_a_stage_boundary_repeats_the_straight_run(straight, shards, tmp_path):
    out, summary, _ = straight
    n0 = summary.plan.stages[0][2]
    kwargs = dict(held_out_fraction=FRACTION, log=lambda line: None)
    parts = [
        train_on_stages(_run(), shards, tmp_path, stop_after=n0 - 2, export=False, **kwargs),
        train_on_stages(_run(), shards, tmp_path, stop_after=n0 + 1, **kwargs),  # crosses the boundary
        train_on_stages(_run(), shards, tmp_path, **kwargs),
    ]
    assert [p.start_step for p in parts] == [0, n0 - 2, n0 + 1]
    resumed = [h for p in parts for h in p.history]
    assert [h["lm_loss"] for h in resumed] == [h["lm_loss"] for h in summary.history]
    assert [h["stage"] for h in resumed] == [h["stage"] for h in summary.history]
    straight_eval = json.loads((out / EVALUATION_FILE).read_text())["after_stage"]
    resumed_eval = json.loads((tmp_path / EVALUATION_FILE).read_text())["after_stage"]
    assert [e["perplexity"] for e in resumed_eval] == [e["perplexity"] for e in straight_eval]
