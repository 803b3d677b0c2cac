"""The auditor's default question on a data folder holding every kind of version (issue 14, finding 14).

A copy of the session's `trained` data folder (curated, scored, staged, tokenized, token shards, a
trained model) gets a finetune_examples version sealed the way `apertus tune` seals one
(provenance.finetune.seal_examples). Then `apertus audit contains` with no scope must answer from
the versions of documents only: a document the model trained on exits 0, an unseen one 1, a
near-duplicate dropped by dedup 1 with its reason, by --url, --sha256 and --text, with and
without --json. Ground truth is read from the versions' Parquet files with pyarrow.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from apertus.cli import main
from provenance.audit.model_use import trained_document
from provenance.finetune import seal_examples
from provenance.layout import DATA_ENV, DataLayout

EXAMPLES = Path(__file__).resolve().parents[2] / "sample" / "finetune" / "examples.jsonl"


@pytest.fixture(scope="module")
def every_kind(trained, tmp_path_factory):
    """(layout, examples ref, kept, dropped): kept and dropped as {"url", "sha256", "text"}."""
    source, model, _ = trained
    layout = DataLayout(tmp_path_factory.mktemp("every_kind") / "data")
    shutil.copytree(source.root, layout.root, ignore=shutil.ignore_patterns("work", "*.lock"))
    examples, created = seal_examples(layout, EXAMPLES)
    assert created
    doc_id, url = trained_document(layout, model.ref)
    dedup = next(p for p in layout.datasets.glob("deduplicated/*") if (p / "index.parquet").exists())
    kept = _document(dedup / "shards", pc.field("doc_id") == doc_id)
    assert kept["url"] == url
    near = pq.read_table(dedup / "exclusions.parquet").filter(pc.field("reason") == "near_duplicate")
    dropped = _document(dedup / "excluded", pc.field("doc_id") == near["doc_id"][0].as_py())
    return layout, examples.ref, kept, dropped


def _document(folder: Path, where) -> dict:
    table = pq.read_table(folder, columns=["doc_id", "url", "sha256", "text"], filter=where)
    row = table.to_pylist()[0]
    return {"url": row["url"], "sha256": row["sha256"], "text": row["text"][:60].strip()}


UNSEEN = {"url": "https://never.example/x", "sha256": "1" * 64, "text": "zq never written anywhere zq"}


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
            assert "near_duplicate" in text
        assert main(["audit", "contains", f"--{question}", document[question], "--json"]) == code
        answer = json.loads(capsys.readouterr().out)
        assert answer["status"] == status
        assert not any(t.startswith("finetune_examples/") for t in answer["targets"])
        if status == "dropped":
            assert any(d["dropped_at"]["reason"] == "near_duplicate" for d in answer["documents"])


def test_a_version_without_documents_is_refused_by_name(every_kind, monkeypatch, capsys):
    layout, examples, kept, _ = every_kind
    monkeypatch.setenv(DATA_ENV, str(layout.root))
    assert main(["audit", "contains", "--url", kept["url"], "--version", examples]) == 2
    error = capsys.readouterr().err
    assert examples in error and "holds no documents" in error
