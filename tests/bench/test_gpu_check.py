"""bench/gpu_check.sh without a GPU: it parses, and it refuses with a message instead of half-running."""

import shutil
import subprocess

import pytest

from tests.bench._load import BENCH

SCRIPT = BENCH / "gpu_check.sh"


def test_script_parses():
    subprocess.run(["bash", "-n", str(SCRIPT)], check=True)


@pytest.mark.skipif(shutil.which("nvidia-smi") is not None, reason="a GPU host runs the real check")
def test_without_a_gpu_it_exits_2_and_says_why():
    proc = subprocess.run(["bash", str(SCRIPT)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert "no NVIDIA GPU visible" in proc.stderr
