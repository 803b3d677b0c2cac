"""The compliance documents: every number they state equals what an independent query of the catalog
(or of the shards and records) gives, operator fields are marked, and the HTML is self-contained."""

from __future__ import annotations

import json
import math
import re
import shutil

import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from provenance.compliance import DOCUMENTS, ComplianceConfig, load_compliance_config, write_documents
from provenance.compliance.render import TO_FILL, fmt
from records.catalog import query
from records.layout import DataLayout
from records.requests import record_request
from tests.provenance.handmade_model import PARAMETERS, build_model


@pytest.fixture(scope="module")
def documents(curated, tmp_path_factory):
    source_layout, results, _ = curated
    root = tmp_path_factory.mktemp("compliance")
    layout = DataLayout(root / "data")
    shutil.copytree(source_layout.root, layout.root)
    deduplicated = results[-1].manifest
    model = build_model(layout, deduplicated)
    record_request(layout, "domain", "example.org", note="ticket 7")
    record_request(layout, "regex", r"jane\.doe@example\.org")
    out = root / "out"
    written = write_documents(
        layout, model["model"][:30], out, ComplianceConfig(provider="Example AI", licence="Apache-2.0")
    )
    texts = {p.name: p.read_text(encoding="utf-8") for p in written}
    return layout, results, model, texts


def _row(*cells) -> str:
    return "| " + " | ".join(fmt(c) for c in cells) + " |"


def test_every_document_is_written_in_both_formats(documents):
    *_, texts = documents
    assert set(texts) == {f"{n}.{ext}" for n in DOCUMENTS for ext in ("md", "html")} | {"sources.json"}


def test_summary_languages_equal_the_catalog(documents):
    layout, results, model, texts = documents
    source = results[-1].manifest
    _, rows = query(
        layout,
        f"""SELECT coalesce(language, 'unknown'), count(*), sum(num_tokens_est) FROM document_index
            WHERE asset = 'deduplicated' AND dataset_version = '{source.version_id}' GROUP BY 1 ORDER BY 1""",
    )
    shards = layout.datasets / model["token_shards"]
    staged = json.loads((shards / "stages" / "0-main" / "index.json").read_text())[
        "document_tokens_by_language"
    ]
    summary = texts["training-content-summary.md"]
    assert rows
    for language, docs, tokens in rows:
        assert _row(language, docs, tokens, staged.get(language, 0)) in summary
    total = sum(s["num_tokens"] for s in json.loads((shards / "index.json").read_text())["stages"])
    assert f"less than 1 billion tokens: {fmt(total)} tokens" in summary


def test_summary_domains_are_the_top_tenth_by_content_size(documents):
    layout, results, _, texts = documents
    source = results[-1].manifest
    _, rows = query(
        layout,
        f"""SELECT split_part(url, '/', 3) AS host, count(*), sum(num_chars), sum(num_tokens_est)
            FROM document_index WHERE asset = 'deduplicated' AND dataset_version = '{source.version_id}'
            GROUP BY host ORDER BY 3 DESC, host""",
    )
    top = math.ceil(len(rows) * 0.10)
    summary = texts["training-content-summary.md"]
    section = summary.split("### 2.3")[1].split("### 2.4")[0]
    listed = [line for line in section.splitlines() if line.startswith("| ") and "." in line.split("|")[1]]
    assert listed == [_row(*r) for r in rows[:top]]
    assert f"the top 10% of the {fmt(len(rows))} domains by content size" in summary


def test_exclusions_pii_and_requests_equal_the_records(documents):
    layout, results, _, texts = documents
    refs = ", ".join(f"'{r.manifest.version_id}'" for r in results)
    _, rows = query(
        layout,
        f"SELECT step, reason, count(*) FROM exclusions WHERE dataset_version IN ({refs}) GROUP BY ALL",
    )
    summary = texts["training-content-summary.md"]
    assert rows and all(_row(step, reason, n) in summary for step, reason, n in rows)
    quality = results[2]
    spans = sum(
        pc.sum(pq.read_table(p, columns=["pii_redactions"])["pii_redactions"]).as_py() or 0
        for p in sorted((quality.folder / "shards").glob("*.parquet"))
    )
    assert spans > 0
    for name in ("training-content-summary.md", "gdpr-art30.md"):
        assert f"{fmt(spans)} spans" in texts[name]
    assert "2 recorded in the ledger (domain: 1, regex: 1); 0 applied" in summary
    assert "- **Requests recorded:** 2" in texts["gdpr-art30.md"]


def test_annex_xi_and_model_card_repeat_the_provenance_record(documents):
    _, _, model, texts = documents
    annex, card = texts["annex-xi.md"], texts["model-card.md"]
    for text in (annex, card):
        assert fmt(PARAMETERS["total"]) in text and fmt(PARAMETERS["active"]) in text
        assert model["record"]["export"]["sha256"] in text
    assert "Not measured: the provenance record holds no energy measurement." in annex
    assert "16 experts, top-2 routing" in annex
    assert "| 0-main | all | 61.5 |" in card


def test_operator_fields_are_marked_and_given_ones_are_used(documents):
    *_, texts = documents
    summary = texts["training-content-summary.md"]
    assert "Example AI" in summary and "Apache-2.0" in texts["annex-xi.md"]
    assert TO_FILL in summary and TO_FILL in texts["gdpr-art30.md"]


def test_html_is_self_contained_and_states_the_same_numbers(documents):
    *_, texts = documents
    for name in DOCUMENTS:
        page = texts[f"{name}.html"]
        assert page.startswith("<!DOCTYPE html>") and "<script" not in page and "<link" not in page
        assert not re.search(r"""(src|href)\s*=|@import|url\(""", page)
        for number in re.findall(r"\d{1,3}(?:,\d{3})+", texts[f"{name}.md"]):
            assert number in page


def test_compliance_config_file_is_checked(tmp_path):
    path = tmp_path / "compliance.yaml"
    path.write_text("provider: Example AI\nsme: true\nsources: {small: {kind: synthetic}}\n")
    config = load_compliance_config(path)
    assert config.provider == "Example AI" and config.sme and config.sources["small"]["kind"] == "synthetic"
    path.write_text("provder: typo\n")
    with pytest.raises(ValueError, match="unknown field 'provder'"):
        load_compliance_config(path)


def test_robots_opt_outs_are_reported_from_the_versions_record(documents, tmp_path):
    """A raw version that applied robots.txt files holds robots.json; section 3.1 reports from it."""
    from dataclasses import replace

    from pipelines.robots import AI_AGENTS, robots_blocks, write_sample_robots
    from provenance.compliance.facts import ROBOTS_REASON, gather
    from provenance.compliance.render import to_markdown
    from provenance.compliance.summary import public_summary

    layout, _, model, _ = documents
    write_sample_robots(tmp_path / "robots", ["a.org", "b.org", "c.org"], seed=1)
    robots_blocks(tmp_path / "robots", tmp_path)
    record = json.loads((tmp_path / "robots.json").read_text())
    facts = gather(layout, model["model"])
    facts = replace(
        facts, robots=[record], exclusions=[*facts.exclusions, ("raw_documents", ROBOTS_REASON, 7)]
    )
    text = to_markdown(public_summary(facts))
    assert "3 hosts with a file" in text and f"any of {len(AI_AGENTS)} AI crawler user agents" in text
    assert "was left out: 7 documents" in text and "GPTBot" in text


def test_model_card_names_the_key_and_the_ledger_head_it_was_made_under(documents):
    from records.ledger import Ledger
    from records.signing import key_id, load_public_key, parse_head

    layout, _, _, texts = documents
    anchor = json.loads(texts["sources.json"])["ledger_head"]
    ledger = Ledger(layout.ledger)
    assert anchor["key_id"] == key_id(load_public_key(ledger.public_key_pem()))
    # The smallest head holding every cited entry: here the last erasure request, the last entry written.
    assert anchor["tree_size"] == ledger.size() and anchor["origin"] == ledger.origin()
    (signed,) = [
        head
        for head in map(parse_head, (layout.ledger / "tree_heads.jsonl").read_text().splitlines())
        if head.tree_size == anchor["tree_size"]
    ]
    assert signed.root_hash == anchor["root_hash"] and signed.verify(ledger.public_key_pem())
    card = texts["model-card.md"]
    assert (
        anchor["key_id"] in card and anchor["root_hash"] in card and f"{anchor['tree_size']} entries" in card
    )
