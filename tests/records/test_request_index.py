"""The request index: kept up to date as requests are recorded, equal to one rebuilt from the ledger,
checked before use (a changed index or a ledger it was not built on is detected and rebuilt), and
the request set a version records (ledger size and root) proved against it."""

from __future__ import annotations

import json
import shutil

import pytest

from records.erasure_match import RequestMatcher
from records.layout import DataLayout
from records.ledger import ALIAS_MOVED, ERASURE_REQUESTED, Ledger
from records.request_index import (
    REQUEST_INDEX,
    REQUEST_INDEX_STATE,
    REQUEST_SET_KEY,
    applied_requests,
    load_index,
    rebuild_index,
    stored_index_bytes,
    unapplied_requests,
)
from records.requests import (
    REQUEST_FORMAT,
    REQUESTS,
    ErasureRequest,
    record_request,
    request_id_of,
    requests,
    requests_from_ledger,
)


def _other_entries(layout: DataLayout, n: int) -> None:
    Ledger(layout.ledger).append_many([(ALIAS_MOVED, {"alias": f"a{i}", "target": "x"}) for i in range(n)])


HISTORY = [
    ("url", "https://x.org/page"),
    ("domain", "example.org"),
    ("sha256", "f" * 64),
    ("regex", r"jane\.doe@mail\.example"),
    ("domain", "b.example.net"),
]


def _history(layout: DataLayout, *, recorded: bool = True) -> list:
    """Requests of every kind, with other ledger entries between them: through ``record_request``
    (the index kept as they are recorded), or appended to the ledger as it would (faster: no
    catalog refresh; the index is then read from the ledger at the next load)."""
    found = []
    for i, (kind, value) in enumerate(HISTORY):
        _other_entries(layout, i + 1)
        at = f"2026-01-0{i + 1}T00:00:00Z"
        if recorded:
            found.append(record_request(layout, kind, value, requested_at=at))
            continue
        request_id = request_id_of(kind, value, at, None)
        payload = {"format": REQUEST_FORMAT, "request_id": request_id, "kind": kind, "value": value,
                   "requested_at": at, "note": None}  # fmt: skip
        entry = Ledger(layout.ledger).append(ERASURE_REQUESTED, payload)
        found.append(ErasureRequest(request_id, kind, value, at, None, entry.index))
    if not recorded:
        load_index(layout)
    return found


def test_the_index_kept_incrementally_equals_one_rebuilt_from_the_ledger(tmp_path):
    layout = DataLayout(tmp_path / "data")
    recorded = _history(layout)
    _other_entries(layout, 3)  # entries after the last request: the index is extended past them
    index = load_index(layout)
    assert index.rebuilt is None and index.ledger_size == Ledger(layout.ledger).size()
    assert list(index.requests) == recorded == requests(layout) == requests_from_ledger(layout)
    incremental = stored_index_bytes(layout)
    rebuilt = rebuild_index(layout)
    assert rebuilt.rebuilt is not None  # there was nothing to start from
    assert stored_index_bytes(layout) == incremental and rebuilt.requests == index.requests
    # Each request's root is the ledger's root just past its entry.
    ledger = Ledger(layout.ledger)
    for request in recorded:
        assert index.roots[request.ledger_index] == ledger.root_at(request.ledger_index + 1)


def test_the_request_set_changes_only_when_a_request_is_recorded(tmp_path):
    layout = DataLayout(tmp_path / "data")
    recorded = _history(layout, recorded=False)
    before = load_index(layout).request_set()
    last = recorded[-1].ledger_index
    assert before == {
        "ledger_size": last + 1,
        "ledger_root": Ledger(layout.ledger).root_at(last + 1),
        "requests": len(recorded),
    }
    _other_entries(layout, 4)
    assert load_index(layout).request_set() == before
    new = record_request(layout, "url", "https://x.org/other")
    index = load_index(layout)
    assert index.request_set()["ledger_size"] == new.ledger_index + 1 != before["ledger_size"]
    config = {REQUEST_SET_KEY: before}
    assert applied_requests(index, config) == (recorded, None)
    assert unapplied_requests(index, config) == [new] == index.since(before["ledger_size"])
    assert applied_requests(index, {"suppression": [new.request_id]}) == ([new], None)  # older versions
    assert applied_requests(index, {}) == ([], None)
    forged = {REQUEST_SET_KEY: {**before, "ledger_root": "0" * 64}}
    applied, problem = applied_requests(index, forged)
    assert applied == [] and "is not the ledger's" in problem
    wrong_size = {REQUEST_SET_KEY: {**before, "ledger_size": before["ledger_size"] - 1}}
    assert applied_requests(index, wrong_size)[1] is not None


@pytest.mark.parametrize("change", ["value", "dropped line", "state size", "state frontier", "torn line"])
def test_a_changed_index_is_detected_and_rebuilt_from_the_ledger(tmp_path, change):
    layout = DataLayout(tmp_path / "data")
    recorded = _history(layout, recorded=False)
    good = stored_index_bytes(layout)
    lines_path = layout.root / REQUESTS / REQUEST_INDEX
    state_path = layout.root / REQUESTS / REQUEST_INDEX_STATE
    lines = lines_path.read_bytes().splitlines(keepends=True)
    state = json.loads(state_path.read_text())
    if change == "value":
        lines_path.write_bytes(b"".join([lines[0].replace(b"x.org", b"y.org"), *lines[1:]]))
    elif change == "dropped line":
        lines_path.write_bytes(b"".join(lines[1:]))
    elif change == "state size":
        state_path.write_text(json.dumps({**state, "ledger_size": state["ledger_size"] - 1}))
    elif change == "state frontier":
        state_path.write_text(json.dumps({**state, "frontier": ["00" * 32] * len(state["frontier"])}))
    else:
        lines_path.write_bytes(b"".join(lines) + b'{"entry":')
    index = load_index(layout)
    assert index.rebuilt is not None
    assert list(index.requests) == recorded
    assert stored_index_bytes(layout) == good
    assert load_index(layout).rebuilt is None  # rebuilt once, then used


def test_an_index_built_on_another_ledger_is_not_used(tmp_path):
    layout, other = DataLayout(tmp_path / "data"), DataLayout(tmp_path / "other")
    _history(layout, recorded=False)
    theirs = record_request(other, "url", "https://elsewhere.org/", requested_at="2026-02-01T00:00:00Z")
    _other_entries(other, 20)  # a longer ledger, so the copied index is not simply "ahead" of it
    shutil.rmtree(other.root / REQUESTS)
    shutil.copytree(layout.root / REQUESTS, other.root / REQUESTS)
    index = load_index(other)
    assert index.rebuilt is not None and list(index.requests) == [theirs]


def test_a_ledger_that_does_not_give_its_signed_root_is_refused(tmp_path):
    layout = DataLayout(tmp_path / "data")
    _history(layout, recorded=False)
    entries = layout.ledger / "entries.jsonl"
    entries.write_bytes(entries.read_bytes().replace(b'"alias":"a0"', b'"alias":"b0"', 1))
    # The stored index holds what the signed head signs; entries it has read are not re-read (the
    # ledger's own checks cover them), so only a rebuild meets the changed entry, and refuses it.
    assert load_index(layout).requests[0].value == "https://x.org/page"
    shutil.rmtree(layout.root / REQUESTS)
    with pytest.raises(ValueError, match="do not hash to the latest signed tree head"):
        load_index(layout)


def test_domain_suffix_and_pattern_matching_through_the_index(tmp_path):
    layout = DataLayout(tmp_path / "data")
    recorded = {r.kind + r.value: r.request_id for r in _history(layout, recorded=False)}
    matcher = RequestMatcher([r.as_filter() for r in load_index(layout).requests])

    def named(url, text="", sha256=None):
        return [r["request_id"] for r in matcher.all_matches(url, sha256, text)]

    assert named("https://example.org/a") == [recorded["domainexample.org"]]
    assert named("https://a.b.example.org:8080/a") == [recorded["domainexample.org"]]
    assert named("https://user@EXAMPLE.org./") == [recorded["domainexample.org"]]
    assert named("https://badexample.org/") == [] and named("https://example.org.evil.com/") == []
    assert named("https://c.b.example.net/") == [recorded["domainb.example.net"]]
    assert named("https://example.net/") == []  # a request for a subdomain does not name its parent
    assert named("https://x.org/page") == [recorded["urlhttps://x.org/page"]]
    assert named("https://z.org/", sha256="f" * 64) == [recorded["sha256" + "f" * 64]]
    assert named("https://z.org/", "mail jane.doe@mail.example now") == [
        recorded[r"regexjane\.doe@mail\.example"]
    ]
    assert named("https://z.org/", "jane.doe@mail-example") == []
