"""A data folder holding every kind of version, built the way `apertus demo` builds it (curated,
staged, trained, fine-tuned, certified, alias moved and rolled back, erasure requested), with the
three documents an auditor asks about: one kept and trained on, one dropped, one never seen."""

from __future__ import annotations

import dataclasses
import hashlib
import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest

BY = "pytest"
UNSEEN_TEXT = "Ceci n'existe nulle part, zqxj 7781"


@dataclass(frozen=True)
class Document:
    """A document as an auditor names it, and what the records say about it."""

    doc_id: str | None
    url: str
    sha256: str
    text: str  # a snippet of its text that no other document holds (exact duplicates aside)
    dropped_step: str | None = None  # asset of the version whose step dropped it
    dropped_reason: str | None = None


@dataclass(frozen=True)
class AuditedFolder:
    """The fixture's answer: the data folder and the refs and documents the audit tests ask about."""

    root: Path
    model: str  # trained_model/<id>
    finetuned: str  # finetuned_model/<id>
    examples: str  # finetune_examples/<id>
    document_versions: dict[str, str]  # asset -> ref of every version that keeps documents, oldest first
    kept: Document
    dropped: Document
    unseen: Document
    request_id: str


def _unique_snippet(texts: dict[str, set[str]], owners: set[str]) -> str:
    """A piece of the owners' text (doc_id -> its texts, one per version that may differ) held by
    no other document; ValueError if there is none."""
    text = min(texts[min(owners)])
    for start in range(0, max(1, len(text) - 40), 8):
        snippet = text[start : start + 40]
        if snippet != snippet.strip() or any(c in snippet for c in "\n\r\t'\""):
            continue  # one line, as an auditor pastes it on a command line
        holders = {doc for doc, versions in texts.items() if any(snippet in t for t in versions)}
        if holders == owners:
            return snippet
    raise ValueError(f"no distinctive snippet in {text[:60]!r}")


def _pick_documents(layout, model_ref: str) -> tuple[Document, Document, dict[str, str]]:
    """The kept document the model trained on (as the demo picks it: its exact duplicates share its
    sha256 and text) and one dropped with a reason and numbers, whose URL, sha256 and snippet no other
    document holds; and the versions that keep documents."""
    import pyarrow.parquet as pq

    from provenance.audit.model_use import trained_document
    from records.versions import depth, load_versions

    versions = load_versions(layout)
    # Versions that keep documents (every pipeline step writes an index, empty for a tokenizer or
    # token shards), ancestors first.
    document_versions = {
        versions[ref].asset: ref
        for ref in sorted(versions, key=lambda r: (depth(versions, r), r))
        if (layout.datasets / ref / "index.parquet").exists()
        and pq.read_metadata(layout.datasets / ref / "index.parquet").num_rows
    }
    columns = ["id", "url", "sha256", "text"]  # a shard's document id column is `id` (pipelines/shards.py)
    everything = [
        row
        for ref in document_versions.values()
        for sub in ("shards", "excluded")
        for p in sorted((layout.datasets / ref / sub).glob("*.parquet"))
        for row in pq.read_table(p, columns=columns).rename_columns(["doc_id", *columns[1:]]).to_pylist()
    ]
    texts: dict[str, set[str]] = {}
    for row in everything:
        texts.setdefault(row["doc_id"], set()).add(row["text"])

    def unique(column: str, value: str) -> bool:
        return len({row["doc_id"] for row in everything if row[column] == value}) == 1

    doc_id, url = trained_document(layout, model_ref)
    row = next(r for r in everything if r["doc_id"] == doc_id)
    assert unique("url", url), f"{url}: the URL of the demo's document names several documents"
    duplicates = {r["doc_id"] for r in everything if r["sha256"] == row["sha256"]}  # exact ones share a text
    kept = Document(doc_id, url, row["sha256"], _unique_snippet(texts, duplicates))

    # The latest curation step's drops with a reason whose details carry numbers (near duplicates,
    # quality rules): the answer must name the step, the reason and those numbers.
    for ref in sorted(document_versions.values(), key=lambda r: -depth(versions, r)):
        exclusions = pq.read_table(layout.datasets / ref / "exclusions.parquet").to_pylist()
        for candidate in exclusions:
            if (
                candidate["url"]
                and candidate["reason"]
                and candidate["details"]
                and unique("url", candidate["url"])
                and unique("sha256", candidate["sha256"])
            ):
                try:
                    snippet = _unique_snippet(texts, {candidate["doc_id"]})
                except ValueError:
                    continue
                dropped = Document(
                    candidate["doc_id"],
                    candidate["url"],
                    candidate["sha256"],
                    snippet,
                    dropped_step=versions[ref].asset,
                    dropped_reason=candidate["reason"],
                )
                return kept, dropped, document_versions
    raise AssertionError("no dropped document with a unique URL, hash and text in the fixture")


@pytest.fixture(scope="session")
def audited_folder(trained, tmp_path_factory) -> AuditedFolder:
    """A copy of `trained`'s data folder carried through the demo's later acts with the library
    functions the demo calls (apertus.tune_cli.run_tune_demo, apertus.compliance_cli.run_compliance_demo):
    the model certified and made `production`; a short fine-tune on the bundled examples (a
    finetune_examples and a finetuned_model version), certified, promoted, then `production` rolled
    back to the base; one erasure request for the URL of a document the model trained on.
    Tests must not modify it (copy it)."""
    from apertus.tune_cli import finetune_and_seal
    from model.finetune import FinetuneConfig
    from provenance.certify import certify, rollback, set_alias
    from records.layout import DataLayout
    from records.requests import record_request
    from sample import FINETUNE_EXAMPLES

    source, model, _ = trained
    layout = DataLayout(tmp_path_factory.mktemp("audited") / "data")
    shutil.copytree(source.root, layout.root)
    base = certify(layout, model.ref, by=BY).payload["model_version"]
    set_alias(layout, "production", base, by=BY)
    # A few small steps: what matters here is the records the run leaves, not what it learns; the
    # margins are wide so that its gates pass and it can be certified, as the demo's run is.
    config = dataclasses.replace(
        FinetuneConfig(),
        steps=4,
        batch_size=4,
        max_tokens=64,
        warmup_steps=1,
        peak_lr=1e-3,
        eval_sequences=4,
        perplexity_margin=1.0,
        held_out_loss_margin=0.5,
    )
    tuned, _ = finetune_and_seal(layout, base, FINETUNE_EXAMPLES, config, log=lambda line: None)
    certify(layout, tuned.ref, by=BY)
    set_alias(layout, "production", tuned.ref, by=BY)
    rollback(layout, "production", base, by=BY)

    kept, dropped, document_versions = _pick_documents(layout, base)
    request = record_request(layout, "url", kept.url, note="pytest audit matrix")
    unseen = Document(
        None,
        "https://unseen.example.org/never/crawled.html",
        hashlib.sha256(UNSEEN_TEXT.encode()).hexdigest(),
        UNSEEN_TEXT,
    )
    return AuditedFolder(
        layout.root,
        model=base,
        finetuned=tuned.ref,
        examples=next(p for p in tuned.parents if p.startswith("finetune_examples/")),
        document_versions=document_versions,
        kept=kept,
        dropped=dropped,
        unseen=unseen,
        request_id=request.request_id,
    )
