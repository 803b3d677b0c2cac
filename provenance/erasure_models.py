"""Which model and tokenizer versions trained on a set of documents (for ``provenance.erasure.impact``).

A model holds a document when the sequence map of its token shards (``stages/*/sequences.parquet``,
docs/tokens.md) names it, and trained on it when one of those sequences was drawn in training
(``sequence_use.parquet`` of the model version: times_trained > 0; held-out sequences are not). A
fine-tuned model holds what its base model holds. A tokenizer holds the documents its
``training_sample.json`` lists.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import duckdb

from records.assets import TOKEN_SHARDS
from records.curriculum import STAGES
from records.layout import DataLayout
from records.models import SEQUENCE_USE
from records.token_shards import SEQUENCES
from records.versions import ancestors


def _quote(path: Path) -> str:
    return "'" + str(path).replace("'", "''") + "'"


@dataclass(frozen=True)
class ModelImpact:
    """A model version holding matching documents: per document and stage, the sequences of its
    token shards that hold it and how many of those were trained on (None: no use record)."""

    ref: str
    token_shards: str | None  # None for a fine-tuned model (its pretraining data is its base model's)
    documents: list[dict]
    # A matching document is in a sequence the model trained on (without a use record: staged).
    contains: bool


def model_impacts(layout: DataLayout, doc_ids: list[str]) -> list[ModelImpact]:
    """Every model version holding one of ``doc_ids`` (directly, or through its base model)."""
    from records.models import load_record, model_versions

    models = model_versions(layout)
    direct: dict[str, ModelImpact] = {}
    for ref in sorted(models):
        folder = layout.datasets / ref
        shards_ref = (load_record(folder).get("datasets") or {}).get(TOKEN_SHARDS)
        hits = (
            _sequence_hits(layout.datasets / shards_ref, folder / SEQUENCE_USE, doc_ids)
            if doc_ids and shards_ref
            else []
        )
        used = (folder / SEQUENCE_USE).exists()
        contains = any((h["sequences_trained"] if used else h["sequences"]) for h in hits)
        direct[ref] = ModelImpact(ref, shards_ref, hits, contains)
    # A fine-tuned model holds what its base model holds.
    result = []
    for ref, model in direct.items():
        bases = [a for a in ancestors(models, ref)[1:] if a in direct and direct[a].contains]
        if model.documents or bases:
            via = [{"via": base} for base in bases]
            result.append(
                ModelImpact(ref, model.token_shards, model.documents + via, model.contains or bool(bases))
            )
    return result


def _sequence_hits(shards: Path, use_file: Path, doc_ids: list[str]) -> list[dict]:
    """Per (document, stage): sequences of the token shards holding it, and those trained on."""
    files = sorted(shards.glob(f"{STAGES}/*/{SEQUENCES}"))
    if not files:
        return []
    listing = "[" + ", ".join(_quote(p) for p in files) + "]"
    con = duckdb.connect()
    try:
        con.execute("CREATE TEMP TABLE wanted AS SELECT unnest(?::VARCHAR[]) AS doc_id", [doc_ids])
        con.execute(
            f"""CREATE TEMP TABLE hits AS
                SELECT regexp_extract(filename, '/stages/([^/]+)/sequences.parquet$', 1) AS stage,
                       doc_id, sha256, sequence
                FROM read_parquet({listing}, filename = true) JOIN wanted USING (doc_id)"""
        )
        if use_file.exists():
            trained = f"""count(DISTINCT CASE WHEN u.times_trained > 0 THEN h.sequence END)
                          FROM hits h LEFT JOIN read_parquet({_quote(use_file)}) u
                          ON u.stage = h.stage AND u.sequence = h.sequence"""
        else:
            trained = "NULL FROM hits h"
        rows = con.execute(
            f"SELECT h.doc_id, h.sha256, h.stage, count(DISTINCT h.sequence), {trained} "
            "GROUP BY ALL ORDER BY h.doc_id, h.stage"
        ).fetchall()
    finally:
        con.close()
    return [
        {"doc_id": d, "sha256": s, "stage": st, "sequences": n, "sequences_trained": t}
        for d, s, st, n, t in rows
    ]


def tokenizer_impacts(layout: DataLayout, doc_ids: set[str]) -> list[str]:
    """Tokenizer versions whose training sample (training_sample.json) holds a matching document."""
    found = []
    for path in sorted(layout.datasets.glob("tokenizer/*/training_sample.json")):
        sample = json.loads(path.read_text(encoding="utf-8"))
        listed = {d.get("doc_id") for key in ("training", "held_out") for d in sample.get(key, [])}
        if listed & doc_ids:
            found.append(f"tokenizer/{path.parent.name}")
    return found
