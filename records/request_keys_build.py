"""Bringing the request key index up to date (the format and the reader: records.request_keys).

``refresh_keys`` runs once at the start of an ingest step, under the request lock: it reads the
state, extends its ledger frontier by the entries appended since (records.request_index's scan,
each entry hashed as its leaf), checks the result against the latest signed tree head, writes the
new requests' keys as one segment and appends their patterns. Segments then merge like a binary
counter (while the newest holds no more rows than the one before it, they become one), so each key
is rewritten O(log requests) times over the index's life and a refresh costs O(new entries + new
requests + log n), amortized O(new requests x log requests). When the state does not check out (a
tampered or torn file, a ledger that is not the one it was built on) the index is rebuilt from the
ledger's first entry, O(ledger), and ``StoredRequests.rebuilt`` says why.
"""

from __future__ import annotations

import hashlib
import logging

import numpy as np

from records.canonical import canonical_json, read_record, write_record
from records.layout import DataLayout
from records.lookup_file import write_rooted
from records.merkle import HASH_SIZE, frontier_root
from records.request_index import _Build, _extend, _signed_head
from records.request_keys import (
    FENCE_ROWS,
    FORMAT,
    KEY_WIDTH,
    KEYED_KINDS,
    KEYS_STATE,
    PATTERNS,
    SEGMENT_SUFFIX,
    KeySegment,
    StoredRequests,
    keys_folder,
    request_key,
    segment_header,
)
from records.requests import KINDS, ErasureRequest, request_lock

log = logging.getLogger(__name__)
_ROW = np.dtype(f"S{2 * KEY_WIDTH}")  # key then id: sorting rows sorts by key, ties by id


def _rows(requests: list[ErasureRequest]) -> np.ndarray:
    data = b"".join(
        request_key(r.kind, r.value) + bytes.fromhex(r.request_id) for r in requests if r.kind in KEYED_KINDS
    )
    return np.frombuffer(data, _ROW)


def _read_rows(segment: KeySegment) -> np.ndarray:
    """A segment's (key, id) rows, every byte checked against its root."""
    keys = np.frombuffer(segment.section("keys"), np.uint8).reshape(-1, KEY_WIDTH)
    ids = np.frombuffer(segment.section("ids"), np.uint8).reshape(-1, KEY_WIDTH)
    return np.ascontiguousarray(np.hstack([keys, ids])).view(_ROW).ravel()


def write_segment(layout: DataLayout, rows: np.ndarray) -> dict:
    """Write ``rows`` (key + id, any order) as a segment named by its root; return its state
    record {"file", "root", "rows"}. The same rows give the same bytes. O(rows log rows)."""
    rows = np.unique(rows)  # sorted by key, then id; a request recorded once is one row
    table = np.frombuffer(rows.tobytes(), np.uint8).reshape(-1, 2 * KEY_WIDTH)
    keys = np.ascontiguousarray(table[:, :KEY_WIDTH])
    bodies = {
        "fences": keys[::FENCE_ROWS].tobytes(),
        "keys": keys.tobytes(),
        "ids": table[:, KEY_WIDTH:].tobytes(),
    }
    content = segment_header({k: len(v) for k, v in bodies.items()}, len(rows)) + b"".join(bodies.values())
    name, root = write_rooted(keys_folder(layout), content, SEGMENT_SUFFIX)
    return {"file": name, "root": root, "rows": len(rows)}


def _stored(layout: DataLayout, state: dict, rebuilt: str | None) -> StoredRequests:
    last = state["last"]
    return StoredRequests(
        folder=str(keys_folder(layout)),
        num_requests=state["requests"],
        kinds=tuple(sorted(state["kinds"].items())),
        segments=tuple((s["file"], s["root"]) for s in state["key_segments"]),
        patterns=(state["patterns"]["lines"], state["patterns"]["sha256"]),
        last=None if last is None else (last["entry"], last["ledger_root"]),
        ledger_size=state["ledger_size"],
        rebuilt=rebuilt,
    )


def _empty() -> dict:
    return {"format": FORMAT, "ledger_size": 0, "entries_offset": 0, "frontier": [], "requests": 0,
            "kinds": {k: 0 for k in KINDS}, "last": None, "key_segments": [], "retired": [],
            "patterns": {"lines": 0, "bytes": 0, "sha256": hashlib.sha256().hexdigest()}}  # fmt: skip


def _checked_state(layout: DataLayout, head_size: int) -> dict:
    """The stored state, its segments' roots and the patterns file's size checked; ValueError
    naming what is wrong. O(segments + their block hashes)."""
    folder = keys_folder(layout)
    state = read_record(folder / KEYS_STATE)
    if state.get("format") != FORMAT:
        raise ValueError(f"format {state.get('format')!r}, expected {FORMAT!r}")
    if state["ledger_size"] > head_size:
        raise ValueError(
            f"it was built to {state['ledger_size']} entries, past the signed head's {head_size}"
        )
    if len(state["frontier"]) != bin(state["ledger_size"]).count("1"):
        raise ValueError("its frontier does not match its ledger size")
    for segment in state["key_segments"]:
        KeySegment(folder / segment["file"], segment["root"], KEYS_STATE).__exit__()
    size = (folder / PATTERNS).stat().st_size if state["patterns"]["lines"] else 0
    if size != state["patterns"]["bytes"]:
        raise ValueError(
            f"{folder / PATTERNS} holds {size} bytes, the state records {state['patterns']['bytes']}"
        )
    return state


def _add(layout: DataLayout, state: dict, build: _Build) -> None:
    """Add the requests ``build`` read past the state's ledger size to ``state`` (in place)."""
    new = build.requests
    state.update(
        ledger_size=build.size, entries_offset=build.offset, frontier=[h.hex() for h in build.frontier]
    )
    if not new:
        return
    state["requests"] += len(new)
    for r in new:
        state["kinds"][r.kind] += 1
    last = new[-1].ledger_index
    state["last"] = {"entry": last, "ledger_root": build.roots[last]}
    patterns = [r for r in new if r.kind == "regex"]
    if patterns:
        path = keys_folder(layout) / PATTERNS
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "ab") as f:
            f.write(
                b"".join(
                    canonical_json({"request_id": r.request_id, "value": r.value}) + b"\n" for r in patterns
                )
            )
        data = path.read_bytes()  # the patterns are at most ~1% of the requests
        state["patterns"] = {
            "lines": data.count(b"\n"),
            "bytes": len(data),
            "sha256": hashlib.sha256(data).hexdigest(),
        }
    rows = _rows(new)
    if len(rows) == 0:
        return
    segments, retired, folder = state["key_segments"], [], keys_folder(layout)
    while segments and segments[-1]["rows"] <= len(rows):
        old = segments.pop()
        with KeySegment(folder / old["file"], old["root"], KEYS_STATE) as segment:
            rows = np.concatenate([_read_rows(segment), rows])
        retired.append(old["file"])
    segments.append(write_segment(layout, rows))
    state["retired"] = [f for f in retired if f not in {s["file"] for s in segments}]


def _save(layout: DataLayout, state: dict, before: list[str]) -> None:
    """Write the state, then delete the segments retired by the change before this one: a worker
    still probing a segment retired just now keeps it (it was shipped the previous state)."""
    folder = keys_folder(layout)
    folder.mkdir(parents=True, exist_ok=True)
    write_record(folder / KEYS_STATE, state)
    named = {s["file"] for s in state["key_segments"]} | set(state["retired"])
    for name in before:
        if name not in named:
            (folder / name).unlink(missing_ok=True)


def _rebuild(layout: DataLayout, head, why: str | None) -> dict:
    folder = keys_folder(layout)
    state, build = _empty(), _Build()
    _extend(layout, build, head.tree_size)
    if frontier_root(build.frontier).hex() != head.root_hash:
        raise ValueError(
            f"{layout.ledger}: its entries do not hash to the latest signed tree head; run `apertus audit verify`"
        )
    (folder / PATTERNS).unlink(missing_ok=True)
    _add(layout, state, build)
    stale = [p.name for p in folder.glob(f"*{SEGMENT_SUFFIX}")] if folder.exists() else []
    state["retired"] = []
    _save(layout, state, stale)
    if why is not None:  # a first build (no index yet) is no anomaly
        log.warning("request key index rebuilt from the ledger (%s)", why)
    return state


def refresh_keys(layout: DataLayout) -> StoredRequests:
    """The request key index as of the latest signed tree head, checked and brought up to date
    (see the module docstring); what a step's suppression ships to its workers. Holds the request
    lock. Cost: O(new ledger entries + new requests + segments + log n), amortized O(log
    requests) per new request for merges; O(ledger) for a rebuild. ValueError when the ledger's
    entries do not give its signed root or a request entry is malformed."""
    with request_lock(layout):
        head = _signed_head(layout)
        if head is None:
            return _stored(layout, _empty(), None)
        if not (keys_folder(layout) / KEYS_STATE).exists():
            return _stored(layout, _rebuild(layout, head, None), None)
        try:
            state = _checked_state(layout, head.tree_size)
            build = _Build(
                state["ledger_size"], state["entries_offset"], [bytes.fromhex(h) for h in state["frontier"]]
            )
            if any(len(h) != HASH_SIZE for h in build.frontier):
                raise ValueError("its frontier holds a hash of the wrong size")
            _extend(layout, build, head.tree_size)
            if frontier_root(build.frontier).hex() != head.root_hash:
                raise ValueError("the ledger it was built on is not the ledger's signed history")
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
            return _stored(layout, _rebuild(layout, head, str(e)), str(e))
        if build.size != state["ledger_size"]:
            before = state["retired"]
            state["retired"] = []
            _add(layout, state, build)
            _save(layout, state, before)
        return _stored(layout, state, None)


def rebuild_keys(layout: DataLayout) -> StoredRequests:
    """The key index rebuilt from the ledger's first entry, replacing the stored one. O(ledger)."""
    with request_lock(layout):
        head = _signed_head(layout)
        if head is None:
            return _stored(layout, _empty(), None)
        return _stored(layout, _rebuild(layout, head, None), None)


def stored_rows(stored: StoredRequests) -> set[bytes]:
    """Every (key + id) row of the index, however it is cut into segments (to compare an
    incremental index with a rebuilt one). O(requests)."""
    from pathlib import Path

    out: set[bytes] = set()
    for name, root in stored.segments:
        with KeySegment(Path(stored.folder) / name, root, KEYS_STATE) as segment:
            data = _read_rows(segment).tobytes()
        out.update(data[i : i + 2 * KEY_WIDTH] for i in range(0, len(data), 2 * KEY_WIDTH))
    return out
