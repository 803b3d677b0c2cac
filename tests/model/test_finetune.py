"""SovereignTune fine-tuning (model/finetune.py): loss on response tokens only, a run that is a pure
function of its inputs, every training use of an example (and no held-out one) in the usage tree, the
gates, and the perplexity gate on the base's own token_shards held-out data (model/evaluate.py).

The base model version is built by hand, as the preamble's contract describes it: a tokenizer trained
on a few sample texts (pipelines/tokenizer.py) sealed as a tokenizer version, a tiny MoE model trained
for a few steps on reference texts, saved as model.safetensors with provenance.json, sealed as a
trained_model version with its model_trained ledger entry.
"""

from __future__ import annotations

import dataclasses
import gzip
import json
import shutil
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from model.config import ModelConfig, MoEConfig
from model.finetune import FinetuneConfig, encode_example, finetune, save_safetensors
from model.finetune_eval import collate
from model.transformer import Transformer, count_parameters
from records.finetune import example_sha256, read_examples, split_held_out
from records.hashing import sha256_file
from records.layout import REPO_ROOT, DataLayout
from records.ledger import MODEL_TRAINED, Ledger
from records.manifest import seal
from records.pins import pin_dataset_version

SAMPLE = REPO_ROOT / "sample" / "finetune" / "examples.jsonl"
LANGUAGES = ("en", "de", "fr")
# Quick to run, generous enough that fine-tuning a barely trained model passes its gates.
PASSING = FinetuneConfig(
    steps=6,
    batch_size=4,
    max_tokens=96,
    warmup_steps=1,
    peak_lr=1e-3,
    perplexity_margin=1.0,
    held_out_loss_margin=0.05,
)


def reference_texts(path: Path) -> Path:
    """The first document of each of three languages of the bundled sample corpus, as {text, language}."""
    with open(path, "w", encoding="utf-8") as f:
        for lang in LANGUAGES:
            with gzip.open(
                REPO_ROOT / "sample" / "sources" / f"{lang}.jsonl.gz", "rt", encoding="utf-8"
            ) as src:
                f.write(
                    json.dumps({"text": json.loads(src.readline())["text"][:1200], "language": lang}) + "\n"
                )
    return path


def build_base(
    root: Path, *, pretrain_steps: int = 30, token_shards: str | None = None
) -> tuple[DataLayout, str, Path]:
    """A sealed trained_model version in a new data folder root; (layout, its ref, reference texts)."""
    from pipelines.tokenizer import TokenizerConfig, train_on_texts

    layout = DataLayout(root)
    ref_path = reference_texts(root / "reference.jsonl")
    texts = [json.loads(line)["text"] for line in ref_path.read_text().splitlines()]
    texts += [json.dumps(e.record, ensure_ascii=False) for e in read_examples(SAMPLE)]
    tokenizer = train_on_texts(texts, TokenizerConfig(vocab_size=512, min_frequency=1))
    staging = root / "staging-tokenizer"
    staging.mkdir()
    tokenizer.save(str(staging / "tokenizer.json"))
    tok_manifest, _ = seal(staging, layout.datasets, asset="tokenizer", snapshot=None)
    pin_dataset_version(layout, tok_manifest)

    cfg = ModelConfig(
        vocab_size=512,
        d_model=32,
        n_layers=1,
        n_heads=2,
        n_kv_heads=1,
        ffn_hidden=32,
        moe=MoEConfig(num_experts=4, top_k=2),
        tie_embeddings=True,
        max_seq_len=128,
    )
    torch.manual_seed(0)
    model = Transformer(cfg)
    model.init_weights(0)
    ids = [i for t in texts[: len(LANGUAGES)] for i in tokenizer.encode(t).ids]
    stream = torch.tensor(ids)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    for step in range(pretrain_steps):
        starts = torch.randint(0, len(stream) - 65, (8,), generator=torch.Generator().manual_seed(step))
        batch = torch.stack([stream[s : s + 65] for s in starts])
        logits, aux, _ = model(batch[:, :-1])
        loss = F.cross_entropy(logits.flatten(0, 1), batch[:, 1:].flatten()) + aux
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    staging = root / "staging-model"
    staging.mkdir()
    save_safetensors(model, staging / "model.safetensors")
    total, active = count_parameters(cfg)
    record = {
        "format": "apertus.provenance-record/1",
        "model": {
            "recipe": "test",
            "config": dataclasses.asdict(cfg),
            "parameters": {"total": total, "active": active},
        },
        "export": {"path": "model.safetensors", "sha256": sha256_file(staging / "model.safetensors")},
        "datasets": {
            "tokenizer": tok_manifest.ref,
            "token_shards": token_shards,
            "curriculum_stages": None,
            "stages": [],
        },
        "metrics": {"final_loss": loss.item()},
    }
    (staging / "provenance.json").write_text(json.dumps(record, indent=1, sort_keys=True))
    if token_shards:  # the pretraining run's held-out fraction, as model/staged_training.py records it
        (staging / "run.json").write_text(json.dumps({"held_out": {"fraction": 0.1}}))
    parents = (tok_manifest.ref,) + ((token_shards,) if token_shards else ())
    manifest, _ = seal(staging, layout.datasets, asset="trained_model", snapshot=None, parents=parents)
    folder = layout.datasets / manifest.ref
    Ledger(layout.ledger).append(
        MODEL_TRAINED,
        {
            "model_version": manifest.ref,
            "parents": list(parents),
            "manifest_sha256": sha256_file(folder / "manifest.json"),
            "record_sha256": sha256_file(folder / "provenance.json"),
            "model_sha256": sha256_file(folder / "model.safetensors"),
        },
    )
    return layout, manifest.ref, ref_path


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    return build_base(tmp_path_factory.mktemp("finetune-data"))


def test_prompt_tokens_carry_no_loss(base):
    """Targets are exactly the response's tokens and the closing separator; prompt and padding are -100."""
    from tokenizers import Tokenizer

    layout, _, _ = base
    (folder,) = (layout.datasets / "tokenizer").iterdir()
    tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
    examples = read_examples(SAMPLE)
    pair, text = examples[0], examples[-1]
    items = [encode_example(tokenizer, e, 0, 200) for e in (pair, text)]
    inputs, targets = collate(items, 1, 1, "cpu")
    response = tokenizer.encode(pair.record["response"], add_special_tokens=False).ids
    assert [t for t in targets[0].tolist() if t != -100] == response + [0]
    prompt = tokenizer.encode(pair.record["prompt"], add_special_tokens=False).ids
    assert inputs[0, : len(prompt) + 1].tolist() == [0] + prompt
    body = tokenizer.encode(text.record["text"], add_special_tokens=False).ids
    assert [t for t in targets[1].tolist() if t != -100] == body + [0]
    assert (targets[1, len(body) + 1 :] == -100).all() and (inputs[1, len(body) + 1 :] == 1).all()


def test_run_is_deterministic_and_every_use_is_a_leaf(base, tmp_path):
    layout, ref, reference = base
    folder = layout.datasets / ref
    one = finetune(folder, SAMPLE, tmp_path / "a", PASSING, reference_texts=reference, log=lambda _: None)
    two = finetune(folder, SAMPLE, tmp_path / "b", PASSING, reference_texts=reference, log=lambda _: None)
    assert (tmp_path / "a/model.safetensors").read_bytes() == (tmp_path / "b/model.safetensors").read_bytes()
    assert one["examples"]["root"] == two["examples"]["root"]
    assert sha256_file(tmp_path / "a/model.safetensors") != sha256_file(folder / "model.safetensors")

    usage = [json.loads(line) for line in (tmp_path / "a/usage.jsonl").read_text().splitlines()]
    assert [(u["step"], u["slot"]) for u in usage] == [(s, b) for s in range(6) for b in range(4)]
    examples = read_examples(SAMPLE)
    train, held = split_held_out(examples, PASSING.held_out_fraction)
    used = {u["example_sha256"] for u in usage}
    assert used <= {e.sha256 for e in train} and not used & {e.sha256 for e in held}
    rows = [json.loads(line) for line in (tmp_path / "a/examples.jsonl").read_text().splitlines()]
    assert [r["sha256"] for r in rows] == [example_sha256(e.record) for e in examples]
    assert {r["sha256"] for r in rows if r["split"] == "held_out"} == {e.sha256 for e in held}
    assert one["certifiable"], one["gates"]
    assert one["metrics"]["held_out_loss"] < one["metrics"]["held_out_loss_base"]


def test_gates_fail_when_the_margin_is_exceeded(base, tmp_path):
    """A hard fine-tune (high learning rate) and no margin: the base's reference perplexity gets worse."""
    layout, ref, reference = base
    cfg = dataclasses.replace(PASSING, peak_lr=3e-2, steps=8, perplexity_margin=0.0)
    run = finetune(
        layout.datasets / ref, SAMPLE, tmp_path / "run", cfg, reference_texts=reference, log=lambda _: None
    )
    gate = run["gates"]["base_perplexity"]
    assert not gate["passed"] and not run["certifiable"]
    assert set(gate["languages"]) == set(LANGUAGES)
    worse = [g for g in gate["languages"].values() if not g["passed"]]
    assert worse and all(g["finetuned"] > g["base"] == g["limit"] for g in worse)
    evaluation = json.loads((tmp_path / "run/evaluation.json").read_text())
    assert evaluation["gates"] == run["gates"] and evaluation["certifiable"] is False


def test_base_without_held_out_data_is_refused(base, tmp_path):
    layout, ref, _ = base
    with pytest.raises(ValueError, match="reference-texts"):
        finetune(layout.datasets / ref, SAMPLE, tmp_path / "run", PASSING, log=lambda _: None)


def test_perplexity_gate_reads_the_base_token_shards(tmp_path):
    """With the base's token_shards version in the data folder, the gate evaluates its held-out
    sequences per language through model/evaluate.py, the languages of its curriculum stages."""
    from tests.model.test_staged_training import write_token_shards

    datasets = tmp_path / "data" / "datasets"
    shards = write_token_shards(datasets, tmp_path / "work")
    shards_ref = f"token_shards/{shards.name}"
    layout, ref, _ = build_base(tmp_path / "data", pretrain_steps=5, token_shards=shards_ref)
    run = finetune(layout.datasets / ref, SAMPLE, tmp_path / "run", PASSING, log=lambda _: None)
    gate = run["gates"]["base_perplexity"]
    assert gate["source"].startswith(shards_ref)
    assert set(gate["languages"]) == {"de", "en", "fr"}
    shutil.rmtree(tmp_path / "run")
