"""Technical documentation of a general-purpose AI model (AI Act Article 53(1)(a), Annex XI Section 1):
point 1 (general description) and point 2 (elements of the model and its development), filled from
the provenance record; what the record cannot say is marked for the operator, and energy is
stated as not measured unless the record holds it."""

from __future__ import annotations

from provenance.compliance.facts import Facts
from provenance.compliance.render import Bullets, Document, Fields, Heading, Paragraph, Table, fmt
from provenance.compliance.summary import pii_blocks, rights_blocks
from records.assets import (
    CURRICULUM_STAGES,
    DEDUPLICATED,
    LANGUAGE_IDENTIFIED,
    QUALITY_CLASSIFIER,
    QUALITY_FILTERED,
    QUALITY_SCORED,
    RAW_DOCUMENTS,
    TOKEN_SHARDS,
    TOKENIZER,
)
from records.tokenizer import TOKENIZER_FILE

# What each step of the chain does (pipelines/steps.py and the training-data assets), in order.
STEPS = {
    RAW_DOCUMENTS: "read the snapshot; quarantine unreadable records; normalize text (NFC, repairs); drop documents "
    "named by recorded erasure requests (and pages reserved by robots.txt, where robots files are given)",
    LANGUAGE_IDENTIFIED: "identify language and script (fastText lid.176); keep the selected languages",
    QUALITY_FILTERED: "heuristic quality rules per language (Gopher, C4, FineWeb); replace PII by placeholders",
    DEDUPLICATED: "drop exact duplicates, then MinHash near-duplicates",
    QUALITY_CLASSIFIER: "train the learned quality classifier",
    QUALITY_SCORED: "score every document with the quality classifier",
    CURRICULUM_STAGES: "select and weight documents into the curriculum's stages",
    TOKENIZER: "train the byte-level BPE tokenizer",
    TOKEN_SHARDS: "tokenize each stage into shuffled fixed-length sequences",
}


def _architecture(config: dict) -> str:
    moe = config.get("moe")
    ffn = (
        f"mixture-of-experts feed-forward ({moe['num_experts']} experts, top-{moe['top_k']} routing)"
        if moe
        else "dense feed-forward"
    )
    attention = (config.get("attention") or {}).get("impl", "dense")
    return (
        f"decoder-only transformer: {config['n_layers']} layers, model width {config['d_model']}, "
        f"{config['n_heads']} query heads and {config['n_kv_heads']} key/value heads ({attention} attention), "
        f"{ffn} of hidden size {config['ffn_hidden']}, rotary position embeddings (theta {config.get('rope_theta')}), "
        f"RMSNorm, vocabulary {fmt(config['vocab_size'])}, context up to {fmt(config.get('max_seq_len'))} tokens"
    )


def annex_xi(facts: Facts) -> Document:
    record, config = facts.record, facts.config
    model = record["model"]
    parameters = model.get("parameters") or {}
    run = (record.get("config") or {}).get("run") or {}
    train = run.get("train") or {}
    metrics = record.get("metrics") or {}
    hardware = record.get("hardware") or {}
    doc = Document(f"Technical documentation (AI Act Annex XI, Section 1): {facts.model_name}")
    doc.add(Paragraph(
        f"Generated from the provenance record of `{facts.model_ref}` and the records of the "
        f"{len(facts.chain)} versions it derives from."
    ))  # fmt: skip

    doc.add(Heading(2, "1. General description of the model"))
    doc.add(Fields([
        ("(a) Tasks the model is intended to perform; AI systems it can be integrated in", config.intended_tasks),
        ("(b) Acceptable use policies", config.acceptable_use_policy),
        ("(c) Date of release and methods of distribution", f"{config.release_date}; {config.distribution}"),
        ("(d) Architecture", _architecture(model["config"])),
        ("(d) Number of parameters", f"{fmt(parameters.get('total'))} in total, {fmt(parameters.get('active'))} active per token"),
        ("(e) Modality and format of inputs and outputs", f"text in, text out, as token ids of the tokenizer `{record['datasets'][TOKENIZER]}`; "
         f"context of up to {fmt(model['config'].get('max_seq_len'))} tokens (trained on {fmt(train.get('seq_len'))})"),
        ("(f) Licence", config.licence),
    ]))  # fmt: skip

    doc.add(Heading(2, "2. Elements of the model and the process of its development"))
    doc.add(Heading(3, "(a) Technical means for integration"))
    doc.add(Fields([
        ("Weights", f"`{record['export'].get('path')}` (safetensors), sha256 `{record['export'].get('sha256')}`"),
        ("Tokenizer", f"`{record['datasets'][TOKENIZER]}` (byte-level BPE, `{TOKENIZER_FILE}`)"),
        ("Instructions of use", config.distribution),
    ]))  # fmt: skip
    doc.add(Heading(3, "(b) Design specifications and training process"))
    doc.add(Fields([
        ("Recipe", model.get("recipe")),
        ("Objective", "next-token prediction (cross-entropy), plus the mixture-of-experts load-balancing loss"
         if model["config"].get("moe") else "next-token prediction (cross-entropy)"),
        ("Optimizer and schedule", f"AdamW (betas {train.get('betas')}, weight decay {train.get('weight_decay')}), "
         f"peak learning rate {train.get('peak_lr')} to {train.get('final_lr')}, warm-up {train.get('warmup_steps')} "
         f"and decay {train.get('decay_steps')} steps, gradient clipping {train.get('grad_clip')}"),
        ("Steps", metrics.get("steps")),
        ("Curriculum", f"{len(facts.stages)} stages in order: " + ", ".join(s["stage"] for s in facts.stages)),
        ("Seeds", ", ".join(f"{k} {v}" for k, v in sorted((record.get("seeds") or {}).items()))),
        ("Code", f"commit `{record['code'].get('commit')}`" + (" with uncommitted changes (diff sha256 "
         f"`{record['code'].get('diff_sha256')}`)" if record["code"].get("dirty") else "")),
        ("Loss", f"{fmt(metrics.get('first_loss'))} at the first step, {fmt(metrics.get('final_loss'))} at the last"),
    ]))  # fmt: skip
    doc.add(Heading(3, "(c) Data used for training, testing and validation"))
    doc.add(Paragraph(
        f"Type and provenance: web pages from {len(facts.snapshots)} crawl snapshot(s) "
        f"({', '.join(s['snapshot'] or '?' for s in facts.snapshots)}), {fmt(sum(s['documents'] for s in facts.snapshots))} "
        f"documents read, {fmt(sum(s['quarantined'] for s in facts.snapshots))} records quarantined as unreadable. "
        f"Training draws from {len(facts.sources)} dataset version(s): " + ", ".join(f"`{s}`" for s in facts.sources) + "."
    ))  # fmt: skip
    assets = {ref.split("/")[0] for ref in facts.chain}
    steps = [(asset, what) for asset, what in STEPS.items() if asset in assets]
    doc.add(
        Table(
            ("curation step (asset)", "what it does"),
            steps,
            caption="The steps of this model's chain, in order",
        )
    )
    doc.add(
        Table(("language", "documents", "estimated tokens", "tokens in training shards"), facts.languages)
    )
    doc.add(
        Table(
            ("step", "reason", "documents removed"),
            facts.exclusions,
            caption="Curation: documents removed, by step and reason",
        )
    )
    doc.add(*rights_blocks(facts), *pii_blocks(facts))
    held = sum(s.get("held_out_sequences") or 0 for s in record["datasets"]["stages"])
    doc.add(Paragraph(
        f"Validation: {fmt(held)} sequences of the token shards held out of training and used for the per-language "
        "perplexity after each stage (below). Bias: the per-language token counts above show the language balance; "
        "no other bias measurement is recorded."
    ))  # fmt: skip
    doc.add(Table(
        ("after stage", "held-out perplexity"),
        [(e["stage"], e["overall"]) for e in metrics.get("perplexity_after_stage", [])],
    ))  # fmt: skip
    doc.add(Heading(3, "(d) Computational resources"))
    processed = facts.tokens_processed()
    active = parameters.get("active")
    doc.add(Fields([
        ("Hardware", ", ".join(map(str, hardware.get("accelerators") or [])) + f"; CPU {hardware.get('cpu')} ({fmt(hardware.get('cpu_count'))} cores)"),
        ("Software", f"torch {hardware.get('torch')}, DeepSpeed {hardware.get('deepspeed')}, Python {hardware.get('python')}"),
        ("Training throughput", f"{fmt(metrics.get('tokens_per_s_median'))} tokens/s (median)"),
        ("Tokens processed", processed),
        ("Training time", f"{fmt(processed / metrics['tokens_per_s_median'])} s (tokens processed / median throughput)"
         if processed and metrics.get("tokens_per_s_median") else None),
        ("Floating point operations", f"{6 * active * processed:.3e} (estimate: 6 x active parameters x tokens processed)"
         if processed and active else None),
    ]))  # fmt: skip
    doc.add(Heading(3, "(e) Energy consumption"))
    energy = record.get("energy")
    doc.add(
        Paragraph(
            f"{energy}" if energy else "Not measured: the provenance record holds no energy measurement."
        )
    )
    doc.add(Heading(2, "Records"))
    doc.add(Bullets([f"`{ref}`" for ref in facts.chain]))
    return doc
