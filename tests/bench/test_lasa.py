"""bench/lasa.py: its --smoke run (the --gpu code path on the CPU, Triton in its interpreter) and its budget."""

import json
import os
import subprocess
import sys

import pytest
import torch

from tests.bench._load import BENCH, load_bench

lasa = load_bench("lasa")


def _smoke(tmp_path, *extra):
    out = tmp_path / "lasa.json"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(BENCH.parent)}
    env.pop("APERTUS_LASA_IMPL", None)
    proc = subprocess.run(
        [sys.executable, str(BENCH / "lasa.py"), "--smoke", "--out", str(out), *extra],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    return proc, json.loads(out.read_text())


def test_smoke_checks_every_gradient_times_and_decodes(tmp_path):
    proc, result = _smoke(tmp_path)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    prof = lasa.smoke_profile()
    rows = result["rows"]
    checks = [r for r in rows if r["part"] == "correctness"]
    assert len(checks) == len(prof.priority) + len(prof.wider)
    for r in checks:
        assert set(r["errors"]) == {"out", "dq", "dk", "dv", "ddecay"}
        assert max(r["errors"].values()) < r["tolerance"] <= 1e-2, r
    # GQA 4 at the priority shapes, as on the GPU.
    assert all(r["Hq"] == 4 * r["Hkv"] for r in checks[: len(prof.priority)])
    assert [r["ok"] for r in rows if r["part"] == "decode-correctness"] == [True]
    lengths = [r["T"] for r in rows if r["part"] == "timing-correctness"]
    assert lengths == [64, 128] and all(r["ok"] for r in rows if r["part"] == "timing-correctness")
    # B * T fixed across the timed lengths.
    assert {r["B"] * r["T"] for r in rows if r["part"] == "timing"} == {prof.tokens}
    timed = {(r["T"], r["impl"]): r for r in rows if r["part"] == "timing" and "fwd_ms" in r}
    for T in lengths:
        assert timed[(T, "sdpa flash (dense)")]["fwd_ms"] > 0
        assert timed[(T, "lasa reference")]["fwd_bwd_ms"] > 0
        assert timed[(T, "flex (lasa mask)")]["fwd_ms"] > 0  # its block mask builds and runs
    # FlexAttention over LASA's block mask with the decay as score_mod computes LASA (fp32 here).
    flex = [r for r in rows if r["part"] == "flex-correctness"]
    assert [r["T"] for r in flex] == lengths and all(r["error"] < 1e-4 for r in flex), flex
    decode = {(r["batch"], r["cache"]): r for r in rows if r["part"] == "decode"}
    for batch in prof.decode_batches:
        dense = decode[(batch, "dense")]
        assert dense["bytes"] == 2 * batch * prof.decode.T * prof.decode.Hkv * prof.decode.D * 4  # fp32
        assert decode[(batch, "lasa 2/2 pruned")]["bytes"] < dense["bytes"]
        assert all(decode[(batch, c)]["tokens_per_s"] > 0 for c in ("dense", "lasa 0/2 pruned"))
    assert result["ok"] and "all correctness checks passed" in proc.stdout


def test_an_exhausted_budget_skips_every_part_with_a_message(tmp_path):
    proc, result = _smoke(tmp_path, "--budget-s", "0")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert {r["part"] for r in result["rows"]} == {"skipped"}
    assert "skipped: correctness" in proc.stdout and "skipped: timing at T=64" in proc.stdout


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal on a machine without a GPU")
def test_gpu_mode_without_a_gpu_exits_2():
    assert lasa.main(["--gpu"]) == 2
