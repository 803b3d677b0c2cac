"""The closed-form training FLOP count against torch's FlopCounterMode, LASA's selection and a hand count."""

import dataclasses

import pytest
import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

from kernels.lasa.reference import select_blocks_reference, selection_mask
from model.config import (
    AttentionConfig,
    ModelConfig,
    RunConfig,
    TrainConfig,
    gpu_moe_1b,
    tiny,
    tiny_dense,
    tiny_dense_attention,
)
from model.flops import (
    causal_keys_per_query,
    lasa_keys_per_query,
    matmul_params_per_token,
    training_flops_per_token,
)
from model.transformer import Transformer


def test_tiny_dense_matches_flop_counter_forward_and_backward():
    # The dense feed-forward with dense attention: FlopCounterMode counts SDPA, not LASA's gathers.
    dense = tiny_dense()
    run = RunConfig(
        dataclasses.replace(dense.model, attention=tiny_dense_attention().model.attention), dense.train
    )
    cfg, T, B = run.model, run.train.seq_len, 2
    torch.manual_seed(0)
    model = Transformer(cfg)
    model.init_weights(0)
    tokens = torch.randint(0, cfg.vocab_size, (B, T))
    with FlopCounterMode(display=False) as counter:
        logits, _, _ = model(tokens)
        F.cross_entropy(logits.flatten(0, 1), tokens.flatten()).backward()
    # The CPU math path of masked SDPA multiplies all T keys (the masked half too), so the attention term
    # of this run is 12 * L * Hq * hd * T per token, not the causal (T + 1) / 2 the closed form reports.
    per_key = 12 * cfg.n_layers * cfg.n_heads * cfg.head_dim
    flops = training_flops_per_token(run)
    expected = B * T * (6 * flops.matmul_params + per_key * T)
    assert counter.get_total_flops() == pytest.approx(expected, rel=0.02)
    assert flops.attended == flops.dense_equivalent == 6 * flops.matmul_params + per_key * (T + 1) / 2


def test_moe_counts_top_k_experts_and_the_gate():
    moe, dense = tiny().model, tiny_dense().model
    assert matmul_params_per_token(moe) == matmul_params_per_token(dense) + moe.n_layers * moe.d_model * 16


def test_hand_counted_small_case():
    model = ModelConfig(
        vocab_size=32, d_model=8, n_layers=1, n_heads=2, n_kv_heads=1, ffn_hidden=16, moe=None, max_seq_len=8
    )
    train = TrainConfig(seq_len=8, micro_batch_size=1, max_steps=2, warmup_steps=1, decay_steps=1)
    # q, o: 2 * 8 * 8; k, v: 2 * 8 * 4; SwiGLU: 3 * 8 * 16; head: 32 * 8.
    assert matmul_params_per_token(model) == 128 + 64 + 384 + 256 == 832
    dense = training_flops_per_token(RunConfig(model, train))
    assert dense.attended == dense.dense_equivalent == 6 * 832 + 12 * 1 * 2 * 4 * 4.5 == 5424
    # LASA, blocks of 2, window 1, top-1: blocks 0..3 attend 0, 1, 2, 2 earlier blocks plus their own
    # prefix: keys 1,2 | 3,4 | 5,6 | 5,6 = 32 over 8 queries.
    lasa = dataclasses.replace(model, attention=AttentionConfig(impl="lasa", block_size=2, top_k=1))
    sparse = training_flops_per_token(RunConfig(lasa, train))
    assert sparse.attended_keys == 4.0 and sparse.causal_keys == 4.5
    assert sparse.attended == 6 * 832 + 12 * 2 * 4 * 4.0 == 5376
    assert sparse.dense_equivalent == 5424


@pytest.mark.parametrize(
    ("T", "bs", "top_k", "window"), [(1000, 64, 4, 2), (257, 16, 3, 1), (130, 32, 16, 2), (64, 64, 2, 1)]
)
def test_lasa_keys_equal_the_reference_selection(T, bs, top_k, window):
    g = torch.Generator().manual_seed(T)
    q, k = torch.randn(1, T, 4, 16, generator=g), torch.randn(1, T, 2, 16, generator=g)
    idx, _ = select_blocks_reference(
        q, k, torch.full((4,), 0.01), block_size=bs, top_k=top_k, window_blocks=window
    )
    NB = idx.shape[2]
    sel_HMN = selection_mask(idx, NB)[0]
    pos = torch.arange(T)
    allowed_HTT = sel_HMN[:, pos // bs][:, :, pos // bs] & (pos[None, :] <= pos[:, None])
    for h in range(allowed_HTT.shape[0]):
        assert lasa_keys_per_query(T, bs, top_k, window) == allowed_HTT[h].sum().item() / T
    assert causal_keys_per_query(T) == (pos[None, :] <= pos[:, None]).sum().item() / T


def test_gpu_recipe_attends_far_fewer_keys_than_dense():
    flops = training_flops_per_token(gpu_moe_1b())
    assert flops.attended_keys <= 19 * 64 < flops.causal_keys == 4096.5
    assert flops.attended < flops.dense_equivalent
