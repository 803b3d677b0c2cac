"""LASA benchmark and GPU correctness check.

    python bench/lasa.py            # CPU: the reference against dense attention at T = 4096 (time, peak memory)
    python bench/lasa.py --gpu      # NVIDIA GPU: bf16 correctness against the reference, then the table:
                                    # fwd and fwd+bwd vs SDPA (flash) and FlexAttention at 4k/16k/64k, D = 128
Both modes print the decode KV-cache memory at 32k/128k context, batch 1 and 8, against a dense cache
(computed on the meta device: exact byte counts, nothing allocated).

Shape legend: B batch, T tokens, Hq query heads, Hkv key/value heads, D head dim, BS block size, NB blocks.
"""

import argparse
import json
import math
import os
import resource
import subprocess
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from kernels.lasa.cache import LasaKVCache  # noqa: E402
from kernels.lasa.reference import (  # noqa: E402
    lasa_attention_reference,
    select_blocks_reference,
    selection_mask,
)


def rel_err(x, ref):
    return ((x.double() - ref.double()).norm() / ref.double().norm()).item()


def inputs(B, T, Hq, Hkv, D, dtype, device, seed=0, grad=False):
    g = torch.Generator(device="cpu").manual_seed(seed)
    q, k, v = (torch.randn(B, T, h, D, generator=g).to(device=device, dtype=dtype) for h in (Hq, Hkv, Hkv))
    decay = torch.nn.functional.softplus(torch.randn(Hq, generator=g) * 2 - 4).to(device)
    for t in (q, k, v, decay) if grad else ():
        t.requires_grad_(True)
    return q, k, v, decay


def dense_masked(q, k, v, decay):
    """Causal softmax attention with the decay prior over the explicit T x T matrix (what LASA avoids)."""
    T, G = q.shape[1], q.shape[2] // k.shape[2]
    i = torch.arange(T, device=q.device)
    s = torch.einsum("bihd,bjhd->bhij", q, k.repeat_interleave(G, 2)) / math.sqrt(q.shape[-1])
    s = s - decay[None, :, None, None] * (i[:, None] - i[None, :])
    s = s.masked_fill(i[None, :] > i[:, None], float("-inf"))
    return torch.einsum("bhij,bjhd->bihd", torch.softmax(s, -1), v.repeat_interleave(G, 2))


def sdpa(q, k, v, decay):
    G = q.shape[2] // k.shape[2]
    return torch.nn.functional.scaled_dot_product_attention(
        q.transpose(1, 2),
        k.repeat_interleave(G, 2).transpose(1, 2),
        v.repeat_interleave(G, 2).transpose(1, 2),
        is_causal=True,
    ).transpose(1, 2)


# ---------------------------------------------------------------- CPU: one measurement per subprocess


def cpu_one(name, mode, T, B, Hq, Hkv, D, bs, top_k):
    """Time and peak RSS growth of one implementation, in this (fresh) process."""
    import psutil

    torch.set_num_threads(int(os.environ.get("BENCH_THREADS", "2")))
    q, k, v, decay = inputs(B, T, Hq, Hkv, D, torch.float32, "cpu", grad=mode == "fwd+bwd")
    fn = {
        "lasa reference": lambda: lasa_attention_reference(q, k, v, decay, block_size=bs, top_k=top_k),
        "dense sdpa (causal)": lambda: sdpa(q, k, v, decay),
        "dense masked (T x T)": lambda: dense_masked(q, k, v, decay),
    }[name]
    do = torch.randn(B, T, Hq, D)
    base = psutil.Process().memory_info().rss

    def run():
        if mode == "fwd":
            with torch.no_grad():
                fn()
        else:
            fn().backward(do)

    run()  # warm-up; the peak is that of one call either way
    secs = float("inf")
    for _ in range(2):  # the best of two: the machine is shared
        t0 = time.perf_counter()
        run()
        secs = min(secs, time.perf_counter() - t0)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print(json.dumps({"secs": secs, "peak_mib": max(0, peak - base) / 2**20}))


def cpu_table(args):
    T, B, Hq, Hkv, D, bs, top_k = 4096, 1, 8, 2, 128, 64, 4
    print(
        f"CPU, float32, T={T} B={B} Hq={Hq} Hkv={Hkv} D={D} block_size={bs} top_k={top_k} window_blocks=1 "
        f"({1 + 1 + top_k} of {T // bs} blocks per query block at most); "
        f"{os.environ.get('BENCH_THREADS', '2')} threads; time: best of 2 calls after a warm-up; peak = RSS growth over the inputs"
    )
    print(f"| {'implementation':22} | {'mode':8} | {'time (s)':>9} | {'peak memory (MiB)':>18} |")
    print(f"|{'-' * 24}|{'-' * 10}|{'-' * 11}|{'-' * 20}|")
    for mode in ("fwd", "fwd+bwd"):
        for name in ("lasa reference", "dense sdpa (causal)", "dense masked (T x T)"):
            cmd = [sys.executable, __file__, "--cpu-one", name, mode]
            res = json.loads(
                subprocess.run(cmd, check=True, capture_output=True, text=True)
                .stdout.strip()
                .splitlines()[-1]
            )
            print(f"| {name:22} | {mode:8} | {res['secs']:9.2f} | {res['peak_mib']:18.0f} |", flush=True)


# ---------------------------------------------------------------- decode memory (meta device)


def decode_memory_table():
    Hq, Hkv, D, bs, R = 32, 8, 128, 64, 4096
    print(
        f"\nDecode KV cache, bf16, Hkv={Hkv} D={D} block_size={bs}, pruned heads keep the sink block + a "
        f"{R}-token ring (+ pooled keys of every block, fp32); the share of pruned heads is set by the "
        "learned decays (pruned_heads), so it is a column here"
    )
    print(
        f"| {'context':>7} | {'batch':>5} | {'dense (GiB)':>11} | "
        + " | ".join(f"LASA {p}/{Hkv} pruned" for p in (0, 4, 6, 8))
        + " |"
    )
    print("|---------|-------|-------------|" + "------------------|" * 4)
    for ctx in (32768, 131072):
        for B in (1, 8):
            dense = 2 * B * ctx * Hkv * D * 2
            cells = []
            for p in (0, 4, 6, 8):
                pruned = torch.arange(Hkv) < p
                cache = LasaKVCache(B, ctx, Hq, pruned, D, block_size=bs, rolling_tokens=R, device="meta")
                n = cache.nbytes()
                cells.append(f"{n / 2**30:7.2f} GiB {dense / n:4.1f}x")
            print(
                f"| {ctx:7d} | {B:5d} | {dense / 2**30:11.2f} | "
                + " | ".join(f"{c:>16}" for c in cells)
                + " |"
            )


# ---------------------------------------------------------------- GPU

DEVICE, DTYPE = "cuda", torch.bfloat16  # module constants, so a CPU dry run can swap them


def gpu_correctness():
    from kernels.lasa.attention import lasa_attention_triton
    from kernels.lasa.decode import lasa_decode

    ok = True
    for B, T, Hq, Hkv, bs, top_k in ((2, 1000, 8, 2, 64, 4), (1, 777, 4, 4, 32, 3), (3, 513, 8, 8, 16, 2)):
        q, k, v, decay = inputs(B, T, Hq, Hkv, 128 if bs <= 64 else 64, DTYPE, DEVICE, grad=True)
        lens = torch.tensor([T, T // 2 + 1, T // 3][:B], device=DEVICE)
        kw = dict(block_size=bs, top_k=top_k, window_blocks=1, seq_lens=lens)
        do = torch.randn_like(q)
        out = lasa_attention_triton(q, k, v, decay, **kw)
        grads = torch.autograd.grad(out, (q, k, v, decay), do)
        f32 = [t.detach().float().requires_grad_(True) for t in (q, k, v)]
        ref = lasa_attention_reference(*f32, decay, **kw)
        ref_grads = torch.autograd.grad(ref, (*f32, decay), do.float())
        errs = [rel_err(out, ref)] + [rel_err(a, b) for a, b in zip(grads, ref_grads, strict=True)]
        good = max(errs) < 2e-2  # bf16 keeps 8 bits: 2^-8 = 4e-3 per rounding of q, k, v, P and dS
        ok &= good
        print(
            f"{DTYPE} B={B} T={T} Hq={Hq} Hkv={Hkv} bs={bs} top_k={top_k}: rel err out/dq/dk/dv/ddecay "
            + " ".join(f"{e:.1e}" for e in errs)
            + ("  ok" if good else "  FAIL")
        )
    q, k, v, decay = inputs(2, 600, 8, 2, 128, DTYPE, DEVICE)
    D = q.shape[-1]
    step = [torch.randn(2, h, D, device=DEVICE, dtype=DTYPE) for h in (8, 2, 2)]
    outs = []
    pruned = torch.tensor([True, False])
    for impl in ("reference", "triton"):
        cache = LasaKVCache(
            2, 700, 8, pruned, D, block_size=64, rolling_tokens=256, dtype=DTYPE, device=DEVICE
        )
        cache.prefill(q, k, v, torch.tensor([600, 333], device=DEVICE))
        outs.append(lasa_decode(*step, decay, cache, impl=impl))
    e = rel_err(outs[1], outs[0])
    ok &= e < 1e-2
    print(f"{DTYPE} decode step, triton vs reference: rel err {e:.1e}" + ("  ok" if e < 1e-2 else "  FAIL"))
    return ok


def gpu_table(args):
    B, Hq, Hkv, D, bs = 1, 16, 4, 128, 64
    print(
        f"\n{DTYPE}, B={B} Hq={Hq} Hkv={Hkv} D={D} block_size={bs}; LASA top_k covers 1/8 of the blocks "
        "(sink + window + top_k = NB/8; LASA times include its block selection, flex gets the mask for free); "
        "ms, median of triton.testing.do_bench"
    )
    print("| T | impl | fwd (ms) | fwd+bwd (ms) | fwd speedup vs flash | fwd+bwd speedup vs flash |")
    print("|---|------|----------|--------------|----------------------|--------------------------|")
    for T in args.lengths:
        gpu_rows(T, B, Hq, Hkv, D, bs)
        torch.cuda.empty_cache()


def gpu_rows(T, B, Hq, Hkv, D, bs):
    from triton.testing import do_bench

    from kernels.lasa.attention import lasa_attention_triton

    top_k = max(1, T // bs // 8 - 2)
    q, k, v, decay = inputs(B, T, Hq, Hkv, D, DTYPE, DEVICE, grad=True)
    do = torch.randn_like(q)
    G = Hq // Hkv
    # Dense baselines get K and V already expanded to Hq heads, outside the timed region.
    ke, ve = (x.detach().repeat_interleave(G, 2).transpose(1, 2).requires_grad_(True) for x in (k, v))
    qt = q.detach().transpose(1, 2).requires_grad_(True)
    dot = do.transpose(1, 2)

    def flash():
        with torch.nn.attention.sdpa_kernel(torch.nn.attention.SDPBackend.FLASH_ATTENTION):
            return torch.nn.functional.scaled_dot_product_attention(qt, ke, ve, is_causal=True)

    def lasa():
        return lasa_attention_triton(q, k, v, decay, block_size=bs, top_k=top_k)

    runs = {"sdpa flash (dense)": (flash, dot), "lasa triton": (lasa, do)}
    try:
        runs["flex (lasa mask)"] = (flex_runner(q, k, v, decay, bs, top_k), dot)
    except Exception as e:  # noqa: BLE001 - a missing baseline is reported, not fatal
        print(f"| {T} | flex (lasa mask) | n/a: {type(e).__name__}: {str(e)[:80]} | | | |")
    base = None
    for name, (fn, grad_out) in runs.items():
        try:
            with torch.no_grad():
                fwd = do_bench(fn, warmup=5, rep=50)
            both = do_bench(lambda fn=fn, g=grad_out: fn().backward(g), warmup=5, rep=50)
        except Exception as e:  # noqa: BLE001
            print(f"| {T} | {name} | n/a: {type(e).__name__}: {str(e)[:80]} | | | |")
            continue
        base = (fwd, both) if base is None else base
        print(
            f"| {T} | {name} | {fwd:.2f} | {both:.2f} | {base[0] / fwd:.1f}x | {base[1] / both:.1f}x |",
            flush=True,
        )


def flex_runner(q, k, v, decay, bs, top_k, grad=True):
    """FlexAttention over the same selected blocks, with the decay prior as a score_mod."""
    from torch.nn.attention.flex_attention import BlockMask, flex_attention

    B, T, Hq, D = q.shape
    G = Hq // k.shape[2]
    idx, cnt = select_blocks_reference(q, k, decay, block_size=bs, top_k=top_k)
    NB = idx.shape[2]
    kv_indices = torch.nn.functional.pad(idx.clamp(min=0), (0, NB - idx.shape[-1])).repeat_interleave(G, 1)
    sel = selection_mask(idx, NB)  # mask_mod must agree with the block lists: kernels may read either

    def mask_mod(b, h, qi, kj):
        return (kj <= qi) & sel[b, h // G, qi // bs, kj // bs]

    block_mask = BlockMask.from_kv_blocks(
        cnt.repeat_interleave(G, 1), kv_indices.int(), BLOCK_SIZE=bs, mask_mod=mask_mod, seq_lengths=(T, T)
    )
    dec = decay.detach()

    def score_mod(score, b, h, qi, kj):
        return score - dec[h] * (qi - kj)

    compiled = torch.compile(flex_attention)
    qt, kt, vt = (x.detach().transpose(1, 2).requires_grad_(grad) for x in (q, k, v))
    return lambda: compiled(qt, kt, vt, score_mod=score_mod, block_mask=block_mask, enable_gqa=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--gpu", action="store_true", help="check correctness in bf16 and time on an NVIDIA GPU")
    ap.add_argument("--lengths", type=int, nargs="+", default=[4096, 16384, 65536])
    ap.add_argument("--cpu-one", nargs=2, metavar=("IMPL", "MODE"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.cpu_one:
        cpu_one(*args.cpu_one, T=4096, B=1, Hq=8, Hkv=2, D=128, bs=64, top_k=4)
        return
    if args.gpu:
        if not torch.cuda.is_available():
            sys.exit("bench/lasa.py --gpu: no CUDA device")
        ok = gpu_correctness()
        gpu_table(args)
        decode_memory_table()
        sys.exit(0 if ok else 1)
    cpu_table(args)
    decode_memory_table()


if __name__ == "__main__":
    main()
