"""LASA block selection in Triton, and the inverse index the backward pass reads.

Shape legend:
    B   batch size     Hkv key/value heads     D   head dim
    NB  key/query blocks                       S = 1 + window_blocks + top_k selected blocks per query block
    R   the most query blocks that selected any one key block (the inverse index's width)

The ranking inputs (pooled means, O(T * D) work) come from reference.selection_inputs; the kernel scores
one query block against every key block, takes the top-k by repeated argmax (ties to the lower block, as
the reference's stable sort) and writes the ascending index list, so it agrees with the spec exactly.
"""

import math

import torch
import triton
import triton.language as tl

from kernels.lasa.reference import num_selected, selection_inputs

__all__ = ["select_blocks", "inverse_index"]


@triton.jit
def _select_kernel(
    QPREV,
    KBAR,
    DECAYBAR,
    IDX,
    CNT,
    stride_qb,
    stride_qn,
    stride_qh,
    stride_ib,
    stride_ih,
    stride_im,
    HKV,
    NB,
    HEAD_DIM,
    TOP_K,
    W,
    block_size,
    scale,
    BLOCK_NB: tl.constexpr,
    BLOCK_D: tl.constexpr,
):
    m = tl.program_id(0)
    bh = tl.program_id(1)
    b = bh // HKV
    h = bh % HKV
    offs_n = tl.arange(0, BLOCK_NB)
    in_range = offs_n < NB
    score = tl.zeros((BLOCK_NB,), dtype=tl.float32)
    for d0 in range(0, HEAD_DIM, BLOCK_D):
        offs_d = d0 + tl.arange(0, BLOCK_D)
        dmask = offs_d < HEAD_DIM
        qp = tl.load(QPREV + b * stride_qb + m * stride_qn + h * stride_qh + offs_d, mask=dmask, other=0.0)
        kb = tl.load(
            KBAR + b * stride_qb + offs_n[:, None] * stride_qn + h * stride_qh + offs_d[None, :],
            mask=in_range[:, None] & dmask[None, :],
            other=0.0,
        )
        score += tl.sum(kb * qp[None, :], 1)
    lam = tl.load(DECAYBAR + h)
    score = score * scale - lam * (block_size * (m - offs_n)).to(tl.float32)
    cand = (offs_n >= 1) & (offs_n <= m - W)
    score = tl.where(cand, score, float("-inf"))
    sel = (offs_n == 0) | ((offs_n <= m) & (offs_n > m - W))
    for _ in range(0, TOP_K):
        best = tl.argmax(score, 0, tie_break_left=True)
        hit = (offs_n == best) & (score > float("-inf"))
        sel = sel | hit
        score = tl.where(offs_n == best, float("-inf"), score)
    pos = tl.cumsum(sel.to(tl.int32), 0) - 1
    tl.store(IDX + b * stride_ib + h * stride_ih + m * stride_im + pos, offs_n.to(tl.int32), mask=sel)
    tl.store(CNT + bh * NB + m, tl.sum(sel.to(tl.int32), 0))


@torch.no_grad()
def select_blocks(
    q,
    k,
    decay,
    *,
    block_size: int = 64,
    top_k: int = 4,
    window_blocks: int = 1,
    seq_lens: torch.Tensor | None = None,
):
    """Triton twin of reference.select_blocks_reference: (block_idx (B, Hkv, NB, S) int32, counts (B, Hkv, NB))."""
    qprev, kbar, decaybar = selection_inputs(q, k, decay, block_size, seq_lens)
    B, NB, Hkv, D = kbar.shape
    S = num_selected(window_blocks, top_k)
    block_idx = torch.full((B, Hkv, NB, S), -1, dtype=torch.int32, device=q.device)
    counts = torch.empty((B, Hkv, NB), dtype=torch.int32, device=q.device)
    BLOCK_NB = max(16, triton.next_power_of_2(NB))
    # Keep the (BLOCK_NB, BLOCK_D) tile of pooled keys near 4096 elements.
    BLOCK_D = max(1, min(triton.next_power_of_2(D), 4096 // BLOCK_NB))
    _select_kernel[(NB, B * Hkv)](
        qprev,
        kbar,
        decaybar,
        block_idx,
        counts,
        qprev.stride(0),
        qprev.stride(1),
        qprev.stride(2),
        block_idx.stride(0),
        block_idx.stride(1),
        block_idx.stride(2),
        Hkv,
        NB,
        D,
        top_k,
        window_blocks,
        block_size,
        1.0 / math.sqrt(q.shape[-1]),
        BLOCK_NB=BLOCK_NB,
        BLOCK_D=BLOCK_D,
        num_warps=4 if BLOCK_NB <= 1024 else 8,
    )
    return block_idx, counts


@torch.no_grad()
def inverse_index(block_idx: torch.Tensor, num_blocks: int):
    """For each key block, the query blocks that selected it: (inv_idx (B, Hkv, NB, R) int32 ascending,
    padded with -1; inv_counts (B, Hkv, NB) int32). Lets the dK/dV kernel own its output (no atomics)."""
    B, Hkv, NBq, S = block_idx.shape
    sel = torch.zeros(B, Hkv, num_blocks + 1, NBq, dtype=torch.bool, device=block_idx.device)
    key = torch.where(block_idx < 0, num_blocks, block_idx).long()
    qblk = torch.arange(NBq, device=block_idx.device)[:, None].expand(NBq, S)
    dev = block_idx.device
    sel[
        torch.arange(B, device=dev)[:, None, None, None],
        torch.arange(Hkv, device=dev)[None, :, None, None],
        key,
        qblk,
    ] = True
    sel = sel[:, :, :num_blocks]
    inv_counts = sel.sum(-1)
    width = max(1, int(inv_counts.max().item()))
    order = torch.sort((~sel).to(torch.int8), dim=-1, stable=True).indices[..., :width]
    keep = torch.arange(width, device=sel.device) < inv_counts[..., None]
    inv_idx = torch.where(keep, order, -1).to(torch.int32).contiguous()
    return inv_idx, inv_counts.to(torch.int32).contiguous()
