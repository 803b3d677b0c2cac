"""The auditor-facing tables of a dataset version, derived from its document shards.

``index.parquet`` has one row per kept document, ``exclusions.parquet`` one row per dropped
document: where it is (shard and row), who it is (ids, URL, content hash), and what the steps
found (language, scores, clusters, reason).

Each shard's part is built where the shard was written: ``ShardTables``, the last stage of a
step's tasks, reads each output shard once and writes its rows of the table, its counts and its
sorted run of lookup rows (records.lookup_runs) into a parts folder. The step's own process then
only merges: ``build_tables`` appends the parts' row groups in shard order and sums their counts,
and the lookup is a k-way merge of the runs (records.lookup_build). Neither reads a document's
text, and the step's memory is bounded by a row group and the number of shards, not by the
version.
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from datatrove.data import DocumentsPipeline
from datatrove.pipeline.base import PipelineStep

from pipelines import fields
from pipelines.executor import ExecutorConfig, run_pipeline
from records.documents import EXCLUDED, EXCLUSIONS, INDEX, SHARDS
from records.layout import Attempt
from records.lookup_runs import answer_table, write_run

INDEX_COLUMNS = (
    "doc_id", "snapshot", "source_id", "source_file", "source_offset", "url", "sha256", "language",
    "language_score", "script", "quality_score", "quality_percentile", "minhash_cluster_id", "minhash_cluster_size", "num_chars",
    "num_tokens_est", "shard", "row",
)  # fmt: skip
EXCLUSION_COLUMNS = INDEX_COLUMNS + ("step", "reason", "details")
STEP_METADATA_KEY = b"apertus.step"

# Rough tokens per UTF-8 byte of a multilingual BPE vocabulary, used only until the tokenizer
# exists (the curriculum issue replaces it with real counts).
BYTES_PER_TOKEN = 4.0
# A shard's part, in the parts folder: ``<kind>-<shard file name>`` (kind 0: shards/, 1: excluded/)
# plus these suffixes; the counts file is written last, so it marks a complete part.
PART_TABLE, PART_COUNTS = ".table.parquet", ".counts.json"
PART_ROW_GROUP = 1 << 16
TABLE_PARTS = "table_parts"  # the parts folder: in the attempt's task logs, deleted once sealed  # rows per row group of a part, and so of the merged tables


@dataclass
class TableStats:
    """Counts a step reports: per language (documents, characters, estimated tokens), per reason."""

    documents: int = 0
    by_language: dict[str, dict[str, int]] = field(default_factory=lambda: defaultdict(Counter))
    by_reason: Counter = field(default_factory=Counter)

    def add(self, counts: dict) -> None:
        """Add the counts of another piece (an ``as_dict`` value)."""
        self.documents += counts["documents"]
        for language, values in counts["by_language"].items():
            for key, value in values.items():
                self.by_language[language][key] += value
        self.by_reason.update(counts["by_reason"])

    def as_dict(self) -> dict:
        return {
            "documents": self.documents,
            "by_language": {k: dict(v) for k, v in sorted(self.by_language.items())},
            "by_reason": dict(sorted(self.by_reason.items())),
        }


def _shard_table(path: Path, rel: str) -> pa.Table:
    table = pq.read_table(path)
    num_bytes = pc.binary_length(pc.cast(table["text"], pa.binary()))
    tokens = pc.cast(pc.ceil(pc.divide(pc.cast(num_bytes, pa.float64()), BYTES_PER_TOKEN)), pa.int64())
    return (
        table.rename_columns(["doc_id" if c == "id" else c for c in table.column_names])
        .drop(["text", "extra"])
        .append_column("num_chars", pc.utf8_length(table["text"]))
        .append_column("num_tokens_est", tokens)
        .append_column("shard", pa.array([rel] * table.num_rows, pa.string()))
        .append_column("row", pa.array(range(table.num_rows), pa.int64()))
    )


def shard_files(version_dir: Path) -> list[Path]:
    """The document shards of a version folder, kept first, each kind in name order: the order of
    the tables' rows. Cost: two directory listings."""
    return [path for kind in (SHARDS, EXCLUDED) for path in sorted((version_dir / kind).glob("*.parquet"))]


def _part_stem(parts: Path, version_dir: Path, shard: Path) -> Path:
    kind = 0 if shard.parent == version_dir / SHARDS else 1
    return parts / f"{kind}-{shard.name}"


def write_shard_part(version_dir: Path, shard: Path, parts: Path, step: str) -> None:
    """Write ``shard``'s part into ``parts``: its rows of the index (a kept shard) or of the
    exclusions, its documents, estimated tokens and stats, and its lookup run. Cost: O(the shard)
    time and memory, in the process that calls it (a task of the step)."""
    rel = shard.relative_to(version_dir).as_posix()
    excluded = shard.parent == version_dir / EXCLUDED
    table = _shard_table(shard, rel)
    if excluded:
        table = table.append_column("step", pa.array([step] * table.num_rows, pa.string()))
        table = table.append_column("reason", table[fields.FILTER_REASON])
        table = table.append_column("details", table[fields.FILTER_DETAILS])
    table = table.select(list(EXCLUSION_COLUMNS if excluded else INDEX_COLUMNS))
    stats = TableStats()
    _accumulate(stats, table)
    stem = _part_stem(parts, version_dir, shard)
    pq.write_table(table, f"{stem}{PART_TABLE}", compression="zstd", row_group_size=PART_ROW_GROUP)
    write_run(answer_table(table, not excluded, rel), stem)
    tokens = int(pc.sum(table["num_tokens_est"]).as_py() or 0)
    counts = {"shard": rel, "documents": table.num_rows, "tokens": tokens, "stats": stats.as_dict()}
    Path(f"{stem}{PART_COUNTS}").write_text(json.dumps(counts, sort_keys=True))


class ShardTables(PipelineStep):
    """A step's last stage: task ``rank`` of ``world_size`` writes the parts (``write_shard_part``)
    of the version's shards number rank, rank + world_size, … Cost per task: O(its shards)."""

    type = "📒 - TABLES"
    name = "📋 Shard tables"

    def __init__(self, version_dir: Path | str, parts: Path | str, step: str):
        super().__init__()
        self.version_dir, self.parts, self.step = Path(version_dir), Path(parts), step

    def run(self, data: DocumentsPipeline, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        for number, shard in enumerate(shard_files(self.version_dir)):
            if number % world_size == rank:
                with self.track_time():
                    write_shard_part(self.version_dir, shard, self.parts, self.step)
                self.stat_update("shards")
        return


def table_tasks(attempt: Attempt, asset: str, executor: ExecutorConfig) -> Path:
    """Run the step's last stage: tasks that write each output shard's part of the tables and of
    the lookup (pipelines.tables.ShardTables) into a folder beside the task logs; return it. With
    ``attempt.resume`` the tasks a failed attempt completed are skipped. Cost: O(the shards), in
    the tasks (locally or on Ray); nothing in this process."""
    parts = attempt.logs / TABLE_PARTS
    parts.mkdir(parents=True, exist_ok=True)
    files = len(shard_files(attempt.staging))
    if files:  # as many tasks as files at most: the count is the same on a retry, as resume needs
        stage = ShardTables(attempt.staging, parts, asset)
        tasks = min(executor.tasks, files)
        run_pipeline(
            [stage], logging_dir=attempt.logs / "tables", config=executor, tasks=tasks, resume=attempt.resume
        )
    return parts


def part_runs(parts: Path) -> list[Path]:
    """The lookup runs of a parts folder, in table order (records.lookup_build.build_lookup)."""
    return [Path(str(path)[: -len(PART_COUNTS)]) for path in sorted(parts.glob(f"*{PART_COUNTS}"))]


def _merge_parts(version_dir: Path, parts: Path, kind: int, out_name: str, step: str):
    """Append the parts of one kind into ``out_name``, a row group at a time; return (per-shard
    counts, stats). Cost: O(the parts' rows) time; memory one row group (PART_ROW_GROUP rows)."""
    counts: dict[str, tuple[int, int]] = {}
    stats = TableStats()
    schema = writer = None
    out_path = version_dir / out_name
    for stem in part_runs(parts):
        if not stem.name.startswith(f"{kind}-"):
            continue
        part = json.loads(Path(f"{stem}{PART_COUNTS}").read_text())
        counts[part["shard"]] = (part["documents"], part["tokens"])
        stats.add(part["stats"])
        with pq.ParquetFile(f"{stem}{PART_TABLE}") as table:
            if writer is None:
                schema = _with_step(table.schema_arrow.remove_metadata(), step)
                writer = pq.ParquetWriter(out_path, schema, compression="zstd")
            for group in range(table.num_row_groups):
                writer.write_table(table.read_row_group(group).cast(schema))
    if writer is None:
        columns = INDEX_COLUMNS if kind == 0 else EXCLUSION_COLUMNS
        empty = _with_step(_empty_schema(columns), step)
        pq.write_table(empty.empty_table(), out_path, compression="zstd")
    else:
        writer.close()
    return counts, stats


def _with_step(schema: pa.Schema, step: str) -> pa.Schema:
    # The step that wrote the table, in its Parquet metadata: the tables of two empty versions of
    # different steps would otherwise be the same bytes, and so the same version id.
    return schema.with_metadata({**(schema.metadata or {}), STEP_METADATA_KEY: step.encode()})


def _empty_schema(columns: tuple[str, ...]) -> pa.Schema:
    from pipelines.shards import SHARD_SCHEMA

    types = {f.name: f.type for f in SHARD_SCHEMA}
    types.update(doc_id=pa.string(), num_chars=pa.int64(), num_tokens_est=pa.int64(), shard=pa.string())
    types.update(row=pa.int64(), step=pa.string(), reason=pa.string(), details=pa.string())
    return pa.schema([(c, types[c]) for c in columns])


def _accumulate(stats: TableStats, table: pa.Table) -> None:
    stats.documents += table.num_rows
    languages = table["language"].to_pylist()
    chars = table["num_chars"].to_pylist()
    tokens = table["num_tokens_est"].to_pylist()
    reasons = table["reason"].to_pylist() if "reason" in table.column_names else [None] * table.num_rows
    for lang, n_chars, n_tokens, reason in zip(languages, chars, tokens, reasons, strict=True):
        entry = stats.by_language[lang or "unknown"]
        entry["documents"] += 1
        entry["characters"] += n_chars or 0
        entry["tokens_est"] += n_tokens or 0
        if reason:
            stats.by_reason[reason] += 1


def build_tables(
    version_dir: Path, step: str, parts: Path
) -> tuple[dict[str, tuple[int, int]], TableStats, TableStats]:
    """Write ``index.parquet`` (from ``shards/``) and ``exclusions.parquet`` (from ``excluded/``)
    from the shards' parts in ``parts`` (``ShardTables``); a shard without a complete part (every
    shard, for a step that ran no table tasks) gets it written here first, one shard at a time.

    Returns (documents and estimated tokens per shard file, kept stats, excluded stats). Cost:
    O(rows) time without reading a document's text when every part exists; memory bounded by one
    shard (a part built here) or one row group, not by the version.
    """
    parts.mkdir(parents=True, exist_ok=True)
    for shard in shard_files(version_dir):
        if not Path(f"{_part_stem(parts, version_dir, shard)}{PART_COUNTS}").exists():
            write_shard_part(version_dir, shard, parts, step)
    counts, kept = _merge_parts(version_dir, parts, 0, INDEX, step)
    excluded_counts, excluded = _merge_parts(version_dir, parts, 1, EXCLUSIONS, step)
    return {**counts, **excluded_counts}, kept, excluded


def reason_details(details: str | None) -> dict:
    """Parse the JSON ``details`` column of an exclusion row (empty dict when absent)."""
    return json.loads(details) if details else {}
