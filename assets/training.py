"""Training the Mixture-of-Experts model on the curriculum's token shards, as a Dagster asset.

token_shards -> trained_model   (a run folder under <data>/models/<recipe>-<dagster run id>/)

Training runs in a subprocess (``python -m model.stages``, the same command the deepspeed launcher
runs), so the Dagster process never holds the model, a crash in training is a failed step, and
each line the trainer prints goes to the run's log as it comes. The child stays Dagster-free
(like pipelines/); what the asset reports is read back from the run folder: metrics.jsonl,
evaluation.json and run.json (upstream versions, stage plan, sha256 of every checkpoint file and
of model.safetensors).
"""

import json
import os
import subprocess
import sys
from collections import deque
from pathlib import Path

import dagster as dg

from assets.checks import VERSION_CHECKS, check_results, version_outcomes
from assets.curation import CODE_VERSION
from assets.metadata import figure_png, plot_metadata
from assets.operations import TRAIN_POOL, TRAINING_RETRY
from assets.resources import CurationResource
from pipelines.steps import StepResult
from records.assets import MODEL_INPUTS, TOKEN_SHARDS, TRAINED_MODEL
from records.hashing import sha256_file
from records.layout import REPO_ROOT
from records.manifest import MANIFEST, version_folder
from records.models import EVALUATION, EXPORT_FILE, METRICS, RECORD, RUN, build_record, seal_model
from records.versions import ledger_records

RUNS_DIR = "runs"  # under work/: a run folder until it is sealed into datasets/trained_model/<id>
CHECKS = (*VERSION_CHECKS, "loss_decreased", "export_reloads")
# loss_decreased: the mean loss of the last steps must be this fraction below the first step's.
LOSS_DROP = 0.05
DISTRIBUTED_ENV = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")


class TrainingConfig(dg.Config):
    """recipe: model/config.py's name. max_steps: split over the stages by their tokens (the recipe's
    warmup and decay scaled to it). checkpoint_every: steps between checkpoints besides the stage ends
    (0 = stage ends only). threads: OMP_NUM_THREADS of the training process."""

    recipe: str = "tiny"
    max_steps: int = 240
    checkpoint_every: int = 0
    held_out_fraction: float = 0.02
    threads: int = 2


def run_logged(context, command: list[str], threads: int, env: dict | None = None) -> list[str]:
    """Run a training command in a subprocess, its lines into the run's log as they come; return its
    last 40 lines. A non-zero exit is a dg.Failure with those lines."""
    # A fresh single-process run: no rendezvous inherited from this process (a test's or a launcher's).
    env = {**{k: v for k, v in os.environ.items() if k not in DISTRIBUTED_ENV}, **(env or {})}
    env.update(OMP_NUM_THREADS=str(threads), PYTHONUNBUFFERED="1")
    tail: deque[str] = deque(maxlen=40)
    with subprocess.Popen(
        command, cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    ) as proc:
        for line in proc.stdout:
            line = line.rstrip()
            tail.append(line)
            # The trainer's own lines at info; DeepSpeed's chatter at debug.
            (
                context.log.info
                if line.startswith(("step ", "evaluation ", "trained "))
                else context.log.debug
            )(line)
    if proc.returncode:
        raise dg.Failure(
            description=f"training exited with status {proc.returncode}",
            metadata={
                "command": " ".join(command),
                "last_lines": dg.MetadataValue.md("```\n" + "\n".join(tail) + "\n```"),
            },
        )
    return list(tail)


def loss_plot_png(steps: list[dict], plan: dict) -> bytes:
    """Training loss per step, the stage boundaries as vertical lines."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 3.2), dpi=100)
    ax.plot([r["step"] for r in steps], [r["lm_loss"] for r in steps], color="#4C72B0", lw=1)
    for stage in plan["stages"]:
        ax.axvline(stage["first_step"], color="#999999", lw=0.8, ls="--")
        ax.text(stage["first_step"], ax.get_ylim()[1], f" {stage['stage']}", va="top", fontsize=7)
    ax.set_xlabel("step")
    ax.set_ylabel("training loss (nats/token)")
    return figure_png(fig)


def perplexity_plot_png(evaluations: list[dict]) -> bytes:
    """Held-out perplexity per language after each stage (grouped bars, log scale)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    languages = sorted({lang for e in evaluations for lang in e["perplexity"]})
    fig, ax = plt.subplots(figsize=(9, 3.2), dpi=100)
    width = 0.8 / max(1, len(evaluations))
    for i, e in enumerate(evaluations):
        xs = [j + i * width for j in range(len(languages))]
        ax.bar(
            xs, [e["perplexity"].get(lang, 0) for lang in languages], width=width, label=f"after {e['stage']}"
        )
    ax.set_xticks([j + 0.4 - width / 2 for j in range(len(languages))], languages, rotation=45)
    ax.set_yscale("log")
    ax.set_ylabel("held-out perplexity")
    ax.legend(fontsize=7)
    return figure_png(fig)


def _perplexity_table(evaluations: list[dict]) -> str:
    languages = sorted({lang for e in evaluations for lang in e["perplexity"]})
    lines = ["| language | " + " | ".join(f"after {e['stage']}" for e in evaluations) + " |"]
    lines.append("|---|" + "---:|" * len(evaluations))
    for lang in languages:
        cells = [f"{e['perplexity'][lang]:,.1f}" if lang in e["perplexity"] else "" for e in evaluations]
        lines.append(f"| {lang} | " + " | ".join(cells) + " |")
    lines.append(
        "| **overall** | " + " | ".join(f"{e['overall']['perplexity']:,.1f}" for e in evaluations) + " |"
    )
    return "\n".join(lines)


def training_outcomes(out: Path, steps: list[dict], run_info: dict) -> dict:
    """loss_decreased: the last steps' mean loss below the first step's by LOSS_DROP of it.
    export_reloads: model.safetensors hashes as run.json records and loads back into a model."""
    first = steps[0]["lm_loss"]
    last = steps[-max(1, min(5, len(steps) // 5)) :]
    final = sum(r["lm_loss"] for r in last) / len(last)
    decreased = final < first * (1 - LOSS_DROP)
    export = out / EXPORT_FILE
    recorded = run_info.get("files", {}).get(EXPORT_FILE)
    actual = sha256_file(export) if export.exists() else None
    problem = None
    if actual is None or actual != recorded:
        problem = f"sha256 {actual} differs from run.json's {recorded}"
    else:
        try:
            from model.export import load_safetensors

            load_safetensors(export)
        except Exception as exc:  # noqa: BLE001 (any failure to load is the finding)
            problem = f"does not load: {exc}"
    return {
        "loss_decreased": (
            decreased,
            {"first_loss": first, "final_loss": final, "required_below": first * (1 - LOSS_DROP)},
        ),
        "export_reloads": (problem is None, {"sha256": actual or "", "problem": problem or ""}),
    }


@dg.asset(
    group_name="training",
    code_version=CODE_VERSION,
    check_specs=[dg.AssetCheckSpec(name, asset=TRAINED_MODEL) for name in CHECKS],
    kinds={"pytorch", "deepspeed"},
    retry_policy=TRAINING_RETRY,
    pool=TRAIN_POOL,
)
def trained_model(
    context: dg.AssetExecutionContext, config: TrainingConfig, curation: CurationResource, token_shards: str
):
    """The tiny MoE model trained over the curriculum's stages in order (warmup-stable-decay aligned
    with them), held-out perplexity per language after each stage, checkpoints and a safetensors
    export with their sha256 and the exact upstream versions in run.json."""
    layout = curation.layout()
    shards = version_folder(layout.datasets, token_shards)
    out = layout.work / RUNS_DIR / f"{config.recipe}-{context.run_id}"
    command = [
        sys.executable, "-m", "model.stages", "--token-shards", str(shards), "--recipe", config.recipe,
        "--out", str(out), "--max-steps", str(config.max_steps), "--checkpoint-every", str(config.checkpoint_every),
        "--held-out-fraction", str(config.held_out_fraction),
    ]  # fmt: skip
    context.log.info(f"training: OMP_NUM_THREADS={config.threads} {' '.join(command)}")
    run_logged(context, command, config.threads)

    run_info = json.loads((out / RUN).read_text())
    records = [json.loads(line) for line in (out / METRICS).read_text().splitlines()]
    steps = [r for r in records if r.get("event") is None]
    evaluations = json.loads((out / EVALUATION).read_text())["after_stage"]
    # The pinned versions must be the ones this run consumed: what the trainer read (run.json's
    # upstream) and what Dagster passed (the input's data version) are compared before sealing.
    consumed = _input_data_version(context, TOKEN_SHARDS)
    if consumed is not None and consumed != token_shards.partition("/")[2]:
        raise dg.Failure(
            f"token_shards input version {consumed} differs from the folder trained on {token_shards}"
        )
    record = build_record(
        layout,
        out,
        recipe=config.recipe,
        orchestration={
            "orchestrator": "dagster",
            "dagster_run_id": context.run_id,
            "input_versions": {TOKEN_SHARDS: consumed},
            "training_config": config.model_dump(),
        },
    )
    manifest, ledger_index = seal_model(layout, out, record)
    folder = layout.datasets / manifest.ref
    late = steps[-max(1, len(steps) // 10) :]
    load_cv = [sum(r["load_cv"][layer] for r in late) / len(late) for layer in range(len(late[0]["load_cv"]))]
    speeds = sorted(r["tokens_per_s"] for r in steps[1:] or steps)
    plots = Path(context.instance.storage_directory()) / "plots"
    model_sha = run_info["files"].get(EXPORT_FILE, "")
    metadata = {
        "model_version": dg.MetadataValue.text(manifest.version_id),
        "manifest": dg.MetadataValue.path(str(folder / MANIFEST)),
        "provenance_record": dg.MetadataValue.path(str(folder / RECORD)),
        "new_version": dg.MetadataValue.bool(ledger_index is not None),
        "parents": dg.MetadataValue.json(list(manifest.parents)),
        "code": dg.MetadataValue.json(record["code"]),
        "upstream_versions": dg.MetadataValue.json({k: run_info["upstream"][k] for k in MODEL_INPUTS}),
        "stage_plan": dg.MetadataValue.json(run_info["stage_plan"]),
        "steps": dg.MetadataValue.int(len(steps)),
        "first_loss": dg.MetadataValue.float(steps[0]["lm_loss"]),
        "final_loss": dg.MetadataValue.float(steps[-1]["lm_loss"]),
        "tokens_per_s": dg.MetadataValue.float(speeds[len(speeds) // 2]),
        "expert_load_cv": dg.MetadataValue.json({f"layer_{i}": round(cv, 4) for i, cv in enumerate(load_cv)}),
        "held_out_perplexity": dg.MetadataValue.md(_perplexity_table(evaluations)),
        "model_sha256": dg.MetadataValue.text(model_sha),
        "file_sha256": dg.MetadataValue.json(run_info["files"]),
        **plot_metadata(
            "loss_curve", loss_plot_png(steps, run_info["stage_plan"]), plots / f"loss-{out.name}.png"
        ),
        **plot_metadata(
            "perplexity_by_language", perplexity_plot_png(evaluations), plots / f"perplexity-{out.name}.png"
        ),
    }
    pinned = ledger_records(layout).get(manifest.ref)  # this run's entry, or the first run's
    if pinned is not None:
        metadata["ledger_index"] = dg.MetadataValue.int(pinned.index)
    yield dg.Output(manifest.ref, data_version=dg.DataVersion(manifest.version_id), metadata=metadata)
    result = StepResult(manifest, ledger_index is not None, {}, {}, folder, ledger_index)
    outcomes = {**version_outcomes(result, layout), **training_outcomes(folder, steps, run_info)}
    yield from check_results(TRAINED_MODEL, outcomes)


def _input_data_version(context: dg.AssetExecutionContext, name: str) -> str | None:
    """The data version Dagster records as this run's input ``name`` (its latest materialization's)."""
    from dagster._core.definitions.data_version import extract_data_version_from_entry

    record = context.instance.get_latest_data_version_record(dg.AssetKey(name))
    version = None if record is None else extract_data_version_from_entry(record.event_log_entry)
    return None if version is None else version.value


TRAINING_ASSETS = [trained_model]
