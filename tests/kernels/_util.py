"""Shared helpers of the kernel tests: random LASA inputs and the relative error."""

import torch


def rel_err(x: torch.Tensor, ref: torch.Tensor) -> float:
    """norm(x - ref) / norm(ref), in float64."""
    x, ref = x.double(), ref.double()
    return ((x - ref).norm() / ref.norm().clamp(min=1e-30)).item()


def make_inputs(B, T, Hq, Hkv, D, *, dtype=torch.float32, seed=0, ragged=False, requires_grad=False):
    """q, k, v ~ N(0, 1), decay in (0, 0.3) (some heads near 0, some local), seq_lens or None."""
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(B, T, Hq, D, generator=g).to(dtype)
    k = torch.randn(B, T, Hkv, D, generator=g).to(dtype)
    v = torch.randn(B, T, Hkv, D, generator=g).to(dtype)
    decay = torch.nn.functional.softplus(torch.randn(Hq, generator=g) * 2 - 3).to(
        torch.float64 if dtype == torch.float64 else torch.float32
    )
    seq_lens = None
    if ragged:
        seq_lens = torch.randint(1, T + 1, (B,), generator=g)
        seq_lens[0] = T
    if requires_grad:
        for t in (q, k, v, decay):
            t.requires_grad_(True)
    return q, k, v, decay, seq_lens
