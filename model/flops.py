"""Training FLOPs per token of a run, in closed form: the numerator of achieved TFLOP/s and of MFU.

One training token costs (fwd + bwd, a multiply-add = 2 FLOPs, backward = twice the forward):

    flops = 6 * N_mm + 12 * L * Hq * hd * keys

N_mm: the active matmul parameters per token: per layer the q/k/v/o projections, top_k experts (or the
dense SwiGLU) and the router's gate (D * E), plus the output head (V * D, tied or not). The input
embedding is a lookup, not a matmul, and is left out; so are norms, rotary embeddings, the softmax, the
locality bias, SwiGLU's pointwise product and the router's top-k, which are O(D) or O(keys) per token
and under 1% of the total at the recipes' sizes.
keys: the keys one query attends, averaged over the T positions of a sequence. Per head and key the
forward computes one q.k and one p.v product of length hd (4 * hd FLOPs), so 12 * hd with the backward.
Counted two ways:
    attended          the keys LASA reads (AttentionConfig.impl "lasa"; the causal keys for "dense");
    dense_equivalent  causal dense attention, (T + 1) / 2 keys per query, as FlashAttention does it.
LASA's query in block m = i // BS attends its own block up to itself (i - m * BS + 1 keys) and whole
earlier blocks: all m of them while m < window_blocks, otherwise the sink, window_blocks - 1 window
blocks and min(top_k, m - window_blocks) of the rest (kernels/lasa/reference.py defines the selection).
Block selection itself (pooled q.k over blocks, NB * hd per query block) is not counted.
"""

from dataclasses import dataclass

from model.config import ModelConfig, RunConfig

__all__ = [
    "TrainingFlops",
    "matmul_params_per_token",
    "lasa_keys_per_query",
    "causal_keys_per_query",
    "training_flops_per_token",
]


@dataclass(frozen=True)
class TrainingFlops:
    """FLOPs of one training token (forward + backward) and the terms they come from."""

    matmul_params: int
    attended_keys: float
    causal_keys: float
    attended: float
    dense_equivalent: float


def matmul_params_per_token(cfg: ModelConfig) -> int:
    """N_mm: the active weights every token multiplies (projections, top_k experts, gate, output head)."""
    D, hd = cfg.d_model, cfg.head_dim
    attn = 2 * D * cfg.n_heads * hd + 2 * D * cfg.n_kv_heads * hd
    if cfg.moe:
        ffn = cfg.moe.top_k * 3 * D * cfg.ffn_hidden + D * cfg.moe.num_experts
    else:
        ffn = 3 * D * cfg.ffn_hidden
    return cfg.n_layers * (attn + ffn) + cfg.vocab_size * D


def causal_keys_per_query(seq_len: int) -> float:
    """(T + 1) / 2: query i attends keys 0..i."""
    return (seq_len + 1) / 2


def lasa_keys_per_query(seq_len: int, block_size: int, top_k: int, window_blocks: int) -> float:
    """The mean over the seq_len positions of the keys LASA attends (see the module docstring).

    Cost grows with seq_len / block_size (one term per query block).
    """
    total = 0
    for m in range(-(-seq_len // block_size)):
        rows = min(block_size, seq_len - m * block_size)
        earlier = m if m < window_blocks else window_blocks + min(top_k, m - window_blocks)
        # Row r of the block attends its `earlier` whole blocks and r + 1 keys of its own.
        total += rows * earlier * block_size + rows * (rows + 1) // 2
    return total / seq_len


def training_flops_per_token(run: RunConfig) -> TrainingFlops:
    """Training FLOPs per token of run at its seq_len, attention counted as attended and as dense causal."""
    cfg, T = run.model, run.train.seq_len
    n_mm = matmul_params_per_token(cfg)
    causal = causal_keys_per_query(T)
    att = cfg.attention
    attended = (
        lasa_keys_per_query(T, att.block_size, att.top_k, att.window_blocks) if att.impl == "lasa" else causal
    )
    per_key = 12 * cfg.n_layers * cfg.n_heads * cfg.head_dim
    return TrainingFlops(
        matmul_params=n_mm,
        attended_keys=attended,
        causal_keys=causal,
        attended=6 * n_mm + per_key * attended,
        dense_equivalent=6 * n_mm + per_key * causal,
    )
