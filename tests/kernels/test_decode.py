"""LASA decoding with the pruned KV cache: token-by-token decoding against the full-sequence reference
(exact for full heads, and for pruned heads whose ring still holds every selected key), the pruning
error against its bound, Triton against the reference decode step, and the cache's memory."""

import pytest
import torch

from kernels.lasa.cache import LasaKVCache, pruned_heads
from kernels.lasa.decode import lasa_decode
from kernels.lasa.reference import lasa_attention_reference
from tests.kernels._util import make_inputs, rel_err


def decode_all(q, k, v, decay, prompt_lens, cache, impl):
    """Prefill the prompts, then decode until each sequence reaches T; the outputs (B, T, Hq, D), 0 in the prompt."""
    B, T = q.shape[:2]
    cache.prefill(q, k, v, prompt_lens)
    out = torch.zeros_like(q)
    b_ix = torch.arange(B)
    for _ in range(T - int(prompt_lens.min())):
        t = cache.length.clamp(max=T - 1)  # sequences that are done repeat a harmless last step
        done = cache.length >= T
        if done.all():
            break
        o = lasa_decode(q[b_ix, t], k[b_ix, t], v[b_ix, t], decay, cache, impl=impl)
        out[b_ix[~done], t[~done]] = o[~done]
        cache.length.clamp_(max=T)
    return out


@pytest.mark.parametrize(
    "impl, ratio, pruned",
    [("reference", 1, [False, True]), ("reference", 4, [True, False]), ("triton", 4, [True, False])],
)
def test_decode_reproduces_training_operator(impl, ratio, pruned):
    B, T, Hkv, D, bs = 2, 75 if impl == "reference" else 57, 2, 16, 16
    q, k, v, decay, _ = make_inputs(B, T, Hkv * ratio, Hkv, D, seed=ratio)
    prompt_lens = torch.tensor([21, 40]) if impl == "reference" else torch.tensor([33, 45])
    ref = lasa_attention_reference(q, k, v, decay, block_size=bs, top_k=2, window_blocks=1)
    # rolling_tokens covers the whole sequence: pruned heads must then be exact too.
    cache = LasaKVCache(
        B,
        T + 2,
        Hkv * ratio,
        torch.tensor(pruned),
        D,
        block_size=bs,
        top_k=2,
        window_blocks=1,
        rolling_tokens=-(-T // bs) * bs,
        dtype=torch.float32,
    )
    out = decode_all(q, k, v, decay, prompt_lens, cache, impl)
    for b in range(B):
        L = int(prompt_lens[b])
        assert rel_err(out[b, L:], ref[b, L:]) < 1e-5


def test_pruned_heads_stay_close_to_the_operator():
    """Heads with decay 1 and a 32-token ring: the dropped keys sit >= 32 nats below the kept ones."""
    B, T, Hq, Hkv, D, bs = 1, 120, 2, 2, 16, 16
    q, k, v, _, _ = make_inputs(B, T, Hq, Hkv, D, seed=9)
    decay = torch.tensor([0.01, 1.0])
    pruned = pruned_heads(decay, Hkv, rolling_tokens=32, prune_nats=16.0)
    assert pruned.tolist() == [False, True]
    ref = lasa_attention_reference(q, k, v, decay, block_size=bs, top_k=3, window_blocks=1)
    cache = LasaKVCache(B, T, Hq, pruned, D, block_size=bs, top_k=3, rolling_tokens=32, dtype=torch.float32)
    out = decode_all(q, k, v, decay, torch.tensor([16]), cache, "reference")
    assert rel_err(out[:, 16:], ref[:, 16:]) < 1e-6
    assert cache.pos_ring.max().item() == T - 1 and (cache.pos_ring >= 0).sum().item() == bs + 32


@pytest.mark.parametrize("dtype, tol", [(torch.float32, 1e-5), (torch.float16, 2e-3)])
def test_triton_decode_step_matches_reference(dtype, tol):
    """Same cache state, one step each: fp16 storage, fp32 math in both, so only output rounding differs."""
    B, T, Hq, Hkv, D, bs = 3, 150, 8, 4, 32, 16
    q, k, v, decay, _ = make_inputs(B, T, Hq, Hkv, D, dtype=dtype, seed=4)
    lens = torch.tensor([149, 63, 100])
    step = torch.randn(B, Hq, D).to(dtype), torch.randn(B, Hkv, D).to(dtype), torch.randn(B, Hkv, D).to(dtype)
    outs = []
    for impl in ("reference", "triton"):
        cache = LasaKVCache(
            B,
            T,
            Hq,
            torch.tensor([True, False, True, False]),
            D,
            block_size=bs,
            top_k=2,
            rolling_tokens=32,
            dtype=dtype,
        )
        cache.prefill(q, k, v, lens)
        outs.append(lasa_decode(*step, decay, cache, impl=impl))
    assert outs[1].dtype == dtype
    assert rel_err(outs[1], outs[0]) < tol


def test_cache_memory_is_the_ring_for_pruned_heads():
    B, TM, Hq, Hkv, D, bs, R = 2, 4096, 8, 4, 16, 64, 512
    dense = 2 * B * TM * Hkv * D * 2  # k and v in bf16
    cache = LasaKVCache(
        B, TM, Hq, torch.tensor([True, True, True, False]), D, block_size=bs, rolling_tokens=R
    )
    expected = (
        2 * B * TM * 1 * D * 2
        + 2 * B * (bs + R) * 3 * D * 2
        + B * (bs + R) * 8
        + B * (TM // bs) * Hkv * D * 4
        + 2 * B * Hkv * D * 4
        + B * 8
    )
    assert cache.nbytes() == expected
    assert cache.nbytes() < 0.4 * dense
