"""The auditor-facing tables of a dataset version, derived from its document shards.

``index.parquet`` has one row per kept document, ``exclusions.parquet`` one row per dropped
document: where it is (shard and row), who it is (ids, URL, content hash), and what the steps
found (language, scores, clusters, reason). Both are built one shard at a time, so memory is
bounded by the largest shard, not by the dataset.
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from pipelines import fields
from records.documents import EXCLUDED, EXCLUSIONS, INDEX, SHARDS

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


@dataclass
class TableStats:
    """Counts a step reports: per language (documents, characters, estimated tokens), per reason."""

    documents: int = 0
    by_language: dict[str, dict[str, int]] = field(default_factory=lambda: defaultdict(Counter))
    by_reason: Counter = field(default_factory=Counter)

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


def _write_table(version_dir: Path, shards_subdir: str, columns: tuple[str, ...], out_name: str, step: str):
    """Write ``out_name`` from the shards in ``shards_subdir``; return (per-shard counts, stats)."""
    counts: dict[str, tuple[int, int]] = {}
    stats = TableStats()
    schema = None
    writer = None
    out_path = version_dir / out_name
    for path in sorted((version_dir / shards_subdir).glob("*.parquet")):
        rel = path.relative_to(version_dir).as_posix()
        table = _shard_table(path, rel)
        if "step" in columns:
            reasons = table[fields.FILTER_REASON]
            table = table.append_column("step", pa.array([step] * table.num_rows, pa.string()))
            table = table.append_column("reason", reasons).append_column(
                "details", table[fields.FILTER_DETAILS]
            )
        table = table.select(list(columns))
        counts[rel] = (table.num_rows, int(pc.sum(table["num_tokens_est"]).as_py() or 0))
        _accumulate(stats, table)
        if writer is None:
            schema = _with_step(table.schema, step)
            writer = pq.ParquetWriter(out_path, schema, compression="zstd")
        writer.write_table(table.cast(schema))
    if writer is None:
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


def build_tables(version_dir: Path, step: str) -> tuple[dict[str, tuple[int, int]], TableStats, TableStats]:
    """Write ``index.parquet`` (from ``shards/``) and ``exclusions.parquet`` (from ``excluded/``).

    Returns (documents and estimated tokens per shard file, kept stats, excluded stats).
    """
    counts, kept = _write_table(version_dir, SHARDS, INDEX_COLUMNS, INDEX, step)
    excluded_counts, excluded = _write_table(version_dir, EXCLUDED, EXCLUSION_COLUMNS, EXCLUSIONS, step)
    return {**counts, **excluded_counts}, kept, excluded


def reason_details(details: str | None) -> dict:
    """Parse the JSON ``details`` column of an exclusion row (empty dict when absent)."""
    return json.loads(details) if details else {}
