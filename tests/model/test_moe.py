"""The MoE feed-forward (DeepSpeed-MoE over SwiGLU experts) against a per-token reference of top-2
routing, and its forward and backward with ep_size=1 in a process that has no process group."""

import os
import subprocess
import sys
import textwrap

import torch
import torch.nn.functional as F

from model.config import ModelConfig, MoEConfig
from model.transformer import EXPERT_KEY, MoEFeedForward, Transformer


def _cfg(**moe):
    return ModelConfig(
        vocab_size=97,
        d_model=24,
        n_layers=2,
        n_heads=4,
        n_kv_heads=2,
        ffn_hidden=40,
        moe=MoEConfig(num_experts=6, top_k=2, **moe),
        max_seq_len=64,
    )


def reference_moe(ffn: MoEFeedForward, x_ND: torch.Tensor):
    """Top-2 routing token by token: softmax gate, the two best experts, weights renormalised to sum 1."""
    w_ED = ffn.moe.deepspeed_moe.gate.wg.weight
    experts = ffn.moe.deepspeed_moe.experts.deepspeed_experts
    probs_NE = F.softmax(x_ND @ w_ED.T, dim=-1)
    top_p, top_i = probs_NE.topk(2, dim=-1)
    top_p = top_p / top_p.sum(-1, keepdim=True)
    out = torch.stack(
        [
            sum(top_p[n, s] * experts[int(top_i[n, s])](x_ND[n]) for s in range(2))
            for n in range(x_ND.shape[0])
        ]
    )
    E = probs_NE.shape[1]
    first_choice_frac = F.one_hot(top_i[:, 0], E).float().mean(0)
    l_aux = (probs_NE.mean(0) * first_choice_frac).mean() * E * E
    counts = torch.bincount(top_i.flatten(), minlength=E)
    z_loss = torch.logsumexp(x_ND @ w_ED.T, dim=-1).square().mean()
    return out, l_aux, counts, z_loss


def test_moe_matches_per_token_reference():
    torch.manual_seed(0)
    cfg = _cfg(aux_loss_weight=0.5, router_z_loss_weight=0.25)
    model = Transformer(cfg)
    model.init_weights(seed=3)
    ffn = model.layers[0].ffn
    x_BTD = torch.randn(3, 11, cfg.d_model)
    out, aux, counts = ffn(x_BTD)
    ref_out, ref_l_aux, ref_counts, ref_z = reference_moe(ffn, x_BTD.reshape(-1, cfg.d_model))
    torch.testing.assert_close(out.reshape(-1, cfg.d_model), ref_out, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(aux, 0.5 * ref_l_aux + 0.25 * ref_z, rtol=1e-5, atol=1e-7)
    assert torch.equal(counts, ref_counts) and counts.sum() == 2 * 33


def test_init_gives_distinct_experts_independent_of_ep_size():
    cfg = _cfg()
    one, two = Transformer(cfg, ep_size=1), Transformer(cfg, ep_size=2)
    one.init_weights(seed=1)
    two.init_weights(seed=1, ep_rank=1)  # holds global experts 3, 4, 5 as local 0, 1, 2
    p1, p2 = dict(one.named_parameters()), dict(two.named_parameters())
    key = f"layers.0.ffn.moe{EXPERT_KEY}{{}}.w1.weight"
    assert not torch.equal(p1[key.format(0)], p1[key.format(1)])
    for local in range(3):
        assert torch.equal(p2[key.format(local)], p1[key.format(3 + local)])
    assert torch.equal(p1["tok_emb.weight"], p2["tok_emb.weight"])


NO_GROUP_SCRIPT = textwrap.dedent("""
    import torch
    from model.config import ModelConfig, MoEConfig
    from model.transformer import Transformer
    cfg = ModelConfig(vocab_size=97, d_model=24, n_layers=2, n_heads=4, n_kv_heads=2, ffn_hidden=40,
                      moe=MoEConfig(num_experts=6, top_k=2, router_z_loss_weight=1e-3), max_seq_len=64)
    model = Transformer(cfg, ep_size=1)
    model.init_weights(seed=0)
    logits, aux, counts = model(torch.randint(0, 97, (2, 13)))
    (logits.logsumexp(-1).mean() + aux).backward()
    expert_grads = [p.grad for n, p in model.named_parameters() if "deepspeed_experts" in n]
    assert all(g is not None and g.abs().sum() > 0 for g in expert_grads), "an expert got no gradient"
    assert model.tok_emb.weight.grad.abs().sum() > 0
    assert counts.shape == (2, 6) and counts.sum(1).tolist() == [52, 52]
    assert not torch.distributed.is_initialized()
    print("ok")
""")


def test_moe_forward_backward_without_process_group():
    """A fresh process: nothing else in the test session can have created a process group for it."""
    env = dict(os.environ, OMP_NUM_THREADS="1")
    env.pop("RANK", None)
    env.pop("WORLD_SIZE", None)
    res = subprocess.run(
        [sys.executable, "-c", NO_GROUP_SCRIPT],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        cwd=os.path.dirname(os.path.dirname(os.path.dirname(__file__))),
    )
    assert res.returncode == 0 and res.stdout.strip().endswith("ok"), res.stderr[-3000:]
