"""The request key index: a step's start reads only the requests recorded since the last one, its
on-disk matcher answers exactly as the in-memory one over every request, and a changed or stale
file is detected (rebuilt at start, or a clear error at a probe), never an answer."""

from __future__ import annotations

import json
import pickle

import pytest

import records.request_index as request_index
from pipelines.suppression import SuppressionFilter
from records.erasure_match import RequestMatcher
from records.layout import DataLayout
from records.ledger import ALIAS_MOVED, ERASURE_REQUESTED, Ledger
from records.lookup_file import LookupIntegrityError
from records.request_index import load_index
from records.request_keys import KEYS_STATE, PATTERNS, keys_folder, stored_matcher
from records.request_keys_build import rebuild_keys, refresh_keys, stored_rows
from records.requests import REQUEST_FORMAT, request_id_of


def _append(layout: DataLayout, start: int, values: list[tuple[str, str]]) -> None:
    """Record ``values`` (kind, value) as requests, with other entries between them, in one batch."""
    events = []
    for n, (kind, value) in enumerate(values, start):
        at = f"2026-01-01T00:00:{n % 60:02d}Z"
        payload = {"format": REQUEST_FORMAT, "request_id": request_id_of(kind, value, f"{at}#{n}", None),
                   "kind": kind, "value": value, "requested_at": f"{at}#{n}", "note": None}  # fmt: skip
        events += [(ALIAS_MOVED, {"alias": f"a{n}", "target": "x"}), (ERASURE_REQUESTED, payload)]
    Ledger(layout.ledger).append_many(events)


def _batch(b: int) -> list[tuple[str, str]]:
    values = [("url", f"https://site{b}.example/page{k}") for k in range(20)]
    values += [("sha256", f"{b:02x}{k:062x}") for k in range(6)]
    values += [("domain", f"d{b}-{k}.example") for k in range(3)] + [("regex", rf"person{b}@mail\.example")]
    values.append(("url", "https://shared.example/again"))  # the same URL requested in every batch
    return values


MIXED_DOCS = [
    ("https://site1.example/page3", "0" * 64, "text"),
    ("https://site1.example/page3x", "0" * 64, "text"),  # a lookalike URL
    ("https://a.b.d2-1.example/x", None, "text"),  # a subdomain of a requested domain
    ("https://notd2-1.example/x", None, "text"),
    ("https://d0-0.example", f"{4:02x}{5:062x}", "text"),  # two requests name it: the smaller id wins
    ("https://x.example/", f"{3:02x}{2:062x}", "text"),
    ("https://x.example/", "F" * 64, "mail person5@mail.example today"),
    ("https://x.example/", None, "mail person999@mail.example"),
    (None, None, None),
    ("not a url", "", ""),
    ("https://shared.example/again", None, "text"),
]


def _history(tmp_path, batches: int) -> DataLayout:
    layout = DataLayout(tmp_path / "data")
    for b in range(batches):
        _append(layout, 100 * b, _batch(b))
        refresh_keys(layout)  # a step between batches: segments added and merged
    return layout


def test_the_stored_matcher_answers_as_the_in_memory_one_over_every_request(tmp_path):
    layout = _history(tmp_path, 7)
    stored = refresh_keys(layout)
    index = load_index(layout)
    assert stored.request_set() == index.request_set() and stored.num_requests == len(index.requests)
    assert 1 < len(stored.segments) <= 3  # 7 steps merged like a binary counter
    old = RequestMatcher([r.as_filter() for r in index.requests])
    new = stored_matcher(stored)
    found = 0
    for url, sha256, text in MIXED_DOCS:
        assert new.all_matches(url, sha256, text) == old.all_matches(url, sha256, text)
        assert new.verdict(url, sha256, text, 50.0).request == old.verdict(url, sha256, text, 50.0).request
        found += bool(old.all_matches(url, sha256, text))
    assert found == 7


def test_an_incremental_index_holds_what_one_rebuilt_from_the_ledger_holds(tmp_path):
    layout = _history(tmp_path, 5)
    incremental = refresh_keys(layout)
    rows = stored_rows(incremental)
    assert len(rows) == 5 * (len(_batch(0)) - 1)
    rebuilt = rebuild_keys(layout)
    assert len(rebuilt.segments) == 1 and stored_rows(rebuilt) == rows
    assert rebuilt.request_set() == incremental.request_set() and rebuilt.patterns == incremental.patterns


def test_the_start_reads_only_the_requests_recorded_since_the_last_one(tmp_path, monkeypatch):
    layout = _history(tmp_path, 6)
    parsed = []
    real = request_index.request_from_entry
    monkeypatch.setattr(request_index, "request_from_entry", lambda *a: parsed.append(a) or real(*a))

    def no_full_read(*_):
        raise AssertionError("the step start read every recorded request")

    monkeypatch.setattr(request_index, "_read_stored", no_full_read)
    _append(layout, 900, [("url", "https://new.example/1"), ("regex", r"new@mail\.example")])
    stored = refresh_keys(layout)
    assert len(parsed) == 2 and stored.num_requests == 6 * len(_batch(0)) + 2
    assert refresh_keys(layout) == stored and len(parsed) == 2  # nothing new: nothing parsed
    assert stored_matcher(stored).by_key("https://new.example/1", None)[0]["kind"] == "url"


def test_the_filter_ships_paths_not_requests(tmp_path):
    layout = _history(tmp_path, 6)
    stored = refresh_keys(layout)
    block = SuppressionFilter(stored=stored)
    shipped = pickle.dumps(block)
    assert len(shipped) < 4096 and b"https://site" not in shipped
    from datatrove.data import Document

    doc = Document(text="t", id="1", metadata={"url": "https://site3.example/page1", "sha256": "0" * 64})
    assert pickle.loads(shipped).filter(doc)[0] is False


def test_a_changed_state_or_segment_list_is_detected_and_rebuilt(tmp_path):
    layout = _history(tmp_path, 3)
    rows = stored_rows(refresh_keys(layout))
    state_path = keys_folder(layout) / KEYS_STATE
    state = json.loads(state_path.read_text())
    state["key_segments"][0]["root"] = "0" * 64  # a segment that is not the one written
    state_path.write_text(json.dumps(state))
    again = refresh_keys(layout)
    assert again.rebuilt is not None and stored_rows(again) == rows
    (keys_folder(layout) / PATTERNS).write_bytes(b"")  # the patterns torn
    torn = refresh_keys(layout)
    assert torn.rebuilt is not None and torn.patterns == again.patterns


def test_a_stale_index_of_another_ledger_is_rebuilt(tmp_path):
    layout = _history(tmp_path, 2)
    other = _history(tmp_path / "other", 3)
    refresh_keys(other)
    (keys_folder(layout) / KEYS_STATE).write_bytes((keys_folder(other) / KEYS_STATE).read_bytes())
    again = refresh_keys(layout)
    assert again.rebuilt is not None and again.num_requests == 2 * len(_batch(0))


def test_a_changed_segment_byte_fails_the_probe_clearly(tmp_path):
    layout = _history(tmp_path, 1)
    stored = refresh_keys(layout)
    (name, _root), *_ = stored.segments
    path = keys_folder(layout) / name
    data = bytearray(path.read_bytes())
    data[len(data) // 3] ^= 1  # inside the keys, before the block hashes
    path.write_bytes(bytes(data))
    with pytest.raises(LookupIntegrityError, match="differ from their pinned hash"):
        for url, sha256, text in MIXED_DOCS:
            stored_matcher(stored).all_matches(url, sha256, text)


def test_superseded_segments_are_deleted_one_change_later_and_a_missing_one_is_rebuilt(tmp_path):
    layout = _history(tmp_path, 4)  # four steps: the fourth merge retires the segments before it
    state = json.loads((keys_folder(layout) / KEYS_STATE).read_text())
    named = {s["file"] for s in state["key_segments"]}
    on_disk = {p.name for p in keys_folder(layout).glob("*.keys")}
    assert on_disk == named | set(state["retired"]) and state["retired"]
    _append(layout, 900, [("url", "https://new.example/1")])
    refresh_keys(layout)
    assert not set(state["retired"]) & {p.name for p in keys_folder(layout).glob("*.keys")}
    stored = refresh_keys(layout)
    (keys_folder(layout) / stored.segments[0][0]).unlink()
    again = refresh_keys(layout)
    assert again.rebuilt is not None and again.num_requests == stored.num_requests
    assert stored_matcher(again).by_key("https://site2.example/page4", None)[0]["kind"] == "url"
