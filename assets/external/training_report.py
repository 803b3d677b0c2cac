"""What the trained_model asset shows for a sealed run: loss and perplexity plots, the perplexity
table, the materialization metadata and the two training checks. Dagster-free (the Pipes child
``assets.external.train`` reports them)."""

from __future__ import annotations

import json
from pathlib import Path

from assets.external.report import Outcome, figure_png, plot_values, value
from records.assets import MODEL_INPUTS
from records.hashing import sha256_file
from records.models import EVALUATION, EXPORT_FILE, METRICS, RUN

# loss_decreased: the mean loss of the last steps must be this fraction below the first step's.
LOSS_DROP = 0.05


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


def _number(value: float | None) -> str:
    """A perplexity cell: blank when nothing was measured (no held-out tokens: null in the record)."""
    return "" if value is None else f"{value:,.1f}"


def perplexity_table(evaluations: list[dict]) -> str:
    """Held-out perplexity per language (rows) after each stage (columns), as Markdown."""
    languages = sorted({lang for e in evaluations for lang in e["perplexity"]})
    lines = ["| language | " + " | ".join(f"after {e['stage']}" for e in evaluations) + " |"]
    lines.append("|---|" + "---:|" * len(evaluations))
    for lang in languages:
        cells = [_number(e["perplexity"].get(lang)) for e in evaluations]
        lines.append(f"| {lang} | " + " | ".join(cells) + " |")
    lines.append(
        "| **overall** | " + " | ".join(_number(e["overall"]["perplexity"]) for e in evaluations) + " |"
    )
    return "\n".join(lines)


def read_run(out: Path) -> tuple[dict, list[dict], list[dict]]:
    """A run folder's run.json, its per-step metrics records and its stage-end evaluations."""
    run_info = json.loads((out / RUN).read_text())
    records = [json.loads(line) for line in (out / METRICS).read_text().splitlines()]
    steps = [r for r in records if r.get("event") is None]
    evaluations = json.loads((out / EVALUATION).read_text())["after_stage"]
    return run_info, steps, evaluations


def training_values(
    out: Path, steps: list[dict], evaluations: list[dict], run_info: dict, plots: Path
) -> dict:
    """The run's metadata as Pipes values: upstream versions, stage plan, losses, throughput, expert
    load, held-out perplexities, file hashes and the two plots (written under ``plots``)."""
    late = steps[-max(1, len(steps) // 10) :]
    load_cv = [sum(r["load_cv"][layer] for r in late) / len(late) for layer in range(len(late[0]["load_cv"]))]
    speeds = sorted(r["tokens_per_s"] for r in steps[1:] or steps)
    return {
        "upstream_versions": value({k: run_info["upstream"][k] for k in MODEL_INPUTS}, "json"),
        "stage_plan": value(run_info["stage_plan"], "json"),
        "steps": value(len(steps), "int"),
        "first_loss": value(steps[0]["lm_loss"], "float"),
        "final_loss": value(steps[-1]["lm_loss"], "float"),
        "tokens_per_s": value(speeds[len(speeds) // 2], "float"),
        "expert_load_cv": value({f"layer_{i}": round(cv, 4) for i, cv in enumerate(load_cv)}, "json"),
        "held_out_perplexity": value(perplexity_table(evaluations), "md"),
        "model_sha256": value(run_info["files"].get(EXPORT_FILE, ""), "text"),
        "file_sha256": value(run_info["files"], "json"),
        **plot_values(
            "loss_curve", loss_plot_png(steps, run_info["stage_plan"]), plots / f"loss-{out.name}.png"
        ),
        **plot_values(
            "perplexity_by_language", perplexity_plot_png(evaluations), plots / f"perplexity-{out.name}.png"
        ),
    }


def training_outcomes(out: Path, steps: list[dict], run_info: dict) -> dict[str, Outcome]:
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
