"""Warmup-stable-decay (WSD) learning-rate schedule, a pure function of the step.

Being stateless, it needs no checkpointing: a resumed run recomputes the same rate from the step.
"""

__all__ = ["wsd_lr"]


def wsd_lr(
    step: int, *, peak_lr: float, final_lr: float, warmup_end: int, decay_start: int, decay_end: int
) -> float:
    """The learning rate of optimizer step `step` (0-based), given the stage boundaries.

    Warmup [0, warmup_end): linear from peak_lr / warmup_end up to peak_lr (never 0, so step 0 learns).
    Stable [warmup_end, decay_start): peak_lr. Decay [decay_start, decay_end): linear down to final_lr,
    reached at decay_end - 1. From decay_end on: final_lr.
    """
    if not 0 <= warmup_end <= decay_start <= decay_end:
        raise ValueError(
            f"wsd_lr: need 0 <= warmup_end ({warmup_end}) <= decay_start ({decay_start}) "
            f"<= decay_end ({decay_end})"
        )
    if step < warmup_end:
        return peak_lr * (step + 1) / warmup_end
    if step < decay_start:
        return peak_lr
    if step >= decay_end - 1:
        return final_lr
    frac = (step - decay_start) / (decay_end - 1 - decay_start)
    return peak_lr + frac * (final_lr - peak_lr)
