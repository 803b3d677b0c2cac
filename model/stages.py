"""Training over the curriculum: the stages of a token_shards version in order, one schedule across them.

    python -m model.stages --token-shards <data>/datasets/token_shards/<id> --recipe tiny --out runs/x
    deepspeed --num_accelerators 2 --module model.stages --token-shards ... --ep-size 2 --out ...

max_steps is split over the stages in proportion to their training sequences (= tokens). The
warmup-stable-decay schedule is aligned with them: warmup over the first min(warmup_steps, stage 0)
steps, stable through the middle, and (two stages or more) the decay across the whole last stage;
with one stage the recipe's decay_steps. The data position is (stage, step in stage), a function of
the global step, and stage ends are always checkpoints, so a stopped run resumes exactly, across a
stage boundary too. At each stage's end the model is evaluated on the held-out documents of every
stage (model/evaluate.py). The run folder holds what model/train.py writes (metrics.jsonl with
``stage`` on each line, checkpoints/, model.safetensors) plus evaluation.json and run.json.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.distributed as tdist

from model.config import RECIPES, CurriculumRun, RunConfig, recipe
from model.data import batch_indices
from model.evaluate import StageSplit, evaluate_split, merge_results, split_stage, stage_languages
from model.export import export_safetensors
from model.schedule import split_steps, wsd_lr
from model.train import (
    CHECKPOINT_DIR,
    EXPORT_FILE,
    METRICS_FILE,
    _rng_state,
    _save,
    _set_rng_state,
    _truncate_metrics,
    add_run_arguments,
    deepspeed_config,
    resume,
    run_config_from_args,
    setup_engine,
    train_step,
)
from model.transformer import count_parameters
from model.usage import SEQUENCE_USE_FILE, write_sequence_use

__all__ = [
    "StagePlan",
    "TrainingSummary",
    "plan_stages",
    "run_config",
    "train_curriculum",
    "train_on_stages",
    "main",
]

EVALUATION_FILE = "evaluation.json"
RUN_FILE = "run.json"
RUN_FORMAT = "apertus.training-run/1"


@dataclass(frozen=True)
class StagePlan:
    """Which global steps train on which stage, and the schedule's boundaries.

    stages: (folder name, first step, number of steps) in training order."""

    stages: tuple[tuple[str, int, int], ...]
    warmup_end: int
    decay_start: int
    decay_end: int

    def locate(self, step: int) -> tuple[int, int]:
        """(stage number, step within the stage) of a global step."""
        for k, (_, start, steps) in enumerate(self.stages):
            if start <= step < start + steps:
                return k, step - start
        raise IndexError(f"step {step} is past the plan's {self.decay_end} steps")

    def lr(self, step: int, peak_lr: float, final_lr: float) -> float:
        return wsd_lr(
            step,
            peak_lr=peak_lr,
            final_lr=final_lr,
            warmup_end=self.warmup_end,
            decay_start=self.decay_start,
            decay_end=self.decay_end,
        )

    def to_dict(self) -> dict:
        return {
            "stages": [{"stage": n, "first_step": s, "steps": k} for n, s, k in self.stages],
            "warmup_end": self.warmup_end,
            "decay_start": self.decay_start,
            "decay_end": self.decay_end,
        }


def plan_stages(
    names: list[str], train_sequences: list[int], max_steps: int, warmup: int, decay: int
) -> StagePlan:
    """max_steps split in proportion to train_sequences; warmup within the first stage, decay across the
    last one (or, with a single stage, over its last `decay` steps)."""
    steps = split_steps([float(n) for n in train_sequences], max_steps)
    starts = [sum(steps[:k]) for k in range(len(steps))]
    warmup_end = min(warmup, steps[0])
    decay_start = starts[-1] if len(steps) > 1 else max_steps - decay
    return StagePlan(
        tuple(zip(names, starts, steps, strict=True)), warmup_end, max(warmup_end, decay_start), max_steps
    )


@dataclass
class TrainingSummary:
    """What one call did: steps [start_step, end_step) of the plan, their metrics records, and every
    stage-end evaluation of the run so far (earlier calls' included)."""

    out_dir: Path
    plan: StagePlan
    start_step: int
    end_step: int
    history: list[dict]
    evaluations: list[dict]
    export: Path | None


def _read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def _upstream(folder: Path, index: dict) -> dict:
    """The token_shards version's ref and the refs of the versions it was made from."""
    manifest_path = folder / "manifest.json"
    manifest = json.loads(manifest_path.read_text()) if manifest_path.exists() else {}
    ref = f"{manifest['asset']}/{manifest['version_id']}" if manifest else None
    return {
        "token_shards": ref,
        "token_shards_folder": str(folder.resolve()),
        "curriculum_stages": index.get("stages_version"),
        "tokenizer": index.get("tokenizer"),
        "parents": manifest.get("parents", []),
    }


def run_environment() -> dict:
    """Where the run ran: the hardware and the versions of the numeric stack (for the provenance record).
    The host's name is recorded as a hash: records get published, machine names are internal."""
    import hashlib
    import platform

    import deepspeed

    cpu = platform.processor() or platform.machine()
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
        names = [ln.split(":", 1)[1].strip() for ln in lines if ln.startswith("model name")]
        cpu = names[0] if names else cpu
    except OSError:
        pass
    gpus = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    return {
        "hostname_sha256": hashlib.sha256(platform.node().encode()).hexdigest(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpu": cpu,
        "cpu_count": os.cpu_count(),
        "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
        "accelerators": gpus or ["cpu"],
        "torch": torch.__version__,
        "deepspeed": deepspeed.__version__,
    }


def _write_json(path: Path, data: dict) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n")
    os.replace(tmp, path)


def _evaluate(engine, splits: list[StageSplit], batch_size: int) -> dict:
    """Held-out results of every stage, leaving the training RNG streams untouched."""
    state = _rng_state()
    try:
        return merge_results(
            {
                s.name: evaluate_split(engine.module, s, batch_size=batch_size, device=engine.device)
                for s in splits
            }
        )
    finally:
        _set_rng_state(state)


def train_on_stages(
    run: RunConfig,
    token_shards_folder: str | Path,
    out_dir: str | Path,
    *,
    stop_after: int | None = None,
    export: bool = True,
    held_out_fraction: float = CurriculumRun.held_out_fraction,
    eval_sequences: int = CurriculumRun.eval_sequences,
    log=print,
) -> TrainingSummary:
    """Train run over the stages of a token_shards version folder in order (see the module docstring),
    resuming from out_dir's latest checkpoint if there is one. stop_after: return after that many total
    steps, with a checkpoint there. eval_sequences: held-out sequences evaluated per stage (the others
    are still never trained on). log: called with one line of text per step and evaluation."""
    t, m = run.train, run.model
    folder, out_dir = Path(token_shards_folder), Path(out_dir)
    index = json.loads((folder / "index.json").read_text(encoding="utf-8"))
    if index["seq_len"] != t.seq_len:
        raise ValueError(
            f"{folder}: sequences of {index['seq_len']} tokens, TrainConfig.seq_len is {t.seq_len}"
        )
    if index.get("vocab_size", 0) > m.vocab_size:
        raise ValueError(f"{folder}: vocabulary of {index['vocab_size']}, the model's is {m.vocab_size}")
    stage_dirs = [folder / s["path"] for s in sorted(index["stages"], key=lambda s: s["stage_index"])]
    splits = [
        split_stage(d, held_out_fraction, stage_languages(folder, d), max_held_out=eval_sequences)
        for d in stage_dirs
    ]
    empty = [s.name for s in splits if not len(s.train)]
    if empty:
        raise ValueError(f"{folder}: stages {empty} have no sequences left to train on after holding out")
    plan = plan_stages(
        [s.name for s in splits], [len(s.train) for s in splits], t.max_steps, t.warmup_steps, t.decay_steps
    )
    ckpt_dir = out_dir / CHECKPOINT_DIR
    engine, optimizer, rank, world = setup_engine(run, ckpt_dir)
    client = resume(engine, ckpt_dir, rank)
    if client and client.get("stage_plan") != plan.to_dict():
        raise ValueError(f"{ckpt_dir}: its checkpoints follow another stage plan; use a new --out")
    start_step = client["step"] if client else 0
    metrics_path = out_dir / METRICS_FILE
    upstream = _upstream(folder, index)
    run_info = {
        "format": RUN_FORMAT,
        "upstream": upstream,
        "stage_fingerprints": {s.name: s.data.fingerprint() for s in splits},
        "run_config": dataclasses.asdict(run),
        "stage_plan": plan.to_dict(),
        "held_out": {"fraction": held_out_fraction, "stages": {s.name: s.summary() for s in splits}},
        "world_size": world,
        "deepspeed_config": deepspeed_config(t, m, world_size=world),
        "parameters": dict(zip(("total", "active"), count_parameters(m), strict=True)),
        "environment": run_environment(),
    }
    if rank == 0:
        _truncate_metrics(metrics_path, start_step)
        _write_json(out_dir / RUN_FILE, {**run_info, "status": "running", "resumed_from_step": start_step})
    global_batch = t.micro_batch_size * t.grad_accum_steps * world
    end_step = t.max_steps if stop_after is None else min(stop_after, t.max_steps)
    history = []
    for step in range(start_step, end_step):
        k, local = plan.locate(step)
        split = splits[k]
        idx = torch.from_numpy(
            split.train[batch_indices(len(split.train), local, global_batch, t.seed * 1000 + k)]
        )
        lr = plan.lr(step, t.peak_lr, t.final_lr)
        record = train_step(
            engine, optimizer, split.data, idx, step=step, lr=lr, run=run, rank=rank, world=world
        )
        record.update(stage=split.name, stage_step=local)
        history.append(record)
        lines = [record]
        log(
            f"step {step + 1}/{t.max_steps} stage {split.name} loss {record['loss']:.4f} lr {lr:.2e} "
            f"{record['tokens_per_s']:.0f} tokens/s"
        )
        done = step + 1
        stage_end = done == plan.stages[k][1] + plan.stages[k][2]
        if stage_end:
            result = _evaluate(engine, splits, t.micro_batch_size)
            lines.append({"step": step, "stage": split.name, "event": "evaluation", **result})
            ppl = ", ".join(f"{lang} {p:.1f}" for lang, p in result["perplexity"].items())
            log(f"evaluation after stage {split.name}: held-out perplexity {ppl}")
        if rank == 0:
            with open(metrics_path, "a") as f:
                f.writelines(json.dumps(line) + "\n" for line in lines)
        if stage_end or done == end_step or (t.checkpoint_every and done % t.checkpoint_every == 0):
            _save(
                engine,
                ckpt_dir,
                done,
                global_batch,
                rank,
                run,
                {"stage": split.name, "stage_plan": plan.to_dict()},
            )

    finished = end_step == t.max_steps
    exported = None
    if world > 1:
        tdist.barrier()
    records = _read_jsonl(metrics_path)
    evaluations = [r for r in records if r.get("event") == "evaluation"]
    if rank == 0:
        if export and finished:
            exported = export_safetensors(ckpt_dir, out_dir / EXPORT_FILE, m)
        if finished:
            run_info["sequence_use"] = write_sequence_use(
                out_dir / SEQUENCE_USE_FILE,
                [(s.name, s.train, s.held_out, n) for s, (_, _, n) in zip(splits, plan.stages, strict=True)],
                global_batch,
                t.seed,
            )
        _write_json(out_dir / EVALUATION_FILE, _evaluation_report(evaluations, run_info))
        _write_json(
            out_dir / RUN_FILE,
            {**run_info, "status": "finished" if finished else "stopped", "resumed_from_step": start_step,
             "steps_done": end_step, "files": _file_hashes(out_dir)},
        )  # fmt: skip
    return TrainingSummary(out_dir, plan, start_step, end_step, history, evaluations, exported)


def _evaluation_report(evaluations: list[dict], run_info: dict) -> dict:
    return {
        "format": "apertus.evaluation/1",
        "metric": "perplexity = exp(mean next-token cross-entropy) over held-out documents' tokens",
        "held_out": run_info["held_out"],
        "upstream": run_info["upstream"],
        "after_stage": [
            {k: e[k] for k in ("stage", "step", "perplexity", "languages", "overall", "by_held_out_stage")}
            for e in evaluations
        ],
    }


def _file_hashes(out_dir: Path) -> dict[str, str]:
    """sha256 of model.safetensors and of every checkpoint file, by path relative to out_dir."""
    from records.hashing import sha256_file

    paths = [out_dir / EXPORT_FILE] + sorted((out_dir / CHECKPOINT_DIR).rglob("*"))
    return {p.relative_to(out_dir).as_posix(): sha256_file(p) for p in paths if p.is_file()}


def run_config(request: CurriculumRun) -> RunConfig:
    """The recipe with the request's overrides applied. The shards fix the context length when the
    request names none; a max_steps without warmup_steps / decay_steps gets the recipe's warmup and
    decay scaled to it."""
    base = recipe(request.recipe).train
    scaled = {}
    if request.seq_len is None:
        index = json.loads((Path(request.token_shards) / "index.json").read_text(encoding="utf-8"))
        scaled["seq_len"] = index["seq_len"]
    if request.max_steps is not None and request.warmup_steps is None:
        scaled["warmup_steps"] = max(1, round(base.warmup_steps * request.max_steps / base.max_steps))
    if request.max_steps is not None and request.decay_steps is None:
        scaled["decay_steps"] = round(base.decay_steps * request.max_steps / base.max_steps)
    return run_config_from_args(dataclasses.replace(request, **scaled))


def train_curriculum(request: CurriculumRun, log=print) -> TrainingSummary:
    """Train the run ``request`` describes (``run_config``) over its token_shards version's stages:
    ``train_on_stages`` with the request's folders, held-out share and evaluation size. log: called with
    one line of text per step and evaluation."""
    return train_on_stages(
        run_config(request),
        request.token_shards,
        request.out,
        stop_after=request.stop_after,
        held_out_fraction=request.held_out_fraction,
        eval_sequences=request.eval_sequences,
        log=log,
    )


def main(argv=None) -> None:
    defaults = {f.name: f.default for f in dataclasses.fields(CurriculumRun)}
    p = argparse.ArgumentParser(prog="python -m model.stages", description=__doc__.split("\n\n")[0])
    p.add_argument("--token-shards", required=True, help="a token_shards version folder (with index.json)")
    p.add_argument("--recipe", default=defaults["recipe"], help=" | ".join(RECIPES))
    p.add_argument("--held-out-fraction", type=float, default=defaults["held_out_fraction"])
    p.add_argument(
        "--eval-sequences", type=int, default=defaults["eval_sequences"], help="held-out sequences per stage"
    )
    add_run_arguments(p)
    args = vars(p.parse_args(argv))
    request = CurriculumRun(**{name: args[name] for name in defaults})
    # Ranks other than 0 stay quiet; rank 0's lines are what a caller streams.
    quiet = int(os.environ.get("RANK", 0)) != 0
    started = time.perf_counter()
    summary = train_curriculum(
        request, log=(lambda line: None) if quiet else (lambda line: print(line, flush=True))
    )
    if not quiet:
        print(
            f"trained steps {summary.start_step}..{summary.end_step} in {time.perf_counter() - started:.1f}s; "
            f"run folder {summary.out_dir}",
            flush=True,
        )
    sys.stdout.flush()


if __name__ == "__main__":
    main()
