"""LASA attention in Triton: forward over the selected blocks with online softmax, backward with dQ (and the
decay's gradient) over the same lists and dK/dV through the inverse index, so no kernel uses atomics.

Shape legend:
    B   batch size     T   tokens     Hq  query heads     Hkv key/value heads     G = Hq // Hkv
    D   head dim       BS  block size (one tile: BLOCK = BS rows by BS keys)      NB = ceil(T / BS)
    S   selected blocks per query block (1 + window_blocks + top_k)               R   inverse-index width

The spec is reference.lasa_attention_reference. Scores are kept in log2 units (exp2 is the fast path):
    s2(i, j) = (<q_i, k_j> / sqrt(D) - decay_h * (i - j)) * log2(e);   LSE is stored in the same units.
One program owns one (query block, batch, query head) in the forward and dQ kernels and one
(key block, batch, query head) in dK/dV; per-query-head dK/dV are summed over the group afterwards.
"""

import torch
import triton
import triton.language as tl

from kernels.lasa.backward import lasa_backward
from kernels.lasa.select import select_blocks
from kernels.lasa.tiles import check_tiles, launch_config, score_tile

__all__ = ["lasa_attention_triton", "check_tiles"]


@triton.jit
def _fwd_kernel(
    Q,
    K,
    V,
    DECAY,
    LENS,
    IDX,
    CNT,
    OUT,
    LSE,
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
    q = tl.load(
        Q + b * sqb + offs_i[:, None] * sqt + h * sqh + offs_d[None, :],
        mask=(offs_i[:, None] < T) & dmask,
        other=0.0,
    )
    lam2 = tl.load(DECAY + h).to(tl.float32) * 1.4426950408889634
    m_i = tl.full((BLOCK,), float("-inf"), dtype=tl.float32)
    l_i = tl.zeros((BLOCK,), dtype=tl.float32)
    acc = tl.zeros((BLOCK, BLOCK_D), dtype=tl.float32)
    idx_ptr = IDX + b * sib + g * sih + m * sim
    num = tl.load(CNT + (b * (HQ // G) + g) * NB + m)
    for s in range(0, num):
        n = tl.load(idx_ptr + s)
        offs_j = n * BLOCK + tl.arange(0, BLOCK)
        kv_off = b * skb + offs_j[:, None] * skt + g * skh + offs_d[None, :]
        kv_mask = (offs_j[:, None] < T) & dmask
        k = tl.load(K + kv_off, mask=kv_mask, other=0.0)
        v = tl.load(V + kv_off, mask=kv_mask, other=0.0)
        qk = score_tile(q, k, offs_i, offs_j, lam2, L, scale2, PREC)
        m_new = tl.maximum(m_i, tl.max(qk, 1))
        m_safe = tl.where(m_new == float("-inf"), 0.0, m_new)  # rows with nothing attended yet
        p = tl.exp2(qk - m_safe[:, None])
        alpha = tl.exp2(m_i - m_safe)
        l_i = l_i * alpha + tl.sum(p, 1)
        acc = acc * alpha[:, None] + tl.dot(p.to(v.dtype), v, input_precision=PREC)
        m_i = m_new
    live = l_i > 0
    o = acc / tl.where(live, l_i, 1.0)[:, None]
    tl.store(
        OUT + b * sqb + offs_i[:, None] * sqt + h * sqh + offs_d[None, :],
        o.to(OUT.dtype.element_ty),
        mask=(offs_i[:, None] < T) & dmask,
    )
    lse = tl.where(live, m_i + tl.log2(tl.where(live, l_i, 1.0)), float("inf"))
    tl.store(LSE + bh * NB * BLOCK + offs_i, lse)


def _forward(q, k, v, decay, lens, block_idx, counts, block_size):
    B, T, Hq, D = q.shape
    NB = block_idx.shape[2]
    o = torch.empty_like(q)
    lse = torch.empty((B, Hq, NB * block_size), dtype=torch.float32, device=q.device)
    cfg, scale2 = launch_config(q, block_size)
    _fwd_kernel[(NB, B * Hq)](
        q,
        k,
        v,
        decay,
        lens,
        block_idx,
        counts,
        o,
        lse,
        q.stride(0),
        q.stride(1),
        q.stride(2),
        k.stride(0),
        k.stride(1),
        k.stride(2),
        block_idx.stride(0),
        block_idx.stride(1),
        block_idx.stride(2),
        T,
        Hq,
        Hq // k.shape[2],
        NB,
        D,
        scale2,
        **cfg,
    )
    return o, lse


@torch.library.custom_op("apertus_lasa::forward", mutates_args=())
def _forward_op(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    decay: torch.Tensor,
    lens: torch.Tensor,
    block_size: int,
    top_k: int,
    window_blocks: int,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Selection then the sparse forward: (o, lse, block_idx, counts). An opaque op to torch.compile."""
    block_idx, counts = select_blocks(
        q, k, decay, block_size=block_size, top_k=top_k, window_blocks=window_blocks, seq_lens=lens
    )
    o, lse = _forward(q, k, v, decay, lens, block_idx, counts, block_size)
    return o, lse, block_idx, counts


@_forward_op.register_fake
def _(q, k, v, decay, lens, block_size, top_k, window_blocks):
    B, T, Hq, _ = q.shape
    NB = -(-T // block_size)
    S = 1 + window_blocks + top_k
    return (
        torch.empty_like(q),
        q.new_empty((B, Hq, NB * block_size), dtype=torch.float32),
        q.new_empty((B, k.shape[2], NB, S), dtype=torch.int32),
        q.new_empty((B, k.shape[2], NB), dtype=torch.int32),
    )


@torch.library.custom_op("apertus_lasa::backward", mutates_args=())
def _backward_op(
    do: torch.Tensor,
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    o: torch.Tensor,
    lse: torch.Tensor,
    decay: torch.Tensor,
    lens: torch.Tensor,
    block_idx: torch.Tensor,
    counts: torch.Tensor,
    block_size: int,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(dq, dk, dv, ddecay) in the dtypes of q, k, v, decay."""
    return lasa_backward(do, q, k, v, o, lse, decay, lens, block_idx, counts, block_size)


@_backward_op.register_fake
def _(do, q, k, v, o, lse, decay, lens, block_idx, counts, block_size):
    return torch.empty_like(q), torch.empty_like(k), torch.empty_like(v), torch.empty_like(decay)


class LasaAttentionFunction(torch.autograd.Function):
    """Selection (no gradient), then the sparse forward; the backward recomputes P tile by tile from LSE.
    Both halves are torch.library ops, so torch.compile traces through this Function."""

    @staticmethod
    def forward(ctx, q, k, v, decay, seq_lens, block_size, top_k, window_blocks):
        B, T = q.shape[:2]
        lens = (
            torch.full((B,), T, dtype=torch.int32, device=q.device)
            if seq_lens is None
            else seq_lens.to(device=q.device, dtype=torch.int32).clamp(0, T)
        )
        q, k, v = q.contiguous(), k.contiguous(), v.contiguous()
        decay_c = decay.detach().float().contiguous()
        o, lse, block_idx, counts = _forward_op(q, k, v, decay_c, lens, block_size, top_k, window_blocks)
        ctx.save_for_backward(q, k, v, o, lse, decay_c, lens, block_idx, counts)
        ctx.block_size = block_size
        ctx.decay_dtype = decay.dtype
        return o

    @staticmethod
    def backward(ctx, do):
        q, k, v, o, lse, decay_c, lens, block_idx, counts = ctx.saved_tensors
        dq, dk, dv, ddecay = _backward_op(
            do.contiguous(), q, k, v, o, lse, decay_c, lens, block_idx, counts, ctx.block_size
        )
        return dq, dk, dv, ddecay.to(ctx.decay_dtype), None, None, None, None


def lasa_attention_triton(
    q,
    k,
    v,
    decay,
    *,
    block_size: int = 64,
    top_k: int = 4,
    window_blocks: int = 1,
    seq_lens: torch.Tensor | None = None,
) -> torch.Tensor:
    """LASA with the Triton kernels; same signature and result as reference.lasa_attention_reference.

    q: (B, T, Hq, D); k, v: (B, T, Hkv, D); decay: (Hq,) >= 0; seq_lens: (B,) or None. Returns (B, T, Hq, D)
    in q's dtype, differentiable in q, k, v and decay. Raises ValueError for tiles a GPU cannot run.
    """
    needs_grad = torch.is_grad_enabled() and any(t.requires_grad for t in (q, k, v, decay))
    check_tiles(block_size, q.shape[-1], backward=needs_grad)
    return LasaAttentionFunction.apply(q, k, v, decay, seq_lens, block_size, top_k, window_blocks)
