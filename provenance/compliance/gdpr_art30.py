"""The record of processing activities (GDPR Article 30(1)) for the curation and training of a model:
the controller's fields are the operator's to fill; categories of personal data, erasure handling
and security measures are stated from the records."""

from __future__ import annotations

from provenance.compliance.facts import ERASURE_REASON, Facts
from provenance.compliance.render import Bullets, Document, Fields, Heading, Paragraph, Table, fmt


def gdpr_art30(facts: Facts) -> Document:
    config, pii = facts.config, facts.pii
    doc = Document(f"Record of processing activities (GDPR Art. 30): training data of {facts.model_name}")
    doc.add(Paragraph(
        f"Processing activity: curation of web data into training data, and training of model `{facts.model_ref}`. "
        "Generated from the records; fields marked \u201c[to be filled by the operator]\u201d are the controller's."
    ))  # fmt: skip
    doc.add(Heading(2, "(a) Controller"))
    doc.add(Fields([
        ("Name and contact details of the controller", f"{config.controller}; {config.controller_contact}"),
        ("Joint controller, representative", config.controller_representative),
        ("Data protection officer", config.dpo_contact),
    ]))  # fmt: skip
    doc.add(Heading(2, "(b) Purposes of the processing"))
    doc.add(Paragraph(
        "Training a general-purpose language model on publicly accessible web text: selecting, cleaning and "
        "deduplicating documents, and training the model on the result."
    ))  # fmt: skip
    doc.add(Heading(2, "(c) Categories of data subjects and of personal data"))
    doc.add(Paragraph(
        "Data subjects: persons who wrote, or are named in, the web pages of the crawl snapshots "
        f"({', '.join(s['snapshot'] or '?' for s in facts.snapshots)}; "
        f"{fmt(sum(s['documents'] for s in facts.snapshots))} documents read). Personal data: whatever such pages "
        "contain; contact data is detected and replaced before training, as counted below (documents kept "
        "in the curation of this model's data)."
    ))  # fmt: skip
    doc.add(Table(("category (detected and replaced)", "spans replaced"), sorted(pii["by_category"].items())))
    doc.add(Paragraph(f"In total {fmt(pii['spans'])} spans in {fmt(pii['documents'])} documents."))
    doc.add(Heading(2, "(d) Categories of recipients"))
    doc.add(Paragraph(config.recipients))
    doc.add(Heading(2, "(e) Transfers to third countries or international organisations"))
    doc.add(Paragraph(config.third_country_transfers))
    doc.add(Heading(2, "(f) Time limits for erasure"))
    doc.add(Paragraph(config.retention))
    doc.add(Heading(3, "Erasure and objection requests"))
    by_kind: dict[str, int] = {}
    for request in facts.requests:
        by_kind[request.kind] = by_kind.get(request.kind, 0) + 1
    doc.add(Paragraph(
        "A request names documents by URL, domain, document hash or text pattern; it is recorded as an "
        "`erasure_requested` entry of the signed ledger (`apertus compliance request`), its impact on every "
        "dataset and model version is listed by `apertus compliance impact`, and the ingest step of every later "
        "curation drops the documents it names, recording the request's id with each dropped document."
    ))  # fmt: skip
    doc.add(Fields([
        ("Requests recorded", len(facts.requests)),
        ("By kind", ", ".join(f"{k}: {fmt(n)}" for k, n in sorted(by_kind.items())) or "none"),
        ("Applied in this model's data", len(facts.requests_applied)),
        ("Documents left out by them", facts.excluded(ERASURE_REASON)),
    ]))  # fmt: skip
    doc.add(Heading(2, "(g) Technical and organisational security measures"))
    doc.add(Bullets([
        "Curation and training run offline (no network access at run time).",
        "Every dataset and model version is content-addressed and sealed; `apertus audit verify` re-hashes them.",
        "An append-only ledger with Ed25519-signed tree heads records every version and request (RFC 6962 proofs).",
        "Contact data (email addresses, IP addresses, phone numbers) is replaced by placeholders before training.",
        "Access control to the data folder: " + "[to be filled by the operator]",
    ]))  # fmt: skip
    return doc
