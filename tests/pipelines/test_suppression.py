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
    suppression_blocks,
    suppression_check,
    suppression_outcome,
)
from provenance.erasure import impact
from records.layout import DataLayout
from records.ledger import ALIAS_MOVED, Ledger
from records.request_index import REQUEST_SET_KEY, load_index
from records.requests import record_request

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
    # The version names the request set by the ledger size and root just past the last request,
    # not by listing every request id.
    last = max(r.ledger_index for r in requests)
    request_set = {
        "ledger_size": last + 1,
        "ledger_root": Ledger(layout.ledger).root_at(last + 1),
        "requests": 2,
    }
    assert new_raw.manifest.config[REQUEST_SET_KEY] == request_set
    assert "suppression" not in new_raw.manifest.config
    record = json.loads((new_raw.folder / SUPPRESSION_RECORD).read_text())
    assert record == {**request_set, "requests": 2, "budget_ms": 50.0}


def test_a_rerun_with_no_new_request_gives_the_same_version(recurated):
    layout, _, _, _, _, new_raw = recurated
    Ledger(layout.ledger).append(ALIAS_MOVED, {"alias": "unrelated", "target": "x"})  # not a request
    again = ingest_snapshot(layout, "small", CurationConfig(), EXECUTOR)
    assert not again.created and again.manifest.version_id == new_raw.manifest.version_id


def test_the_check_finds_kept_matches_in_the_old_version_and_none_in_the_new(recurated):
    layout, results, target, by_email, requests, new_raw = recurated
    plain = [r.as_filter() for r in requests]
    assert suppression_check(new_raw.folder, plain) == []
    old = suppression_check(results[0].folder, plain)
    assert len(old) == 1 + len(by_email) and any(target["doc_id"] in line for line in old)
    index = load_index(layout)
    passed, metadata = suppression_outcome(new_raw.folder, new_raw.manifest.config, index)
    assert passed and metadata["requests_applied"] == 2 and not metadata["requests_pending"]
    # The old version applied none: they are pending there, not failures, with what they name.
    passed, metadata = suppression_outcome(results[0].folder, results[0].manifest.config, index)
    assert passed and metadata["requests_applied"] == 0 and len(metadata["requests_pending"]) == 2
    assert metadata["documents_named_by_pending_requests"] == len(old)
    config = {**results[0].manifest.config, REQUEST_SET_KEY: index.request_set()}
    passed, metadata = suppression_outcome(results[0].folder, config, index)  # claims them: fails
    assert not passed and metadata["kept_but_requested"] == old
    legacy = {**results[0].manifest.config, "suppression": [r["request_id"] for r in plain]}
    passed, metadata = suppression_outcome(results[0].folder, legacy, index)  # older versions' form
    assert not passed and metadata["kept_but_requested"] == old
    # A request set the ledger does not hold (a forged root) proves nothing: the check fails.
    forged = {REQUEST_SET_KEY: {**index.request_set(), "ledger_root": "0" * 64}}
    passed, metadata = suppression_outcome(new_raw.folder, {**new_raw.manifest.config, **forged}, index)
    assert not passed and "is not the ledger's" in metadata["request_set_problem"]


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
    new = record_request(layout, "domain", "nothing-here.invalid")
    third = ingest_snapshot(layout, "small", CurationConfig(), EXECUTOR)
    assert third.created and third.manifest.version_id != new_raw.manifest.version_id
    assert third.kept["documents"] == new_raw.kept["documents"]
    assert third.manifest.config[REQUEST_SET_KEY]["ledger_size"] == new.ledger_index + 1
    passed, metadata = suppression_outcome(third.folder, third.manifest.config, load_index(layout))
    assert passed and metadata["requests_applied"] == len(requests) + 1


# --- One matcher (issue 14, finding 10): the filter, impact and the check agree, in linear time ----

ONE_EXECUTOR = ExecutorConfig(tasks=1, workers=1)


def _tiny_snapshot(layout: DataLayout, name: str, texts: dict[str, str]) -> None:
    """A snapshot of one JSONL file, one document per (url, text)."""
    folder = layout.snapshot_dir(name)
    folder.mkdir(parents=True)
    lines = [
        json.dumps({"id": url.rsplit("/", 1)[1], "url": url, "text": text}) for url, text in texts.items()
    ]
    (folder / "part-0.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")


def _index_urls(result) -> set[str]:
    return {r["url"] for r in _rows(result.folder, "index.parquet")}


def test_a_posix_class_pattern_erases_the_document_impact_lists(tmp_path):
    """Python ``re`` read ``[[:digit:]]`` as a set of characters: impact (RE2) listed the document
    and the filter kept it."""
    layout = DataLayout(tmp_path / "data")
    phone, other = "https://a.example/phone", "https://a.example/other"
    texts = {phone: "Call me on 555-1234 after six.", other: "Nothing to see in this text."}
    _tiny_snapshot(layout, "tiny", texts)
    before = ingest_snapshot(layout, "tiny", CurationConfig(), ONE_EXECUTOR)
    assert _index_urls(before) == {phone, other}
    request = record_request(layout, "regex", r"[[:digit:]]{3}-[[:digit:]]{4}")
    listed = impact(layout, request)
    assert [d["url"] for d in listed.documents] == [phone] and listed.kept_in == [before.manifest.ref]

    after = ingest_snapshot(layout, "tiny", CurationConfig(), ONE_EXECUTOR)
    assert _index_urls(after) == {other}  # the document impact listed is gone
    found = impact(layout, request)
    assert found.suppressed_in == [after.manifest.ref] and after.manifest.ref not in found.kept_in
    assert suppression_check(after.folder, [request.as_filter()]) == []
    assert len(suppression_check(before.folder, [request.as_filter()])) == 1


CATASTROPHIC = r"^(\w+\s?)*$"  # exponential in Python re on a text of words ending in a non-word


def test_a_catastrophic_pattern_curates_in_seconds_and_drops_only_what_matches(tmp_path):
    """``^(\\w+\\s?)*$`` on 40 words and a "!" backtracks for longer than the universe in ``re``;
    RE2 is linear. Run in a subprocess so that a regression fails by timeout instead of hanging."""
    import subprocess
    import sys
    from pathlib import Path

    layout = DataLayout(tmp_path / "data")
    hostile, words = "https://a.example/hostile", "https://a.example/words"
    texts = {hostile: " ".join(["lorem"] * 40) + " !", words: "only plain words here"}
    _tiny_snapshot(layout, "one", {hostile: texts[hostile]})
    _tiny_snapshot(layout, "two", texts)
    record_request(layout, "regex", CATASTROPHIC)
    code = (
        "import json, time\n"
        "from pipelines.config import CurationConfig\n"
        "from pipelines.executor import ExecutorConfig\n"
        "from pipelines.steps import ingest_snapshot\n"
        "from records.layout import DataLayout\n"
        "start, folders = time.perf_counter(), []\n"
        "for name in ('one', 'two'):\n"
        f"    layout = DataLayout({str(layout.root)!r})\n"
        "    result = ingest_snapshot(layout, name, CurationConfig(), ExecutorConfig(tasks=1, workers=1))\n"
        "    folders.append(str(result.folder))\n"
        "print(json.dumps({'seconds': time.perf_counter() - start, 'folders': folders}))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=90)
    assert done.returncode == 0, done.stderr[-2000:]
    answer = json.loads(done.stdout.splitlines()[-1])
    assert answer["seconds"] < 10, answer  # both curations, not the imports
    raws = [Path(folder) for folder in answer["folders"]]
    kept = [{r["url"] for r in pq.read_table(p / "index.parquet").to_pylist()} for p in raws]
    assert kept == [{hostile}, {hostile}]  # the hostile text does not match; only "words" is dropped
    dropped = pq.read_table(raws[1] / "exclusions.parquet").to_pylist()
    assert [(r["url"], r["reason"]) for r in dropped] == [(words, reasons.SUPPRESSED_ERASURE_REQUEST)]


def test_a_document_over_the_time_budget_is_dropped_as_a_timeout():
    requests = [
        {"request_id": "a" * 64, "kind": "regex", "value": r"never[[:digit:]]+here"},
        {"request_id": "b" * 64, "kind": "url", "value": "https://x.org/named"},
    ]
    big = "plain words and nothing else " * 20_000  # 580 KB: far over a budget of 1 ns
    block = SuppressionFilter(requests, budget_ms=1e-6)
    slow = _doc(big, "https://x.org/slow")
    assert block.filter(slow) == (False, reasons.SUPPRESSION_TIMEOUT)
    details = slow.metadata[fields.FILTER_DETAILS]
    assert details["request_ids"] == ["a" * 64] and details["budget_ms"] == 1e-6
    assert details["elapsed_ms"] > 0 and slow.text == ""  # fail closed: erased like a match
    # Named by URL: a lookup, never timed out, reported as the request it is.
    named = _doc(big, "https://x.org/named")
    assert block.filter(named) == (False, reasons.SUPPRESSED_ERASURE_REQUEST)
    # With the default budget the same text is searched in full and kept.
    assert SuppressionFilter(requests).filter(_doc(big, "https://x.org/slow")) is True


def test_the_budget_comes_from_the_environment_and_is_recorded(tmp_path, monkeypatch):
    requests = [{"request_id": "a" * 64, "kind": "regex", "value": "x"}]
    monkeypatch.setenv("APERTUS_SUPPRESSION_BUDGET_MS", "7.5")
    (block,) = suppression_blocks(requests, tmp_path)
    assert block.budget_ms == 7.5
    assert json.loads((tmp_path / SUPPRESSION_RECORD).read_text())["budget_ms"] == 7.5
    monkeypatch.setenv("APERTUS_SUPPRESSION_BUDGET_MS", "soon")
    with pytest.raises(ValueError, match="APERTUS_SUPPRESSION_BUDGET_MS='soon'"):
        suppression_blocks(requests, tmp_path)
