"""Warmup-stable-decay (WSD) learning-rate schedule, a pure function of the step.

Being stateless, it needs no checkpointing: a resumed run recomputes the same rate from the step.
"""

__all__ = ["wsd_lr", "split_steps"]


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


def split_steps(weights: list[float], total: int) -> list[int]:
    """total optimizer steps split in proportion to weights (e.g. each stage's tokens), every part at
    least 1, the parts summing to total (largest remainders take the leftover steps, ties to the first)."""
    if total < len(weights) or not weights or min(weights) < 0 or sum(weights) <= 0:
        raise ValueError(f"split_steps: cannot split {total} steps over weights {weights} (each part >= 1)")
    spare = total - len(weights)
    shares = [spare * w / sum(weights) for w in weights]
    parts = [1 + int(s) for s in shares]
    order = sorted(range(len(weights)), key=lambda i: (-(shares[i] - int(shares[i])), i))
    for i in order[: total - sum(parts)]:
        parts[i] += 1
    return parts
