"""Training the tiny MoE with LASA attention: the reference (PyTorch) and the Triton kernels (in Triton's
interpreter on the CPU) give the same losses step by step and the same final weights.

The sequence (64 tokens in blocks of 16; the sink, a one-block window and the top-1 of the rest) is long
enough that the selection prunes: the last query block attends to 3 of its 4 key blocks. Shapes are
tiny because the interpreter runs every Triton program in NumPy (about 2 s per layer and step here). Both runs go through
model.train.train (DeepSpeed engine, AdamW, the WSD schedule) from the same seed on the same data, so any
difference comes from the attention implementation. TRITON_INTERPRET must be set before the kernels are
defined, which this process cannot promise (another test may have imported them), so both runs happen in
one fresh process.
"""

import dataclasses
import json
import math
import os
import subprocess
import sys
import textwrap
from pathlib import Path

from safetensors.torch import load_file

from model.config import RunConfig
from model.train import EXPORT_FILE
from tests.kernels._util import rel_err
from tests.model.conftest import tiny_run

REPO = Path(__file__).resolve().parents[2]
STEPS = 3
# fp32 throughout: the kernels agree with the reference to ~1e-6 per call (tests/kernels). Measured over
# these 3 steps: losses 2.2e-7 relative; weights 7.6e-5 (norm of the difference / norm, worst tensor:
# layer 0's wv), because AdamW's first updates are about lr * sign(grad) and so amplify rounding in
# near-zero gradients. A wrong gradient moves whole tensors by ~lr per step, 1e-1 relative or more.
LOSS_TOLERANCE = 1e-5
WEIGHT_TOLERANCE = 1e-3


def lasa_run(kernel: str) -> RunConfig:
    """The tiny recipe with LASA attention run by the given kernel ("reference" or "triton")."""
    base = tiny_run(
        seq_len=64, micro_batch_size=1, max_steps=STEPS, warmup_steps=1, decay_steps=1, checkpoint_every=0
    )
    attention = dataclasses.replace(
        base.model.attention, impl="lasa", block_size=16, top_k=1, window_blocks=1, lasa_kernel=kernel
    )
    return RunConfig(dataclasses.replace(base.model, attention=attention), base.train)


SCRIPT = textwrap.dedent("""
    import json, sys
    from pathlib import Path
    from model.data import MemmapTokens
    from model.train import train
    from tests.model.test_lasa_training import lasa_run

    data, out = Path(sys.argv[1]), Path(sys.argv[2])
    losses = {}
    for kernel in ("reference", "triton"):
        run = lasa_run(kernel)
        history = train(run, MemmapTokens(data, run.train.seq_len), out / kernel)
        losses[kernel] = [h["lm_loss"] for h in history]
        # The reference run must not have touched the kernels; the Triton run must have interpreted them.
        assert ("kernels.lasa.attention" in sys.modules) == (kernel == "triton"), kernel
    from triton.runtime.interpreter import InterpretedFunction
    from kernels.lasa.attention import _fwd_kernel
    assert isinstance(_fwd_kernel, InterpretedFunction)
    print(json.dumps(losses))
""")


def test_reference_and_triton_lasa_train_alike(markov_path, tmp_path):
    run = lasa_run("reference")
    att = run.model.attention
    assert run.train.seq_len // att.block_size > 1 + att.window_blocks + att.top_k, (
        "selection would not prune"
    )

    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "MASTER_PORT")}
    env.pop("APERTUS_LASA_IMPL", None)  # would override the kernel chosen by the config
    env.update(TRITON_INTERPRET="1", OMP_NUM_THREADS="1", PYTHONPATH=str(REPO))
    res = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(markov_path), str(tmp_path)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert res.returncode == 0, res.stderr[-4000:]
    losses = json.loads(res.stdout.strip().splitlines()[-1])

    ref, tri = losses["reference"], losses["triton"]
    assert len(ref) == len(tri) == STEPS
    assert ref[-1] < ref[0] - 0.1, ref  # it trains (from 9.0 = log 8192)
    for step, (r, t) in enumerate(zip(ref, tri, strict=True)):
        assert abs(t - r) <= LOSS_TOLERANCE * abs(r), (step, r, t)

    ref_w = load_file(tmp_path / "reference" / EXPORT_FILE)
    tri_w = load_file(tmp_path / "triton" / EXPORT_FILE)
    assert ref_w.keys() == tri_w.keys()
    errors = {name: rel_err(tri_w[name], ref_w[name]) for name in ref_w}
    worst = max(errors, key=errors.get)
    print(f"losses {ref} vs {tri}; largest weight difference {errors[worst]:.2e} ({worst})")
    assert errors[worst] < WEIGHT_TOLERANCE, worst
    # The locality decay moves only through LASA's decay gradient: compare how far it moved.
    init = math.log(math.expm1(run.model.attention.decay_init))
    decay = [name for name in ref_w if name.endswith("decay_param")]
    assert len(decay) == run.model.n_layers
    for name in decay:
        moved_ref, moved_tri = ref_w[name] - init, tri_w[name] - init
        assert moved_ref.abs().min() > 0, name
        assert rel_err(moved_tri, moved_ref) < WEIGHT_TOLERANCE, name
