"""Every tile the launchers accept compiles for an H100/H200 (sm_90) with Triton's bundled ptxas, on a machine
without a GPU: catches what the interpreter cannot (types of loop-carried values, dot shapes, shared memory).
The compiler runs in a subprocess, since the other kernel tests put Triton in interpreter mode."""

import os
import subprocess
import sys

import pytest
import triton

ATTENTION_TILES = [(64, 128), (128, 64), (32, 128), (16, 256)]  # (block_size, head dim) accepted for backward


def compile_sm90(fn, types: dict[str, str], floats: set[str], consts: dict, num_warps: int = 4):
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    sig = {
        n: "constexpr" if n in consts else types.get(n, "fp32" if n in floats else "i32")
        for n in fn.arg_names
    }
    kernel = triton.compile(
        ASTSource(fn, sig, consts),
        target=GPUTarget("cuda", 90, 32),
        options=dict(num_warps=num_warps, num_stages=2),
    )
    assert kernel.metadata.shared <= 227 * 1024, (fn.__name__, consts)  # H100/H200 shared memory per block
    print(f"{fn.__name__} {consts}: {kernel.metadata.shared} B shared")


def compile_all():
    from kernels.lasa import attention, backward, decode, select

    for dtype, prec in (("bf16", "tf32"), ("fp32", "ieee")):
        io = {n: f"*{dtype}" for n in ("Q", "K", "V", "O", "DO", "DQ")}
        io |= {n: "*fp32" for n in ("DECAY", "LSE", "DELTA", "DLAM", "DK", "DV")}
        io |= {n: "*i32" for n in ("LENS", "IDX", "CNT", "INV", "INV_CNT")}
        for block, head_dim in ATTENTION_TILES:
            attention.check_tiles(block, head_dim, backward=True)
            consts = dict(BLOCK=block, BLOCK_D=head_dim, PREC=prec)
            warps = 4 if block * head_dim <= 4096 else 8
            for fn in (attention._fwd_kernel, backward._bwd_dq_kernel, backward._bwd_dkdv_kernel):
                compile_sm90(fn, io, {"scale2"}, consts, warps)
    compile_sm90(
        select._select_kernel,
        {"QPREV": "*fp32", "KBAR": "*fp32", "DECAYBAR": "*fp32", "IDX": "*i32", "CNT": "*i32"},
        {"scale"},
        dict(BLOCK_NB=1024, BLOCK_D=4),
    )
    io = {
        "Q": "*bf16",
        "K": "*bf16",
        "V": "*bf16",
        "O": "*bf16",
        "POS": "*i64",
        "DECAY": "*fp32",
        "SEL": "*i8",
        "LIST": "*i32",
        "LCNT": "*i32",
        "TPOS": "*i64",
    }
    for has_pos in (True, False):
        compile_sm90(decode._decode_kernel, io, {"scale2"}, dict(HAS_POS=has_pos, BLOCK=64, BLOCK_D=128))


@pytest.mark.slow
def test_kernels_compile_for_sm90():
    ptxas = os.path.join(os.path.dirname(triton.__file__), "backends", "nvidia", "bin", "ptxas")
    if not os.path.exists(ptxas):
        pytest.skip("Triton's bundled ptxas is missing")
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"} | {"TRITON_DEFAULT_FP_FUSION": "1"}
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    res = subprocess.run(
        [sys.executable, "-m", "tests.kernels.test_compile_sm90"],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert res.returncode == 0, res.stderr[-3000:]


if __name__ == "__main__":
    compile_all()
