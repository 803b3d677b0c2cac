"""LASA decoding in Triton: one query token per sequence against a pruned KV cache (kernels/lasa/cache.py).

Shape legend:
    B   batch size     Hq  query heads     Hkv key/value heads (one store of full heads, one of ring heads)
    D   head dim       BS  block size      NBM blocks a sequence may hold     NL  slot blocks listed per head

One program owns one (sequence, query head). It walks a list of slot blocks of its store (for full heads
the selected blocks; for ring heads every block of the ring) and keeps a key if its position is written,
causal and in a selected block, with an online softmax over BS keys at a time.
"""

import math

import torch
import triton
import triton.language as tl

from kernels.lasa.api import resolve_impl
from kernels.lasa.cache import LasaKVCache, lasa_decode_reference
from kernels.lasa.reference import compact_selection

__all__ = ["lasa_decode"]


@triton.jit
def _decode_kernel(
    Q,
    K,
    V,
    POS,
    DECAY,
    SEL,
    LIST,
    LCNT,
    TPOS,
    OUT,
    sqb,
    sqh,
    skb,
    skt,
    skh,
    spb,
    ssb,
    ssh,
    slb,
    slh,
    HQ,
    G,
    NUM_SLOTS,
    HEAD_DIM,
    block_size,
    scale2,
    HAS_POS: tl.constexpr,
    BLOCK: tl.constexpr,
    BLOCK_D: tl.constexpr,
):
    b = tl.program_id(0)
    h = tl.program_id(1)
    g = h // G
    t = tl.load(TPOS + b)
    offs_d = tl.arange(0, BLOCK_D)
    dmask = offs_d < HEAD_DIM
    q = tl.load(Q + b * sqb + h * sqh + offs_d, mask=dmask, other=0.0).to(tl.float32)
    lam2 = tl.load(DECAY + h).to(tl.float32) * 1.4426950408889634
    m_i = float("-inf")
    l_i = 0.0
    acc = tl.zeros((BLOCK_D,), dtype=tl.float32)
    num = tl.load(LCNT + b * (HQ // G) + g)
    for s in range(0, num):
        sb = tl.load(LIST + b * slb + g * slh + s)
        slots = sb * BLOCK + tl.arange(0, BLOCK)
        in_store = slots < NUM_SLOTS
        if HAS_POS:
            pos = tl.load(POS + b * spb + slots, mask=in_store, other=-1)
        else:
            pos = tl.where(in_store, slots, -1).to(tl.int64)
        ok = (pos >= 0) & (pos <= t)
        chosen = tl.load(SEL + b * ssb + g * ssh + pos // block_size, mask=ok, other=0)
        ok = ok & (chosen != 0)
        kv_off = b * skb + slots[:, None] * skt + g * skh + offs_d[None, :]
        kv_mask = in_store[:, None] & dmask[None, :]
        k = tl.load(K + kv_off, mask=kv_mask, other=0.0).to(tl.float32)
        v = tl.load(V + kv_off, mask=kv_mask, other=0.0).to(tl.float32)
        qk = tl.sum(k * q[None, :], 1) * scale2 - lam2 * (t - pos).to(tl.float32)
        qk = tl.where(ok, qk, float("-inf"))
        m_new = tl.maximum(m_i, tl.max(qk, 0))
        m_safe = tl.where(m_new == float("-inf"), 0.0, m_new)
        p = tl.exp2(qk - m_safe)
        alpha = tl.exp2(m_i - m_safe)
        l_i = l_i * alpha + tl.sum(p, 0)
        acc = acc * alpha + tl.sum(p[:, None] * v, 0)
        m_i = m_new
    o = acc / tl.where(l_i > 0, l_i, 1.0)
    tl.store(OUT + b * sqb + h * sqh + offs_d, o.to(OUT.dtype.element_ty), mask=dmask)


def _decode_store(q, ks, vs, pos, decay, sel, blocks, counts, t, block_size):
    """Launch the kernel for the query heads q (B, Hs*G, D) of one store."""
    B, H, D = q.shape
    o = torch.empty_like(q)
    if H == 0:
        return o
    G = H // ks.shape[2]
    _decode_kernel[(B, H)](
        q,
        ks,
        vs,
        pos if pos is not None else t,
        decay,
        sel,
        blocks,
        counts,
        t,
        o,
        q.stride(0),
        q.stride(1),
        ks.stride(0),
        ks.stride(1),
        ks.stride(2),
        pos.stride(0) if pos is not None else 0,
        sel.stride(0),
        sel.stride(1),
        blocks.stride(0),
        blocks.stride(1),
        H,
        G,
        ks.shape[1],
        D,
        block_size,
        math.log2(math.e) / math.sqrt(D),
        HAS_POS=pos is not None,
        BLOCK=block_size,
        BLOCK_D=max(16, triton.next_power_of_2(D)),
        num_warps=4,
    )
    return o


def _decode_triton(q, k, v, decay, cache: LasaKVCache) -> torch.Tensor:
    sel_BHN = cache.append(q, k, v, decay)
    t = (cache.length - 1).contiguous()
    B, Hq, D = q.shape
    G = Hq // len(cache.pruned)
    out = torch.empty_like(q)
    bs = cache.block_size
    for heads, ks, vs, pos in (
        (cache.full_heads, cache.k_full, cache.v_full, None),
        (cache.ring_heads, cache.k_ring, cache.v_ring, cache.pos_ring),
    ):
        if not heads:
            continue
        qh = [g * G + i for g in heads for i in range(G)]
        sel = sel_BHN[:, heads].to(torch.int8).contiguous()
        if pos is None:  # full heads: walk the selected blocks only
            blocks, counts = compact_selection(sel_BHN[:, heads], cache.top_k + cache.window_blocks + 1)
        else:  # ring heads: walk the whole ring, the selection filters by position
            nslot = ks.shape[1] // bs
            blocks = torch.arange(nslot, dtype=torch.int32, device=q.device).expand(B, len(heads), -1)
            counts = torch.full((B, len(heads)), nslot, dtype=torch.int32, device=q.device)
        o = _decode_store(
            q[:, qh].contiguous(),
            ks,
            vs,
            pos,
            decay[qh].float().contiguous(),
            sel,
            blocks.contiguous(),
            counts.contiguous(),
            t,
            bs,
        )
        out[:, qh] = o
    return out


def lasa_decode(q, k, v, decay, cache: LasaKVCache, *, impl: str = "auto") -> torch.Tensor:
    """One LASA decoding step: append k, v (B, Hkv, D) to the cache and attend with q (B, Hq, D).

    decay: (Hq,) as in training. impl: "reference" | "triton" | "auto" (triton on CUDA; the environment
    variable APERTUS_LASA_IMPL overrides). Returns (B, Hq, D) in q's dtype. Exact for the cache's full
    heads; for pruned heads, attention restricted to the sink block and the rolling window.
    """
    if resolve_impl(impl, q.device) == "triton":
        return _decode_triton(q, k, v, decay, cache)
    return lasa_decode_reference(q, k, v, decay, cache)
