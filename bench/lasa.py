"""LASA benchmark and GPU check (issue 17, items 1.1 to 1.3).

    python bench/lasa.py                  # CPU: the reference against dense attention at T = 4096
    python bench/lasa.py --gpu [--budget-s 140] [--lengths 16384 65536] [--out result.json]
    python bench/lasa.py --smoke          # the --gpu code path on the CPU with tiny shapes, fp32, the Triton
                                          # kernels in Triton's interpreter (TRITON_INTERPRET=1, set here)

--gpu runs, in this order, skipping with a message what no longer fits the budget:
  1. correctness at the priority shapes: the Triton kernels in bf16 against the fp32 reference, forward
     and every gradient (dq, dk, dv, ddecay), T = 1000 and 4096, Hq 32 / Hkv 8 (GQA 4), D 128, blocks of
     64, sink + 2 local blocks + top-16; norm-wise relative error as tests/kernels measures it, failing
     past 2e-2 (bf16), 1e-2 (fp16); and one decode step, Triton against the reference;
  2. timing: forward and forward+backward of LASA (its block selection included) against SDPA (flash
     backend, causal, K and V expanded to Hq heads outside the timed region), Hq 32 / Hkv 8, D 128, at
     each of --lengths with B * T fixed (65,536 tokens), the attended budget fixed (sink block + 2 local
     blocks + top-16 blocks of 64: at most 1,216 keys); at each length LASA's forward is first checked
     against the fp32 reference (forward only: the reference's backward at 64k would hold tens of GB);
  3. decode at 32k context, batch 1 and 8: KV-cache bytes and tokens/s of LASA's cache (0, half and all
     KV heads pruned to the sink + a 4096-token ring) against a dense bf16 cache attended with SDPA;
  2b. FlexAttention over the same block mask at the same lengths (after the decode part: compiling it
     can take most of a minute per length);
  4. the wider grid, time allowing: the priority shape at T = 257 and 16384, GQA 1 and 8, head dim 64,
     top-k 1, fp16. Last, so that it never pushes out the timing.
It exits 1 when a correctness check fails. --out writes every row as JSON.

The CPU mode (no flag) prints the reference, SDPA and the explicit T x T evaluation at T = 4096 (time
and peak memory, each in a fresh process) and the decode KV-cache memory (meta device, nothing
allocated).

Shape legend: B batch, T tokens, Hq query heads, Hkv key/value heads, D head dim, BS block size.
"""

import os
import sys

if "--smoke" in sys.argv:  # before anything imports triton: the kernels then run in the interpreter
    os.environ.setdefault("TRITON_INTERPRET", "1")

import argparse  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import resource  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import time  # noqa: E402
from dataclasses import asdict, dataclass, replace  # noqa: E402

import torch  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from kernels.lasa.api import lasa_attention, resolve_impl  # noqa: E402
from kernels.lasa.cache import LasaKVCache  # noqa: E402
from kernels.lasa.reference import (  # noqa: E402
    lasa_attention_reference,
    select_blocks_reference,
    selection_mask,
)

TOLERANCE = {torch.bfloat16: 2e-2, torch.float16: 1e-2, torch.float32: 1e-4}


@dataclass(frozen=True)
class Shape:
    """One LASA problem: batch, length, heads, head dim, blocks and the selection, the operand dtype."""

    B: int
    T: int
    Hq: int
    Hkv: int
    D: int
    bs: int
    top_k: int
    window: int
    dtype: torch.dtype

    def label(self) -> str:
        return (
            f"{str(self.dtype).removeprefix('torch.')} B={self.B} T={self.T} Hq={self.Hq} Hkv={self.Hkv} "
            f"D={self.D} bs={self.bs} top_k={self.top_k} window={self.window}"
        )


@dataclass(frozen=True)
class Profile:
    """Everything the --gpu run measures; --smoke is the same run with tiny shapes on the CPU."""

    device: str
    priority: tuple[Shape, ...]
    wider: tuple[Shape, ...]
    timing: Shape  # B and T are set per length: B = tokens // T
    tokens: int
    decode: Shape  # T = the context
    decode_batches: tuple[int, ...]
    rolling_tokens: int
    decode_steps: int
    need_s: float  # the least time left to start one more item


def gpu_profile() -> Profile:
    bf16 = torch.bfloat16
    base = Shape(B=2, T=1000, Hq=32, Hkv=8, D=128, bs=64, top_k=16, window=2, dtype=bf16)
    return Profile(
        device="cuda",
        priority=(base, replace(base, B=1, T=4096)),
        wider=(
            replace(base, B=3, T=257),
            replace(base, B=1, T=16384),
            replace(base, Hq=8, Hkv=8),
            replace(base, Hq=32, Hkv=4),
            replace(base, D=64),
            replace(base, top_k=1),
            replace(base, dtype=torch.float16),
        ),
        timing=replace(base, B=0, T=0),
        tokens=65536,
        decode=replace(base, B=0, T=32768),
        decode_batches=(1, 8),
        rolling_tokens=4096,
        decode_steps=50,
        need_s=10.0,
    )


def smoke_profile() -> Profile:
    f32 = torch.float32
    base = Shape(B=2, T=50, Hq=4, Hkv=1, D=16, bs=16, top_k=1, window=1, dtype=f32)
    return Profile(
        device="cpu",
        priority=(base, replace(base, B=1, T=81)),
        wider=(replace(base, T=33, Hq=2, Hkv=2), replace(base, dtype=torch.float16)),
        timing=replace(base, B=0, T=0),
        tokens=128,
        decode=replace(base, B=0, T=96, Hkv=2),
        decode_batches=(1, 2),
        rolling_tokens=32,
        decode_steps=3,
        need_s=0.0,
    )


def rel_err(x, ref):
    """norm(x - ref) / norm(ref) in float64, as tests/kernels/_util.py measures it."""
    x, ref = x.double(), ref.double()
    return ((x - ref).norm() / ref.norm().clamp(min=1e-30)).item()


def inputs(B, T, Hq, Hkv, D, dtype, device, seed=0, grad=False):
    # Drawn on the device: the decode inputs at 32k context, batch 8, are a billion numbers.
    g = torch.Generator(device=device).manual_seed(seed)
    q, k, v = (torch.randn(B, T, h, D, generator=g, device=device).to(dtype) for h in (Hq, Hkv, Hkv))
    decay = torch.nn.functional.softplus(torch.randn(Hq, generator=g, device=device) * 2 - 4)
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


class Budget:
    """Seconds left of --budget-s; a part that no longer fits is skipped with a message and a row."""

    def __init__(self, seconds: float | None, rows: list):
        self.end = None if seconds is None else time.monotonic() + seconds
        self.rows = rows

    def left(self) -> float:
        return math.inf if self.end is None else self.end - time.monotonic()

    def fits(self, what: str, need: float) -> bool:
        if self.left() >= need:
            return True
        print(f"skipped: {what} ({self.left():.0f} s left of the budget)", flush=True)
        self.rows.append({"part": "skipped", "what": what})
        return False


def bench_ms(fn, device: str) -> float:
    """Median milliseconds of fn: triton.testing.do_bench on a GPU, 1 warm-up + 3 timed calls on the CPU."""
    if device == "cuda":
        from triton.testing import do_bench

        try:
            return do_bench(fn, warmup=5, rep=50, return_mode="median")
        except TypeError:  # a Triton without return_mode: its own default statistic
            return do_bench(fn, warmup=5, rep=50)
    fn()
    times = []
    for _ in range(3):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1e3


# ---------------------------------------------------------------- 1 and 4: correctness


def check_shape(s: Shape, device: str, rows: list) -> bool:
    """Triton in s.dtype against the fp32 reference: output and every gradient, ragged rows included."""
    from kernels.lasa.attention import lasa_attention_triton

    q, k, v, decay = inputs(s.B, s.T, s.Hq, s.Hkv, s.D, s.dtype, device, grad=True)
    lens = torch.tensor([s.T, s.T // 2 + 1, s.T // 3][: s.B], device=device)
    kw = dict(block_size=s.bs, top_k=s.top_k, window_blocks=s.window, seq_lens=lens)
    do = torch.randn_like(q)
    out = lasa_attention_triton(q, k, v, decay, **kw)
    grads = torch.autograd.grad(out, (q, k, v, decay), do)
    f32 = [t.detach().float().requires_grad_(True) for t in (q, k, v)]
    ref = lasa_attention_reference(*f32, decay, **kw)
    ref_grads = torch.autograd.grad(ref, (*f32, decay), do.float())
    errs = dict(zip(("out", "dq", "dk", "dv", "ddecay"), [rel_err(out, ref)] + [
        rel_err(a, b) for a, b in zip(grads, ref_grads, strict=True)
    ], strict=True))  # fmt: skip
    tol = TOLERANCE[s.dtype]
    ok = max(errs.values()) < tol
    print(
        f"{s.label()}: rel err " + " ".join(f"{n} {e:.1e}" for n, e in errs.items()) + f"  (< {tol:g})"
        f"  {'ok' if ok else 'FAIL'}",
        flush=True,
    )
    rows.append({"part": "correctness", **_shape_dict(s), "errors": errs, "tolerance": tol, "ok": ok})
    return ok


def check_decode(s: Shape, device: str, rows: list) -> bool:
    """One decode step over a prefilled cache (one pruned and one full KV head): Triton against reference."""
    from kernels.lasa.decode import lasa_decode

    B, T, Hq, Hkv = 2, 600 if device == "cuda" else 70, 8, 2
    q, k, v, decay = inputs(B, T, Hq, Hkv, s.D, s.dtype, device)
    step = [torch.randn(B, h, s.D, device=device, dtype=s.dtype) for h in (Hq, Hkv, Hkv)]
    outs = []
    for impl in ("reference", "triton"):
        cache = LasaKVCache(
            B, T + 100, Hq, torch.tensor([True, False]), s.D, block_size=s.bs, top_k=s.top_k,
            window_blocks=s.window, rolling_tokens=4 * s.bs, dtype=s.dtype, device=device,
        )  # fmt: skip
        cache.prefill(q, k, v, torch.tensor([T, T // 2 + 1], device=device))
        outs.append(lasa_decode(*step, decay, cache, impl=impl))
    err, tol = rel_err(outs[1], outs[0]), max(1e-2, TOLERANCE[s.dtype])
    ok = err < tol
    print(f"{str(s.dtype).removeprefix('torch.')} decode step, triton vs reference: rel err {err:.1e}  "
          f"{'ok' if ok else 'FAIL'}", flush=True)  # fmt: skip
    rows.append({"part": "decode-correctness", "error": err, "tolerance": tol, "ok": ok})
    return ok


def _shape_dict(s: Shape) -> dict:
    return {**asdict(s), "dtype": str(s.dtype).removeprefix("torch.")}


# ---------------------------------------------------------------- 2: timing against SDPA and FlexAttention


def timing(prof: Profile, lengths: list[int], budget: Budget, rows: list, *, flex: bool) -> bool:
    """Part 2 (flex=False: SDPA flash and LASA, LASA's forward checked first) or its FlexAttention rows
    (flex=True, after the decode part: compiling it can take most of a minute per length)."""
    s0 = prof.timing
    if not flex:
        print(
            f"\n{s0.label().split(' B=')[0]} Hq={s0.Hq} Hkv={s0.Hkv} D={s0.D}, B * T = {prof.tokens}; LASA: "
            f"blocks of {s0.bs}, sink + {s0.window} local + top-{s0.top_k} (at most "
            f"{(1 + s0.window + s0.top_k) * s0.bs} keys per query; its times include the block selection, "
            "flex gets the mask for free); ms, median"
        )
    print("| T | B | impl | fwd (ms) | fwd+bwd (ms) | fwd speedup vs sdpa | fwd+bwd speedup vs sdpa |")
    print("|---|---|------|----------|--------------|---------------------|-------------------------|")
    ok = True
    for T in lengths:
        what = f"{'FlexAttention' if flex else 'timing'} at T={T}"
        if not budget.fits(what, prof.need_s * (T / 16384)):
            continue
        s = replace(s0, B=max(1, prof.tokens // T), T=T)
        ok &= timing_rows(s, prof.device, rows, flex=flex)
        if prof.device == "cuda":
            torch.cuda.empty_cache()
    return ok


def timing_rows(s: Shape, device: str, rows: list, *, flex: bool) -> bool:
    from kernels.lasa.attention import lasa_attention_triton

    q, k, v, decay = inputs(s.B, s.T, s.Hq, s.Hkv, s.D, s.dtype, device, grad=True)
    kw = dict(block_size=s.bs, top_k=s.top_k, window_blocks=s.window)
    ok = True
    if not flex:
        with torch.no_grad():  # correctness at the timed length, forward only
            err = rel_err(
                lasa_attention_triton(q, k, v, decay, **kw),
                lasa_attention_reference(q.float(), k.float(), v.float(), decay, **kw),
            )
        ok = err < TOLERANCE[s.dtype]
        print(
            f"| {s.T} | {s.B} | lasa fwd vs fp32 reference: rel err {err:.1e} {'ok' if ok else 'FAIL'} | | | | |"
        )
        rows.append({"part": "timing-correctness", **_shape_dict(s), "error": err, "ok": ok})
    do = torch.randn_like(q)
    G = s.Hq // s.Hkv
    # Dense baselines get K and V already expanded to Hq heads, outside the timed region.
    ke, ve = (x.detach().repeat_interleave(G, 2).transpose(1, 2).requires_grad_(True) for x in (k, v))
    qt = q.detach().transpose(1, 2).requires_grad_(True)
    dot = do.transpose(1, 2)

    def flash():
        backend = torch.nn.attention.SDPBackend.FLASH_ATTENTION
        with torch.nn.attention.sdpa_kernel(backend):
            return torch.nn.functional.scaled_dot_product_attention(qt, ke, ve, is_causal=True)

    def lasa():
        return lasa_attention(q, k, v, decay, **kw)

    impl = resolve_impl("auto", q.device)  # the Triton kernels on a GPU; the reference in --smoke
    if flex:
        runs = {"flex (lasa mask)": (lambda: flex_runner(q, k, v, decay, s), dot)}
    else:
        runs = {"sdpa flash (dense)": (lambda: flash, dot), f"lasa {impl}": (lambda: lasa, do)}
    sdpa_row = [r for r in rows if r["part"] == "timing" and r["T"] == s.T and r["impl"].startswith("sdpa")]
    base = (
        (sdpa_row[0]["fwd_ms"], sdpa_row[0]["fwd_bwd_ms"]) if sdpa_row and "fwd_ms" in sdpa_row[0] else None
    )
    for name, (make, grad_out) in runs.items():
        try:
            fn = make()
            with torch.no_grad():
                if flex:  # the same function as LASA, or the comparison means nothing
                    ref = lasa_attention_reference(q.float(), k.float(), v.float(), decay, **kw)
                    err = rel_err(fn().transpose(1, 2), ref)
                    print(f"| {s.T} | {s.B} | flex fwd vs fp32 LASA reference: rel err {err:.1e} | | | | |")
                    rows.append({"part": "flex-correctness", "T": s.T, "B": s.B, "error": err})
                    del ref
                fwd = bench_ms(fn, device)
        except Exception as e:  # noqa: BLE001 - a missing baseline is reported, not fatal
            print(f"| {s.T} | {s.B} | {name} | n/a: {type(e).__name__}: {str(e)[:100]} | | | |", flush=True)
            rows.append(
                {"part": "timing", "T": s.T, "B": s.B, "impl": name, "error": f"{type(e).__name__}: {e}"}
            )
            continue
        try:
            both = bench_ms(lambda fn=fn, g=grad_out: fn().backward(g), device)
        except Exception as e:  # noqa: BLE001 - FlexAttention has no backward on the CPU
            print(f"| {s.T} | {s.B} | {name} backward: n/a: {type(e).__name__}: {str(e)[:80]} | | | |")
            both = math.nan
        base = (fwd, both) if base is None and name.startswith("sdpa") else base
        speed = (base[0] / fwd, base[1] / both) if base else (math.nan, math.nan)
        print(
            f"| {s.T} | {s.B} | {name} | {fwd:.2f} | {both:.2f} | {speed[0]:.1f}x | {speed[1]:.1f}x |",
            flush=True,
        )
        rows.append({"part": "timing", "T": s.T, "B": s.B, "impl": name, "fwd_ms": fwd, "fwd_bwd_ms": both,
                     "fwd_speedup_vs_sdpa": speed[0], "fwd_bwd_speedup_vs_sdpa": speed[1]})  # fmt: skip
    return ok


def flex_runner(q, k, v, decay, s: Shape):
    """FlexAttention over the same selected blocks, with the decay prior as a score_mod (compiled on a GPU;
    eager, its reference path, on the CPU)."""
    from torch.nn.attention.flex_attention import BlockMask, flex_attention

    B, T, Hq, D = q.shape
    G = Hq // k.shape[2]
    idx, cnt = select_blocks_reference(q, k, decay, block_size=s.bs, top_k=s.top_k, window_blocks=s.window)
    NB = idx.shape[2]
    kv_indices = torch.nn.functional.pad(idx.clamp(min=0), (0, NB - idx.shape[-1])).repeat_interleave(G, 1)
    sel = selection_mask(idx, NB)  # mask_mod must agree with the block lists: kernels may read either

    def mask_mod(b, h, qi, kj):
        return (kj <= qi) & sel[b, h // G, qi // s.bs, kj // s.bs]

    block_mask = BlockMask.from_kv_blocks(
        cnt.repeat_interleave(G, 1), kv_indices.int(), BLOCK_SIZE=s.bs, mask_mod=mask_mod, seq_lengths=(T, T)
    )
    dec = decay.detach()

    def score_mod(score, b, h, qi, kj):
        return score - dec[h] * (qi - kj)

    attend = torch.compile(flex_attention) if q.is_cuda else flex_attention
    # PyTorch runs FlexAttention's backward on CUDA only; on the CPU (--smoke) the forward alone.
    qt, kt, vt = (x.detach().transpose(1, 2).requires_grad_(q.is_cuda) for x in (q, k, v))
    return lambda: attend(qt, kt, vt, score_mod=score_mod, block_mask=block_mask, enable_gqa=True)


# ---------------------------------------------------------------- 3: decode


def decode(prof: Profile, budget: Budget, rows: list) -> None:
    s, R = prof.decode, prof.rolling_tokens
    print(
        f"\nDecode at {s.T} context, {str(s.dtype).removeprefix('torch.')}, Hq={s.Hq} Hkv={s.Hkv} D={s.D}, "
        f"blocks of {s.bs}, sink + {s.window} local + top-{s.top_k}; pruned KV heads keep the sink block + a "
        f"{R}-token ring (+ pooled keys of every block, fp32); how many heads a trained model prunes is set by "
        f"its decays (pruned_heads), so it is a column; dense = a {s.T}-token cache attended with SDPA; "
        f"tokens/s = batch / median step time over {prof.decode_steps} steps"
    )
    print("| batch | cache | KV bytes (GiB) | memory vs dense | tokens/s | speed vs dense |")
    print("|-------|-------|----------------|-----------------|----------|----------------|")
    for B in prof.decode_batches:
        if not budget.fits(f"decode at batch {B}", prof.need_s):
            continue
        decode_rows(replace(s, B=B), prof, rows)
        if prof.device == "cuda":
            torch.cuda.empty_cache()


def _sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def decode_rows(s: Shape, prof: Profile, rows: list) -> None:
    from kernels.lasa.decode import lasa_decode

    dev, steps = prof.device, prof.decode_steps
    q, k, v, decay = inputs(s.B, s.T, s.Hq, s.Hkv, s.D, s.dtype, dev)
    new = [torch.randn(steps, s.B, h, s.D, device=dev, dtype=s.dtype) for h in (s.Hq, s.Hkv, s.Hkv)]

    def step_times(step) -> float:
        times = []
        for i in range(steps):
            _sync(dev)
            t0 = time.perf_counter()
            step(i)
            _sync(dev)
            times.append(time.perf_counter() - t0)
        return statistics.median(times[1:] if steps > 2 else times)

    K = torch.zeros(s.B, s.Hkv, s.T + steps, s.D, device=dev, dtype=s.dtype)
    V = torch.zeros_like(K)
    K[:, :, : s.T], V[:, :, : s.T] = k.transpose(1, 2), v.transpose(1, 2)
    dense_bytes = 2 * K[:, :, : s.T].numel() * K.element_size()

    def dense_step(i):
        t = s.T + i
        K[:, :, t], V[:, :, t] = new[1][i], new[2][i]
        torch.nn.functional.scaled_dot_product_attention(
            new[0][i][:, :, None], K[:, :, : t + 1], V[:, :, : t + 1], enable_gqa=True
        )

    dense_s = step_times(dense_step)
    _row(s, "dense", dense_bytes, dense_bytes, s.B / dense_s, s.B / dense_s, rows)
    for pruned_n in (0, s.Hkv // 2, s.Hkv):
        pruned = torch.arange(s.Hkv) < pruned_n
        cache = LasaKVCache(
            s.B, s.T + steps, s.Hq, pruned, s.D, block_size=s.bs, top_k=s.top_k, window_blocks=s.window,
            rolling_tokens=prof.rolling_tokens, dtype=s.dtype, device=dev,
        )  # fmt: skip
        cache.prefill(q, k, v)
        n = cache.nbytes()
        lasa_s = step_times(lambda i, c=cache: lasa_decode(new[0][i], new[1][i], new[2][i], decay, c))
        del cache
        _row(s, f"lasa {pruned_n}/{s.Hkv} pruned", n, dense_bytes, s.B / lasa_s, s.B / dense_s, rows)


def _row(
    s: Shape, name: str, nbytes: int, dense_bytes: int, tps: float, dense_tps: float, rows: list
) -> None:
    print(f"| {s.B} | {name} | {nbytes / 2**30:.3f} | {nbytes / dense_bytes:.2f}x | {tps:,.0f} | "
          f"{tps / dense_tps:.2f}x |", flush=True)  # fmt: skip
    rows.append({"part": "decode", "context": s.T, "batch": s.B, "cache": name, "bytes": nbytes,
                 "dense_bytes": dense_bytes, "tokens_per_s": tps, "dense_tokens_per_s": dense_tps})  # fmt: skip


# ---------------------------------------------------------------- the GPU run (and its CPU smoke)


def run_check(prof: Profile, lengths: list[int], budget_s: float | None, out: str | None) -> int:
    rows: list = []
    budget = Budget(budget_s, rows)
    ok = True
    print("== 1. correctness at the priority shapes (Triton against the fp32 reference)", flush=True)
    for s in prof.priority:
        if budget.fits(f"correctness {s.label()}", prof.need_s):
            ok &= check_shape(s, prof.device, rows)
    if budget.fits("decode-step correctness", prof.need_s):
        ok &= check_decode(prof.priority[0], prof.device, rows)
    print("\n== 2. timing against SDPA (flash)", flush=True)
    ok &= timing(prof, lengths, budget, rows, flex=False)
    print("\n== 3. decode: KV-cache memory and tokens/s against a dense cache", flush=True)
    decode(prof, budget, rows)
    print("\n== 2b. timing: FlexAttention with the same block mask", flush=True)
    timing(prof, lengths, budget, rows, flex=True)
    print("\n== 4. correctness, the wider grid (time allowing)", flush=True)
    for s in prof.wider:
        if budget.fits(f"correctness {s.label()}", prof.need_s):
            ok &= check_shape(s, prof.device, rows)
    print(f"\nLASA check: {'all correctness checks passed' if ok else 'FAILED'}")
    if out:
        with open(out, "w") as f:
            json.dump({"ok": ok, "rows": rows}, f, indent=2)
    return 0 if ok else 1


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


def cpu_table():
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


def decode_memory_table():
    """KV-cache bytes at 32k and 128k context on the meta device (exact counts, nothing allocated)."""
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


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--gpu", action="store_true", help="check correctness and time on an NVIDIA GPU")
    ap.add_argument("--smoke", action="store_true", help="the --gpu run on the CPU with tiny shapes, fp32")
    ap.add_argument("--lengths", type=int, nargs="+", help="timed lengths (GPU 16384 65536; smoke 64 128)")
    ap.add_argument("--budget-s", type=float, help="skip, with a message, what would start past this")
    ap.add_argument("--out", help="write every row of the --gpu / --smoke run as JSON")
    ap.add_argument("--cpu-one", nargs=2, metavar=("IMPL", "MODE"), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.cpu_one:
        cpu_one(*args.cpu_one, T=4096, B=1, Hq=8, Hkv=2, D=128, bs=64, top_k=4)
        return 0
    if args.gpu or args.smoke:
        if args.gpu and not torch.cuda.is_available():
            print(
                "bench/lasa.py --gpu: no CUDA device (--smoke runs the same code on the CPU)", file=sys.stderr
            )
            return 2
        prof = gpu_profile() if args.gpu else smoke_profile()
        lengths = args.lengths or ([16384, 65536] if args.gpu else [64, 128])
        return run_check(prof, lengths, args.budget_s, args.out)
    cpu_table()
    decode_memory_table()
    return 0


if __name__ == "__main__":
    sys.exit(main())
