"""Training entry point: DeepSpeed engine (ZeRO 0-2, expert parallelism), WSD schedule, JSON-lines metrics,
checkpoints with exact resume, and a safetensors export of the final model.

    python -m model.train --recipe tiny --data synthetic --out runs/tiny
    deepspeed --num_accelerators 2 --module model.train --recipe tiny --ep-size 2 --data ... --out ...

The DeepSpeed config is generated from the dataclasses by deepspeed_config(); there is no JSON to edit.
Without a GPU DeepSpeed falls back to its CPU accelerator and gloo; init_distributed() below avoids the
two C++ ops it would otherwise compile on first use (see docs/training.md).
"""

import argparse
import dataclasses
import json
import os
import random
import socket
from pathlib import Path

import numpy as np
import torch
import torch.distributed as tdist

from model.checkpoint_integrity import checkpoint_tag, read_latest, verify_tag, write_latest, write_tag_hashes
from model.config import DEFAULT_RECIPE, RECIPES, ModelConfig, RunConfig, TrainConfig, recipe
from model.data import MemmapTokens, TokenShards, TokenSource, write_markov_tokens
from model.export import export_safetensors
from model.loop import EngineStep, LoopConfig, adamw, run_loop, token_batches
from model.transformer import Transformer, count_parameters
from records.models import CHECKPOINTS as CHECKPOINT_DIR
from records.models import EXPORT_FILE, metrics_lines
from records.models import METRICS as METRICS_FILE
from records.token_shards import is_shards_folder

__all__ = ["deepspeed_config", "init_distributed", "setup_engine", "train", "main"]


def deepspeed_config(
    train_cfg: TrainConfig,
    model_cfg: ModelConfig,
    *,
    world_size: int | None = None,
    on_gpu: bool | None = None,
) -> dict:
    """The DeepSpeed config dict for a run. world_size and on_gpu default to the running process's
    (WORLD_SIZE, torch.cuda.is_available()); bf16 is enabled on GPUs only (CPU runs are fp32).

    ZeRO's gradient buckets are capped at the model's size: the default 5e8 elements would allocate 2 GB
    every step for a model of a few million parameters.
    """
    world_size = int(os.environ.get("WORLD_SIZE", 1)) if world_size is None else world_size
    on_gpu = torch.cuda.is_available() if on_gpu is None else on_gpu
    if world_size % train_cfg.ep_size:
        raise ValueError(f"TrainConfig.ep_size={train_cfg.ep_size} must divide the world size {world_size}")
    bucket = int(min(5e8, count_parameters(model_cfg)[0]))
    return {
        "train_batch_size": train_cfg.micro_batch_size * train_cfg.grad_accum_steps * world_size,
        "train_micro_batch_size_per_gpu": train_cfg.micro_batch_size,
        "gradient_accumulation_steps": train_cfg.grad_accum_steps,
        "gradient_clipping": train_cfg.grad_clip,
        "zero_optimization": {
            "stage": train_cfg.zero_stage,
            "reduce_bucket_size": bucket,
            "allgather_bucket_size": bucket,
        },
        "bf16": {"enabled": bool(on_gpu)},
        "steps_per_print": 1 << 30,
        "wall_clock_breakdown": False,
    }


def init_distributed() -> tuple[int, int]:
    """Join (or, run plainly, create) the process group; returns (rank, world_size).

    On CPU: gloo, and DeepSpeed's shared-memory comm op disabled, which it would otherwise compile
    (~40 s, needs g++) on first use.
    """
    import deepspeed

    if "RANK" not in os.environ:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        os.environ.update(
            RANK="0", WORLD_SIZE="1", LOCAL_RANK="0", MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port)
        )
    on_gpu = torch.cuda.is_available()
    if not on_gpu:
        import deepspeed.ops

        deepspeed.ops.__compatible_ops__["deepspeed_shm_comm"] = False
    else:
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", 0)))
    deepspeed.init_distributed(dist_backend="nccl" if on_gpu else "gloo")
    return tdist.get_rank(), tdist.get_world_size()


def _rng_state() -> dict:
    # numpy's key as a list of ints: the file then loads with torch.load(weights_only=True), no pickled arrays.
    name, key, pos, has_gauss, cached_gaussian = np.random.get_state()
    numpy_state = (name, key.tolist(), pos, has_gauss, cached_gaussian)
    state = {"python": random.getstate(), "numpy": numpy_state, "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict) -> None:
    random.setstate(state["python"])
    name, key, pos, has_gauss, cached_gaussian = state["numpy"]
    np.random.set_state((name, np.array(key, dtype=np.uint32), pos, has_gauss, cached_gaussian))
    torch.set_rng_state(state["torch"])
    if "cuda" in state:
        torch.cuda.set_rng_state_all(state["cuda"])


def _truncate_metrics(path: Path, before_step: int) -> None:
    """Drop the lines of steps >= before_step: a resumed run rewrites them."""
    if not path.exists():
        return
    text = path.read_text()
    # A line without its newline was cut short (a full disk, a power loss): it is not a record.
    lines = text.splitlines() if text.endswith("\n") else text.splitlines()[:-1]
    kept = [line for line in lines if json.loads(line)["step"] < before_step]
    path.write_text("".join(line + "\n" for line in kept))


def setup_engine(run: RunConfig, ckpt_dir: Path) -> EngineStep:
    """Join the process group, seed, build the model and its DeepSpeed engine; the loop's step through it
    (holding engine, optimizer, rank and world). Rank 0 creates ckpt_dir."""
    import deepspeed
    from deepspeed.utils import groups

    t, m = run.train, run.model
    rank, world = init_distributed()
    if rank == 0:
        ckpt_dir.mkdir(parents=True, exist_ok=True)
    if t.deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)
        # Otherwise every torch.empty is filled with NaN: ZeRO allocates its 5e8-element gradient bucket
        # with torch.empty on each step, which made a tiny CPU step take seconds.
        torch.utils.deterministic.fill_uninitialized_memory = False
    # Different per rank so that random routing noise differs between data-parallel replicas.
    random.seed(t.seed + rank)
    np.random.seed(t.seed + rank)
    torch.manual_seed(t.seed + rank)

    model = Transformer(m, ep_size=t.ep_size)
    model.init_weights(t.seed, ep_rank=rank % t.ep_size)
    optimizer = adamw(model, LoopConfig.from_train(t).optimizer, t.peak_lr, moe_groups=True)
    engine, optimizer, _, _ = deepspeed.initialize(
        model=model, optimizer=optimizer, config=deepspeed_config(t, m, world_size=world)
    )
    if m.moe:
        # init_weights assumed DeepSpeed's layout: expert groups of consecutive ranks.
        assert groups._get_expert_parallel_rank(f"ep_size_{t.ep_size}") == rank % t.ep_size
    return EngineStep(engine, optimizer, run, rank, world)


def train(
    run: RunConfig,
    data: TokenSource,
    out_dir: str | Path,
    *,
    stop_after: int | None = None,
    export: bool = True,
) -> list[dict]:
    """Train run on data, writing out_dir/metrics.jsonl, out_dir/checkpoints/ and, at max_steps,
    out_dir/model.safetensors. Resumes from the latest checkpoint in out_dir if there is one, and then
    repeats exactly the steps the uninterrupted run would take. stop_after: return after that many
    total steps (saving a checkpoint there), as a preempted job would. Returns this call's metrics.
    """
    t, m = run.train, run.model
    if data.seq_len != t.seq_len:
        raise ValueError(f"data has seq_len {data.seq_len}, TrainConfig.seq_len is {t.seq_len}")
    out_dir = Path(out_dir)
    ckpt_dir = out_dir / CHECKPOINT_DIR
    step = setup_engine(run, ckpt_dir)
    engine, rank = step.engine, step.rank
    client = resume(engine, ckpt_dir, rank)
    start_step = client["step"] if client else 0
    metrics_path = out_dir / METRICS_FILE
    if rank == 0:
        _truncate_metrics(metrics_path, start_step)

    def write_metrics(record: dict) -> None:
        if rank == 0:
            with open(metrics_path, "ab") as f:
                f.write(metrics_lines([record]))

    history = run_loop(
        LoopConfig.from_train(t),
        step,
        token_batches(data, step.global_batch, t.seed),
        start_step=start_step,
        stop_after=stop_after,
        on_step=write_metrics,
        save=lambda done: _save(engine, ckpt_dir, done, step.global_batch, rank, run),
    )
    end_step = t.max_steps if stop_after is None else min(stop_after, t.max_steps)
    if export and end_step == t.max_steps:
        tdist.barrier()
        if rank == 0:
            export_safetensors(ckpt_dir, out_dir / EXPORT_FILE, m)
    return history


def resume(engine, ckpt_dir: Path, rank: int) -> dict | None:
    """Load the latest checkpoint in ckpt_dir (weights, optimizer, this rank's RNG states) and return its
    client state, or None when there is none. ValueError, before any file is unpickled, when 'latest' is
    not a tag name or a file of the tag differs from its checkpoint_hashes.json (see
    model/checkpoint_integrity.py). Every rank re-hashes the whole tag: the cost grows with its size."""
    tag = read_latest(ckpt_dir)
    if tag is None:
        return None
    verify_tag(ckpt_dir / tag)
    # DeepSpeed's loader unpickles (weights_only=False); the files it reads were just checked.
    _, client = engine.load_checkpoint(str(ckpt_dir), tag=tag)
    _set_rng_state(torch.load(ckpt_dir / tag / f"rng_rank{rank}.pt", weights_only=True))
    return client


def _save(
    engine, ckpt_dir: Path, step: int, global_batch: int, rank: int, run: RunConfig, extra: dict | None = None
) -> None:
    """DeepSpeed checkpoint (module, ZeRO optimizer shards, expert files) plus the data position and
    every rank's RNG states; the RNG file is written first so that 'latest' never names a tag without it.
    Once every rank's files exist, rank 0 records their sha256 (checkpoint_hashes.json) and then names
    the tag in 'latest'; hashing reads the whole tag, so the cost grows with the checkpoint's size."""
    tag = checkpoint_tag(step)
    (ckpt_dir / tag).mkdir(parents=True, exist_ok=True)
    torch.save(_rng_state(), ckpt_dir / tag / f"rng_rank{rank}.pt")
    client = {"step": step, "samples_seen": step * global_batch, "run_config": dataclasses.asdict(run)}
    client.update(extra or {})
    # DeepSpeed rewrites 'latest' in place: a kill in between would leave it empty and the run
    # unresumable. It is written here instead, once every rank's files exist, by an atomic rename.
    engine.save_checkpoint(str(ckpt_dir), tag=tag, client_state=client, save_latest=False)
    if tdist.is_initialized() and tdist.get_world_size() > 1:
        tdist.barrier()
    if rank == 0:
        write_tag_hashes(ckpt_dir / tag)
        write_latest(ckpt_dir, tag)


def _parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m model.train", description=__doc__.split("\n\n")[0])
    p.add_argument("--recipe", default=DEFAULT_RECIPE, help=" | ".join(RECIPES))
    p.add_argument(
        "--data",
        required=True,
        help="a flat uint16/uint32 token file, or 'synthetic' (a Markov corpus written to --out)",
    )
    p.add_argument("--data-dtype", default="uint16", choices=["uint16", "uint32"])
    add_run_arguments(p)
    return p.parse_args(argv)


def add_run_arguments(p: argparse.ArgumentParser) -> None:
    """--recipe-independent options shared by the training CLIs: --out and the RunConfig overrides."""
    p.add_argument("--out", required=True, help="run directory: metrics, checkpoints, export")
    p.add_argument("--max-steps", type=int)
    p.add_argument("--stop-after", type=int, help="return after this many total steps (resumable)")
    p.add_argument("--ep-size", type=int)
    p.add_argument("--zero-stage", type=int)
    p.add_argument("--seq-len", type=int)
    p.add_argument("--micro-batch-size", type=int)
    p.add_argument("--grad-accum-steps", type=int)
    p.add_argument("--warmup-steps", type=int)
    p.add_argument("--decay-steps", type=int)
    p.add_argument("--checkpoint-every", type=int)
    p.add_argument("--seed", type=int)
    p.add_argument("--attention", choices=["dense", "lasa"])
    # Passed by the deepspeed launcher; the rank itself comes from the environment.
    p.add_argument("--local_rank", type=int, default=0, help=argparse.SUPPRESS)


def run_config_from_args(args) -> RunConfig:
    """The recipe with the overrides applied (None = keep the recipe's value): parsed options, or any
    object with the same attributes (model.config.CurriculumRun)."""
    run = recipe(args.recipe)
    names = [
        "max_steps",
        "ep_size",
        "zero_stage",
        "seq_len",
        "micro_batch_size",
        "grad_accum_steps",
        "warmup_steps",
        "decay_steps",
        "checkpoint_every",
        "seed",
    ]
    overrides = {name: getattr(args, name) for name in names}
    train_cfg = dataclasses.replace(run.train, **{k: v for k, v in overrides.items() if v is not None})
    model_cfg = run.model
    if args.attention:
        model_cfg = dataclasses.replace(
            model_cfg, attention=dataclasses.replace(model_cfg.attention, impl=args.attention)
        )
    return RunConfig(model_cfg, train_cfg)


def main(argv=None) -> None:
    args = _parse_args(argv)
    run = run_config_from_args(args)
    out = Path(args.out)
    path = Path(args.data)
    if args.data == "synthetic":
        path = out / "synthetic_tokens.bin"
        rank, _ = init_distributed()
        if rank == 0 and not path.exists():
            out.mkdir(parents=True, exist_ok=True)
            write_markov_tokens(path, 400_000, seed=run.train.seed, dtype=args.data_dtype)
        tdist.barrier()
    # A token_shards stage folder (stages/<i>-<name>/ with index.json), or a flat token file.
    if is_shards_folder(path):
        data = TokenShards(path)
    else:
        data = MemmapTokens(path, run.train.seq_len, args.data_dtype)
    train(run, data, out, stop_after=args.stop_after)


if __name__ == "__main__":
    main()
