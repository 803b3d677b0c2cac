"""Expert parallelism: two CPU processes under the deepspeed launcher, experts split 8 + 8 (ep_size=2),
against one process that sees the same global batch as two gradient-accumulation micro-steps."""

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from model.export import load_safetensors
from model.train import EXPORT_FILE, METRICS_FILE, train
from tests.model.conftest import SEQ_LEN, tiny_run

REPO = Path(__file__).resolve().parents[2]
STEPS = 8
# Same math up to the order of floating-point sums (all-to-all, all-reduce vs local accumulation).
TOLERANCE = 1e-4  # measured: 4.8e-07


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.distributed
@pytest.mark.slow
def test_two_process_expert_parallel_matches_one_process(markov, markov_path, tmp_path):
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")
    }
    env["OMP_NUM_THREADS"] = "1"
    deepspeed = Path(sys.executable).parent / "deepspeed"
    cmd = [
        str(deepspeed),
        "--num_accelerators",
        "2",
        "--master_port",
        str(_free_port()),
        "--module",
        "model.train",
        "--recipe",
        "tiny",
        "--ep-size",
        "2",
        "--data",
        str(markov_path),
        "--out",
        str(tmp_path / "ep2"),
        "--max-steps",
        str(STEPS),
        "--warmup-steps",
        "2",
        "--decay-steps",
        "3",
        "--seq-len",
        str(SEQ_LEN),
        "--micro-batch-size",
        "4",
        "--checkpoint-every",
        "0",
    ]
    res = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=900)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    two = [json.loads(line) for line in (tmp_path / "ep2" / METRICS_FILE).open()]

    run = tiny_run(max_steps=STEPS, warmup_steps=2, decay_steps=3, grad_accum_steps=2, checkpoint_every=0)
    one = train(run, markov, tmp_path / "ep1")

    assert [r["step"] for r in two] == list(range(STEPS))
    diffs = [abs(a["lm_loss"] - b["lm_loss"]) for a, b in zip(one, two, strict=True)]
    print(f"max |lm_loss(ep=2, 2 processes) - lm_loss(1 process)| over {STEPS} steps: {max(diffs):.2e}")
    for a, b in zip(one, two, strict=True):
        assert abs(a["lm_loss"] - b["lm_loss"]) < TOLERANCE, (a["step"], a["lm_loss"], b["lm_loss"])
    assert two[-1]["lm_loss"] < two[0]["lm_loss"] - 1.0
    # The 2-process export merges expert files written by both ranks into the ep_size=1 model.
    tokens = markov[1][None, :-1]
    torch.testing.assert_close(
        load_safetensors(tmp_path / "ep2" / EXPORT_FILE)(tokens)[0],
        load_safetensors(tmp_path / "ep1" / EXPORT_FILE)(tokens)[0],
        rtol=1e-3,
        atol=1e-3,
    )


@pytest.mark.slow
def test_cli_restart_in_a_new_process_repeats_the_uninterrupted_run(markov, markov_path, tmp_path):
    """`python -m model.train --stop-after 4`, then the same command again in a fresh process, against the
    uninterrupted run in this process: the same 8 losses, bit for bit."""
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    env["OMP_NUM_THREADS"] = "1"
    cmd = [sys.executable, "-m", "model.train", "--recipe", "tiny", "--data", str(markov_path),
           "--out", str(tmp_path / "cli"), "--max-steps", "8", "--warmup-steps", "2", "--decay-steps", "3",
           "--seq-len", str(SEQ_LEN), "--micro-batch-size", "4", "--checkpoint-every", "4"]  # fmt: skip
    for extra in (["--stop-after", "4"], []):
        res = subprocess.run(cmd + extra, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
        assert res.returncode == 0, res.stderr[-3000:]
    restarted = [json.loads(line)["lm_loss"] for line in (tmp_path / "cli" / METRICS_FILE).open()]
    run = tiny_run(max_steps=8, warmup_steps=2, decay_steps=3, checkpoint_every=4)
    straight = train(run, markov, tmp_path / "straight", export=False)
    assert restarted == [h["lm_loss"] for h in straight]
