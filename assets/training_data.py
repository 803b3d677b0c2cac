"""From curated snapshots to training data: the learned quality score and the curriculum.

raw_documents + language_identified + quality_filtered -> quality_classifier   (per snapshot)
deduplicated + quality_classifier                      -> quality_scored       (per snapshot)
quality_scored (every snapshot) + curriculum YAML      -> curriculum_stages
"""

from pathlib import Path

import dagster as dg

from assets.checks import check_specs, version_outcomes, version_output
from assets.curation import CODE_VERSION, snapshots
from assets.metadata import curriculum_plot_png, plot_metadata, step_metadata, version_metadata
from assets.operations import CPU_POOL, CURATION_AUTOMATION, CURATION_RETRY, STAGING_AUTOMATION
from assets.resources import CurationResource
from pipelines.curriculum import load_curriculum
from pipelines.curriculum.stages import build_curriculum_stages, stage_stats_table
from pipelines.quality_model import score_quality, train_quality_classifier
from pipelines.token_shards import TokenShardConfig, build_token_shards
from pipelines.tokenizer import TokenizerConfig, train_tokenizer
from records.assets import (
    CURRICULUM_STAGES,
    DEDUPLICATED,
    QUALITY_CLASSIFIER,
    QUALITY_SCORED,
    TOKEN_SHARDS,
    TOKENIZER,
)
from records.curriculum import read_stage_stats
from records.layout import REPO_ROOT
from records.quality import REFERENCE_SET, read_metrics
from records.token_shards import read_index
from records.tokenizer import read_fertility

DEFAULT_CURRICULUM = REPO_ROOT / "configs" / "curriculum" / "sample.yaml"


class CurriculumConfig(dg.Config):
    """Which curriculum file the stages follow (a path, relative to the checkout or absolute)."""

    curriculum_path: str = str(DEFAULT_CURRICULUM.relative_to(REPO_ROOT))


def _refs(upstream) -> list[str]:
    # Dagster hands a multi-partition input over as {partition: value}, and a single one as the value.
    return [upstream] if isinstance(upstream, str) else [ref for _, ref in sorted(upstream.items())]


@dg.asset(
    partitions_def=snapshots,
    group_name="training_data",
    code_version=CODE_VERSION,
    check_specs=check_specs(QUALITY_CLASSIFIER),
    kinds={"fasttext"},
    retry_policy=CURATION_RETRY,
    pool=CPU_POOL,
    automation_condition=CURATION_AUTOMATION,
)
def quality_classifier(
    context: dg.AssetExecutionContext,
    curation: CurationResource,
    raw_documents: str,
    language_identified: str,
    quality_filtered: str,
):
    """A fastText classifier of reference-quality prose (the bundled, human-written sources,
    decontaminated against the crawl by paragraph) against raw crawl pages; held-out precision,
    recall and AUC (overall and per language) in the metadata (DCLM's recipe, on local data only)."""
    layout = curation.layout()
    result = train_quality_classifier(
        layout,
        curation.manifest(raw_documents),
        (curation.manifest(language_identified), curation.manifest(quality_filtered)),
    )
    metrics = read_metrics(result.folder)
    context.log.info(f"quality classifier {result.manifest.short_id}: held-out AUC {metrics['auc']:.3f}")
    metadata = {
        **version_metadata(result),
        **{
            name: dg.MetadataValue.float(float(metrics[name]))
            for name in ("auc", "precision", "recall")
            if metrics.get(name) is not None
        },
        "metrics": dg.MetadataValue.json(metrics),
        "reference_set": dg.MetadataValue.path(str(result.folder / REFERENCE_SET)),
    }
    yield from version_output(result, metadata, version_outcomes(result, layout))


@dg.asset(
    partitions_def=snapshots,
    group_name="training_data",
    code_version=CODE_VERSION,
    check_specs=check_specs(QUALITY_SCORED, "every_document_scored"),
    kinds={"parquet"},
    retry_policy=CURATION_RETRY,
    pool=CPU_POOL,
    automation_condition=CURATION_AUTOMATION,
)
def quality_scored(
    context: dg.AssetExecutionContext, curation: CurationResource, deduplicated: str, quality_classifier: str
):
    """The deduplicated documents with their learned quality score and its percentile within
    their language."""
    layout = curation.layout()
    result = score_quality(
        layout,
        curation.manifest(deduplicated),
        curation.manifest(quality_classifier),
        curation.executor(),
    )
    metadata = step_metadata(result, Path(context.instance.storage_directory()) / "plots")
    outcomes = version_outcomes(result, layout)
    from records.catalog import query

    _, [(unscored,)] = query(
        layout,
        "SELECT count(*) FROM document_index WHERE dataset_version = ? "
        "AND (quality_score IS NULL OR quality_percentile IS NULL)",
        [result.manifest.version_id],
    )
    outcomes["every_document_scored"] = (unscored == 0, {"documents_without_score": unscored})
    yield from version_output(result, metadata, outcomes)


@dg.asset(
    group_name="training_data",
    code_version=CODE_VERSION,
    check_specs=check_specs(CURRICULUM_STAGES, "no_stage_empty"),
    ins={QUALITY_SCORED: dg.AssetIn(partition_mapping=dg.AllPartitionMapping())},
    kinds={"parquet"},
    retry_policy=CURATION_RETRY,
    pool=CPU_POOL,
    automation_condition=STAGING_AUTOMATION,
)
def curriculum_stages(
    context: dg.AssetExecutionContext,
    config: CurriculumConfig,
    curation: CurationResource,
    quality_scored,
):
    """Per curriculum stage, the exact documents (id and sha256) and how many times each is
    sampled, deterministic for the curriculum's seed; tokens per language before and after
    sampling, and the epochs of every source."""
    layout = curation.layout()
    path = Path(config.curriculum_path)
    path = path if path.is_absolute() else REPO_ROOT / path
    sources = [curation.manifest(ref) for ref in _refs(quality_scored)]
    result = build_curriculum_stages(layout, sources, load_curriculum(path), where=str(path))
    stats = read_stage_stats(result.folder)
    context.log.info(
        f"curriculum_stages {result.manifest.short_id}: {len(stats['stages'])} stages from {path}"
    )
    plot_path = (
        Path(context.instance.storage_directory()) / "plots" / f"curriculum-{result.manifest.short_id}.png"
    )
    metadata = {
        **version_metadata(result),
        "curriculum": dg.MetadataValue.path(str(path)),
        "stages": dg.MetadataValue.md(stage_stats_table(stats)),
        **plot_metadata("tokens_per_language_by_stage", curriculum_plot_png(stats), plot_path),
    }
    outcomes = version_outcomes(result, layout)
    empty = [stage["name"] for stage in stats["stages"] if not stage["documents"]]
    outcomes["no_stage_empty"] = (not empty, {"empty_stages": empty})
    yield from version_output(result, metadata, outcomes)


def _fertility_table(languages: dict) -> str:
    lines = ["| language | tokens per character | tokens per word | round trip |", "|---|---:|---:|---|"]
    for language, entry in sorted(languages.items()):
        exact = "exact" if entry["round_trip_exact"] else "**differs**"
        lines.append(
            f"| {language} | {entry['tokens_per_character']:.3f} | {entry['tokens_per_word']:.2f} | {exact} |"
        )
    return "\n".join(lines)


@dg.asset(
    group_name="training_data",
    code_version=CODE_VERSION,
    check_specs=check_specs(TOKENIZER, "round_trips_every_language"),
    ins={DEDUPLICATED: dg.AssetIn(partition_mapping=dg.AllPartitionMapping())},
    kinds={"huggingface"},
    retry_policy=CURATION_RETRY,
    pool=CPU_POOL,
    automation_condition=STAGING_AUTOMATION,
)
def tokenizer(context: dg.AssetExecutionContext, curation: CurationResource, deduplicated):
    """A byte-level BPE tokenizer trained on a language-balanced sample of every snapshot's
    deduplicated documents; its fertility (tokens per character and per word) per language."""
    layout = curation.layout()
    sources = [curation.manifest(ref) for ref in _refs(deduplicated)]
    result = train_tokenizer(layout, sources, config=TokenizerConfig())
    languages = read_fertility(result.folder)["languages"]
    context.log.info(f"tokenizer {result.manifest.short_id}: {len(languages)} languages")
    metadata = {**version_metadata(result), "fertility": dg.MetadataValue.md(_fertility_table(languages))}
    outcomes = version_outcomes(result, layout)
    differs = sorted(lang for lang, entry in languages.items() if not entry["round_trip_exact"])
    outcomes["round_trips_every_language"] = (not differs, {"languages_not_round_tripping": differs})
    yield from version_output(result, metadata, outcomes)


def _shards_table(index: dict) -> str:
    lines = ["| stage | sequences | tokens |", "|---|---:|---:|"]
    lines += [f"| {s['stage']} | {s['num_sequences']:,} | {s['num_tokens']:,} |" for s in index["stages"]]
    return "\n".join(lines)


@dg.asset(
    group_name="training_data",
    code_version=CODE_VERSION,
    check_specs=check_specs(TOKEN_SHARDS, "no_stage_empty"),
    kinds={"numpy"},
    retry_policy=CURATION_RETRY,
    pool=CPU_POOL,
    automation_condition=STAGING_AUTOMATION,
)
def token_shards(
    context: dg.AssetExecutionContext, curation: CurationResource, curriculum_stages: str, tokenizer: str
):
    """Per curriculum stage, shuffled fixed-length token sequences in memory-mappable shards, and
    for every sequence the documents (id, sha256, version) its tokens came from."""
    layout = curation.layout()
    result = build_token_shards(
        layout,
        curation.manifest(curriculum_stages),
        curation.manifest(tokenizer),
        config=TokenShardConfig(),
    )
    index = read_index(result.folder)
    context.log.info(
        f"token_shards {result.manifest.short_id}: {sum(s['num_tokens'] for s in index['stages']):,} tokens"
    )
    metadata = {
        **version_metadata(result),
        "stages": dg.MetadataValue.md(_shards_table(index)),
        "tokens": dg.MetadataValue.int(sum(s["num_tokens"] for s in index["stages"])),
    }
    outcomes = version_outcomes(result, layout)
    empty = [s["stage"] for s in index["stages"] if not s["num_sequences"]]
    outcomes["no_stage_empty"] = (not empty, {"empty_stages": empty})
    yield from version_output(result, metadata, outcomes)


TRAINING_DATA_ASSETS = [quality_classifier, quality_scored, curriculum_stages, tokenizer, token_shards]
