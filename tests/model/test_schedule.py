"""The warmup-stable-decay schedule against hand-computed values at its stage boundaries."""

import pytest

from model.schedule import wsd_lr

KW = dict(peak_lr=1.0, final_lr=0.1, warmup_end=4, decay_start=10, decay_end=14)


@pytest.mark.parametrize(
    "step,lr",
    [(0, 0.25), (3, 1.0), (4, 1.0), (9, 1.0), (10, 1.0), (11, 0.7), (12, 0.4), (13, 0.1), (20, 0.1)],
)
def test_wsd_values(step, lr):
    assert wsd_lr(step, **KW) == pytest.approx(lr)


def test_wsd_rejects_unordered_boundaries():
    with pytest.raises(ValueError, match="warmup_end"):
        wsd_lr(0, peak_lr=1.0, final_lr=0.1, warmup_end=5, decay_start=3, decay_end=8)
