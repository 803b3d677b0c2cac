"""model/loop.py's run_loop: the learning rate each step gets, where it saves checkpoints, and where it
stops (stop_after, a stop request from on_step), with a step function that only records its calls.
The numerics of the real steps are guarded by test_training_golden.py."""

import pytest

from model.loop import LoopConfig, run_loop
from model.schedule import wsd_lr


def _loop(**kw) -> LoopConfig:
    return LoopConfig(
        **{"max_steps": 10, "peak_lr": 1.0, "final_lr": 0.1, "warmup_end": 2, "decay_start": 6, **kw}
    )


def _run(cfg: LoopConfig, **kw) -> tuple[list[dict], list[int], list[tuple]]:
    saved, calls = [], []

    def step(batch, lr):
        calls.append((batch, lr))
        return {"loss": float(batch)}

    history = run_loop(cfg, step, lambda s: 100 + s, save=saved.append, **kw)
    return history, saved, calls


def test_every_step_gets_its_batch_and_the_schedules_rate():
    history, saved, calls = _run(_loop())
    assert [h["step"] for h in history] == list(range(10))
    assert [b for b, _ in calls] == [100 + s for s in range(10)]
    want = [
        wsd_lr(s, peak_lr=1.0, final_lr=0.1, warmup_end=2, decay_start=6, decay_end=10) for s in range(10)
    ]
    assert [lr for _, lr in calls] == want and want[0] == 0.5 and want[-1] == 0.1
    assert saved == [10]  # no cadence: only where the loop ends


def test_checkpoints_at_the_cadence_at_boundaries_and_where_it_stops():
    _, saved, _ = _run(_loop(checkpoint_every=4, checkpoint_at=(3, 7)))
    assert saved == [3, 4, 7, 8, 10]
    history, saved, _ = _run(_loop(checkpoint_every=4), start_step=4, stop_after=6)
    assert [h["step"] for h in history] == [4, 5] and saved == [6]


def test_on_step_can_annotate_the_record_and_stop_the_loop():
    def on_step(record):
        record["seen"] = True
        return record["step"] == 2

    history, saved, calls = _run(_loop(), on_step=on_step)
    assert [h["step"] for h in history] == [0, 1, 2] and len(calls) == 3
    assert all(h["seen"] for h in history) and saved == [3]


def test_a_schedule_past_its_steps_is_refused():
    with pytest.raises(ValueError, match="decay_start"):
        _loop(decay_start=11)
