"""The public summary of training content (AI Act Article 53(1)(d)), in the structure of the AI
Office's template (Explanatory Notice and Template, July 2025): 1. general information, 2. list of
data sources (2.1-2.6), 3. data processing aspects (reservation of rights, illegal content)."""

from __future__ import annotations

from provenance.compliance.facts import ERASURE_REASON, ROBOTS_REASON, Facts
from provenance.compliance.render import Document, Fields, Heading, Paragraph, Table, fmt
from records.assets import MODEL_ASSETS

# The template's ranges for the size of text training data.
SIZE_RANGES = (
    (1_000_000_000, "less than 1 billion tokens"),
    (10_000_000_000_000, "1 billion to 10 trillion tokens"),
)


def size_range(tokens: int) -> str:
    return next((label for bound, label in SIZE_RANGES if tokens < bound), "more than 10 trillion tokens")


def _provenance_note(facts: Facts) -> Paragraph:
    return Paragraph(
        f"Generated from the records of model version `{facts.model_ref}` (its provenance record, the "
        f"manifests of the {len(facts.chain)} versions it derives from, the catalog and the ledger); "
        "every number below is a query over those records. Fields marked "
        "\u201c[to be filled by the operator]\u201d hold what the records cannot know."
    )


def _sources_of_kind(facts: Facts, kind: str) -> list[dict]:
    return [s for s in facts.snapshots if facts.source_kind(s["snapshot"]) == kind]


def _listed(facts: Facts, kind: str, none: str) -> list:
    chosen = _sources_of_kind(facts, kind)
    if not chosen:
        return [Paragraph(none)]
    return [
        Table(
            ("snapshot", "description", "documents read", "version"),
            [
                (
                    s["snapshot"],
                    (facts.config.sources.get(s["snapshot"]) or {}).get("description", "not described"),
                    s["documents"],
                    f"`{s['ref']}`",
                )
                for s in chosen
            ],
        )  # fmt: skip
    ]


def public_summary(facts: Facts) -> Document:
    """The summary as a document of blocks (render.to_markdown / to_html)."""
    record, config = facts.record, facts.config
    doc = Document(f"Public summary of training content: {facts.model_name}")
    doc.add(_provenance_note(facts))

    doc.add(Heading(2, "1. General information"), Heading(3, "1.1 Provider identification"))
    doc.add(Fields([("Provider name and contact details", f"{config.provider}; {config.provider_contact}"),
                    ("Authorised representative name and contact details", config.authorised_representative)]))  # fmt: skip
    bases = [r for r in facts.manifest.parents if r.split("/")[0] in MODEL_ASSETS]
    doc.add(Heading(3, "1.2 Model identification"))
    doc.add(Fields([
        ("Versioned model name", facts.model_name),
        ("Model version (content address)", f"`{facts.model_ref}`"),
        ("Weights sha256", f"`{record['export'].get('sha256')}`"),
        ("Model dependencies", ", ".join(f"`{b}`" for b in bases) if bases else "N/A: trained from initialization, not a modification of another model"),
        ("Date of placement of the model on the Union market", config.union_market_date),
    ]))  # fmt: skip
    last = max((s["last"] for s in facts.snapshots if s["last"]), default=None)
    doc.add(Heading(3, "1.3 Modalities, overall training data size and other characteristics"))
    doc.add(Fields([
        ("Modality", "text"),
        ("Training data size (text)", f"{size_range(facts.total_tokens)}: {fmt(facts.total_tokens)} tokens in the "
         f"token shards the model was trained from, over {len(facts.stages)} curriculum stages"),
        ("Types of content", "web pages (main text extracted from HTML, or text records of a crawl)"),
        ("Latest date of data collection", last),
        ("Languages", f"{len([r for r in facts.languages if r[1] or r[3]])}"),
    ]))  # fmt: skip
    doc.add(Table(
        ("language", "documents", "estimated tokens", "tokens in training shards"),
        facts.languages,
        caption="Documents and estimated tokens of the dataset versions the curriculum drew from; tokens as tokenized for training",
    ))  # fmt: skip
    doc.add(Table(
        ("curriculum stage", "sequences", "tokens", "sequences trained"),
        [(s["stage"], s["sequences"], s["tokens"], s["sequences_trained"]) for s in facts.stages],
    ))  # fmt: skip

    doc.add(Heading(2, "2. List of data sources"))
    doc.add(Heading(3, "2.1 Publicly available datasets"))
    doc.add(
        *_listed(
            facts, "public_dataset", "None: no snapshot of this model's data is a publicly available dataset."
        )
    )
    doc.add(Heading(3, "2.2 Private non-publicly available datasets obtained from third parties"))
    doc.add(
        *_listed(
            facts,
            "private_dataset",
            "None: no snapshot of this model's data was obtained from a third party.",
        )
    )
    doc.add(Heading(3, "2.3 Data crawled and scraped from online sources"))
    crawled = _sources_of_kind(facts, "crawled")
    first = min((s["first"] for s in crawled if s["first"]), default=None)
    last_crawled = max((s["last"] for s in crawled if s["last"]), default=None)
    doc.add(Fields([
        ("Crawlers used", config.crawler),
        ("Period of data collection", f"{first} to {last_crawled}" if first else None),
        ("Snapshots", ", ".join(s["snapshot"] for s in crawled) or "none"),
        ("Documents read", sum(s["documents"] for s in crawled)),
        ("Domains in the training data", len(facts.domains)),
    ]))  # fmt: skip
    rule = "5% (at most 1,000), as for SMEs" if config.sme else "10%"
    doc.add(Paragraph(
        f"Most relevant domain names: the top {rule} of the {fmt(len(facts.domains))} domains by content size "
        f"(characters of kept text), that is {fmt(facts.num_domains_listed)} domains."
    ))  # fmt: skip
    doc.add(
        Table(
            ("domain", "documents", "characters", "estimated tokens"),
            facts.domains[: facts.num_domains_listed],
        )
    )
    doc.add(Heading(3, "2.4 User data"))
    doc.add(
        *_listed(
            facts, "user_data", "None: no data from users of the provider's products or services was used."
        )
    )
    doc.add(Heading(3, "2.5 Synthetic data"))
    doc.add(*_listed(facts, "synthetic", "None: no synthetic data was used."))
    doc.add(Heading(3, "2.6 Other sources of data"))
    doc.add(*_listed(facts, "other", "None."))

    doc.add(Heading(2, "3. Data processing aspects"))
    doc.add(
        Heading(
            3, "3.1 Respect of reservation of rights from the text and data mining exception or limitation"
        )
    )
    doc.add(*rights_blocks(facts))
    doc.add(Heading(3, "3.2 Removal of illegal content"))
    doc.add(Paragraph(
        "No classifier for illegal content runs in this pipeline. The measures that apply to every document are "
        "listed below with the number of documents each removed from this model's data (exclusions of the "
        "versions it derives from), and the personal data replaced in the text that was kept."
    ))  # fmt: skip
    doc.add(Table(("step", "reason", "documents removed"), facts.exclusions))
    doc.add(*pii_blocks(facts))
    doc.add(Heading(3, "3.3 Other information"))
    doc.add(Paragraph(
        "Every dataset version is content-addressed (its id is a Merkle root over its files) and recorded in a "
        "signed, append-only ledger; `apertus audit contains` answers whether a URL, a document hash or a text "
        "snippet is in this model's data, and `apertus compliance impact` where an erasure request applies."
    ))  # fmt: skip
    return doc


def rights_blocks(facts: Facts) -> list:
    """robots.txt opt-outs and erasure/opt-out requests, as counted in the records."""
    blocks = []
    if facts.robots:
        agents = sorted({a for r in facts.robots for a in r["agents"]})
        files = sum(len(r["files"]) for r in facts.robots)
        dates = sorted({r["as_of"] or "latest available" for r in facts.robots})
        blocks.append(Paragraph(
            f"robots.txt: the latest robots.txt of each host (as of {', '.join(dates)}; {fmt(files)} hosts with a "
            f"file) was applied retroactively to every page of the crawl; a page disallowed to any of "
            f"{len(agents)} AI crawler user agents was left out: {fmt(facts.excluded(ROBOTS_REASON))} documents."
        ))  # fmt: skip
        blocks.append(Paragraph("User agents honoured: " + ", ".join(agents) + "."))
    else:
        blocks.append(Paragraph(
            "robots.txt: no robots.txt files were applied in the curation of this model's data "
            f"({fmt(facts.excluded(ROBOTS_REASON))} documents left out for a robots.txt opt-out)."
        ))  # fmt: skip
    kinds: dict[str, int] = {}
    for request in facts.requests:
        kinds[request.kind] = kinds.get(request.kind, 0) + 1
    blocks.append(Paragraph(
        f"Erasure and opt-out requests: {fmt(len(facts.requests))} recorded in the ledger"
        + (f" ({', '.join(f'{k}: {fmt(n)}' for k, n in sorted(kinds.items()))})" if kinds else "")
        + f"; {fmt(len(facts.requests_applied))} applied in the curation of this model's data, which left out "
        f"{fmt(facts.excluded(ERASURE_REASON))} documents. Requests recorded after the curation apply to the next one."
    ))  # fmt: skip
    return blocks


def pii_blocks(facts: Facts) -> list:
    pii = facts.pii
    return [
        Paragraph(
            f"Personal data: {fmt(pii['spans'])} spans replaced by placeholders in {fmt(pii['documents'])} kept documents."
        ),
        Table(("category", "spans replaced"), sorted(pii["by_category"].items())),
    ]


__all__ = ["pii_blocks", "public_summary", "rights_blocks", "size_range"]
