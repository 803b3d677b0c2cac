"""Configuration of the model and of a training run: one frozen dataclass per concern, and the named recipes.

A recipe is a function returning a complete `RunConfig`; nothing else sets defaults for a run. Derived
values (head_dim, the schedule's stage boundaries, the global batch) are properties, never stored twice.
"""

import dataclasses
from dataclasses import dataclass, field

__all__ = [
    "AttentionConfig",
    "MoEConfig",
    "ModelConfig",
    "TrainConfig",
    "RunConfig",
    "CurriculumRun",
    "DEFAULT_RECIPE",
    "tiny",
    "tiny_dense",
    "tiny_dense_attention",
    "apertus_70b",
    "gpu_moe_1b",
    "gpu_dense_1b",
    "recipe",
    "RECIPES",
]

ATTENTION_IMPLS = ("dense", "lasa")
DEFAULT_RECIPE = "tiny"  # what a run trains when nobody names a recipe (CLIs, the trained_model asset)


@dataclass(frozen=True)
class AttentionConfig:
    """Causal grouped-query attention with a learned per-head locality bias -decay_h * (i - j).

    impl: "dense" = every earlier key, through torch's scaled_dot_product_attention (the baseline);
    "lasa" = Locality-Aware Sparse Attention from kernels.lasa (block_size, top_k, window_blocks select the
    key blocks; lasa_kernel is passed through as its impl: "auto" | "reference" | "triton").
    decay_init: the initial decay of every head (softplus of the learned parameter).
    """

    impl: str = "dense"
    block_size: int = 64
    top_k: int = 4
    window_blocks: int = 1
    lasa_kernel: str = "auto"
    decay_init: float = 1e-3

    def __post_init__(self):
        if self.impl not in ATTENTION_IMPLS:
            raise ValueError(f"AttentionConfig.impl={self.impl!r}; use one of {ATTENTION_IMPLS}")
        if self.decay_init <= 0:
            raise ValueError(f"AttentionConfig.decay_init={self.decay_init}; must be > 0 (it is a softplus)")


@dataclass(frozen=True)
class MoEConfig:
    """The routed feed-forward: num_experts SwiGLU experts of hidden size ModelConfig.ffn_hidden, top_k per token.

    drop_tokens=False is dropless (DeepSpeed sizes the capacity to the busiest expert); True drops tokens
    beyond capacity = max(min_capacity, ceil(tokens / num_experts * capacity_factor * top_k)).
    aux_loss_weight scales DeepSpeed's load-balancing loss; router_z_loss_weight scales the router z-loss
    mean(logsumexp(gate logits)^2) (ST-MoE), which DeepSpeed does not have and transformer.py computes.
    second_expert_sampling: DeepSpeed's Gumbel noise on the second choice (top-2 only); it draws from the
    global torch RNG in eval too, so it is off by default to keep inference deterministic.
    """

    num_experts: int = 16
    top_k: int = 2
    capacity_factor: float = 1.25
    eval_capacity_factor: float = 2.0
    min_capacity: int = 4
    drop_tokens: bool = False
    aux_loss_weight: float = 0.01
    router_z_loss_weight: float = 0.0
    second_expert_sampling: bool = False

    def __post_init__(self):
        if self.num_experts < 2 or not 1 <= self.top_k <= self.num_experts:
            raise ValueError(f"MoEConfig: need num_experts >= 2 and 1 <= top_k <= num_experts; got {self}")


@dataclass(frozen=True)
class ModelConfig:
    """A decoder-only transformer: pre-norm (RMSNorm) blocks, rotary embeddings, GQA attention and a
    SwiGLU feed-forward that is routed (moe set) or dense (moe=None, hidden size ffn_hidden)."""

    vocab_size: int
    d_model: int
    n_layers: int
    n_heads: int
    n_kv_heads: int
    ffn_hidden: int
    moe: MoEConfig | None = field(default_factory=MoEConfig)
    attention: AttentionConfig = field(default_factory=AttentionConfig)
    tie_embeddings: bool = False
    rope_theta: float = 10000.0
    max_seq_len: int = 2048
    norm_eps: float = 1e-5
    init_std: float = 0.02

    def __post_init__(self):
        if self.d_model % self.n_heads or self.n_heads % self.n_kv_heads:
            raise ValueError(
                f"ModelConfig: d_model ({self.d_model}) must divide by n_heads ({self.n_heads}) "
                f"and n_heads by n_kv_heads ({self.n_kv_heads})"
            )
        if self.head_dim % 2:
            raise ValueError(f"ModelConfig: head_dim {self.head_dim} must be even for rotary embeddings")

    @property
    def head_dim(self) -> int:
        return self.d_model // self.n_heads


@dataclass(frozen=True)
class TrainConfig:
    """One training run. The learning rate is warmup-stable-decay (model/schedule.py): linear warmup for
    warmup_steps, constant peak_lr, then a linear decay to final_lr over the last decay_steps steps.

    ep_size: expert-parallel ranks (num_experts must divide by it; the data-parallel world by it too).
    zero_stage: 0, 1 or 2 (ZeRO-3 does not work with DeepSpeed-MoE). bf16 is used on GPUs only.
    checkpoint_every: steps between checkpoints (0 = only at the end).
    deterministic: torch deterministic algorithms, so a resumed run repeats the uninterrupted one.
    """

    seq_len: int
    micro_batch_size: int
    max_steps: int
    grad_accum_steps: int = 1
    peak_lr: float = 3e-3
    final_lr: float = 3e-4
    warmup_steps: int = 10
    decay_steps: int = 10
    weight_decay: float = 0.1
    betas: tuple[float, float] = (0.9, 0.95)
    adam_eps: float = 1e-8
    grad_clip: float = 1.0
    zero_stage: int = 1
    ep_size: int = 1
    seed: int = 0
    checkpoint_every: int = 0
    deterministic: bool = True

    def __post_init__(self):
        if self.zero_stage not in (0, 1, 2):
            raise ValueError(f"TrainConfig.zero_stage={self.zero_stage}; DeepSpeed-MoE works with 0, 1 or 2")
        if self.warmup_steps + self.decay_steps > self.max_steps:
            raise ValueError(
                f"TrainConfig: warmup_steps + decay_steps ({self.warmup_steps} + "
                f"{self.decay_steps}) exceed max_steps ({self.max_steps})"
            )

    @property
    def decay_start(self) -> int:
        return self.max_steps - self.decay_steps


@dataclass(frozen=True)
class RunConfig:
    """A complete run: what to build and how to train it."""

    model: ModelConfig
    train: TrainConfig

    def __post_init__(self):
        if self.model.moe is not None and self.model.moe.num_experts % self.train.ep_size:
            raise ValueError(
                f"TrainConfig.ep_size={self.train.ep_size} must divide "
                f"MoEConfig.num_experts={self.model.moe.num_experts}"
            )
        if self.train.seq_len > self.model.max_seq_len:
            raise ValueError(
                f"TrainConfig.seq_len={self.train.seq_len} exceeds "
                f"ModelConfig.max_seq_len={self.model.max_seq_len}"
            )


def tiny() -> RunConfig:
    """Trains on two CPU cores in minutes: 2 layers, d_model 128, 4 query / 2 KV heads, 16 experts top-2,
    LASA attention.

    LASA at 128 tokens in blocks of 16 (8 blocks): every query block attends to the sink block, its own
    block and the top-2 of the other earlier ones, at most 4 of the 8, so the last four query blocks drop
    1 to 4 key blocks (44.5 keys per query on average against the causal 64.5). The token shards' sequences
    (pipelines/token_shards.py) are 128 tokens, which fixes the context; blocks of 16 are the smallest
    tile the Triton kernels take. lasa_kernel "auto": the reference on the CPU, the Triton kernels on
    CUDA (APERTUS_LASA_IMPL overrides). tiny_dense_attention() is the same recipe with dense attention.
    """
    model = ModelConfig(
        vocab_size=8192,
        d_model=128,
        n_layers=2,
        n_heads=4,
        n_kv_heads=2,
        ffn_hidden=256,
        moe=MoEConfig(num_experts=16, top_k=2),
        tie_embeddings=True,
        max_seq_len=512,
        attention=AttentionConfig(impl="lasa", block_size=16, top_k=2, window_blocks=1),
    )
    train = TrainConfig(
        seq_len=128,
        micro_batch_size=8,
        max_steps=200,
        warmup_steps=10,
        decay_steps=40,
        peak_lr=3e-3,
        final_lr=3e-4,
        checkpoint_every=50,
    )
    return RunConfig(model, train)


def tiny_dense_attention() -> RunConfig:
    """The tiny recipe with dense causal attention (every earlier key, through SDPA): LASA's baseline."""
    cfg = tiny()
    dense = dataclasses.replace(cfg.model.attention, impl="dense")
    return RunConfig(dataclasses.replace(cfg.model, attention=dense), cfg.train)


def tiny_dense() -> RunConfig:
    """The tiny recipe with a dense SwiGLU of the same active size (top_k * ffn_hidden): the MoE baseline
    (LASA attention, as tiny)."""
    cfg = tiny()
    m = cfg.model
    dense = ModelConfig(**{**m.__dict__, "moe": None, "ffn_hidden": m.moe.top_k * m.ffn_hidden})
    return RunConfig(dense, cfg.train)


def apertus_70b() -> RunConfig:
    """The published shape: 16 experts, 2 active per token, about 70B total and 12B active parameters.

    64 layers, d_model 4096, 32 query heads and 8 KV heads of 128, experts of SwiGLU hidden 5248,
    vocabulary 131072, untied. Per layer: attention 4096 * (2 * 4096 + 2 * 1024) = 41.9M, one expert
    3 * 4096 * 5248 = 64.5M, gate 65.5K. Total = 64 * (41.9M + 16 * 64.5M) + 2 * 131072 * 4096 = 70.0B;
    active (2 experts) = 64 * (41.9M + 2 * 64.5M) + 1.07B = 12.0B. (model/transformer.py: count_parameters.)
    """
    model = ModelConfig(
        vocab_size=131072,
        d_model=4096,
        n_layers=64,
        n_heads=32,
        n_kv_heads=8,
        ffn_hidden=5248,
        moe=MoEConfig(
            num_experts=16, top_k=2, drop_tokens=True, capacity_factor=1.25, router_z_loss_weight=1e-3
        ),
        attention=AttentionConfig(impl="lasa", block_size=64, top_k=16, window_blocks=2),
        tie_embeddings=False,
        rope_theta=500000.0,
        max_seq_len=4096,
    )
    train = TrainConfig(
        seq_len=4096,
        micro_batch_size=1,
        grad_accum_steps=16,
        max_steps=500_000,
        warmup_steps=2000,
        decay_steps=50_000,
        peak_lr=3e-4,
        final_lr=3e-5,
        zero_stage=1,
        ep_size=16,
        checkpoint_every=1000,
    )
    return RunConfig(model, train)


def gpu_moe_1b() -> RunConfig:
    """The single-GPU MoE recipe (bench/gpu_train.py): about 0.56B active and 2.68B total parameters.

    12 layers, d_model 2048, 16 query / 4 KV heads of 128 (GQA 4), 16 SwiGLU experts of hidden 2048, top-2,
    vocabulary 32768 untied; LASA with blocks of 64, the sink block, 2 local blocks and the top-16 others
    (at most 19 * 64 = 1216 keys per query, against a causal mean of 4096 at 8192 tokens). Per layer:
    attention 2048 * (2 * 2048 + 2 * 512) = 10.5M, one expert 3 * 2048 * 2048 = 12.6M, gate 32.8K; embeddings
    2 * 32768 * 2048 = 134M. Total = 12 * (10.5M + 16 * 12.6M) + 134M = 2.68B; active = 12 * (10.5M +
    2 * 12.6M) + 134M = 0.56B (model/transformer.py: count_parameters).
    Memory on one 80 GB GPU (ZeRO-1 on one rank shards nothing): bf16 weights and gradients, fp32 master
    weights, fp32 Adam moments and ZeRO's fp32 gradient partition, about 18 bytes per parameter = 48 GB;
    about 1.5 MB of activations per token leaves room for one sequence of 8192 tokens, the context set here
    (DeepSpeed's top-2 gate also builds tokens x experts x capacity tensors, quadratic in the tokens per
    micro-batch, which is why the micro-batch is one sequence).
    """
    model = ModelConfig(
        vocab_size=32768,
        d_model=2048,
        n_layers=12,
        n_heads=16,
        n_kv_heads=4,
        ffn_hidden=2048,
        moe=MoEConfig(num_experts=16, top_k=2),
        attention=AttentionConfig(impl="lasa", block_size=64, top_k=16, window_blocks=2),
        tie_embeddings=False,
        rope_theta=500000.0,
        max_seq_len=8192,
    )
    train = TrainConfig(
        seq_len=8192,
        micro_batch_size=1,
        max_steps=40,
        warmup_steps=5,
        decay_steps=5,
        peak_lr=3e-4,
        final_lr=3e-5,
        zero_stage=1,
        deterministic=False,
    )
    return RunConfig(model, train)


def gpu_dense_1b() -> RunConfig:
    """gpu_moe_1b with a dense SwiGLU of the same active size (top_k * ffn_hidden = 4096): its baseline."""
    cfg = gpu_moe_1b()
    m = cfg.model
    dense = ModelConfig(**{**m.__dict__, "moe": None, "ffn_hidden": m.moe.top_k * m.ffn_hidden})
    return RunConfig(dense, cfg.train)


@dataclass(frozen=True)
class CurriculumRun:
    """A training run over the stages of a token_shards version as it is requested: by
    ``python -m model.staged_training`` (its options are these fields) or by the trained_model asset (its Dagster
    config, passed through Dagster Pipes). model/staged_training.py: ``train_curriculum`` runs it.

    recipe: a RECIPES name; the recipe sets every training default, max_steps included. The other
    run fields (max_steps ... attention) are overrides of the recipe's values; None keeps the recipe's.
    A max_steps without warmup_steps / decay_steps scales the recipe's warmup and decay to it.
    held_out_fraction: share of each stage's sequences held out for evaluation (never trained on).
    eval_sequences: held-out sequences evaluated per stage. stop_after: return after that many total
    steps, with a checkpoint there (the run resumes from it).
    """

    token_shards: str
    out: str
    recipe: str = DEFAULT_RECIPE
    held_out_fraction: float = 0.02
    eval_sequences: int = 128
    stop_after: int | None = None
    max_steps: int | None = None
    checkpoint_every: int | None = None
    ep_size: int | None = None
    zero_stage: int | None = None
    seq_len: int | None = None
    micro_batch_size: int | None = None
    grad_accum_steps: int | None = None
    warmup_steps: int | None = None
    decay_steps: int | None = None
    seed: int | None = None
    attention: str | None = None

    def __post_init__(self):
        if self.recipe not in RECIPES:
            raise ValueError(f"CurriculumRun.recipe={self.recipe!r}; known recipes: {sorted(RECIPES)}")


RECIPES = {
    "tiny": tiny,
    "tiny-dense": tiny_dense,
    "tiny-dense-attention": tiny_dense_attention,
    "apertus-70b": apertus_70b,
    "gpu-moe-1b": gpu_moe_1b,
    "gpu-dense-1b": gpu_dense_1b,
}


def recipe(name: str) -> RunConfig:
    """The RunConfig of a named recipe; ValueError naming the known ones otherwise."""
    if name not in RECIPES:
        raise ValueError(f"unknown recipe {name!r}; known: {sorted(RECIPES)}")
    return RECIPES[name]()
