"""Causal grouped-query attention with rotary embeddings and a learned per-head locality bias.

Shape legend:
    B  batch        T  tokens        D  model dim (d_model)
    Hq query heads  Hkv key/value heads        hd head dim

score(i, j) = <q_i, k_j> / sqrt(hd) - decay_h * (i - j) for j <= i, decay_h = softplus(decay_param_h).
Two implementations behind AttentionConfig.impl: "dense" attends to every earlier key through
scaled_dot_product_attention with the bias as an explicit mask (the baseline LASA is measured against);
"lasa" calls kernels.lasa.lasa_attention, which keeps only the selected key blocks.
"""

import math

import torch
import torch.nn.functional as F
from torch import nn

from model.config import ModelConfig

__all__ = ["Attention", "RotaryEmbedding", "locality_bias", "dense_attention"]


class RotaryEmbedding(nn.Module):
    """Rotary position embedding (RoPE, rotate-half convention) for positions 0 .. max_seq_len - 1."""

    def __init__(self, head_dim: int, max_seq_len: int, theta: float):
        super().__init__()
        inv_freq = 1.0 / theta ** (torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim)
        angles_TF = torch.outer(torch.arange(max_seq_len, dtype=torch.float32), inv_freq)
        # Not persistent: derived from the config, so checkpoints and exports do not carry it.
        self.register_buffer("cos_TF", angles_TF.cos(), persistent=False)
        self.register_buffer("sin_TF", angles_TF.sin(), persistent=False)

    def forward(self, x_BTHhd: torch.Tensor) -> torch.Tensor:
        """x rotated by its position along T; same shape and dtype."""
        T = x_BTHhd.shape[1]
        cos = self.cos_TF[:T, None, :].to(x_BTHhd.dtype)
        sin = self.sin_TF[:T, None, :].to(x_BTHhd.dtype)
        x1, x2 = x_BTHhd.chunk(2, dim=-1)
        return torch.cat([x1 * cos - x2 * sin, x2 * cos + x1 * sin], dim=-1)


def locality_bias(decay_Hq: torch.Tensor, T: int) -> torch.Tensor:
    """The additive mask (Hq, T, T): -decay_h * (i - j) where j <= i, -inf above the diagonal."""
    pos = torch.arange(T, device=decay_Hq.device)
    dist_TT = (pos[:, None] - pos[None, :]).to(decay_Hq.dtype)
    bias_HTT = -decay_Hq[:, None, None] * dist_TT
    return bias_HTT.masked_fill(dist_TT < 0, float("-inf"))


def dense_attention(q_BTHhd, k_BTHhd, v_BTHhd, decay_Hq) -> torch.Tensor:
    """Causal GQA softmax attention over every earlier key with the locality bias: (B, T, Hq, hd).

    Same signature and result as kernels.lasa.lasa_attention when LASA selects every block.
    """
    T = q_BTHhd.shape[1]
    q, k, v = (x.transpose(1, 2) for x in (q_BTHhd, k_BTHhd, v_BTHhd))
    bias_HTT = locality_bias(decay_Hq.to(q.dtype), T)
    out_BHTd = F.scaled_dot_product_attention(q, k, v, attn_mask=bias_HTT, enable_gqa=True)
    return out_BHTd.transpose(1, 2)


class Attention(nn.Module):
    """Pre-projected q/k/v (no bias), RoPE on q and k, causal GQA attention, output projection."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        hd = cfg.head_dim
        self.wq = nn.Linear(cfg.d_model, cfg.n_heads * hd, bias=False)
        self.wk = nn.Linear(cfg.d_model, cfg.n_kv_heads * hd, bias=False)
        self.wv = nn.Linear(cfg.d_model, cfg.n_kv_heads * hd, bias=False)
        self.wo = nn.Linear(cfg.n_heads * hd, cfg.d_model, bias=False)
        # softplus^-1(decay_init): the parameter is unconstrained, the decay it yields is positive.
        raw = math.log(math.expm1(cfg.attention.decay_init))
        self.decay_param = nn.Parameter(torch.full((cfg.n_heads,), raw))
        self.rope = RotaryEmbedding(hd, cfg.max_seq_len, cfg.rope_theta)

    def forward(self, x_BTD: torch.Tensor) -> torch.Tensor:
        """(B, T, D) -> (B, T, D), causal."""
        B, T, _ = x_BTD.shape
        cfg, hd = self.cfg, self.cfg.head_dim
        q = self.rope(self.wq(x_BTD).view(B, T, cfg.n_heads, hd))
        k = self.rope(self.wk(x_BTD).view(B, T, cfg.n_kv_heads, hd))
        v = self.wv(x_BTD).view(B, T, cfg.n_kv_heads, hd)
        decay_Hq = F.softplus(self.decay_param.float())
        att = cfg.attention
        if att.impl == "lasa":
            # Imported here so that the dense baseline never depends on the kernel package.
            from kernels.lasa import lasa_attention

            out = lasa_attention(
                q,
                k,
                v,
                decay_Hq,
                block_size=att.block_size,
                top_k=att.top_k,
                window_blocks=att.window_blocks,
                impl=att.lasa_kernel,
            )
        else:
            out = dense_attention(q, k, v, decay_Hq)
        return self.wo(out.reshape(B, T, cfg.n_heads * hd))
