"""What each curation asset shows in the Dagster UI, built from a step's result.

Tables are Markdown (they render in the asset's metadata panel); the language plot is a PNG
embedded as a data URI, and also written beside the version so it stays with the evidence.
"""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import pyarrow.parquet as pq

from assets.external.report import figure_png, plot_markdown
from pipelines.steps import StepResult
from records.documents import EXCLUDED, SHARDS
from records.manifest import MANIFEST

EXAMPLE_CHARS = 240
NUM_EXAMPLES = 3


def _language_table(kept: dict, excluded: dict) -> str:
    languages = sorted(set(kept["by_language"]) | set(excluded["by_language"]))
    lines = [
        "| language | documents | characters | tokens (est.) | dropped |",
        "|---|---:|---:|---:|---:|",
    ]
    for lang in languages:
        k = kept["by_language"].get(lang, {})
        d = excluded["by_language"].get(lang, {})
        lines.append(
            f"| {lang} | {k.get('documents', 0):,} | {k.get('characters', 0):,} | {k.get('tokens_est', 0):,} | {d.get('documents', 0):,} |"
        )
    return "\n".join(lines)


def _reason_table(by_reason: dict) -> str:
    if not by_reason:
        return "_nothing removed_"
    lines = ["| reason | documents |", "|---|---:|"]
    lines += [
        f"| `{reason}` | {count:,} |" for reason, count in sorted(by_reason.items(), key=lambda x: -x[1])
    ]
    return "\n".join(lines)


def _examples(folder: Path, subdir: str) -> str:
    shards = sorted((folder / subdir).glob("*.parquet"))
    if not shards:
        return "_none_"
    rows = pq.read_table(
        shards[0], columns=["id", "language", "text", "filter_reason", "filter_details"]
    ).slice(0, NUM_EXAMPLES)
    parts = []
    for row in rows.to_pylist():
        text = row["text"][:EXAMPLE_CHARS].replace("\n", " ").replace("|", "\\|")
        reason = (
            f" — **{row['filter_reason']}** {row['filter_details'] or ''}" if row["filter_reason"] else ""
        )
        parts.append(f"- `{row['id']}` ({row['language'] or '?'}){reason}\n  > {text}…")
    return "\n".join(parts)


def language_plot_png(kept: dict) -> bytes:
    """A bar chart of kept documents and estimated tokens per language."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    languages = sorted(kept["by_language"], key=lambda lang: -kept["by_language"][lang].get("tokens_est", 0))
    tokens = [kept["by_language"][lang].get("tokens_est", 0) for lang in languages]
    fig, ax = plt.subplots(figsize=(8, 3.2), dpi=100)
    ax.bar(languages, tokens, color="#4C72B0")
    ax.set_ylabel("tokens (estimated)")
    ax.set_title("Kept text per language")
    ax.tick_params(axis="x", rotation=45)
    return figure_png(fig)


def version_metadata(result: StepResult) -> dict[str, dg.MetadataValue]:
    """What every dataset-version asset reports: which version, made from what, pinned where."""
    manifest = result.manifest
    metadata = {
        "dataset_version": dg.MetadataValue.text(manifest.version_id),
        "manifest": dg.MetadataValue.path(str(result.folder / MANIFEST)),
        "new_version": dg.MetadataValue.bool(result.created),
        "parents": dg.MetadataValue.json(list(manifest.parents)),
        "code_version": dg.MetadataValue.text(manifest.code_version),
    }
    index = result.ledger_index
    if index is None:  # a reused version: the entry that pinned it when it was first made
        from records.layout import DataLayout
        from records.versions import ledger_records

        record = ledger_records(DataLayout(result.folder.parents[2])).get(manifest.ref)
        index = None if record is None else record.index
    if index is not None:
        metadata["ledger_index"] = dg.MetadataValue.int(index)
    return metadata


def plot_metadata(name: str, png: bytes, path: Path) -> dict[str, dg.MetadataValue]:
    """A plot as an image in the metadata panel, and as a file beside the instance's storage."""
    return {
        name: dg.MetadataValue.md(plot_markdown(name, png, path)),
        f"{name}_png": dg.MetadataValue.path(str(path)),
    }


def step_metadata(result: StepResult, plot_dir: Path) -> dict[str, dg.MetadataValue]:
    """The metadata of a curation step: version, counts, tables, examples and the language plot."""
    manifest = result.manifest
    plot_path = plot_dir / f"{manifest.asset}-{manifest.version_id[:16]}-languages.png"
    metadata = {
        **version_metadata(result),
        "documents_kept": dg.MetadataValue.int(result.kept["documents"]),
        "documents_removed": dg.MetadataValue.int(result.excluded["documents"]),
        "languages": dg.MetadataValue.md(_language_table(result.kept, result.excluded)),
        "removals_by_reason": dg.MetadataValue.md(_reason_table(result.excluded["by_reason"])),
        "examples_kept": dg.MetadataValue.md(_examples(result.folder, SHARDS)),
        "examples_removed": dg.MetadataValue.md(_examples(result.folder, EXCLUDED)),
        **plot_metadata("language_distribution", language_plot_png(result.kept), plot_path),
    }
    quarantine = manifest.stats.get("quarantine")
    if quarantine is not None:
        metadata["quarantined_records"] = dg.MetadataValue.int(quarantine["records"])
        metadata["quarantine_by_reason"] = dg.MetadataValue.md(_reason_table(quarantine["by_reason"]))
    return metadata


def curriculum_plot_png(stage_stats: dict) -> bytes:
    """Per stage, tokens per language before sampling (unique) and after (with repetitions)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    stages = stage_stats["stages"]
    fig, axes = plt.subplots(len(stages), 1, figsize=(9, 2.4 * len(stages)), dpi=100, squeeze=False)
    for ax, stage in zip(axes[:, 0], stages, strict=True):
        languages = sorted(stage["by_language"])
        unique = [stage["by_language"][lang]["unique_tokens"] for lang in languages]
        sampled = [stage["by_language"][lang]["tokens"] for lang in languages]
        positions = range(len(languages))
        ax.bar(
            [p - 0.2 for p in positions], unique, width=0.4, label="before sampling (unique)", color="#9AA9C2"
        )
        ax.bar([p + 0.2 for p in positions], sampled, width=0.4, label="after sampling", color="#4C72B0")
        ax.set_xticks(list(positions), languages, rotation=45)
        ax.set_title(f"stage {stage.get('name', '')}: tokens per language")
        ax.legend(fontsize=7)
    return figure_png(fig)
