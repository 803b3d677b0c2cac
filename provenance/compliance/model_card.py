"""The model card: what the model is, what it was trained on and how, how it did, and how to check it."""

from __future__ import annotations

from provenance.compliance.facts import ERASURE_REASON, ROBOTS_REASON, Facts
from provenance.compliance.render import Document, Fields, Heading, Paragraph, Table, fmt
from records.assets import TOKEN_SHARDS, TOKENIZER


def model_card(facts: Facts, ledger_index: int | None = None, anchor: dict | None = None) -> Document:
    """The card; ``anchor`` (provenance.compliance.ledger_anchor) names the signing key and the ledger
    head it was made under."""
    record, config = facts.record, facts.config
    model, metrics = record["model"], record.get("metrics") or {}
    parameters = model.get("parameters") or {}
    doc = Document(f"Model card: {facts.model_name}")
    doc.add(Heading(2, "Model details"))
    doc.add(Fields([
        ("Version", f"`{facts.model_ref}`"),
        ("Created", facts.manifest.created_at),
        ("Recipe", model.get("recipe")),
        ("Parameters", f"{fmt(parameters.get('total'))} total, {fmt(parameters.get('active'))} active"),
        ("Layers / width / heads", f"{model['config']['n_layers']} / {model['config']['d_model']} / {model['config']['n_heads']}"),
        ("Experts", f"{model['config']['moe']['num_experts']}, top-{model['config']['moe']['top_k']}" if model["config"].get("moe") else "dense"),
        ("Licence", config.licence),
        ("Provider", config.provider),
    ]))  # fmt: skip
    doc.add(Heading(2, "Intended use"))
    doc.add(
        Fields([("Intended tasks", config.intended_tasks), ("Acceptable use", config.acceptable_use_policy)])
    )
    doc.add(Heading(2, "Training data"))
    doc.add(Paragraph(
        f"{fmt(facts.total_tokens)} tokens in {len(facts.stages)} curriculum stages, drawn from "
        + ", ".join(f"`{s}`" for s in facts.sources)
        + f"; {fmt(facts.excluded(ROBOTS_REASON))} documents left out for robots.txt opt-outs and "
        f"{fmt(facts.excluded(ERASURE_REASON))} for erasure requests; {fmt(facts.pii['spans'])} PII spans replaced."
    ))  # fmt: skip
    doc.add(
        Table(("language", "documents", "estimated tokens", "tokens in training shards"), facts.languages)
    )
    doc.add(Heading(2, "Training"))
    doc.add(Fields([
        ("Steps", metrics.get("steps")),
        ("Loss", f"{fmt(metrics.get('first_loss'))} -> {fmt(metrics.get('final_loss'))}"),
        ("Throughput", f"{fmt(metrics.get('tokens_per_s_median'))} tokens/s (median)"),
        ("Hardware", ", ".join(map(str, (record.get("hardware") or {}).get("accelerators") or []))),
        ("Seeds", ", ".join(f"{k} {v}" for k, v in sorted((record.get("seeds") or {}).items()))),
    ]))  # fmt: skip
    doc.add(Heading(2, "Evaluation"))
    rows = []
    for entry in metrics.get("perplexity_after_stage", []):
        rows.append((entry["stage"], "all", entry["overall"]))
        rows += [(entry["stage"], lang, p) for lang, p in sorted((entry.get("by_language") or {}).items())]
    doc.add(Table(("after stage", "language", "held-out perplexity"), rows))
    doc.add(Heading(2, "Limitations"))
    doc.add(Paragraph(
        "Held-out perplexity on the curated data is the only evaluation recorded; no benchmark, safety or bias "
        "evaluation is part of this record."
    ))  # fmt: skip
    doc.add(Heading(2, "Provenance"))
    doc.add(Fields([
        ("Weights sha256", f"`{record['export'].get('sha256')}`"),
        ("Ledger entry", ledger_index),
        ("Signing key id", f"`{anchor['key_id']}`" if anchor else "none (the ledger is empty)"),
        ("Ledger head", f"{anchor['tree_size']} entries, root `{anchor['root_hash']}`, ledger `{anchor['origin']}`" if anchor else None),
        ("Code commit", f"`{record['code'].get('commit')}`"),
        ("Token shards", f"`{record['datasets'][TOKEN_SHARDS]}`"),
        ("Tokenizer", f"`{record['datasets'][TOKENIZER]}`"),
        ("Check", f"`apertus audit verify {facts.model_ref} --trusted-key KEY --head HEAD`; `apertus audit lineage {facts.model_ref}`"),
    ]))  # fmt: skip
    return doc
