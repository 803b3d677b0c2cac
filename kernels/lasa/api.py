"""The one entry point of LASA and the switch between its implementations.

Shape legend: B batch, T tokens, Hq query heads, Hkv key/value heads, D head dim.
"""

import os
from dataclasses import dataclass

import torch

from kernels.lasa.reference import lasa_attention_reference

__all__ = ["LasaConfig", "lasa_attention", "resolve_impl"]

IMPLS = ("reference", "triton", "auto")
ENV_VAR = "APERTUS_LASA_IMPL"


@dataclass(frozen=True)
class LasaConfig:
    """The sparsity pattern of one attention layer (see kernels/lasa/reference.py for the definition)."""

    block_size: int = 64
    top_k: int = 4
    window_blocks: int = 1
    impl: str = "auto"

    def __post_init__(self):
        if self.impl not in IMPLS:
            raise ValueError(f"LasaConfig.impl={self.impl!r}; use one of {IMPLS}")
        if self.block_size < 1 or self.top_k < 0 or self.window_blocks < 1:
            raise ValueError(f"LasaConfig: need block_size >= 1, top_k >= 0, window_blocks >= 1; got {self}")


def resolve_impl(impl: str, device: torch.device) -> str:
    """ "auto" -> "triton" on CUDA, "reference" elsewhere; APERTUS_LASA_IMPL, when set, overrides impl."""
    impl = os.environ.get(ENV_VAR) or impl
    if impl not in IMPLS:
        raise ValueError(f"LASA impl {impl!r} (argument or ${ENV_VAR}); use one of {IMPLS}")
    if impl == "auto":
        return "triton" if device.type == "cuda" else "reference"
    return impl


def lasa_attention(
    q,
    k,
    v,
    decay,
    *,
    block_size: int = 64,
    top_k: int = 4,
    window_blocks: int = 1,
    seq_lens: torch.Tensor | None = None,
    impl: str = "auto",
) -> torch.Tensor:
    """Locality-Aware Sparse Attention: causal, grouped-query, block-sparse softmax attention with a
    learned per-head distance penalty.

    q: (B, T, Hq, D); k, v: (B, T, Hkv, D) with Hq % Hkv == 0; decay: (Hq,) non-negative (callers pass
    softplus(param)); its gradient is returned. Each query block attends to the sink block 0, its last
    window_blocks blocks, and the top_k other earlier blocks ranked by pooled query/key similarity minus
    the decay prior (shared across a KV group, no gradient through the choice).
    seq_lens: (B,) int64 valid lengths of a right-padded ragged batch (outputs at padded positions are 0),
    None = all T. impl: "reference" | "triton" | "auto" ("auto" = triton on CUDA tensors, reference
    otherwise; the environment variable APERTUS_LASA_IMPL overrides).
    Returns (B, T, Hq, D) in q's dtype.
    """
    B, T, Hq, D = q.shape
    if k.shape != v.shape or k.shape[:2] != (B, T) or k.shape[3] != D or Hq % k.shape[2]:
        raise ValueError(
            f"lasa_attention: q {tuple(q.shape)}, k {tuple(k.shape)}, v {tuple(v.shape)}; "
            "need q (B, T, Hq, D), k and v (B, T, Hkv, D) with Hq % Hkv == 0"
        )
    if decay.shape != (Hq,):
        raise ValueError(f"lasa_attention: decay has shape {tuple(decay.shape)}, need ({Hq},)")
    if seq_lens is not None and seq_lens.shape != (B,):
        raise ValueError(f"lasa_attention: seq_lens has shape {tuple(seq_lens.shape)}, need ({B},)")
    if block_size < 1 or top_k < 0 or window_blocks < 1:
        raise ValueError("lasa_attention: need block_size >= 1, top_k >= 0, window_blocks >= 1")
    kw = dict(block_size=block_size, top_k=top_k, window_blocks=window_blocks, seq_lens=seq_lens)
    if resolve_impl(impl, q.device) == "triton":
        from kernels.lasa.attention import lasa_attention_triton  # imports triton only when asked

        return lasa_attention_triton(q, k, v, decay, **kw)
    return lasa_attention_reference(q, k, v, decay, **kw)
