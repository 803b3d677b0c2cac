"""LASA, Locality-Aware Sparse Attention: the reference implementation, which is the specification.

Shape legend:
    B   batch size                 T   tokens (padded length)       D   head dim
    Hq  query heads                Hkv key/value heads              G = Hq // Hkv query heads per group
    BS  block size (tokens)        NB = ceil(T / BS) blocks         S = 1 + window_blocks + top_k

The operator (every implementation must reproduce this function; the Triton kernels are tested
against it). For query token i in query block m = i // BS, query head h in KV group g = h // G:

    score(i, j) = <q_i, k_j> / sqrt(D) - decay_h * (i - j)
    out_i       = sum_j softmax_j(score(i, j)) v_j   over keys j with j <= i, j < L, j // BS in sel(m, g)

where L is the sequence's valid length and sel(m, g) is the set of key blocks of query block m:
    - the sink block 0 and the local window of blocks m - window_blocks + 1 .. m, always;
    - the top_k of the remaining blocks 1 <= n <= m - window_blocks, ranked by
          rank(m, n) = <qbar(m - 1), kbar(n)> / sqrt(D) - decaybar_g * BS * (m - n)
      with kbar(n) the mean key of block n, qbar(m - 1) the mean query of the *previous* query block
      averaged over the G heads of the group, decaybar_g the group's mean decay; ties go to the lower
      block. Using the previous block (complete when block m starts) keeps the selection causal, so
      token-by-token decoding reproduces training exactly (see docs/lasa.md).
Selection carries no gradient; the decay does (through the prior, which is differentiable). Outputs at
padded positions (i >= L) are 0. The evaluation is chunked over query blocks: memory is
O(T * S * BS) per head, the T x T matrix is never built.
"""

import math

import torch

__all__ = ["lasa_attention_reference", "pool_blocks", "selection_inputs", "select_blocks_reference"]


def num_selected(window_blocks: int, top_k: int) -> int:
    """S: the most key blocks any query block attends to."""
    return 1 + window_blocks + top_k


def _lengths(seq_lens: torch.Tensor | None, B: int, T: int, device) -> torch.Tensor:
    if seq_lens is None:
        return torch.full((B,), T, dtype=torch.int64, device=device)
    return seq_lens.to(device=device, dtype=torch.int64).clamp(0, T)


def pool_blocks(x_BTHD: torch.Tensor, block_size: int, seq_lens: torch.Tensor | None = None) -> torch.Tensor:
    """Mean of x over the valid tokens (t < L) of each block, in float32: (B, NB, H, D); 0 for empty blocks."""
    B, T, H, D = x_BTHD.shape
    NB = -(-T // block_size)
    lens_B = _lengths(seq_lens, B, T, x_BTHD.device)
    valid_BT = torch.arange(T, device=x_BTHD.device)[None, :] < lens_B[:, None]
    x = x_BTHD.float() * valid_BT[:, :, None, None]
    x = torch.nn.functional.pad(x, (0, 0, 0, 0, 0, NB * block_size - T))
    num_BN = (
        torch.nn.functional.pad(valid_BT.float(), (0, NB * block_size - T)).view(B, NB, block_size).sum(-1)
    )
    sum_BNHD = x.view(B, NB, block_size, H, D).sum(2)
    return sum_BNHD / num_BN.clamp(min=1)[:, :, None, None]


def selection_inputs(q, k, decay, block_size: int, seq_lens=None):
    """The pooled inputs of the block ranking: qprev (B, NB, Hkv, D), kbar (B, NB, Hkv, D), decaybar (Hkv,).

    qprev[:, m] is the group-mean of the mean query of block m - 1 (zeros for m = 0).
    """
    B, T, Hq, D = q.shape
    Hkv = k.shape[2]
    qbar = pool_blocks(q, block_size, seq_lens).view(B, -1, Hkv, Hq // Hkv, D).mean(3)
    qprev = torch.cat([torch.zeros_like(qbar[:, :1]), qbar[:, :-1]], dim=1)
    kbar = pool_blocks(k, block_size, seq_lens)
    decaybar = decay.detach().float().view(Hkv, Hq // Hkv).mean(1)
    return qprev, kbar, decaybar


@torch.no_grad()
def select_blocks_reference(
    q,
    k,
    decay,
    *,
    block_size: int = 64,
    top_k: int = 4,
    window_blocks: int = 1,
    seq_lens: torch.Tensor | None = None,
):
    """The selected key blocks of every query block, per KV head.

    Returns block_idx (B, Hkv, NB, S) int32, ascending, padded with -1, and counts (B, Hkv, NB) int32.
    """
    qprev, kbar, decaybar = selection_inputs(q, k, decay, block_size, seq_lens)
    B, NB, Hkv, D = kbar.shape
    m = torch.arange(NB, device=q.device)
    dist_MN = (m[:, None] - m[None, :]).float() * block_size
    rank_BHMN = torch.einsum("bmhd,bnhd->bhmn", qprev, kbar) / math.sqrt(q.shape[-1])
    rank_BHMN = rank_BHMN - decaybar[None, :, None, None] * dist_MN
    cand_MN = (m[None, :] >= 1) & (m[None, :] <= m[:, None] - window_blocks)
    forced_MN = (m[None, :] == 0) | ((m[None, :] <= m[:, None]) & (m[None, :] > m[:, None] - window_blocks))
    rank_BHMN = rank_BHMN.masked_fill(~cand_MN, float("-inf"))
    order = torch.sort(rank_BHMN, dim=-1, descending=True, stable=True).indices[..., :top_k]
    num_cand_M = cand_MN.sum(-1).clamp(max=top_k)
    top_mask = torch.zeros(B, Hkv, NB, NB, dtype=torch.bool, device=q.device)
    take = torch.arange(order.shape[-1], device=q.device)[None, :] < num_cand_M[:, None]
    top_mask.scatter_(-1, order, take.expand_as(order))
    sel_BHMN = top_mask | forced_MN
    return compact_selection(sel_BHMN, num_selected(window_blocks, top_k))


def compact_selection(sel_BHMN: torch.Tensor, width: int):
    """Boolean selection (..., M, N) -> (ascending index lists (..., M, width) padded with -1, counts)."""
    counts = sel_BHMN.sum(-1)
    order = torch.sort((~sel_BHMN).to(torch.int8), dim=-1, stable=True).indices[..., :width]
    keep = torch.arange(order.shape[-1], device=order.device) < counts[..., None]
    block_idx = torch.where(keep, order, -1).to(torch.int32)
    if block_idx.shape[-1] < width:
        block_idx = torch.nn.functional.pad(block_idx, (0, width - block_idx.shape[-1]), value=-1)
    return block_idx.contiguous(), counts.to(torch.int32).contiguous()


def selection_mask(block_idx: torch.Tensor, num_blocks: int) -> torch.Tensor:
    """Index lists (B, Hkv, NB, S) -> boolean (B, Hkv, NB, num_blocks)."""
    mask = torch.zeros(*block_idx.shape[:-1], num_blocks + 1, dtype=torch.bool, device=block_idx.device)
    mask.scatter_(-1, torch.where(block_idx < 0, num_blocks, block_idx).long(), True)
    return mask[..., :num_blocks]


def lasa_attention_reference(
    q,
    k,
    v,
    decay,
    *,
    block_size: int = 64,
    top_k: int = 4,
    window_blocks: int = 1,
    seq_lens: torch.Tensor | None = None,
    block_idx: torch.Tensor | None = None,
    chunk_blocks: int | None = None,
) -> torch.Tensor:
    """LASA in plain PyTorch (the spec; see the module docstring for the definition).

    q: (B, T, Hq, D); k, v: (B, T, Hkv, D); decay: (Hq,) non-negative; seq_lens: (B,) valid lengths or None.
    block_idx: a precomputed selection (B, Hkv, NB, S) from select_blocks_reference, or None to compute it.
    chunk_blocks: query blocks evaluated at once (memory knob; the result does not depend on it).
    Returns (B, T, Hq, D) in q's dtype; differentiable in q, k, v and decay.
    """
    B, T, Hq, D = q.shape
    Hkv = k.shape[2]
    G = Hq // Hkv
    NB = -(-T // block_size)
    if block_idx is None:
        block_idx, _ = select_blocks_reference(
            q, k, decay, block_size=block_size, top_k=top_k, window_blocks=window_blocks, seq_lens=seq_lens
        )
    S = block_idx.shape[-1]
    cdtype = torch.promote_types(q.dtype, torch.float32)
    lens_B = _lengths(seq_lens, B, T, q.device)
    pad = NB * block_size - T

    def blocks(x):  # (B, T, H, D) -> (B, H, NB, BS, D)
        x = torch.nn.functional.pad(x.to(cdtype), (0, 0, 0, 0, 0, pad))
        return x.view(B, NB, block_size, x.shape[2], D).permute(0, 3, 1, 2, 4)

    q_BHNID = blocks(q).reshape(B, Hkv, G, NB, block_size, D)
    k_BHNJD, v_BHNJD = blocks(k), blocks(v)
    decay_HG = decay.to(cdtype).view(Hkv, G)
    if chunk_blocks is None:
        chunk_blocks = max(1, (1 << 22) // max(1, B * Hq * block_size * S * block_size))
    b_ix = torch.arange(B, device=q.device)[:, None, None]
    h_ix = torch.arange(Hkv, device=q.device)[None, :, None]
    tok = torch.arange(block_size, device=q.device)
    outs = []
    for m0 in range(0, NB, chunk_blocks):
        m1 = min(NB, m0 + chunk_blocks)
        C = m1 - m0
        idx_BHCS = block_idx[:, :, m0:m1].long()
        slot_ok = idx_BHCS >= 0
        idx = idx_BHCS.clamp(min=0).reshape(B, Hkv, C * S)
        kk = k_BHNJD[b_ix, h_ix, idx].view(B, Hkv, C, S * block_size, D)
        vv = v_BHNJD[b_ix, h_ix, idx].view(B, Hkv, C, S * block_size, D)
        i_CI = torch.arange(m0, m1, device=q.device)[:, None] * block_size + tok
        j_BHCJ = (idx_BHCS[..., None] * block_size + tok).reshape(B, Hkv, C, S * block_size)
        allowed = (
            slot_ok[..., None].expand(-1, -1, -1, -1, block_size).reshape(B, Hkv, C, S * block_size)
            & (j_BHCJ < lens_B[:, None, None, None])
        )[:, :, None, :, None, :]
        allowed = allowed & (j_BHCJ[:, :, None, :, None, :] <= i_CI[None, None, None, :, :, None])
        row_ok = (i_CI[None] < lens_B[:, None, None])[:, None, None, :, :, None]
        # Padded rows keep key 0 so the softmax stays finite; their output is zeroed below.
        allowed = allowed | (~row_ok & (j_BHCJ == 0)[:, :, None, :, None, :])
        dist = (i_CI[None, None, None, :, :, None] - j_BHCJ[:, :, None, :, None, :]).to(cdtype)
        s = torch.einsum("bhgcid,bhcjd->bhgcij", q_BHNID[:, :, :, m0:m1], kk) / math.sqrt(D)
        s = s - decay_HG[None, :, :, None, None, None] * dist
        p = torch.softmax(s.masked_fill(~allowed, float("-inf")), dim=-1)
        o = torch.einsum("bhgcij,bhcjd->bhgcid", p, vv) * row_ok
        outs.append(o)
    o = torch.cat(outs, dim=3).reshape(B, Hq, NB * block_size, D)[:, :, :T]
    return o.transpose(1, 2).to(q.dtype)
