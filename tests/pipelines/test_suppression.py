"""The suppression filter: a recorded erasure request removes its documents from the next curation,
the exclusion row names the request (and no longer holds the text), and the check finds nothing."""

from __future__ import annotations

import json
import re
import shutil

import pyarrow.parquet as pq
import pytest
from datatrove.data import Document

from pipelines import fields, reasons
from pipelines.config import CurationConfig
from pipelines.executor import ExecutorConfig
from pipelines.steps import deduplicate_version, filter_quality, identify_languages, ingest_snapshot
from pipelines.suppression import (
    SUPPRESSION_RECORD,
    SuppressionFilter,
    suppression_check,
    suppression_outcome,
)
from provenance.erasure import impact, record_request
from provenance.layout import DataLayout

EXECUTOR = ExecutorConfig(tasks=2, workers=1)
EMAIL = re.compile(r"[\w.+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}")


def _doc(text: str, url: str, sha256: str = "0" * 64) -> Document:
    return Document(text=text, id=url, metadata={fields.URL: url, fields.SHA256: sha256})


def test_filter_drops_what_each_kind_names_and_erases_the_text():
    requests = [
        {"request_id": "a" * 64, "kind": "url", "value": "https://x.org/page"},
        {"request_id": "b" * 64, "kind": "domain", "value": "y.org"},
        {"request_id": "c" * 64, "kind": "sha256", "value": "f" * 64},
        {"request_id": "d" * 64, "kind": "regex", "value": r"jane\.doe@mail\.example"},
    ]
    block = SuppressionFilter(requests)
    docs = {
        "url": _doc("text", "https://x.org/page"),
        "other page": _doc("text", "https://x.org/page2"),
        "subdomain": _doc("text", "https://news.y.org/a"),
        "lookalike": _doc("text", "https://my.org/a"),
        "hash": _doc("text", "https://z.org/", sha256="f" * 64),
        "pattern": _doc("write to jane.doe@mail.example today", "https://z.org/contact"),
    }
    results = {name: block.filter(doc) for name, doc in docs.items()}
    assert {n for n, r in results.items() if r is True} == {"other page", "lookalike"}
    for name, request in zip(("url", "subdomain", "hash", "pattern"), requests, strict=True):
        assert results[name] == (False, reasons.SUPPRESSED_ERASURE_REQUEST)
        assert docs[name].metadata[fields.FILTER_DETAILS] == request
        assert docs[name].text == ""


@pytest.fixture(scope="module")
def recurated(curated, tmp_path_factory):
    """A copy of the curated folder, two requests recorded (a URL of a document kept to the end, and an
    email address found in a kept document), then ingest run again with the filter in place."""
    source_layout, results, _ = curated
    layout = DataLayout(tmp_path_factory.mktemp("suppression") / "data")
    shutil.copytree(source_layout.root, layout.root)
    raw, *_, deduplicated = (r.manifest for r in results)
    kept = pq.read_table(layout.datasets / deduplicated.ref / "index.parquet").to_pylist()
    target = kept[0]
    kept_ids = {r["doc_id"] for r in kept}
    raw_rows = [
        row
        for path in sorted((layout.datasets / raw.ref / "shards").glob("*.parquet"))
        for row in pq.read_table(path, columns=["id", "text"]).to_pylist()
    ]
    address = next(m.group() for r in raw_rows if r["id"] in kept_ids and (m := EMAIL.search(r["text"])))
    by_email = {r["id"] for r in raw_rows if address in r["text"]}
    requests = [
        record_request(layout, "url", target["url"]),
        record_request(layout, "regex", re.escape(address)),
    ]
    new_raw = ingest_snapshot(layout, "small", CurationConfig(), EXECUTOR)
    return layout, results, target, by_email, requests, new_raw


def _rows(folder, name):
    return pq.read_table(folder / name).to_pylist()


def test_recuration_leaves_the_documents_out_and_names_the_request(recurated):
    layout, results, target, by_email, requests, new_raw = recurated
    old_raw = results[0]
    assert new_raw.created and new_raw.manifest.version_id != old_raw.manifest.version_id
    gone = {target["doc_id"]} | by_email
    old_ids = {r["doc_id"] for r in _rows(old_raw.folder, "index.parquet")}
    new_ids = {r["doc_id"] for r in _rows(new_raw.folder, "index.parquet")}
    assert gone <= old_ids and old_ids - new_ids == gone  # exactly the named documents left
    rows = [
        r
        for r in _rows(new_raw.folder, "exclusions.parquet")
        if r["reason"] == reasons.SUPPRESSED_ERASURE_REQUEST
    ]
    assert {r["doc_id"] for r in rows} == gone
    by_id = {r.request_id: r for r in requests}
    for row in rows:
        details = json.loads(row["details"])
        request = by_id[details["request_id"]]
        assert details == {"request_id": request.request_id, "kind": request.kind, "value": request.value}
        assert row["num_chars"] == 0  # the exclusion keeps who and why, not the erased text
    assert json.loads(row["details"])["request_id"] in by_id
    assert new_raw.excluded["by_reason"][reasons.SUPPRESSED_ERASURE_REQUEST] == len(gone)
    ids = sorted(by_id)
    assert new_raw.manifest.config["suppression"] == ids
    assert json.loads((new_raw.folder / SUPPRESSION_RECORD).read_text())["requests"] == ids


def test_the_check_finds_kept_matches_in_the_old_version_and_none_in_the_new(recurated):
    layout, results, target, by_email, requests, new_raw = recurated
    plain = [r.as_filter() for r in requests]
    assert suppression_check(new_raw.folder, plain) == []
    old = suppression_check(results[0].folder, plain)
    assert len(old) == 1 + len(by_email) and any(target["doc_id"] in line for line in old)
    passed, metadata = suppression_outcome(new_raw.folder, new_raw.manifest.config, plain)
    assert passed and metadata["requests_applied"] == 2 and not metadata["requests_pending"]
    # The old version applied none: they are pending there, not failures, with what they name.
    passed, metadata = suppression_outcome(results[0].folder, results[0].manifest.config, plain)
    assert passed and metadata["requests_applied"] == 0 and len(metadata["requests_pending"]) == 2
    assert metadata["documents_named_by_pending_requests"] == len(old)
    config = {**results[0].manifest.config, "suppression": [r["request_id"] for r in plain]}
    passed, metadata = suppression_outcome(results[0].folder, config, plain)  # claims them: fails
    assert not passed and metadata["kept_but_requested"] == old


def test_impact_shows_the_suppression_and_no_new_version_keeps_the_document(recurated):
    layout, results, target, _, requests, new_raw = recurated
    languages = identify_languages(layout, new_raw.manifest, CurationConfig(), EXECUTOR)
    quality = filter_quality(layout, languages.manifest, CurationConfig(), EXECUTOR)
    deduplicated = deduplicate_version(layout, quality.manifest, CurationConfig(), EXECUTOR)
    assert target["doc_id"] not in {r["doc_id"] for r in _rows(deduplicated.folder, "index.parquet")}
    found = impact(layout, requests[0])
    new_refs = {r.manifest.ref for r in (new_raw, languages, quality, deduplicated)}
    assert found.suppressed_in == [new_raw.manifest.ref]
    assert not new_refs & set(found.kept_in)
    assert {r.manifest.ref for r in results} <= set(found.kept_in)  # the old chain still holds it


def test_a_new_request_changes_the_version_even_when_it_matches_nothing(recurated):
    layout, _, _, _, requests, new_raw = recurated
    record_request(layout, "domain", "nothing-here.invalid")
    third = ingest_snapshot(layout, "small", CurationConfig(), EXECUTOR)
    assert third.created and third.manifest.version_id != new_raw.manifest.version_id
    assert third.kept["documents"] == new_raw.kept["documents"]
    assert len(third.manifest.config["suppression"]) == len(requests) + 1
