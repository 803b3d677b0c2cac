"""The tiny recipe (the model the demo trains) uses LASA at a context where blocks are dropped, its dense
variant differs in the attention only, and a model trained by it says so in its provenance record and in
its exported weights."""

import dataclasses
import json

import torch

from kernels.lasa.reference import select_blocks_reference
from model.config import recipe, tiny, tiny_dense_attention
from model.export import load_safetensors
from model.staged_training import train_on_stages
from model.train import EXPORT_FILE
from records.layout import DataLayout
from records.models import build_record
from tests.model.conftest import tiny_run
from tests.model.test_staged_training import SEQ_LEN, write_token_shards


def test_tiny_drops_key_blocks_at_its_context():
    run = tiny()
    att, T = run.model.attention, run.train.seq_len
    assert att.impl == "lasa" and att.lasa_kernel == "auto"
    # The reference's own selection at the recipe's context: later query blocks skip some earlier blocks.
    g = torch.Generator().manual_seed(0)
    q = torch.randn(1, T, run.model.n_heads, run.model.head_dim, generator=g)
    k = torch.randn(1, T, run.model.n_kv_heads, run.model.head_dim, generator=g)
    _, counts = select_blocks_reference(
        q,
        k,
        torch.full((run.model.n_heads,), att.decay_init),
        block_size=att.block_size,
        top_k=att.top_k,
        window_blocks=att.window_blocks,
    )
    causal_blocks = torch.arange(1, T // att.block_size + 1)
    assert (counts[0] <= causal_blocks).all()
    assert (counts[0] < causal_blocks).any(dim=-1).all()  # every KV head drops blocks somewhere


def test_dense_attention_variant_differs_only_in_the_attention():
    lasa, dense = tiny(), recipe("tiny-dense-attention")
    assert dense == tiny_dense_attention()
    assert dense.model.attention.impl == "dense"
    assert dataclasses.replace(dense.model, attention=lasa.model.attention) == lasa.model
    assert dense.train == lasa.train


def test_a_model_trained_by_tiny_records_lasa(tmp_path):
    shards = write_token_shards(tmp_path / "datasets", tmp_path / "work")
    run = tiny_run(seq_len=SEQ_LEN, micro_batch_size=2, max_steps=2, warmup_steps=1, decay_steps=1)
    assert run.model == tiny().model
    out = tmp_path / "run"
    train_on_stages(run, shards, out, eval_sequences=2, log=lambda line: None)
    record = build_record(DataLayout(tmp_path), out, recipe="tiny")
    recorded = record["config"]["run"]["model"]["attention"]
    assert recorded == dataclasses.asdict(tiny().model.attention)
    assert recorded["impl"] == "lasa"
    assert record["model"]["config"]["attention"]["impl"] == "lasa"
    assert json.loads((out / "run.json").read_text())["run_config"]["model"]["attention"] == recorded
    assert load_safetensors(out / EXPORT_FILE).cfg.attention == tiny().model.attention
