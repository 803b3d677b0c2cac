"""RoutedExperts (each expert on its routed rows only) against DeepSpeed's Experts (every expert on all
capacity rows): same outputs and gradients, and the experts see only the routed tokens."""

import torch
from deepspeed.moe.experts import Experts

from model.config import ModelConfig, MoEConfig
from model.transformer import MoEFeedForward, RoutedExperts, SwiGLU, Transformer


def _grads(module, x, out_grad, forward):
    x = x.clone().requires_grad_(True)
    out = forward(module, x)
    return out, torch.autograd.grad(out, [x, *module.parameters()], out_grad)


def test_matches_deepspeed_experts_on_a_dispatch_buffer():
    """Two expert-parallel groups of 4 local experts, 10 slots each, rows filled from the front as DeepSpeed
    does, plus an empty expert, a full one and a zero row inside a prefix."""
    torch.manual_seed(0)
    experts = Experts(SwiGLU(16, 24), num_local_experts=4)
    for p in experts.parameters():
        torch.nn.init.normal_(p, std=0.3)
    routed = RoutedExperts(experts)
    assert [n for n, _ in routed.named_parameters()] == [n for n, _ in experts.named_parameters()]
    x_GECD = torch.randn(2, 4, 10, 16)
    used = [[7, 0, 10, 3], [1, 4, 0, 9]]
    for g in range(2):
        for e in range(4):
            x_GECD[g, e, used[g][e] :] = 0
    x_GECD[1, 3, 2] = 0
    out_grad = torch.randn(2, 4, 10, 16)
    ref, ref_grads = _grads(experts, x_GECD, out_grad, Experts.forward)
    out, grads = _grads(routed, x_GECD, out_grad, RoutedExperts.forward)
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-6)
    for g, r in zip(grads, ref_grads, strict=True):
        torch.testing.assert_close(g, r, rtol=1e-5, atol=1e-6)


def test_moe_layer_runs_experts_on_routed_tokens_only():
    cfg = ModelConfig(
        vocab_size=97,
        d_model=24,
        n_layers=1,
        n_heads=4,
        n_kv_heads=2,
        ffn_hidden=40,
        moe=MoEConfig(num_experts=6, top_k=2, drop_tokens=False),
        max_seq_len=64,
    )
    model = Transformer(cfg)
    model.init_weights(seed=5)
    ffn: MoEFeedForward = model.layers[0].ffn
    layer = ffn.moe.deepspeed_moe
    assert isinstance(layer.experts, RoutedExperts)
    rows = []
    hooks = [
        e.register_forward_pre_hook(lambda m, a: rows.append(a[0].numel() // a[0].shape[-1]))
        for e in layer.experts.deepspeed_experts
    ]
    x_BTD = torch.randn(3, 17, cfg.d_model) * 3
    out, _, counts = ffn(x_BTD)
    routed_rows = sum(rows)
    rows.clear()
    # The same layer with DeepSpeed's own loop over all capacity rows.
    layer.experts.forward = lambda x: Experts.forward(layer.experts, x)
    ref, _, _ = ffn(x_BTD)
    padded_rows = sum(rows)
    for h in hooks:
        h.remove()
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-6)
    assert routed_rows == int(counts.sum()) == 2 * 3 * 17
    assert padded_rows == cfg.moe.num_experts * int(counts.max()) > routed_rows
