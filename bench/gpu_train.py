"""MoE training throughput on one NVIDIA GPU: the gpu-moe-1b recipe and its dense baseline gpu-dense-1b.

    python bench/gpu_train.py [--steps 30] [--budget-s 150] [--seq-len 8192]   # on the GPU (bench/gpu_check.sh)
    python bench/gpu_train.py --smoke                                          # the same code, CPU, tiny shapes

First the loss check: a reduced config of the MoE recipe (2 layers, 2048 tokens, blocks still dropped)
takes one step through the DeepSpeed engine here (bf16 on a GPU, LASA's Triton kernels) and the same
batch goes through the same initial weights on the CPU in fp32 (LASA's reference); the two first-step
losses must agree within 2%. Then each recipe trains a few dozen steps through model.train's setup_engine
and the one training loop, model/loop.py (DeepSpeed, ZeRO from the recipe, one process) on a synthetic Markov corpus; at a context
that does not fit (CUDA out of memory) it halves the context and tries again. Per recipe it prints the
context, tokens/s (median of the steps after the first SKIP), achieved TFLOP/s from the closed-form count
(model/flops.py; attention as attended and as dense-equivalent causal), MFU against the card's bf16 dense
peak (PEAK_BF16_TFLOPS, by device name) and peak memory. Writes bench/out/gpu_train.json.
"""

import argparse
import contextlib
import dataclasses
import gc
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from model.config import AttentionConfig, MoEConfig, RunConfig, recipe  # noqa: E402
from model.data import MemmapTokens, batch_indices, write_markov_tokens  # noqa: E402
from model.flops import training_flops_per_token  # noqa: E402
from model.loop import LoopConfig, run_loop, token_batches  # noqa: E402
from model.transformer import Transformer, count_parameters  # noqa: E402

RECIPES = ("gpu-moe-1b", "gpu-dense-1b")
SKIP = 3  # first steps: Triton compilation, allocator and ZeRO buffer warm-up
LOSS_TOLERANCE = 0.02  # relative, bf16 on the GPU against fp32 on the CPU at initialisation
# bf16 dense tensor-core peaks (TFLOP/s, no sparsity), matched in order against the device name.
PEAK_BF16_TFLOPS = (("H100 PCIe", 756.0), ("H100 NVL", 835.0), ("H100", 989.0), ("H200", 989.0))


def peak_tflops(device_name: str) -> float | None:
    """The card's bf16 dense peak from PEAK_BF16_TFLOPS; None for a card not in the table."""
    return next((peak for key, peak in PEAK_BF16_TFLOPS if key in device_name), None)


def with_context(run: RunConfig, seq_len: int, *, steps: int | None = None, layers: int | None = None):
    """run at seq_len tokens (max_seq_len too), optionally shortened to steps and to layers layers."""
    m = dataclasses.replace(run.model, max_seq_len=seq_len, n_layers=layers or run.model.n_layers)
    steps = steps or run.train.max_steps
    warm = min(run.train.warmup_steps, steps // 2)
    t = dataclasses.replace(
        run.train,
        seq_len=seq_len,
        max_steps=steps,
        warmup_steps=warm,
        decay_steps=min(run.train.decay_steps, steps - warm),
        checkpoint_every=0,
    )
    return RunConfig(m, t)


def smoke_recipe(name: str) -> RunConfig:
    """The recipe shrunk to seconds on a CPU: same structure (LASA dropping blocks, 16 experts top-2)."""
    run = recipe(name)
    moe = MoEConfig(num_experts=16, top_k=2) if run.model.moe else None
    m = dataclasses.replace(
        run.model,
        vocab_size=512,
        d_model=64,
        n_heads=4,
        n_kv_heads=1,
        ffn_hidden=64 if moe else 128,
        moe=moe,
        attention=AttentionConfig(impl="lasa", block_size=16, top_k=2, window_blocks=2),
    )
    return with_context(RunConfig(m, run.train), 256, steps=2, layers=2)


def _free() -> None:
    """Return what the last engine held (its references must be gone) to the allocator."""
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()


@contextlib.contextmanager
def _models_built_on(device: torch.device):
    """While active, model.train's setup_engine builds (and so initialises) its model on device.

    On a GPU that takes seconds where the CPU takes about a minute for gpu-moe-1b's 2.7B parameters (its
    uniform and normal draws run on one core). The weights differ from a CPU build (another generator), so
    the loss check, which compares with a CPU model, builds on the CPU.
    """
    import model.train as train_module

    saved = train_module.Transformer

    def build(cfg, ep_size=1):
        with device:
            return saved(cfg, ep_size=ep_size)

    train_module.Transformer = build
    try:
        yield
    finally:
        train_module.Transformer = saved


def _peak_memory_bytes() -> int:
    if torch.cuda.is_available():
        return torch.cuda.max_memory_allocated()
    status = Path("/proc/self/status").read_text()  # VmHWM: this process's peak resident size
    return int(status.split("VmHWM:")[1].split()[0]) * 1024


def _corpus(tmp: Path, run: RunConfig, steps: int) -> MemmapTokens:
    tokens = steps * run.train.micro_batch_size * (run.train.seq_len + 1) + 1
    path = tmp / f"tokens-{run.train.seq_len}.bin"
    if not path.exists():
        write_markov_tokens(path, tokens, num_states=min(256, run.model.vocab_size))
    return MemmapTokens(path, run.train.seq_len)


def loss_check(run: RunConfig, tmp: Path) -> dict:
    """First-step loss of run through the engine here against fp32 on the CPU, same batch and weights."""
    from model.train import setup_engine

    data = _corpus(tmp, run, 1)
    idx = batch_indices(len(data), 0, run.train.micro_batch_size, run.train.seed)
    step = setup_engine(run, tmp / "ckpt-check")
    record = step((data, idx), 0.0)
    del step
    _free()
    cpu_model = Transformer(run.model)
    cpu_model.init_weights(run.train.seed)
    batch = torch.stack([data[int(i)] for i in idx])
    with torch.no_grad():
        logits, _, _ = cpu_model(batch[:, :-1])
    cpu_loss = F.cross_entropy(logits.float().flatten(0, 1), batch[:, 1:].flatten()).item()
    rel = abs(record["lm_loss"] - cpu_loss) / cpu_loss
    return {
        "engine_loss": record["lm_loss"],
        "cpu_fp32_loss": cpu_loss,
        "rel_diff": rel,
        "ok": rel <= LOSS_TOLERANCE,
    }


def train_recipe(run: RunConfig, tmp: Path, budget_s: float, peak: float | None) -> dict:
    """Train run for its max_steps or until budget_s has passed; the throughput record of it."""
    from model.train import setup_engine

    t = run.train
    data = _corpus(tmp, run, t.max_steps)
    start = time.perf_counter()
    with _models_built_on(torch.device("cuda" if torch.cuda.is_available() else "cpu")):
        step = setup_engine(run, tmp / "ckpt")
    setup_s = time.perf_counter() - start
    history = run_loop(
        LoopConfig.from_train(t),
        step,
        token_batches(data, step.global_batch, t.seed),
        on_step=lambda record: time.perf_counter() - start > budget_s,
    )
    del step
    _free()
    timed = history[SKIP:] or history[-1:]
    tokens_per_s = statistics.median(h["tokens_per_s"] for h in timed)
    flops = training_flops_per_token(run)
    total, active = count_parameters(run.model)
    out = {
        "seq_len": t.seq_len,
        "micro_batch_size": t.micro_batch_size,
        "steps": len(history),
        "setup_s": setup_s,
        "params_total": total,
        "params_active": active,
        "first_loss": history[0]["lm_loss"],
        "last_loss": history[-1]["lm_loss"],
        "tokens_per_s": tokens_per_s,
        "attended_keys": flops.attended_keys,
        "tflops_attended": flops.attended * tokens_per_s / 1e12,
        "tflops_dense_equivalent": flops.dense_equivalent * tokens_per_s / 1e12,
        "peak_memory_gib": _peak_memory_bytes() / 2**30,
    }
    for key in ("attended", "dense_equivalent"):
        out[f"mfu_{key}"] = out[f"tflops_{key}"] / peak if peak else None
    return out


def fit_and_train(run: RunConfig, tmp: Path, budget_s: float, peak: float | None, min_seq_len: int) -> dict:
    """train_recipe at the recipe's context, halving it on CUDA out-of-memory down to min_seq_len."""
    start = time.perf_counter()
    seq_len = run.train.seq_len
    while True:
        try:
            return train_recipe(
                with_context(run, seq_len), tmp, budget_s - (time.perf_counter() - start), peak
            )
        except torch.cuda.OutOfMemoryError as e:
            reason = str(e).splitlines()[0][:100]
        _free()  # outside the except block: its traceback held the failed engine's tensors
        print(f"  out of memory at {seq_len} tokens ({reason})", flush=True)
        if seq_len // 2 < min_seq_len:
            return {"skipped": f"out of memory down to {seq_len} tokens"}
        seq_len //= 2


def _fmt(r: dict) -> str:
    if "skipped" in r:
        return f"skipped: {r['skipped']}"
    mfu = (
        f"MFU {100 * r['mfu_attended']:.1f}% attended / {100 * r['mfu_dense_equivalent']:.1f}% dense-equivalent"
        if r["mfu_attended"] is not None
        else "MFU n/a (no bf16 peak for this device in PEAK_BF16_TFLOPS)"
    )
    return (
        f"T={r['seq_len']} x {r['micro_batch_size']}, setup {r['setup_s']:.0f} s, {r['steps']} steps, loss {r['first_loss']:.3f} -> "
        f"{r['last_loss']:.3f}; {r['tokens_per_s']:.0f} tokens/s; {r['tflops_attended']:.3g} TFLOP/s attended "
        f"({r['attended_keys']:.0f} keys/query), {r['tflops_dense_equivalent']:.3g} dense-equivalent; {mfu}; "
        f"peak memory {r['peak_memory_gib']:.1f} GiB; params {r['params_total'] / 1e6:.1f}M total, "
        f"{r['params_active'] / 1e6:.1f}M active"
    )


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--steps", type=int, default=30)
    p.add_argument("--budget-s", type=float, default=150.0, help="wall seconds for everything")
    p.add_argument("--seq-len", type=int, help="context to start from (default: the recipe's)")
    p.add_argument("--recipes", nargs="+", default=list(RECIPES), choices=RECIPES)
    p.add_argument("--smoke", action="store_true", help="CPU, tiny shapes, 2 steps: the code path only")
    p.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "out" / "gpu_train.json")
    args = p.parse_args(argv)
    on_gpu = torch.cuda.is_available()
    if not on_gpu and not args.smoke:
        print(
            "bench/gpu_train.py: no CUDA device; use --smoke for the CPU run of the same code",
            file=sys.stderr,
        )
        return 2
    start = time.perf_counter()
    device = torch.cuda.get_device_name() if on_gpu else "CPU"
    peak = peak_tflops(device) if on_gpu else None
    print(
        f"device: {device}; bf16 dense peak {peak or 'unknown'} TFLOP/s; torch {torch.__version__}",
        flush=True,
    )
    result = {"device": device, "peak_bf16_tflops": peak, "torch": torch.__version__}
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        if args.smoke:
            check_run = smoke_recipe(RECIPES[0])
        else:
            check_run = with_context(recipe(RECIPES[0]), 2048, steps=2, layers=2)
        result["loss_check"] = check = loss_check(check_run, tmp)
        print(
            f"first-step loss, {check_run.model.n_layers} layers at T={check_run.train.seq_len}: engine "
            f"{check['engine_loss']:.4f}, CPU fp32 {check['cpu_fp32_loss']:.4f}, rel diff {check['rel_diff']:.1e} "
            + ("ok" if check["ok"] else f"FAIL (> {LOSS_TOLERANCE})"),
            flush=True,
        )
        for i, name in enumerate(args.recipes):
            left = args.budget_s - (time.perf_counter() - start)
            share = left / (len(args.recipes) - i)
            if args.smoke:
                run = smoke_recipe(name)
            else:
                base = recipe(name)
                run = with_context(base, args.seq_len or base.train.seq_len, steps=args.steps)
            if share < 10:
                result[name] = {"skipped": f"{left:.0f} s of the budget left"}
            else:
                print(f"{name}: training (budget {share:.0f} s) ...", flush=True)
                result[name] = fit_and_train(run, tmp, share, peak, min_seq_len=512 if on_gpu else 16)
            print(f"{name}: {_fmt(result[name])}", flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    return 0 if check["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
