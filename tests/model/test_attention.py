"""Attention: the dense path against a naive softmax reference, and LASA (covering every block) against
the dense path, on odd sizes, outputs and every gradient."""

import dataclasses
import math

import pytest
import torch

from model.attention import Attention, dense_attention
from model.config import AttentionConfig, ModelConfig


def naive_attention(q, k, v, decay):
    """Loop-free but literal: explicit scores, bias, causal mask, softmax, for each query head."""
    B, T, Hq, D = q.shape
    G = Hq // k.shape[2]
    k, v = k.repeat_interleave(G, dim=2), v.repeat_interleave(G, dim=2)
    scores = torch.einsum("bihd,bjhd->bhij", q, k) / math.sqrt(D)
    i = torch.arange(T)[:, None]
    j = torch.arange(T)[None, :]
    scores = scores - decay[None, :, None, None] * (i - j)
    scores = scores.masked_fill(j > i, float("-inf"))
    return torch.einsum("bhij,bjhd->bihd", scores.softmax(-1), v)


def _inputs(B=2, T=37, Hq=6, Hkv=2, D=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    q, k, v = (
        torch.randn(B, T, h, D, generator=g, dtype=torch.float64, requires_grad=True) for h in (Hq, Hkv, Hkv)
    )
    decay = (torch.rand(Hq, generator=g, dtype=torch.float64) * 0.3).requires_grad_()
    return q, k, v, decay


def test_dense_matches_naive_reference_with_gradients():
    inputs = _inputs()
    out = dense_attention(*inputs)
    grads = torch.autograd.grad(out.square().sum(), inputs)
    ref = naive_attention(*inputs)
    ref_grads = torch.autograd.grad(ref.square().sum(), inputs)
    torch.testing.assert_close(out, ref, rtol=1e-10, atol=1e-10)
    for g, rg in zip(grads, ref_grads, strict=True):
        torch.testing.assert_close(g, rg, rtol=1e-9, atol=1e-10)


def test_decay_makes_attention_local():
    q, k, v, _ = _inputs(T=20)
    far = dense_attention(q, k, v, torch.full((6,), 50.0, dtype=torch.float64))
    # With a huge decay every token attends only to itself: out_i = v_i of its KV group.
    torch.testing.assert_close(far, v.repeat_interleave(3, dim=2), rtol=0, atol=1e-12)


@pytest.mark.parametrize("T", [63, 70])
def test_lasa_covering_all_blocks_equals_dense(T):
    cfg = ModelConfig(
        vocab_size=64,
        d_model=48,
        n_layers=1,
        n_heads=6,
        n_kv_heads=2,
        ffn_hidden=32,
        attention=AttentionConfig(
            impl="dense", block_size=16, top_k=8, window_blocks=1, lasa_kernel="reference", decay_init=0.05
        ),
        max_seq_len=128,
    )
    torch.manual_seed(0)
    dense = Attention(cfg).double()
    with torch.no_grad():
        dense.decay_param.copy_(torch.linspace(-4, -1, 6, dtype=torch.float64))
    lasa = Attention(
        dataclasses.replace(cfg, attention=dataclasses.replace(cfg.attention, impl="lasa"))
    ).double()
    lasa.load_state_dict(dense.state_dict())
    x = torch.randn(2, T, 48, dtype=torch.float64)
    out_d, out_l = dense(x), lasa(x)
    torch.testing.assert_close(out_l, out_d, rtol=1e-9, atol=1e-9)
    out_d.square().sum().backward()
    out_l.square().sum().backward()
    for (name, pd), pl in zip(dense.named_parameters(), lasa.parameters(), strict=True):
        torch.testing.assert_close(pl.grad, pd.grad, rtol=1e-7, atol=1e-9, msg=name)
