"""Every tile the launchers accept compiles for an H100/H200 (sm_90) with Triton's bundled ptxas, on a machine
without a GPU: catches what the interpreter cannot (types of loop-carried values, dot shapes, shared memory).
The compiler runs in a subprocess, since the other kernel tests put Triton in interpreter mode.

Every runtime argument's type is declared by name: pointers and floats explicitly, ints as lowercase names (strides)
or SCALAR_INTS. An argument with no declared type is an error, not a guess: a pointer compiled as an int scalar
fails inside the kernel (`'dtype' object has no attribute 'element_ty'`) and says nothing about the kernel."""

import os
import subprocess
import sys

import pytest
import triton

ATTENTION_TILES = [(64, 128), (128, 64), (32, 128), (16, 256)]  # (block_size, head dim) accepted for backward
SCALAR_INTS = {"T", "HQ", "HKV", "G", "NB", "HEAD_DIM", "TOP_K", "W", "NUM_SLOTS"}
# (tiles x precisions x fwd/dq/dkdv) + select + decode with and without positions
NUM_COMPILES = len(ATTENTION_TILES) * 2 * 3 + 1 + 2


def compile_sm90(fn, types: dict[str, str], floats: set[str], consts: dict, num_warps: int = 4):
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    def arg_type(n: str) -> str:
        if n in consts:
            return "constexpr"
        if n in types:
            return types[n]
        if n in floats:
            return "fp32"
        assert n in SCALAR_INTS or n.islower(), f"{fn.__name__}: argument {n} has no declared type"
        return "i32"

    sig = {n: arg_type(n) for n in fn.arg_names}
    kernel = triton.compile(
        ASTSource(fn, sig, consts),
        target=GPUTarget("cuda", 90, 32),
        options=dict(num_warps=num_warps, num_stages=2),
    )
    assert kernel.metadata.shared <= 227 * 1024, (fn.__name__, consts)  # H100/H200 shared memory per block
    print(f"{fn.__name__} {consts}: {kernel.metadata.shared} B shared")


def compile_all() -> int:
    """Compiles every kernel at every tile the launchers accept; returns the number of compilations."""
    from kernels.lasa import attention, backward, decode, select

    num_compiled = 0
    for dtype, prec in (("bf16", "tf32"), ("fp32", "ieee")):
        io = {n: f"*{dtype}" for n in ("Q", "K", "V", "OUT", "DO", "DQ")}
        io |= {n: "*fp32" for n in ("DECAY", "LSE", "DELTA", "DLAM", "DK", "DV")}
        io |= {n: "*i32" for n in ("LENS", "IDX", "CNT", "INV", "INV_CNT")}
        for block, head_dim in ATTENTION_TILES:
            attention.check_tiles(block, head_dim, backward=True)
            consts = dict(BLOCK=block, BLOCK_D=head_dim, PREC=prec)
            warps = 4 if block * head_dim <= 4096 else 8
            for fn in (attention._fwd_kernel, backward._bwd_dq_kernel, backward._bwd_dkdv_kernel):
                compile_sm90(fn, io, {"scale2"}, consts, warps)
                num_compiled += 1
    compile_sm90(
        select._select_kernel,
        {"QPREV": "*fp32", "KBAR": "*fp32", "DECAYBAR": "*fp32", "IDX": "*i32", "CNT": "*i32"},
        {"scale"},
        dict(BLOCK_NB=1024, BLOCK_D=4),
    )
    num_compiled += 1
    io = {
        "Q": "*bf16",
        "K": "*bf16",
        "V": "*bf16",
        "OUT": "*bf16",
        "POS": "*i64",
        "DECAY": "*fp32",
        "SEL": "*i8",
        "LIST": "*i32",
        "LCNT": "*i32",
        "TPOS": "*i64",
    }
    for has_pos in (True, False):
        compile_sm90(decode._decode_kernel, io, {"scale2"}, dict(HAS_POS=has_pos, BLOCK=64, BLOCK_D=128))
        num_compiled += 1
    return num_compiled


@pytest.mark.slow
def test_kernels_compile_for_sm90(tmp_path):
    # The pinned Triton bundles ptxas; without it nothing is compiled, so that is a failure, not a skip.
    ptxas = os.path.join(os.path.dirname(triton.__file__), "backends", "nvidia", "bin", "ptxas")
    assert os.path.exists(ptxas), f"Triton's bundled ptxas is missing at {ptxas}: reinstall the pinned triton"
    # A fresh cache: every kernel is compiled by this run, none is taken from an earlier one.
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env |= {"TRITON_DEFAULT_FP_FUSION": "1", "TRITON_CACHE_DIR": str(tmp_path / "triton_cache")}
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    res = subprocess.run(
        [sys.executable, "-m", "tests.kernels.test_compile_sm90"],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=1800,  # about 2 minutes on two idle cores; much longer on a loaded machine
    )
    assert res.returncode == 0, res.stderr[-3000:]
    assert f"compiled {NUM_COMPILES} kernels for sm_90" in res.stdout, res.stdout[-3000:]


if __name__ == "__main__":
    print(f"compiled {compile_all()} kernels for sm_90")
