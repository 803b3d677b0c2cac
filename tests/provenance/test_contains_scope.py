"""The auditor's default question on a data folder holding every kind of version (issue 14, finding 14).

A copy of the session's `trained` data folder (curated, scored, staged, tokenized, token shards, a
trained model) gets a finetune_examples version sealed the way `apertus tune` seals one
(records.finetune.seal_examples). Then `apertus audit contains` with no scope must answer from
the versions of documents only: a document the model trained on exits 0, an unseen one 1, one
dropped by dedup (a near-duplicate if one has a snippet of its own) 1 with its reason, by --url,
--sha256 and --text, with and without --json. Ground truth is read from the versions' Parquet files with pyarrow.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from apertus.cli import main
from provenance.audit.model_use import trained_document
from records.finetune import seal_examples
from records.layout import DATA_ENV, DataLayout

EXAMPLES = Path(__file__).resolve().parents[2] / "sample" / "finetune" / "examples.jsonl"


@pytest.fixture(scope="module")
def every_kind(trained, tmp_path_factory):
    """(layout, examples ref, kept, dropped): each {"url", "sha256", "text", "reason"}, the text a
    snippet found in no other document of any version."""
    source, model, _ = trained
    layout = DataLayout(tmp_path_factory.mktemp("every_kind") / "data")
    shutil.copytree(source.root, layout.root, ignore=shutil.ignore_patterns("work", "*.lock"))
    examples, created = seal_examples(layout, EXAMPLES)
    assert created
    texts = _all_texts(layout)
    doc_id, url = trained_document(layout, model.ref)
    (dedup,) = layout.datasets.glob("deduplicated/*")
    kept = _document(texts, pc.field("id") == doc_id, reason=None)
    assert kept["url"] == url
    exclusions = pq.read_table(dedup / "exclusions.parquet").to_pylist()
    dropped = next(
        d
        for r in sorted(exclusions, key=lambda r: r["reason"] != "near_duplicate")
        if (d := _document(texts, pc.field("id") == r["doc_id"], reason=r["reason"])) is not None
    )
    return layout, examples.ref, kept, dropped


def _all_texts(layout: DataLayout):
    """(id, url, sha256, text) of every document, kept or dropped, of every version of documents."""
    files = [
        p
        for version in layout.datasets.glob("*/*")
        if (version / "index.parquet").exists()
        for sub in ("shards", "excluded")
        for p in sorted((version / sub).glob("*.parquet"))
    ]
    return pa.concat_tables(pq.read_table(p, columns=["id", "url", "sha256", "text"]) for p in files)


def _document(texts, where, reason: str | None) -> dict | None:
    """The document as a question: its url, sha256 and a 40-character snippet of its text found in no
    document with another sha256 (None when it has no such snippet)."""
    row = texts.filter(where).to_pylist()[0]
    for start in range(0, max(1, len(row["text"]) - 40), 20):
        snippet = row["text"][start : start + 40]
        holders = texts.filter(pc.match_substring(texts["text"], snippet))
        if snippet.strip() and set(holders["sha256"].to_pylist()) == {row["sha256"]}:
            return {"url": row["url"], "sha256": row["sha256"], "text": snippet, "reason": reason}
    return None


UNSEEN = {
    "url": "https://never.example/x",
    "sha256": "1" * 64,
    "text": "zq never written anywhere zq",
    "reason": None,
}


@pytest.mark.parametrize("question", ["url", "sha256", "text"])
def test_default_scope_answers_on_a_folder_with_every_kind_of_version(
    every_kind, monkeypatch, capsys, question
):
    layout, _, kept, dropped = every_kind
    monkeypatch.setenv(DATA_ENV, str(layout.root))
    for document, code, status in ((kept, 0, "in"), (UNSEEN, 1, "not_seen"), (dropped, 1, "dropped")):
        assert main(["audit", "contains", f"--{question}", document[question]]) == code, capsys.readouterr()
        text = capsys.readouterr().out
        assert text.startswith("IN:" if code == 0 else "NOT IN")
        if status == "dropped":
            assert document["reason"] in text
        assert main(["audit", "contains", f"--{question}", document[question], "--json"]) == code
        answer = json.loads(capsys.readouterr().out)
        assert answer["status"] == status
        # The chain end of the curated data is the scored version; nothing after it holds documents.
        assert answer["targets"] == [
            f"quality_scored/{p.name}" for p in layout.datasets.glob("quality_scored/*")
        ]
        if status == "dropped":
            assert any(d["dropped_at"]["reason"] == document["reason"] for d in answer["documents"])


def test_a_version_without_documents_is_refused_by_name(every_kind, trained, monkeypatch, capsys):
    layout, examples, kept, _ = every_kind
    monkeypatch.setenv(DATA_ENV, str(layout.root))
    for ref in (examples, trained[2].ref):  # no index at all; an empty index.parquet (token shards)
        assert main(["audit", "contains", "--url", kept["url"], "--version", ref]) == 2
        error = capsys.readouterr().err
        assert ref in error and "holds no documents" in error
