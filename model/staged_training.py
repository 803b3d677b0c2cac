"""Training over the curriculum: the stages of a token_shards version in order, one schedule across them.

    python -m model.staged_training --token-shards <data>/datasets/token_shards/<id> --recipe tiny --out runs/x
    deepspeed --num_accelerators 2 --module model.staged_training --token-shards ... --ep-size 2 --out ...

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

from model.config import RECIPES, CurriculumRun, RunConfig, TrainConfig, recipe
from model.data import batch_indices
from model.evaluate import StageSplit, evaluate_split, merge_results, split_stage, stage_languages
from model.export import export_safetensors
from model.loop import LoopConfig, run_loop
from model.schedule import split_steps
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
)
from model.transformer import count_parameters
from model.usage import write_sequence_use
from records.assets import CURRICULUM_STAGES, TOKEN_SHARDS, TOKENIZER
from records.canonical import write_record
from records.manifest import MANIFEST
from records.models import EVALUATION as EVALUATION_FILE
from records.models import RUN as RUN_FILE
from records.models import SEQUENCE_USE as SEQUENCE_USE_FILE
from records.models import metrics_lines
from records.token_shards import read_index
from records.token_shards import stage_dirs as shard_stage_dirs

__all__ = [
    "StagePlan",
    "TrainingSummary",
    "plan_stages",
    "run_config",
    "train_curriculum",
    "train_on_stages",
    "main",
]

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

    def loop_config(self, t: TrainConfig) -> LoopConfig:
        """The training loop of this plan: t's optimizer and learning rates, the plan's schedule
        boundaries, and a checkpoint at the end of every stage (besides t's cadence)."""
        assert self.decay_end == t.max_steps, (self.decay_end, t.max_steps)
        return LoopConfig.from_train(
            t,
            warmup_end=self.warmup_end,
            decay_start=self.decay_start,
            checkpoint_at=tuple(start + steps for _, start, steps in self.stages),
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
    """The token_shards version's ref and the refs of the versions it was made from: refs only, never
    a path of this machine, since the record is sealed into the model version (and its id)."""
    manifest_path = folder / MANIFEST
    manifest = json.loads(manifest_path.read_text()) if manifest_path.exists() else {}
    ref = f"{manifest['asset']}/{manifest['version_id']}" if manifest else None
    return {
        TOKEN_SHARDS: ref,
        CURRICULUM_STAGES: index.get("stages_version"),
        TOKENIZER: index.get(TOKENIZER),
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
    index = read_index(folder)
    if index["seq_len"] != t.seq_len:
        raise ValueError(
            f"{folder}: sequences of {index['seq_len']} tokens, TrainConfig.seq_len is {t.seq_len}"
        )
    if index.get("vocab_size", 0) > m.vocab_size:
        raise ValueError(f"{folder}: vocabulary of {index['vocab_size']}, the model's is {m.vocab_size}")
    stage_dirs = shard_stage_dirs(folder, index)
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
    step = setup_engine(run, ckpt_dir)
    engine, rank, world = step.engine, step.rank, step.world
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
        write_record(out_dir / RUN_FILE, {**run_info, "status": "running", "resumed_from_step": start_step})
    global_batch = step.global_batch
    loop = plan.loop_config(t)

    def batch(global_step: int) -> tuple:
        k, local = plan.locate(global_step)
        split = splits[k]
        idx = split.train[batch_indices(len(split.train), local, global_batch, t.seed * 1000 + k)]
        return split.data, torch.from_numpy(idx)

    def on_step(record: dict) -> None:
        """Stage fields and a log line; after a stage's last step, the held-out evaluation of every stage."""
        k, local = plan.locate(record["step"])
        record.update(stage=splits[k].name, stage_step=local)
        lines = [record]
        log(
            f"step {record['step'] + 1}/{t.max_steps} stage {record['stage']} loss {record['loss']:.4f} "
            f"lr {record['lr']:.2e} {record['tokens_per_s']:.0f} tokens/s"
        )
        if record["step"] + 1 in loop.checkpoint_at:  # a stage's last step
            result = _evaluate(engine, splits, t.micro_batch_size)
            lines.append({"step": record["step"], "stage": record["stage"], "event": "evaluation", **result})
            ppl = ", ".join(f"{lang} {p:.1f}" for lang, p in result["perplexity"].items())
            log(f"evaluation after stage {record['stage']}: held-out perplexity {ppl}")
        if rank == 0:
            with open(metrics_path, "ab") as f:
                f.write(metrics_lines(lines))

    def save(done: int) -> None:
        stage = splits[plan.locate(done - 1)[0]].name
        _save(engine, ckpt_dir, done, global_batch, rank, run, {"stage": stage, "stage_plan": plan.to_dict()})

    history = run_loop(
        loop, step, batch, start_step=start_step, stop_after=stop_after, on_step=on_step, save=save
    )
    end_step = t.max_steps if stop_after is None else min(stop_after, t.max_steps)

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
        write_record(out_dir / EVALUATION_FILE, _evaluation_report(evaluations, run_info))
        write_record(
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
        scaled["seq_len"] = read_index(request.token_shards)["seq_len"]
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
    p = argparse.ArgumentParser(prog="python -m model.staged_training", description=__doc__.split("\n\n")[0])
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
