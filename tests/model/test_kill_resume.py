"""A training process killed with SIGKILL between two checkpoints, then started again with the same command,
ends with the metrics of a run that was never interrupted: the steps after the last checkpoint are lost
and repeated, and metrics.jsonl holds every step exactly once.

The graceful variant (stop_after, a checkpoint at the stop) is in test_train.py; here nothing gets the
chance to save. The child is frozen with SIGSTOP before it is killed, so the test inspects exactly the
state the kill leaves (last checkpoint, metric lines written) instead of racing the running process.
The uninterrupted run is the same RunConfig (parsed from the same command line) trained in this process,
which saves a third process start.
"""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from model.data import MemmapTokens
from model.train import (
    CHECKPOINT_DIR,
    EXPORT_FILE,
    METRICS_FILE,
    _parse_args,
    run_config_from_args,
    train,
)

REPO = Path(__file__).resolve().parents[2]
MAX_STEPS = 12
CHECKPOINT_EVERY = 4
# Every field of a metrics line that depends only on the computation (not tokens_per_s, step_time_s).
EXACT_FIELDS = ("step", "loss", "lm_loss", "aux_loss", "lr", "grad_norm", "expert_load", "load_cv")
TIMEOUT_S = 240


def _arguments(data: Path, out: Path) -> list[str]:
    return [
        "--recipe",
        "tiny",
        "--data",
        str(data),
        "--out",
        str(out),
        "--seq-len",
        "64",
        "--micro-batch-size",
        "4",
        "--max-steps",
        str(MAX_STEPS),
        "--warmup-steps",
        "2",
        "--decay-steps",
        "3",
        "--checkpoint-every",
        str(CHECKPOINT_EVERY),
    ]


def _command(data: Path, out: Path) -> list[str]:
    return [sys.executable, "-m", "model.train", *_arguments(data, out)]


def _env() -> dict:
    # In-process train() calls of other tests set RANK/MASTER_PORT in this process; the child must make
    # its own group rather than join this one's.
    drop = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT", "APERTUS_LASA_IMPL")
    env = {k: v for k, v in os.environ.items() if k not in drop}
    env["OMP_NUM_THREADS"] = "1"
    env["PYTHONPATH"] = str(REPO)
    return env


def _metrics(out: Path) -> list[dict]:
    """The complete lines of out/metrics.jsonl (a line still being written is not counted)."""
    path = out / METRICS_FILE
    if not path.exists():
        return []
    text = path.read_text()
    return [json.loads(line) for line in text[: text.rfind("\n") + 1].splitlines()]


def _checkpointed_step(out: Path) -> int | None:
    """The step of the checkpoint a restart would load, or None (none yet, or 'latest' being written)."""
    latest = out / CHECKPOINT_DIR / "latest"
    tag = latest.read_text().strip() if latest.exists() else ""
    return int(tag.removeprefix("step_")) if tag.startswith("step_") else None


def _run(cmd: list[str]) -> None:
    res = subprocess.run(cmd, cwd=REPO, env=_env(), capture_output=True, text=True, timeout=TIMEOUT_S)
    assert res.returncode == 0, res.stderr[-3000:]


def _kill_between_checkpoints(cmd: list[str], out: Path) -> tuple[int, int]:
    """Start cmd and SIGKILL it once it has done steps past a checkpoint that it has not checkpointed;
    returns (checkpointed step, steps written to metrics.jsonl) at the moment of the kill."""
    proc = subprocess.Popen(
        cmd, cwd=REPO, env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    deadline = time.monotonic() + TIMEOUT_S
    try:
        while time.monotonic() < deadline:
            assert proc.poll() is None, (
                f"the run ended before it could be killed:\n{proc.stderr.read()[-3000:]}"
            )
            if len(_metrics(out)) >= CHECKPOINT_EVERY + 2:
                proc.send_signal(signal.SIGSTOP)  # frozen: what we read now is what the kill leaves
                checkpointed, written = _checkpointed_step(out), len(_metrics(out))
                if checkpointed is not None and checkpointed < written < MAX_STEPS:
                    proc.send_signal(signal.SIGKILL)
                    proc.wait(timeout=60)
                    assert proc.returncode == -signal.SIGKILL
                    return checkpointed, written
                proc.send_signal(signal.SIGCONT)  # caught saving a checkpoint: try a little later
            time.sleep(0.02)
        raise AssertionError("no step past a checkpoint within the time limit")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stderr.close()


def test_sigkill_between_checkpoints_then_restart_repeats_the_uninterrupted_run(markov_path, tmp_path):
    straight, killed = tmp_path / "straight", tmp_path / "killed"
    run = run_config_from_args(_parse_args(_arguments(markov_path, straight)))
    train(run, MemmapTokens(markov_path, run.train.seq_len), straight)

    checkpointed, written = _kill_between_checkpoints(_command(markov_path, killed), killed)
    assert checkpointed % CHECKPOINT_EVERY == 0 and checkpointed < written, (checkpointed, written)
    assert not (killed / EXPORT_FILE).exists()

    _run(_command(markov_path, killed))

    expected, got = _metrics(straight), _metrics(killed)
    assert [r["step"] for r in got] == list(range(MAX_STEPS)), "a step line is missing or repeated"
    assert [r["step"] for r in expected] == list(range(MAX_STEPS))
    for want, have in zip(expected, got, strict=True):
        assert {k: have[k] for k in EXACT_FIELDS} == {k: want[k] for k in EXACT_FIELDS}, want["step"]
    assert (killed / EXPORT_FILE).read_bytes() == (straight / EXPORT_FILE).read_bytes()
