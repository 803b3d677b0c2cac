"""Which model and tokenizer versions trained on a set of documents (for ``provenance.erasure.impact``).

A model's answer is the one ``apertus audit contains --model`` gives (provenance.audit.model_use
.training_use, hash-checked reads): a matching document staged in a sequence the model trained on
(``sequence_use.parquet``: times_trained > 0; held-out sequences are not) is IN; staged only in
sequences it did not draw is staged_not_trained; staged in a model that recorded no per-sequence use
is staged_use_unknown ("in the staged data; per-sequence use unknown"). A fine-tuned model answers
as its base model does. A tokenizer holds the documents its ``training_sample.json`` lists.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from provenance.audit.contains import IN
from provenance.audit.model_use import training_use
from records.assets import MODEL_ASSETS, TRAINED_MODEL
from records.layout import DataLayout
from records.versions import ancestors, load_versions


@dataclass(frozen=True)
class ModelImpact:
    """A model version holding matching documents: per document and stage, the sequences of its
    token shards that hold it and how many of those were trained on (None: no use record)."""

    ref: str
    token_shards: str | None  # None for a fine-tuned model (its pretraining data is its base model's)
    documents: list[dict]
    status: str  # provenance.audit.model_use's verdict: in, staged_not_trained or staged_use_unknown
    contains: bool  # status == IN: a matching document is in a sequence the model trained on


def model_impacts(layout: DataLayout, doc_ids: list[str]) -> list[ModelImpact]:
    """Every model version holding one of ``doc_ids`` in its staged training data (directly, or
    through its base model). Cost: per trained_model version, O(bytes of its sequence maps, stage
    files and sequence use), each hashed once (provenance.audit.model_use.training_use)."""
    versions = load_versions(layout)
    models = {ref: m for ref, m in versions.items() if m.asset in MODEL_ASSETS}
    direct: dict[str, ModelImpact] = {}
    for ref in sorted(r for r, m in models.items() if m.asset == TRAINED_MODEL):
        use = training_use(layout, ref, "doc_id", doc_ids, versions)
        hits = [
            {"doc_id": d.doc_id, "sha256": d.sha256, "stage": s.folder, "sequences": s.sequences,
             "sequences_trained": s.sequences_trained}
            for d in use.documents
            for s in d.stages
        ]  # fmt: skip
        if hits:
            direct[ref] = ModelImpact(ref, use.token_shards, hits, use.status, use.status == IN)
    result = list(direct.values())
    # A fine-tuned model holds what its base model holds, and answers as it does.
    for ref in sorted(r for r, m in models.items() if m.asset != TRAINED_MODEL):
        bases = [a for a in ancestors(models, ref)[1:] if a in direct]
        if bases:
            status = direct[bases[0]].status
            result.append(ModelImpact(ref, None, [{"via": b} for b in bases], status, status == IN))
    return sorted(result, key=lambda m: m.ref)


def tokenizer_impacts(layout: DataLayout, doc_ids: set[str]) -> list[str]:
    """Tokenizer versions whose training sample (training_sample.json) holds a matching document."""
    found = []
    for path in sorted(layout.datasets.glob("tokenizer/*/training_sample.json")):
        sample = json.loads(path.read_text(encoding="utf-8"))
        listed = {d.get("doc_id") for key in ("training", "held_out") for d in sample.get(key, [])}
        if listed & doc_ids:
            found.append(f"tokenizer/{path.parent.name}")
    return found
