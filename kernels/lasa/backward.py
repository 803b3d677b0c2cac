"""LASA backward in Triton: dQ and the decay's gradient over each query block's selected blocks, dK and dV
over each key block's inverse index (the query blocks that selected it), so every program owns its
output and no kernel uses atomics.

Shape legend:
    B   batch size     T   tokens     Hq  query heads     Hkv key/value heads     G = Hq // Hkv
    D   head dim       BS  block size (one tile: BS rows by BS keys)              NB = ceil(T / BS)
    R   inverse-index width (the most query blocks that selected one key block)

P is recomputed tile by tile from the forward's log-sum-exp (log2 units, see tiles.py); dS = P (dP - Delta)
with Delta_i = <dO_i, O_i>. dK and dV are accumulated per query head and summed over the group afterwards,
and the decay's gradient per (batch, head, query block) is reduced in PyTorch: both are deterministic.
"""

import torch
import triton
import triton.language as tl

from kernels.lasa.select import inverse_index
from kernels.lasa.tiles import launch_config, score_tile

__all__ = ["lasa_backward"]


@triton.jit
def _bwd_dq_kernel(
    Q,
    K,
    V,
    DECAY,
    LENS,
    IDX,
    CNT,
    DO,
    LSE,
    DELTA,
    DQ,
    DLAM,
    sqb,
    sqt,
    sqh,
    skb,
    skt,
    skh,
    sib,
    sih,
    sim,
    T,
    HQ,
    G,
    NB,
    HEAD_DIM,
    scale2,
    BLOCK: tl.constexpr,
    BLOCK_D: tl.constexpr,
    PREC: tl.constexpr,
):
    m = tl.program_id(0)
    bh = tl.program_id(1)
    b = bh // HQ
    h = bh % HQ
    g = h // G
    L = tl.load(LENS + b)
    offs_i = m * BLOCK + tl.arange(0, BLOCK)
    offs_d = tl.arange(0, BLOCK_D)
    dmask = offs_d[None, :] < HEAD_DIM
    q_off = b * sqb + offs_i[:, None] * sqt + h * sqh + offs_d[None, :]
    q_mask = (offs_i[:, None] < T) & dmask
    q = tl.load(Q + q_off, mask=q_mask, other=0.0)
    do = tl.load(DO + q_off, mask=q_mask, other=0.0)
    lse = tl.load(LSE + bh * NB * BLOCK + offs_i)
    delta = tl.load(DELTA + bh * NB * BLOCK + offs_i)
    lam2 = tl.load(DECAY + h).to(tl.float32) * 1.4426950408889634
    dq = tl.zeros((BLOCK, BLOCK_D), dtype=tl.float32)
    dlam = tl.zeros((BLOCK,), dtype=tl.float32)
    idx_ptr = IDX + b * sib + g * sih + m * sim
    num = tl.load(CNT + (b * (HQ // G) + g) * NB + m)
    for s in range(0, num):
        n = tl.load(idx_ptr + s)
        offs_j = n * BLOCK + tl.arange(0, BLOCK)
        kv_off = b * skb + offs_j[:, None] * skt + g * skh + offs_d[None, :]
        kv_mask = (offs_j[:, None] < T) & dmask
        k = tl.load(K + kv_off, mask=kv_mask, other=0.0)
        v = tl.load(V + kv_off, mask=kv_mask, other=0.0)
        p = tl.exp2(score_tile(q, k, offs_i, offs_j, lam2, L, scale2, PREC) - lse[:, None])
        dp = tl.dot(do, tl.trans(v), input_precision=PREC)
        ds = p * (dp - delta[:, None])
        dq += tl.dot(ds.to(k.dtype), k, input_precision=PREC)
        dlam -= tl.sum(ds * (offs_i[:, None] - offs_j[None, :]).to(tl.float32), 1)
    dq = dq * (scale2 / 1.4426950408889634)
    tl.store(DQ + q_off, dq.to(DQ.dtype.element_ty), mask=q_mask)
    tl.store(DLAM + bh * NB + m, tl.sum(dlam, 0))


@triton.jit
def _bwd_dkdv_kernel(
    Q,
    K,
    V,
    DECAY,
    LENS,
    INV,
    INV_CNT,
    DO,
    LSE,
    DELTA,
    DK,
    DV,
    sqb,
    sqt,
    sqh,
    skb,
    skt,
    skh,
    sib,
    sih,
    sin,
    sgb,
    sgt,
    sgh,
    T,
    HQ,
    G,
    NB,
    HEAD_DIM,
    scale2,
    BLOCK: tl.constexpr,
    BLOCK_D: tl.constexpr,
    PREC: tl.constexpr,
):
    n = tl.program_id(0)
    bh = tl.program_id(1)
    b = bh // HQ
    h = bh % HQ
    g = h // G
    L = tl.load(LENS + b)
    offs_j = n * BLOCK + tl.arange(0, BLOCK)
    offs_d = tl.arange(0, BLOCK_D)
    dmask = offs_d[None, :] < HEAD_DIM
    kv_mask = (offs_j[:, None] < T) & dmask
    kv_off = b * skb + offs_j[:, None] * skt + g * skh + offs_d[None, :]
    k = tl.load(K + kv_off, mask=kv_mask, other=0.0)
    v = tl.load(V + kv_off, mask=kv_mask, other=0.0)
    lam2 = tl.load(DECAY + h).to(tl.float32) * 1.4426950408889634
    dk = tl.zeros((BLOCK, BLOCK_D), dtype=tl.float32)
    dv = tl.zeros((BLOCK, BLOCK_D), dtype=tl.float32)
    inv_ptr = INV + b * sib + g * sih + n * sin
    num = tl.load(INV_CNT + (b * (HQ // G) + g) * NB + n)
    for r in range(0, num):
        m = tl.load(inv_ptr + r)
        offs_i = m * BLOCK + tl.arange(0, BLOCK)
        q_off = b * sqb + offs_i[:, None] * sqt + h * sqh + offs_d[None, :]
        q_mask = (offs_i[:, None] < T) & dmask
        q = tl.load(Q + q_off, mask=q_mask, other=0.0)
        do = tl.load(DO + q_off, mask=q_mask, other=0.0)
        lse = tl.load(LSE + bh * NB * BLOCK + offs_i)
        delta = tl.load(DELTA + bh * NB * BLOCK + offs_i)
        p = tl.exp2(score_tile(q, k, offs_i, offs_j, lam2, L, scale2, PREC) - lse[:, None])
        dv += tl.dot(tl.trans(p).to(do.dtype), do, input_precision=PREC)
        dp = tl.dot(do, tl.trans(v), input_precision=PREC)
        ds = p * (dp - delta[:, None])
        dk += tl.dot(tl.trans(ds).to(q.dtype), q, input_precision=PREC)
    dk = dk * (scale2 / 1.4426950408889634)
    g_off = b * sgb + offs_j[:, None] * sgt + h * sgh + offs_d[None, :]
    tl.store(DK + g_off, dk, mask=kv_mask)
    tl.store(DV + g_off, dv, mask=kv_mask)


def lasa_backward(do, q, k, v, o, lse, decay, lens, block_idx, counts, block_size):
    B, T, Hq, D = q.shape
    Hkv = k.shape[2]
    NB = block_idx.shape[2]
    cfg, scale2 = launch_config(q, block_size)
    delta = torch.nn.functional.pad((do.float() * o.float()).sum(-1), (0, 0, 0, NB * block_size - T))
    delta = delta.transpose(1, 2).contiguous()  # (B, Hq, NB * BS)
    dq = torch.empty_like(q)
    dlam = torch.empty((B, Hq, NB), dtype=torch.float32, device=q.device)
    common = (q.stride(0), q.stride(1), q.stride(2), k.stride(0), k.stride(1), k.stride(2))
    _bwd_dq_kernel[(NB, B * Hq)](
        q,
        k,
        v,
        decay,
        lens,
        block_idx,
        counts,
        do,
        lse,
        delta,
        dq,
        dlam,
        *common,
        block_idx.stride(0),
        block_idx.stride(1),
        block_idx.stride(2),
        T,
        Hq,
        Hq // Hkv,
        NB,
        D,
        scale2,
        **cfg,
    )
    inv_idx, inv_counts = inverse_index(block_idx, NB)
    dk_h = torch.empty((B, T, Hq, D), dtype=torch.float32, device=q.device)
    dv_h = torch.empty_like(dk_h)
    _bwd_dkdv_kernel[(NB, B * Hq)](
        q,
        k,
        v,
        decay,
        lens,
        inv_idx,
        inv_counts,
        do,
        lse,
        delta,
        dk_h,
        dv_h,
        *common,
        inv_idx.stride(0),
        inv_idx.stride(1),
        inv_idx.stride(2),
        dk_h.stride(0),
        dk_h.stride(1),
        dk_h.stride(2),
        T,
        Hq,
        Hq // Hkv,
        NB,
        D,
        scale2,
        **cfg,
    )
    dk = dk_h.view(B, T, Hkv, Hq // Hkv, D).sum(3).to(k.dtype)
    dv = dv_h.view(B, T, Hkv, Hq // Hkv, D).sum(3).to(v.dtype)
    ddecay = dlam.sum((0, 2)).to(decay.dtype)
    return dq, dk, dv, ddecay
