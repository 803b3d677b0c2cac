"""bench/gpu_train.py: its --smoke run (the GPU code path on the CPU) and the card table."""

import json
import os
import subprocess
import sys

import pytest
import torch

from tests.bench._load import BENCH, load_bench

gpu_train = load_bench("gpu_train")


def test_smoke_run_trains_both_recipes_and_checks_the_first_loss(tmp_path):
    out = tmp_path / "gpu_train.json"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(BENCH.parent)}
    for var in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(var, None)
    proc = subprocess.run(
        [sys.executable, str(BENCH / "gpu_train.py"), "--smoke", "--out", str(out)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    result = json.loads(out.read_text())
    check = result["loss_check"]
    assert check["ok"] and check["rel_diff"] < 1e-4, check
    for name in gpu_train.RECIPES:
        r = result[name]
        assert r["steps"] == 2 and r["tokens_per_s"] > 0, r
        assert 0 < r["tflops_attended"] < r["tflops_dense_equivalent"], r
        # LASA drops blocks at the smoke context: fewer keys than the causal mean (T + 1) / 2.
        assert r["attended_keys"] < (r["seq_len"] + 1) / 2
        assert r["peak_memory_gib"] > 0 and r["mfu_attended"] is None
    assert result["gpu-moe-1b"]["params_total"] > 2 * result["gpu-moe-1b"]["params_active"]
    assert "first-step loss" in proc.stdout and "tokens/s" in proc.stdout


def test_peak_table_by_device_name():
    assert gpu_train.peak_tflops("NVIDIA H100 80GB HBM3") == 989.0
    assert gpu_train.peak_tflops("NVIDIA H100 PCIe") == 756.0
    assert gpu_train.peak_tflops("NVIDIA H200") == 989.0
    assert gpu_train.peak_tflops("NVIDIA A10G") is None


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal on a machine without a GPU")
def test_without_a_gpu_it_asks_for_smoke():
    assert gpu_train.main(["--steps", "1"]) == 2


def test_models_built_on_a_device_while_active_only():
    import model.train as train_module
    from model.config import tiny_dense

    cfg = tiny_dense().model
    with gpu_train._models_built_on(torch.device("meta")):
        built = train_module.Transformer(cfg, ep_size=1)
    assert {p.device.type for p in built.parameters()} == {"meta"}
    assert train_module.Transformer is gpu_train.Transformer
