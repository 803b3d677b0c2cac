"""Documents generated from the records of a model version: the AI Act public summary of training
content, the Annex XI technical documentation, a GDPR Art. 30 record and a model card, each as
Markdown and self-contained HTML (docs/compliance.md)."""

from __future__ import annotations

import json
from pathlib import Path

from provenance.compliance.annex_xi import annex_xi
from provenance.compliance.facts import ComplianceConfig, Facts, gather, load_compliance_config
from provenance.compliance.gdpr_art30 import gdpr_art30
from provenance.compliance.model_card import model_card
from provenance.compliance.render import write
from provenance.compliance.summary import public_summary
from records.layout import DataLayout
from records.release import DOCUMENTS, SOURCES


def ledger_anchor(layout: DataLayout, cited: list[int | None]) -> dict | None:
    """The signing key id and the ledger head the documents were made under: the smallest tree that
    holds every cited entry (the model's pin and certification, the erasure requests), so the same
    records give the same documents however the ledger grew since. A reader checks it with a
    consistency proof to any later head (``apertus audit verify --head``). None when nothing is cited.
    Cost: hashes the leaf cache up to that size."""
    from records.ledger import Ledger
    from records.signing import key_id, load_public_key

    ledger = Ledger(layout.ledger)
    indices = [i for i in cited if i is not None]
    if not indices or not ledger.public_key_path.exists():
        return None
    size = max(indices) + 1
    return {
        "key_id": key_id(load_public_key(ledger.public_key_pem())),
        "origin": ledger.origin(),
        "tree_size": size,
        "root_hash": ledger.root_at(size),
    }


def write_documents(
    layout: DataLayout, model_ref: str, out_dir: Path, config: ComplianceConfig | None = None
) -> list[Path]:
    """Write the four documents (``<name>.md`` and ``<name>.html``, names in ``DOCUMENTS``) for model
    version ``model_ref`` into ``out_dir``, and ``sources.json`` naming the records they were made
    from. Returns the paths written."""
    from records.versions import ledger_records

    facts = gather(layout, model_ref, config or ComplianceConfig())
    entry = ledger_records(layout).get(facts.model_ref)
    from provenance.certify import certification

    certified = certification(layout, facts.model_ref)
    cited = [entry and entry.index, certified and certified.index, *(r.ledger_index for r in facts.requests)]
    anchor = ledger_anchor(layout, cited)
    # In the order of DOCUMENTS.
    made = (
        public_summary(facts),
        annex_xi(facts),
        gdpr_art30(facts),
        model_card(facts, entry.index if entry else None, anchor),
    )
    documents = dict(zip(DOCUMENTS, made, strict=True))
    written = [path for name, doc in documents.items() for path in write(doc, out_dir, name)]
    sources = {
        "model_version": facts.model_ref,
        "ledger_index": entry.index if entry else None,
        "versions": facts.chain,
        "erasure_requests": [r.request_id for r in facts.requests],
        "ledger_head": anchor,
    }
    path = Path(out_dir) / SOURCES
    path.write_text(json.dumps(sources, indent=1) + "\n", encoding="utf-8")
    return [*written, path]


__all__ = [
    "DOCUMENTS",
    "ledger_anchor",
    "ComplianceConfig",
    "Facts",
    "gather",
    "load_compliance_config",
    "write_documents",
]
