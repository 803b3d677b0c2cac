"""Erasure requests: recorded in the ledger with a content id, and their impact found in every dataset
version (checked against each version's own index files) and in every model whose token shards hold
a matching document (checked against the sequence map and the model's sequence use)."""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys

import pyarrow.parquet as pq
import pytest

from provenance.erasure import impact, matcher
from records.erasure_match import url_host
from records.layout import DataLayout
from records.ledger import ERASURE_REQUESTED, Ledger
from records.requests import find_request, record_request, request_id_of, requests
from tests.provenance.handmade_model import build_model

EMAIL = re.compile(r"[\w.+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}")


@pytest.fixture(scope="module")
def world(curated, tmp_path_factory):
    """A copy of the curated folder with a hand-made model over its deduplicated version; the model
    trained on every sequence except those holding ``untrained``."""
    source_layout, results, _ = curated
    layout = DataLayout(tmp_path_factory.mktemp("erasure") / "data")
    shutil.copytree(source_layout.root, layout.root)
    raw, _, _, deduplicated = (r.manifest for r in results)
    kept = pq.read_table(layout.datasets / deduplicated.ref / "index.parquet").to_pylist()
    target, untrained = kept[0], kept[len(kept) // 2]
    model = build_model(layout, deduplicated, untrained_doc=untrained["doc_id"])
    return layout, results, target, untrained, model


def _versions_holding(layout: DataLayout, results, predicate) -> dict[str, set[str]]:
    """Per curation version, the doc ids its index (kept) and exclusions hold that satisfy predicate,
    read straight from the version's Parquet files."""
    found = {}
    for result in results:
        for table in ("index.parquet", "exclusions.parquet"):
            for row in pq.read_table(result.folder / table).to_pylist():
                if predicate(row):
                    found.setdefault(result.manifest.ref, set()).add(
                        (row["doc_id"], table == "index.parquet")
                    )
    return found


def _impact_sets(result) -> dict[str, set[str]]:
    return {
        v.ref: {(d.doc_id, d.kept) for d in v.documents}
        for v in result.versions
        if v.asset in {"raw_documents", "language_identified", "quality_filtered", "deduplicated"}
    }


def test_request_is_a_ledger_entry_named_by_its_content_hash(tmp_path):
    layout = DataLayout(tmp_path / "data")
    request = record_request(layout, "domain", "  WWW.Example.ORG. ", note="ticket 42")
    assert request.value == "www.example.org"
    assert request.request_id == request_id_of("domain", "www.example.org", request.requested_at, "ticket 42")
    [entry] = [e for e in Ledger(layout.ledger).entries() if e.event_type == ERASURE_REQUESTED]
    assert entry.payload["request_id"] == request.request_id and entry.payload["note"] == "ticket 42"
    assert requests(layout) == [request]
    assert find_request(layout, request.request_id[:8]) == request
    again = record_request(
        layout, "domain", "www.example.org", "ticket 42", requested_at=request.requested_at
    )
    assert again == request and len(requests(layout)) == 1  # the same request is recorded once
    assert Ledger(layout.ledger).verify() == []


@pytest.mark.parametrize(
    "kind, value, message",
    [
        ("sha256", "abc", "64 hex digits"),
        ("url", "example.org/page", "absolute URL"),
        ("domain", "https://example.org/x", "host name"),
        ("regex", "(unclosed", "RE2 cannot compile it (missing ): (unclosed)"),
        ("regex", r"(?<=a)b", "RE2 cannot compile it"),
        ("regex", r"(a)\1", "no look-around or back-references"),
        ("phone", "123", "expected one of"),
    ],
)
def test_bad_requests_are_refused_with_the_reason(tmp_path, kind, value, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        record_request(DataLayout(tmp_path / "data"), kind, value)
    assert not (tmp_path / "data" / "ledger" / "entries.jsonl").exists()


def test_a_malformed_request_entry_stops_every_reader(tmp_path):
    layout = DataLayout(tmp_path / "data")
    Ledger(layout.ledger).append(ERASURE_REQUESTED, {"url": "https://example.org/"})
    with pytest.raises(ValueError, match=r"entries.jsonl entry 0: not an erasure request"):
        requests(layout)
    other = DataLayout(tmp_path / "other")
    good = record_request(other, "url", "https://example.org/")
    tampered = {**good.as_filter(), "requested_at": "2020-01-01T00:00:00Z"}
    Ledger(other.ledger).append(ERASURE_REQUESTED, tampered)
    with pytest.raises(ValueError, match="entry 1: request_id does not match"):
        requests(other)


def test_unknown_request_prefix_is_named(world):
    with pytest.raises(ValueError, match="no recorded request matches"):
        find_request(world[0], "ffffffffffff")


def test_url_request_is_found_in_every_version_and_the_model(world):
    layout, results, target, _, model = world
    request = record_request(layout, "url", target["url"])
    found = impact(layout, request)
    expected = _versions_holding(layout, results, lambda row: row["url"] == target["url"])
    assert _impact_sets(found) == expected
    assert set(found.kept_in) >= {r.manifest.ref for r in results}  # kept to the end of the chain
    assert [d["doc_id"] for d in found.documents] == [target["doc_id"]]
    [hit] = found.models
    assert hit.ref == model["model"] and hit.contains and hit.token_shards == model["token_shards"]
    sequences = pq.read_table(layout.datasets / model["token_shards"] / "stages/0-main/sequences.parquet")
    holding = {r["sequence"] for r in sequences.to_pylist() if r["doc_id"] == target["doc_id"]}
    assert hit.documents == [
        {"doc_id": target["doc_id"], "sha256": target["sha256"], "stage": "0-main",
         "sequences": len(holding), "sequences_trained": len(holding - set(model["held"]))}
    ]  # fmt: skip
    assert holding - set(model["held"])
    training = json.loads((layout.datasets / model["tokenizer"] / "training_sample.json").read_text())
    in_sample = target["doc_id"] in {d["doc_id"] for d in training["training"] + training["held_out"]}
    assert found.tokenizers == ([model["tokenizer"]] if in_sample else [])
    assert found.suppressed_in == []


def test_a_document_only_held_out_is_in_the_shards_but_not_trained(world):
    layout, _, _, untrained, model = world
    found = impact(layout, record_request(layout, "sha256", untrained["sha256"]))
    [hit] = found.models
    assert hit.documents and all(d["sequences"] > 0 for d in hit.documents)
    # Sequences it shares with a trained document are trained; those only it holds are not.
    sequences = pq.read_table(layout.datasets / model["token_shards"] / "stages/0-main/sequences.parquet")
    holding = {r["sequence"] for r in sequences.to_pylist() if r["doc_id"] == untrained["doc_id"]}
    assert sum(d["sequences_trained"] for d in hit.documents) == len(holding - set(model["held"])) == 0
    assert not hit.contains


def test_regex_request_follows_the_document_through_pii_redaction(world):
    """An email address is redacted by filter_quality, so later versions' text no longer holds it:
    the documents are followed by id, and every version keeping them is named."""
    layout, results, _, _, _ = world
    raw, *_, deduplicated = results
    kept_ids = {r["doc_id"] for r in pq.read_table(deduplicated.folder / "index.parquet").to_pylist()}
    raw_rows = [
        row
        for path in sorted((raw.folder / "shards").glob("*.parquet"))
        for row in pq.read_table(path, columns=["id", "text", "url"]).to_pylist()
    ]
    address = next(
        m.group() for row in raw_rows if row["id"] in kept_ids and (m := EMAIL.search(row["text"]))
    )
    holders = {row["id"] for row in raw_rows if address in row["text"]}
    found = impact(layout, record_request(layout, "regex", re.escape(address)))
    assert {d["doc_id"] for d in found.documents} == holders
    assert _impact_sets(found) == _versions_holding(layout, results, lambda row: row["doc_id"] in holders)
    redacted = pq.read_table(deduplicated.folder / "shards" / "00000.parquet", columns=["text"]).to_pylist()
    assert not any(address in r["text"] for r in redacted)  # why following by id is needed
    assert deduplicated.manifest.ref in found.kept_in


def test_domain_request_matches_the_host_and_its_subdomains(world):
    layout, results, target, _, _ = world
    host = url_host(target["url"])
    parent = host.split(".", 1)[1]  # www.x.org -> x.org: the request names the site, pages are on www
    found = impact(layout, record_request(layout, "domain", parent))
    in_domain = matcher({"kind": "domain", "value": parent})
    expected = _versions_holding(layout, results, lambda row: in_domain(row["url"], None, ""))
    assert _impact_sets(found) == expected and expected
    assert all(url_host(d["url"]).endswith("." + parent) for d in found.documents)


def test_host_matching_ignores_user_port_and_case():
    assert url_host("HTTPS://user:pw@Sub.Example.ORG.:8443/a?b#c") == "sub.example.org"
    in_domain = matcher({"kind": "domain", "value": "example.org"})
    assert in_domain("https://a.example.org/x", None, "")
    assert in_domain("http://example.org", None, "")
    assert not in_domain("https://notexample.org/x", None, "")
    assert not in_domain("https://example.org.evil.com/", None, "")


def _cli(argv: list[str]) -> int:
    from apertus.compliance_cli import add_commands

    parser = argparse.ArgumentParser(prog="apertus")
    add_commands(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return args.func(args)


def test_cli_records_a_request_and_prints_its_impact(world, monkeypatch, capsys):
    layout, _, target, _, model = world
    monkeypatch.setenv("APERTUS_DATA", str(layout.root))
    assert _cli(["compliance", "request", "--url", target["url"], "--note", "ticket 9"]) == 0
    request = requests(layout)[-1]
    assert request.value == target["url"] and request.note == "ticket 9"
    assert _cli(["compliance", "impact", request.request_id[:10]]) == 0
    out = capsys.readouterr().out
    assert target["doc_id"] in out and "models: 1 trained on them" in out
    assert f"{model['model'].split('/')[1][:12]}  trained on them" in out
    assert _cli(["compliance", "impact", request.request_id, "--json"]) == 0
    answer = json.loads(capsys.readouterr().out)
    assert (
        answer["models_containing"] == [model["model"]]
        and answer["request"]["request_id"] == request.request_id
    )


def test_impact_imports_neither_torch_nor_dagster(world):
    layout, _, target, _, _ = world
    request_id = record_request(layout, "sha256", target["sha256"]).request_id
    code = (
        "import sys; from records.requests import find_request; from provenance.erasure import impact; from records.layout import DataLayout; "
        f"layout = DataLayout({str(layout.root)!r}); impact(layout, find_request(layout, {request_id!r})); "
        "print('torch' in sys.modules, 'dagster' in sys.modules)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.split() == ["False", "False"]


def test_a_request_naming_nothing_has_an_empty_impact(world):
    layout, *_ = world
    found = impact(layout, record_request(layout, "domain", "nothing-here.invalid"))
    assert (found.documents, found.versions, found.models, found.tokenizers) == ([], [], [], [])


def _record_at_once(root: str, barrier) -> str:
    barrier.wait()  # every process reads the recorded requests at the same moment
    request = record_request(
        DataLayout(root), "url", "https://example.org/race", "ticket 4", requested_at="2026-01-01T00:00:00Z"
    )
    return request.request_id


def test_four_identical_requests_at_once_are_recorded_once(tmp_path):
    """The duplicate check ran outside the ledger's lock: four processes recorded three entries."""
    import multiprocessing

    root = str(tmp_path / "data")
    context = multiprocessing.get_context("spawn")
    with context.Manager() as manager:
        barrier = manager.Barrier(4)
        with context.Pool(4) as pool:
            ids = pool.starmap(_record_at_once, [(root, barrier)] * 4)
    assert len(set(ids)) == 1
    entries = [e for e in Ledger(DataLayout(root).ledger).entries() if e.event_type == ERASURE_REQUESTED]
    assert len(entries) == 1 and [r.request_id for r in requests(DataLayout(root))] == ids[:1]
    assert (tmp_path / "data" / "requests" / ".lock").exists()  # the lock is the requests' own


def test_impact_accepts_a_request_recorded_twice_by_older_code(world, monkeypatch, capsys):
    """Older code could record one request twice; impact then refused it, even by its full id."""
    layout, _, target, _, _ = world
    first = record_request(layout, "url", target["url"], "ticket 11", requested_at="2026-02-02T00:00:00Z")
    Ledger(layout.ledger).append(ERASURE_REQUESTED, {"format": "apertus.erasure-request/1", **first.as_filter(),
                                                     "requested_at": first.requested_at, "note": first.note})  # fmt: skip
    assert [r.request_id for r in requests(layout)].count(first.request_id) == 2
    assert find_request(layout, first.request_id) == first
    assert find_request(layout, first.request_id[:10]) == first
    monkeypatch.setenv("APERTUS_DATA", str(layout.root))
    assert _cli(["compliance", "impact", first.request_id]) == 0
    captured = capsys.readouterr()
    assert target["doc_id"] in captured.out
    assert f"recorded 2 times (ledger entries {first.ledger_index}, " in captured.err
