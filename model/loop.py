"""The one training loop. Pre-training (model/train.py), staged training (model/staged_training.py), fine-tuning
(model/finetune.py) and the benchmarks (bench/train.py, bench/gpu_train.py) all step through run_loop;
what differs between them is config and small callbacks, as in torchtitan's single Trainer.

    LoopConfig  the schedule (warmup-stable-decay, model/schedule.py), the optimizer (AdamWConfig) and
                when to checkpoint
    step        one optimizer step on a batch at a learning rate, returning the step's record:
                EngineStep (a DeepSpeed engine: ZeRO, expert and data parallelism, gradient accumulation)
                or TorchStep (a model in this process, plain torch; fine-tuning)
    batch       the batch of a global step, a pure function of the step (so a resumed run repeats it)
    on_step     what to do with a step's record (metrics file, log line, evaluation, a stop request)
    save        write a checkpoint after a number of steps

Shape legend: B sequences in a micro-batch, T tokens (inputs; targets are the inputs shifted by one),
V vocabulary, L layers, E experts.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.distributed as tdist
import torch.nn.functional as F

from model.config import RunConfig, TrainConfig
from model.data import TokenSource, batch_indices
from model.schedule import wsd_lr

__all__ = [
    "IGNORE",
    "AdamWConfig",
    "LoopConfig",
    "adamw",
    "lm_loss",
    "EngineStep",
    "TorchStep",
    "token_batches",
    "run_loop",
]

IGNORE = -100  # targets that carry no loss (a prompt's tokens, padding): cross_entropy's ignore_index
Step = Callable[[Any, float], dict]


@dataclass(frozen=True)
class AdamWConfig:
    """AdamW with weight decay on matrices only (not on norms' gains and biases); gradients clipped to a
    global norm of grad_clip before each update."""

    betas: tuple[float, float] = (0.9, 0.95)
    eps: float = 1e-8
    weight_decay: float = 0.0
    grad_clip: float = 1.0


@dataclass(frozen=True)
class LoopConfig:
    """Steps [0, max_steps) at the learning rates of a warmup-stable-decay schedule: warmup over
    [0, warmup_end), peak_lr until decay_start, then down to final_lr at the last step.

    checkpoint_every: also save after every this many steps (0: only where the loop stops).
    checkpoint_at: step counts after which a checkpoint is always saved (the ends of curriculum stages).
    """

    max_steps: int
    peak_lr: float
    final_lr: float
    warmup_end: int
    decay_start: int
    optimizer: AdamWConfig = field(default_factory=AdamWConfig)
    checkpoint_every: int = 0
    checkpoint_at: tuple[int, ...] = ()

    def __post_init__(self):
        if not 0 <= self.warmup_end <= self.decay_start <= self.max_steps:
            raise ValueError(
                f"LoopConfig: need 0 <= warmup_end ({self.warmup_end}) <= decay_start ({self.decay_start}) "
                f"<= max_steps ({self.max_steps})"
            )

    @classmethod
    def from_train(cls, t: TrainConfig, **overrides) -> LoopConfig:
        """The loop of a TrainConfig (its schedule, AdamW and checkpoint cadence); overrides replace
        fields (a curriculum's warmup_end, decay_start and checkpoint_at)."""
        fields = dict(
            max_steps=t.max_steps,
            peak_lr=t.peak_lr,
            final_lr=t.final_lr,
            warmup_end=t.warmup_steps,
            decay_start=t.decay_start,
            optimizer=AdamWConfig(
                betas=t.betas, eps=t.adam_eps, weight_decay=t.weight_decay, grad_clip=t.grad_clip
            ),
            checkpoint_every=t.checkpoint_every,
        )
        return cls(**{**fields, **overrides})

    def lr(self, step: int) -> float:
        """The learning rate of global step `step` (0-based)."""
        return wsd_lr(
            step,
            peak_lr=self.peak_lr,
            final_lr=self.final_lr,
            warmup_end=self.warmup_end,
            decay_start=self.decay_start,
            decay_end=self.max_steps,
        )


def adamw(model: torch.nn.Module, cfg: AdamWConfig, lr: float, *, moe_groups: bool) -> torch.optim.AdamW:
    """torch's AdamW over model's parameters, weight decay on matrices only. moe_groups: split the groups so
    that DeepSpeed's ZeRO keeps expert and shared parameters apart (needed under its engine). A torch
    object, not a DeepSpeed-JSON optimizer, which would compile DeepSpeed's CPU Adam."""
    decay = [p for p in model.parameters() if p.ndim >= 2]
    no_decay = [p for p in model.parameters() if p.ndim < 2]
    groups = [
        {"params": decay, "weight_decay": cfg.weight_decay, "name": "decay"},
        {"params": no_decay, "weight_decay": 0.0, "name": "no_decay"},
    ]
    if moe_groups:
        from deepspeed.moe.utils import split_params_into_different_moe_groups_for_optimizer

        groups = split_params_into_different_moe_groups_for_optimizer(groups)
    return torch.optim.AdamW(groups, lr=lr, betas=cfg.betas, eps=cfg.eps)


def lm_loss(logits_BTV: torch.Tensor, targets_BT: torch.Tensor) -> torch.Tensor:
    """Mean next-token cross-entropy (in fp32) over the targets that are not IGNORE."""
    return F.cross_entropy(logits_BTV.float().flatten(0, 1), targets_BT.flatten(), ignore_index=IGNORE)


def _set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr


def _load_cv(counts_LE: torch.Tensor) -> list[float]:
    """Coefficient of variation (std / mean) of the expert counts of each layer: 0 = perfectly balanced."""
    c = counts_LE.double()
    return (c.std(dim=1, unbiased=False) / c.mean(dim=1).clamp(min=1e-9)).tolist()


@dataclass
class EngineStep:
    """One optimizer step through a DeepSpeed engine (model/train.py's setup_engine builds one). Its batch is
    (data, idx): the global batch's sample indices into data; this rank takes its micro-batch slices,
    micro-batch a of rank r being idx[(a * world + r) * micro : + micro]. Clipping, gradient accumulation
    and ZeRO are the engine's. The record's losses and expert counts are averaged and summed over the
    world (one all-reduce per step); its cost grows with the global batch's tokens."""

    engine: Any
    optimizer: torch.optim.Optimizer
    run: RunConfig
    rank: int = 0
    world: int = 1

    @property
    def global_batch(self) -> int:
        t = self.run.train
        return t.micro_batch_size * t.grad_accum_steps * self.world

    def __call__(self, batch: tuple[TokenSource, torch.Tensor], lr: float) -> dict:
        data, idx = batch
        engine, t, world = self.engine, self.run.train, self.world
        micro, gas = t.micro_batch_size, t.grad_accum_steps
        _set_lr(self.optimizer, lr)
        t0 = time.perf_counter()
        sums = torch.zeros(2, dtype=torch.float64)
        counts_LE = None
        for a in range(gas):
            rows = idx[(a * world + self.rank) * micro : (a * world + self.rank + 1) * micro]
            tokens_BT1 = torch.stack([data[int(i)] for i in rows]).to(engine.device)
            logits, aux, counts = engine(tokens_BT1[:, :-1])
            lm = lm_loss(logits, tokens_BT1[:, 1:])
            engine.backward(lm + aux)
            engine.step()
            sums += torch.tensor([lm.item(), aux.item()], dtype=torch.float64)
            counts_LE = counts.cpu() if counts_LE is None else counts_LE + counts.cpu()
        if world > 1:
            tdist.all_reduce(sums)
            tdist.all_reduce(counts_LE)
        sums /= gas * world
        elapsed = time.perf_counter() - t0
        grad_norm = engine.get_global_grad_norm()
        return {
            "loss": float(sums.sum()),
            "lm_loss": float(sums[0]),
            "aux_loss": float(sums[1]),
            "lr": lr,
            "grad_norm": None if grad_norm is None else float(grad_norm),
            "tokens_per_s": self.global_batch * t.seq_len / elapsed,
            "step_time_s": elapsed,
            "expert_load": counts_LE.tolist(),
            "load_cv": _load_cv(counts_LE) if self.run.model.moe else [],
        }


@dataclass
class TorchStep:
    """One optimizer step of a model in this process with plain torch (fine-tuning): the batch is
    (inputs (B, T), targets (B, T)), IGNORE where a token carries no loss; gradients clipped to
    grad_clip, then optimizer.step(). Its cost grows with B x T."""

    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    grad_clip: float

    @classmethod
    def for_model(cls, model: torch.nn.Module, cfg: LoopConfig) -> TorchStep:
        """The step of model under cfg's optimizer: AdamW (weight-decay groups, not split by experts) and
        cfg.optimizer.grad_clip."""
        optimizer = adamw(model, cfg.optimizer, cfg.peak_lr, moe_groups=False)
        return cls(model, optimizer, cfg.optimizer.grad_clip)

    def __call__(self, batch: tuple[torch.Tensor, torch.Tensor], lr: float) -> dict:
        inputs_BT, targets_BT = batch
        _set_lr(self.optimizer, lr)
        t0 = time.perf_counter()
        logits, aux, _ = self.model(inputs_BT)
        lm = lm_loss(logits, targets_BT)
        self.optimizer.zero_grad(set_to_none=True)
        (lm + aux).backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.grad_clip)
        self.optimizer.step()
        return {
            "loss": (lm + aux).item(),
            "lm_loss": lm.item(),
            "aux_loss": aux.item(),
            "lr": lr,
            "grad_norm": float(grad_norm),
            "target_tokens": int((targets_BT != IGNORE).sum()),
            "step_time_s": time.perf_counter() - t0,
        }


def token_batches(data: TokenSource, global_batch: int, seed: int) -> Callable[[int], tuple]:
    """EngineStep's batch of each step over one TokenSource: batch_indices(len(data), step, global_batch,
    seed), a pure function of the step."""
    return lambda step: (data, batch_indices(len(data), step, global_batch, seed))


def run_loop(
    cfg: LoopConfig,
    step: Step,
    batch: Callable[[int], Any],
    *,
    start_step: int = 0,
    stop_after: int | None = None,
    on_step: Callable[[dict], bool | None] | None = None,
    save: Callable[[int], None] | None = None,
) -> list[dict]:
    """Run global steps start_step .. min(stop_after, max_steps) - 1 and return their records.

    Each step: lr = cfg.lr(step); record = {"step": step, **step(batch(step), lr)}; on_step(record),
    which may add to the record and returns True to stop after this step; then save(done steps) when
    the loop stops there, when done is a multiple of checkpoint_every or in checkpoint_at. The loop
    itself keeps nothing but the records; its cost per step is the step's and the callbacks'.
    """
    end_step = cfg.max_steps if stop_after is None else min(stop_after, cfg.max_steps)
    history = []
    for s in range(start_step, end_step):
        lr = cfg.lr(s)
        record = {"step": s, **step(batch(s), lr)}
        history.append(record)
        stop = bool(on_step(record)) if on_step else False
        done = s + 1
        every = cfg.checkpoint_every and done % cfg.checkpoint_every == 0
        if save and (stop or done == end_step or every or done in cfg.checkpoint_at):
            save(done)
        if stop:
            break
    return history
