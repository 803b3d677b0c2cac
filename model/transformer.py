"""The decoder-only Mixture-of-Experts transformer, single-device code; parallelism is applied from outside.

Shape legend:
    B  batch          T  tokens          D  model dim          V  vocabulary
    L  layers         E  experts         F  expert (or dense) hidden size
    G  expert-parallel groups (ep_size)  C  capacity: slots per expert in DeepSpeed's dispatch buffer

The routed feed-forward is deepspeed.moe.layer.MoE over SwiGLU experts, run by RoutedExperts (each expert
on its routed tokens, not on the whole capacity buffer). Its only parallel concept is
ep_size (experts are split over ep_size ranks and tokens exchanged all-to-all); with ep_size=1 it runs in
one process without any process group. Everything else (data parallelism, ZeRO) is DeepSpeed's engine,
set up by model/train.py.
"""

import math
import re
import zlib

import torch
import torch.nn.functional as F
from deepspeed.moe.experts import Experts
from deepspeed.moe.layer import MoE
from torch import nn

from model.attention import Attention
from model.config import ModelConfig

__all__ = [
    "Transformer",
    "SwiGLU",
    "MoEFeedForward",
    "RoutedExperts",
    "count_parameters",
    "count_parameters_meta",
    "global_param_name",
    "EXPERT_KEY",
]

# The path segment of every expert parameter inside deepspeed.moe.layer.MoE, followed by the local index.
EXPERT_KEY = ".deepspeed_moe.experts.deepspeed_experts."


class SwiGLU(nn.Module):
    """w2(silu(w1 x) * w3 x), no biases: (..., D) -> (..., D)."""

    def __init__(self, d_model: int, hidden: int):
        super().__init__()
        self.w1 = nn.Linear(d_model, hidden, bias=False)
        self.w3 = nn.Linear(d_model, hidden, bias=False)
        self.w2 = nn.Linear(hidden, d_model, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.w2(F.silu(self.w1(x)) * self.w3(x))


class RoutedExperts(Experts):
    """DeepSpeed's Experts (same modules, same parameter names) that runs each expert on its routed rows only.

    DeepSpeed dispatches into a (G, E, C, D) buffer, C the capacity (dropless: the busiest expert's load),
    and fills expert e's slots from the front; the rest are zero rows. Its Experts runs every expert on all
    C rows, so one busy expert makes every expert pay for it (a collapsed router cost the tiny recipe 4x
    its expert FLOPs). Here expert e runs on the rows up to its last nonzero one, and the rest of its
    output is zero. That is exact whatever the layout, because a bias-free SwiGLU maps 0 to 0, and so is
    the gradient: nothing flows from or to a zero row.
    """

    def __init__(self, experts: Experts):
        nn.Module.__init__(self)
        self.deepspeed_experts = experts.deepspeed_experts
        self.num_local_experts = experts.num_local_experts

    def forward(self, x_GECD: torch.Tensor) -> torch.Tensor:
        G, E, C, D = x_GECD.shape
        # Rows in use per (group, expert): one past the last nonzero row (a host sync, once per layer).
        live_GEC = (x_GECD != 0).any(-1)
        last_GE = C - live_GEC.flip(-1).to(torch.int8).argmax(-1)
        used = torch.where(live_GEC.any(-1), last_GE, 0).tolist()
        # One split of the flat buffer into (used, unused) pieces per (group, expert), and one cat back:
        # slicing per expert instead made each slice's backward allocate a buffer-sized gradient.
        sizes = [n for g in range(G) for e in range(E) for n in (used[g][e], C - used[g][e])]
        pieces = list(x_GECD.reshape(G * E * C, D).split(sizes))
        zeros_CD = x_GECD.new_zeros(C, D)
        for e, expert in enumerate(self.deepspeed_experts):
            slots = [2 * (g * E + e) for g in range(G)]
            y_ND = expert(torch.cat([pieces[i] for i in slots]) if G > 1 else pieces[slots[0]])
            for g, (i, y) in enumerate(zip(slots, y_ND.split([used[g][e] for g in range(G)]), strict=True)):
                pieces[i], pieces[i + 1] = y, zeros_CD[: C - used[g][e]]
        return torch.cat(pieces).view(G, E, C, D)


class MoEFeedForward(nn.Module):
    """DeepSpeed-MoE over SwiGLU experts, plus the router z-loss DeepSpeed lacks.

    forward returns (out (B, T, D), aux_loss (), expert_counts (E,)): aux_loss is the weighted sum that is
    added to the language-model loss; expert_counts are the tokens routed to each expert (top_k per token,
    counted before any capacity drop).
    """

    def __init__(self, cfg: ModelConfig, ep_size: int):
        super().__init__()
        m = cfg.moe
        self.aux_loss_weight = m.aux_loss_weight
        self.router_z_loss_weight = m.router_z_loss_weight
        self.moe = MoE(
            hidden_size=cfg.d_model,
            expert=SwiGLU(cfg.d_model, cfg.ffn_hidden),
            num_experts=m.num_experts,
            ep_size=ep_size,
            k=m.top_k,
            capacity_factor=m.capacity_factor,
            eval_capacity_factor=m.eval_capacity_factor,
            min_capacity=m.min_capacity,
            drop_tokens=m.drop_tokens,
            top2_2nd_expert_sampling=m.second_expert_sampling,
        )
        layer = self.moe.deepspeed_moe
        layer.experts = RoutedExperts(layer.experts)

    def forward(self, x_BTD: torch.Tensor):
        out_BTD, l_aux, counts_E = self.moe(x_BTD)
        aux = self.aux_loss_weight * l_aux.float()
        if self.router_z_loss_weight:
            # DeepSpeed's gate does not expose its logits; recomputing them costs T*D*E, tiny next to the experts.
            w_ED = self.moe.deepspeed_moe.gate.wg.weight
            logits_NE = F.linear(x_BTD.reshape(-1, x_BTD.shape[-1]).float(), w_ED.float())
            aux = aux + self.router_z_loss_weight * torch.logsumexp(logits_NE, dim=-1).square().mean()
        return out_BTD, aux, counts_E


class Block(nn.Module):
    """Pre-norm residual block: x + attn(norm(x)), then + ffn(norm(x))."""

    def __init__(self, cfg: ModelConfig, ep_size: int):
        super().__init__()
        self.attn_norm = nn.RMSNorm(cfg.d_model, eps=cfg.norm_eps)
        self.attn = Attention(cfg)
        self.ffn_norm = nn.RMSNorm(cfg.d_model, eps=cfg.norm_eps)
        self.ffn = MoEFeedForward(cfg, ep_size) if cfg.moe else SwiGLU(cfg.d_model, cfg.ffn_hidden)

    def forward(self, x_BTD: torch.Tensor):
        x_BTD = x_BTD + self.attn(self.attn_norm(x_BTD))
        h = self.ffn(self.ffn_norm(x_BTD))
        if isinstance(h, tuple):
            h, aux, counts_E = h
            return x_BTD + h, aux, counts_E
        return x_BTD + h, None, None


class Transformer(nn.Module):
    """forward(tokens (B, T) int64) -> (logits (B, T, V), aux_loss (), expert_counts (L, E) int64).

    aux_loss sums the weighted MoE auxiliary losses of all layers (0 for a dense model, whose
    expert_counts is (L, 0)). Call init_weights after construction: DeepSpeed copies one expert module
    into all of them, so without it every expert of a layer starts identical.
    """

    def __init__(self, cfg: ModelConfig, ep_size: int = 1):
        super().__init__()
        self.cfg = cfg
        self.ep_size = ep_size
        self.tok_emb = nn.Embedding(cfg.vocab_size, cfg.d_model)
        self.layers = nn.ModuleList(Block(cfg, ep_size) for _ in range(cfg.n_layers))
        self.norm = nn.RMSNorm(cfg.d_model, eps=cfg.norm_eps)
        self.head = nn.Linear(cfg.d_model, cfg.vocab_size, bias=False)
        if cfg.tie_embeddings:
            self.head.weight = self.tok_emb.weight

    @property
    def num_local_experts(self) -> int:
        return self.cfg.moe.num_experts // self.ep_size if self.cfg.moe else 0

    @torch.no_grad()
    def init_weights(self, seed: int, ep_rank: int = 0) -> None:
        """Initialise every parameter from (seed, its global name): the same model whatever ep_size.

        Matrices ~ N(0, init_std), output projections (wo, w2) scaled by 1/sqrt(2 L); norms 1; the
        attention decay to AttentionConfig.decay_init. ep_rank: this rank's index in its expert group.
        """
        cfg = self.cfg
        raw_decay = math.log(math.expm1(cfg.attention.decay_init))
        for name, p in self.named_parameters():
            if name.endswith("decay_param"):
                p.fill_(raw_decay)
            elif p.ndim == 1:
                p.fill_(1.0)
            else:
                gname = global_param_name(name, ep_rank, self.num_local_experts)
                std = cfg.init_std
                if name.endswith(("wo.weight", "w2.weight")):
                    std /= math.sqrt(2 * cfg.n_layers)
                gen = torch.Generator(device=p.device).manual_seed(
                    seed * 1_000_003 + zlib.crc32(gname.encode())
                )
                p.normal_(0.0, std, generator=gen)

    def forward(self, tokens_BT: torch.Tensor):
        x_BTD = self.tok_emb(tokens_BT)
        aux = x_BTD.new_zeros((), dtype=torch.float32)
        counts = []
        for layer in self.layers:
            x_BTD, layer_aux, counts_E = layer(x_BTD)
            if layer_aux is not None:
                aux = aux + layer_aux
                counts.append(counts_E)
        logits_BTV = self.head(self.norm(x_BTD))
        counts_LE = torch.stack(counts) if counts else torch.zeros(len(self.layers), 0, dtype=torch.int64)
        return logits_BTV, aux, counts_LE


def global_param_name(name: str, ep_rank: int, num_local_experts: int) -> str:
    """The name a parameter has in the ep_size=1 model: local expert index -> ep_rank * local + index."""
    m = re.search(re.escape(EXPERT_KEY) + r"(\d+)\.", name)
    if not m:
        return name
    global_id = ep_rank * num_local_experts + int(m.group(1))
    return name[: m.start(1)] + str(global_id) + name[m.end(1) :]


def count_parameters(cfg: ModelConfig) -> tuple[int, int]:
    """(total, active per token) parameter counts from the config alone (tied weights counted once)."""
    D, hd = cfg.d_model, cfg.head_dim
    attn = D * cfg.n_heads * hd * 2 + D * cfg.n_kv_heads * hd * 2 + cfg.n_heads
    ffn_one = 3 * D * cfg.ffn_hidden
    norms = 2 * D
    if cfg.moe:
        E, k = cfg.moe.num_experts, cfg.moe.top_k
        layer_total = attn + norms + E * ffn_one + D * E
        layer_active = attn + norms + k * ffn_one + D * E
    else:
        layer_total = layer_active = attn + norms + ffn_one
    embed = cfg.vocab_size * D * (1 if cfg.tie_embeddings else 2) + D
    return cfg.n_layers * layer_total + embed, cfg.n_layers * layer_active + embed


def count_parameters_meta(cfg: ModelConfig) -> tuple[int, int]:
    """(total, active) by building the model on the meta device (no memory): the check on count_parameters."""
    with torch.device("meta"):
        model = Transformer(cfg)
    total = sum(p.numel() for p in model.parameters())
    if not cfg.moe:
        return total, total
    expert = sum(p.numel() for n, p in model.named_parameters() if EXPERT_KEY in n)
    return total, total - expert + expert * cfg.moe.top_k // cfg.moe.num_experts
