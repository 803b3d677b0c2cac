"""Tile rules and the score tile shared by the LASA Triton kernels.

Shape legend: BS block size (one tile is BS query rows by BS keys), D head dim, BLOCK_D = D rounded up to
a power of two. Scores are kept in log2 units (exp2 is the fast path):
    s2(i, j) = (<q_i, k_j> / sqrt(D) - decay_h * (i - j)) * log2(e)
"""

import math

import torch
import triton
import triton.language as tl

LOG2E = 1.4426950408889634


@triton.jit
def score_tile(q, k, offs_i, offs_j, lam2, L, scale2, PREC: tl.constexpr):
    """Masked scores of one (query tile, key tile) pair, log2 units; -inf where not attended."""
    qk = tl.dot(q, tl.trans(k), input_precision=PREC) * scale2
    qk = qk - lam2 * (offs_i[:, None] - offs_j[None, :]).to(tl.float32)
    ok = (offs_j[None, :] <= offs_i[:, None]) & (offs_j[None, :] < L) & (offs_i[:, None] < L)
    return tl.where(ok, qk, float("-inf"))


def check_tiles(block_size: int, head_dim: int, backward: bool) -> None:
    """Reject tiles a GPU cannot hold: tl.dot needs power-of-two tiles of at least 16, and the backward's
    four (BS, D) fp32 accumulators and operands must fit in registers and shared memory."""
    if block_size not in (16, 32, 64, 128):
        raise ValueError(f"lasa_attention(impl='triton'): block_size={block_size}; use 16, 32, 64 or 128")
    if head_dim > 256:
        raise ValueError(f"lasa_attention(impl='triton'): head dim {head_dim} > 256 is not supported")
    tile = block_size * max(16, triton.next_power_of_2(head_dim))
    limit = 8192 if backward else 16384
    if tile > limit:
        raise ValueError(
            f"lasa_attention(impl='triton'): block_size={block_size} x head dim {head_dim} is a {tile}-element "
            f"tile, over the {limit} a GPU can hold {'in the backward' if backward else ''}; lower block_size"
        )


def launch_config(q, block_size):
    """Constexprs and warps of the attention kernels for q's dtype and the tile, and the log2-unit scale."""
    BLOCK_D = max(16, triton.next_power_of_2(q.shape[-1]))
    prec = "ieee" if q.dtype == torch.float32 else "tf32"
    num_warps = 4 if block_size * BLOCK_D <= 4096 else 8
    scale2 = LOG2E / math.sqrt(q.shape[-1])
    return dict(BLOCK=block_size, BLOCK_D=BLOCK_D, PREC=prec, num_warps=num_warps), scale2
