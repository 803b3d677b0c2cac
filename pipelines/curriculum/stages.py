"""``curriculum_stages``: per stage, the exact documents a model will see, how often and in what order.

    build_curriculum_stages   quality_scored (one per snapshot) + Curriculum -> curriculum_stages

The version holds ``stages/<index>-<name>.parquet`` (one row per document with its multiplicity,
in a seeded order), ``curriculum.json`` (the resolved config) and ``stage_stats.json`` (tokens per language
before and after sampling, epochs per source). Only the document indexes are read, never the text:
the tokenizer step reads the text through ``source_version``, ``shard`` and ``row``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict

import polars as pl

from pipelines.curriculum.config import ALL_SOURCES, Curriculum, SourcePlan, Stage, selection_filter, validate
from pipelines.curriculum.sampling import integer_multiplicities, stage_order
from pipelines.steps import StepResult, finish_step, new_staging
from records.assets import CURRICULUM_STAGES, QUALITY_SCORED
from records.canonical import write_record
from records.curriculum import CURRICULUM, STAGE_STATS, STAGES, stage_file
from records.documents import INDEX
from records.layout import DataLayout
from records.manifest import Manifest, version_folder

INVENTORY_COLUMNS = (
    "doc_id", "sha256", "shard", "row", "language", "language_score", "quality_percentile",
    "minhash_cluster_size", "num_tokens_est",
)  # fmt: skip
STAGE_COLUMNS = (
    "stage", "stage_index", "position", "doc_id", "sha256", "source_version", "shard", "row", "language",
    "multiplicity", "num_tokens_est",
)  # fmt: skip


def load_inventory(layout: DataLayout, sources: Sequence[Manifest]) -> pl.DataFrame:
    """One row per kept document of ``sources`` (their ``index.parquet``), with ``source`` (the
    snapshot) and ``source_version`` (``asset/version_id``). Raises ``ValueError`` unless they are
    ``quality_scored`` versions of distinct snapshots."""
    not_scored = [m.ref for m in sources if m.asset != QUALITY_SCORED]
    if not_scored or not sources:
        raise ValueError(f"sources: {not_scored or 'none'}; pass {QUALITY_SCORED} versions, one per snapshot")
    snapshots = [m.snapshot for m in sources]
    if len(set(snapshots)) != len(snapshots):
        raise ValueError(f"sources: snapshots {snapshots}; pass one quality_scored version per snapshot")
    frames = [
        pl.read_parquet(
            version_folder(layout.datasets, m.ref) / INDEX, columns=list(INVENTORY_COLUMNS)
        ).with_columns(source=pl.lit(m.snapshot), source_version=pl.lit(m.ref))
        for m in sources
    ]
    return pl.concat(frames, how="vertical_relaxed").filter(pl.col("num_tokens_est") > 0)


def _sample_source(stage: Stage, plan: SourcePlan, pool: pl.DataFrame) -> pl.DataFrame:
    """The pool's documents with their multiplicity, language by language."""
    parts = []
    for language in sorted(plan.targets):
        docs = pool.filter(pl.col("language") == language).sort("source_version", "shard", "row")
        weights = [stage.cluster_upsampling.weight(size) for size in docs["minhash_cluster_size"].to_list()]
        copies = integer_multiplicities(
            docs["num_tokens_est"].to_list(), weights, docs["doc_id"].to_list(), plan.targets[language],
            salt=f"{stage.name}\0{plan.source}\0{language}",
        )  # fmt: skip
        parts.append(docs.with_columns(multiplicity=pl.Series(copies, dtype=pl.Int64)))
    return pl.concat(parts).filter(pl.col("multiplicity") > 0)


def _stage_rows(stage: Stage, index: int, sampled: pl.DataFrame, seed: int) -> pl.DataFrame:
    """One row per selected document, in a seeded order; how its copies are spread over the stage
    is the reader's choice (token_shards makes one pass per copy)."""
    canonical = sampled.sort("source_version", "shard", "row")
    order = stage_order(canonical.height, seed, index)
    return (
        canonical.select(pl.all().gather(order))
        .with_columns(
            stage=pl.lit(stage.name),
            stage_index=pl.lit(index, pl.Int32),
            position=pl.int_range(0, canonical.height, dtype=pl.Int64),
        )
        .select(STAGE_COLUMNS)
    )


def _stage_stats(stage: Stage, budget: int, plans: list[SourcePlan], sampled: pl.DataFrame) -> dict:
    tokens = sampled.with_columns(tokens=pl.col("num_tokens_est") * pl.col("multiplicity"))
    after = {lang: int(n) for lang, n in tokens.group_by("language").agg(pl.col("tokens").sum()).iter_rows()}
    total = sum(after.values())
    by_language: dict[str, dict] = {}
    for plan in plans:
        for language, unique in plan.unique_tokens.items():
            entry = by_language.setdefault(language, {"unique_tokens": 0, "target_tokens": 0.0})
            entry["unique_tokens"] += unique
            entry["target_tokens"] += plan.targets[language]
    for language, entry in by_language.items():
        entry["tokens"] = after.get(language, 0)
        entry["target_share"] = round(entry["target_tokens"] / budget, 6)
        entry["share"] = round(entry["tokens"] / total, 6) if total else 0.0
        entry["target_tokens"] = round(entry["target_tokens"], 1)
    by_source = {}
    for plan in plans:
        source_tokens = (
            tokens if plan.source == ALL_SOURCES else tokens.filter(pl.col("source") == plan.source)
        )
        drawn = int(source_tokens["tokens"].sum())
        unique = sum(plan.unique_tokens.values())
        by_source[plan.source] = {
            "weight": plan.weight, "budget_tokens": round(plan.budget, 1), "unique_tokens": unique,
            "tokens": drawn, "epochs": round(drawn / unique, 4),
        }  # fmt: skip
    return {
        "name": stage.name, "budget_tokens": budget, "tokens": total, "documents": sampled.height,
        "occurrences": int(sampled["multiplicity"].sum()), "max_multiplicity": int(sampled["multiplicity"].max()),
        "language_temperature": stage.language_temperature, "max_epochs": stage.max_epochs,
        "by_language": dict(sorted(by_language.items())), "by_source": by_source,
    }  # fmt: skip


def build_curriculum_stages(
    layout: DataLayout, sources: Sequence[Manifest], curriculum: Curriculum, *, where: str = "curriculum"
) -> StepResult:
    """Validate ``curriculum`` against ``sources`` (``quality_scored`` versions, one per snapshot;
    raises ``ValueError`` before writing anything), then seal a ``curriculum_stages`` version.
    Same sources, curriculum and seed: the same version id. Another seed: another order within each
    stage, the same documents and multiplicities."""
    inventory = load_inventory(layout, sources)
    plans = validate(curriculum, inventory, where)
    staging = new_staging(layout, CURRICULUM_STAGES)
    (staging / STAGES).mkdir()
    all_stats, counts = [], {}
    for index, (stage, budget, stage_plans) in enumerate(
        zip(curriculum.stages, curriculum.stage_tokens(), plans, strict=True)
    ):
        selected = inventory.filter(selection_filter(stage.selection))
        sampled = pl.concat([
            _sample_source(stage, plan, selected if plan.source == ALL_SOURCES else selected.filter(pl.col("source") == plan.source))
            for plan in stage_plans
        ])  # fmt: skip
        rows = _stage_rows(stage, index, sampled, curriculum.seed)
        rel = stage_file(index, stage.name)
        rows.write_parquet(staging / rel, compression="zstd", statistics=False)
        counts[rel] = (rows.height, int((rows["num_tokens_est"] * rows["multiplicity"]).sum()))
        all_stats.append(_stage_stats(stage, budget, stage_plans, sampled))
    total = sum(s["tokens"] for s in all_stats)
    for stats in all_stats:
        stats["share_of_run"] = round(stats["tokens"] / total, 6)
        stats["target_share_of_run"] = round(stats["budget_tokens"] / sum(curriculum.stage_tokens()), 6)
    resolved = {
        **asdict(curriculum),
        "stage_tokens": curriculum.stage_tokens(),
        "sources": [m.ref for m in sources],
    }
    write_record(staging / CURRICULUM, resolved)
    stats_json = {"stages": all_stats, "tokens": total}
    write_record(staging / STAGE_STATS, stats_json)
    result = finish_step(
        layout, staging, asset=CURRICULUM_STAGES, snapshot=None, parents=tuple(m.ref for m in sources),
        config={"curriculum": resolved, "stage_stats": stats_json},
    )  # fmt: skip
    return result


def stage_stats_table(stats: dict) -> str:
    """``stage_stats.json`` as a Markdown table: tokens per language per stage, before (unique
    selected) and after sampling, with target and actual shares."""
    lines = [
        "| stage | language | unique tokens | sampled tokens | target share | share | epochs |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for stage in stats["stages"]:
        for language, entry in stage["by_language"].items():
            epochs = entry["tokens"] / entry["unique_tokens"] if entry["unique_tokens"] else 0.0
            lines.append(
                f"| {stage['name']} | {language} | {entry['unique_tokens']:,} | {entry['tokens']:,} | "
                f"{entry['target_share']:.2%} | {entry['share']:.2%} | {epochs:.2f} |"
            )
    return "\n".join(lines)


__all__ = ["CURRICULUM_STAGES", "build_curriculum_stages", "load_inventory", "stage_stats_table"]
