"""LASA (Locality-Aware Sparse Attention): reference, Triton kernels and a pruned-KV-cache decode path."""

from kernels.lasa.api import LasaConfig, lasa_attention

__all__ = ["LasaConfig", "lasa_attention"]
