"""The request index: every recorded erasure request, kept up to date as the ledger grows, so that
a step reads the requests in O(requests) and never re-reads the ledger.

Two files under ``<data>/requests/``, owned here (docs/compliance.md, The request index):

    request_index.jsonl        one canonical JSON line per ``erasure_requested`` entry, in ledger
                               order: the request's fields, ``entry`` (its ledger index) and
                               ``ledger_root`` (the RFC 6962 root of the first entry+1 entries)
    request_index_state.json   how far it was built: ``ledger_size``, ``entries_offset`` (bytes of
                               entries.jsonl holding those entries), ``frontier`` (the tree's compact
                               range at that size), ``lines`` and ``sha256`` (of the lines file,
                               its count and hash)

The index is derived; the ledger is the evidence. ``load_index`` checks it before use: the lines
must hash as the state records, and the frontier extended by the ledger's entries past
``ledger_size`` (read from ``entries_offset``, each hashed as its leaf) must give the root of the
latest signed tree head, whose signature is checked. So one check both proves that the prefix the
index was built on is still the ledger's and reads the entries it lacks: O(new entries + lines +
log n). On any mismatch (a tampered or torn index, a ledger that is not the one it was built on)
it is rebuilt from the ledger's first entry, O(n), and ``RequestIndex.rebuilt`` says why.
``record_request`` brings it up to date right after its append, under the request lock.

A version records the request set it applied as the ledger size and root just past the last
request it saw (``request_set``): the same requests give the same sealed config, and the index
answers which requests that size covers (``RequestIndex.applied``) and whether the root is the
ledger's (``RequestIndex.root_after``).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from records.canonical import canonical_json, write_record
from records.layout import DataLayout
from records.ledger.format import ENTRIES, ERASURE_REQUESTED, LEAF_HASHES, TREE_HEADS
from records.merkle import HASH_SIZE, frontier_append, frontier_root, leaf_hash
from records.requests import REQUESTS, ErasureRequest, request_from_entry, request_lock

INDEX_FORMAT = "apertus.request-index/1"
REQUEST_INDEX = "request_index.jsonl"
REQUEST_INDEX_STATE = "request_index_state.json"
# The sealed config key of a raw version: the request set its suppression applied.
REQUEST_SET_KEY = "erasure_requests"
# The key older versions used: the list of every request id applied.
LEGACY_REQUEST_SET_KEY = "suppression"
_REQUEST_PREFIX = b'{"event_type":"' + ERASURE_REQUESTED.encode() + b'"'


@dataclass(frozen=True)
class RequestIndex:
    """The recorded requests as of ``ledger_size`` ledger entries (the latest signed tree head).

    ``roots``: ledger index of a request's entry -> root of the ledger just past it. ``rebuilt``:
    why the stored index was not used as it was (None when it was current or only extended).
    """

    requests: tuple[ErasureRequest, ...]
    ledger_size: int
    roots: Mapping[int, str] = field(default_factory=dict)
    rebuilt: str | None = None

    def request_set(self) -> dict | None:
        """``{"ledger_size", "ledger_root", "requests"}`` just past the last request (None without
        requests): what a version records as the requests it applied, with their number (so that a
        reader counting requests recorded since, the retraining tick, needs no ledger). It changes
        only when a request is recorded."""
        if not self.requests:
            return None
        last = self.requests[-1].ledger_index
        return {"ledger_size": last + 1, "ledger_root": self.roots[last], "requests": len(self.requests)}

    def root_after(self, size: int) -> str | None:
        """The ledger root at ``size`` when the entry before it is a request (what a request set
        names), else None. O(1)."""
        return self.roots.get(size - 1)

    def applied(self, size: int) -> list[ErasureRequest]:
        """Requests recorded in the first ``size`` ledger entries, in ledger order."""
        return [r for r in self.requests if r.ledger_index < size]

    def since(self, size: int) -> list[ErasureRequest]:
        """Requests recorded at ledger index ``size`` or later (the ones a request set of ``size``
        did not apply), in ledger order."""
        return [r for r in self.requests if r.ledger_index >= size]


def _paths(layout: DataLayout) -> tuple[Path, Path]:
    folder = layout.root / REQUESTS
    return folder / REQUEST_INDEX, folder / REQUEST_INDEX_STATE


def _line(request: ErasureRequest, root: str) -> bytes:
    return canonical_json({
        "entry": request.ledger_index, "request_id": request.request_id, "kind": request.kind,
        "value": request.value, "requested_at": request.requested_at, "note": request.note,
        "ledger_root": root,
    }) + b"\n"  # fmt: skip


@dataclass
class _Build:
    """The index as it is being checked or extended (mutable; ``RequestIndex`` is its result)."""

    size: int = 0
    offset: int = 0
    frontier: list[bytes] = field(default_factory=list)
    lines: list[bytes] = field(default_factory=list)
    requests: list[ErasureRequest] = field(default_factory=list)
    roots: dict[int, str] = field(default_factory=dict)
    digest: Any = field(default_factory=hashlib.sha256)  # sha256 of the lines so far


def _read_stored(layout: DataLayout) -> _Build:
    """The stored index, its lines checked against the chain; ValueError naming what is wrong."""
    index_path, state_path = _paths(layout)
    if not state_path.exists():
        raise ValueError("no index yet")
    state = json.loads(state_path.read_text(encoding="utf-8"))
    if state.get("format") != INDEX_FORMAT:
        raise ValueError(f"format {state.get('format')!r}, expected {INDEX_FORMAT!r}")
    build = _Build(
        state["ledger_size"], state["entries_offset"], [bytes.fromhex(h) for h in state["frontier"]]
    )
    if len(build.frontier) != bin(build.size).count("1") or any(len(h) != HASH_SIZE for h in build.frontier):
        raise ValueError("its frontier does not match its ledger size")
    data = index_path.read_bytes()
    build.digest.update(data)
    if data.count(b"\n") != state["lines"] or build.digest.hexdigest() != state["sha256"]:
        raise ValueError(f"{index_path} does not hash as its state records (changed or torn)")
    # One JSON array for the whole file: one call into the C parser, not one per line.
    for raw, d in zip(
        data.splitlines(keepends=True),
        json.loads(b"[" + data[:-1].replace(b"\n", b",") + b"]" if data else b"[]"),
        strict=True,
    ):
        request = ErasureRequest(
            d["request_id"], d["kind"], d["value"], d["requested_at"], d["note"], d["entry"]
        )
        build.lines.append(raw)
        build.requests.append(request)
        build.roots[request.ledger_index] = d["ledger_root"]
    return build


def _extend(layout: DataLayout, build: _Build, size: int) -> list[bytes]:
    """Read ledger entries ``build.size``..``size``-1 from ``build.offset``, extending the frontier
    and adding their requests; return the new index lines. ValueError when an entry is not where
    the index says (another ledger, or a malformed request). Cost: O(new entries)."""
    new = []
    path = layout.ledger / ENTRIES
    with open(path, "rb") as f:
        f.seek(build.offset)
        while build.size < size:
            raw = f.readline()
            if not raw.endswith(b"\n"):
                raise ValueError(f"{path} ends before entry {build.size}")
            line = raw[:-1]
            if not line.startswith(b'{"event_type":'):
                raise ValueError(f"{path} at byte {build.offset} is not an entry")
            frontier_append(build.frontier, build.size, leaf_hash(line))
            build.offset += len(raw)
            if line.startswith(_REQUEST_PREFIX):  # canonical JSON: event_type is the first key
                request = request_from_entry(line, f"{path} entry {build.size}")
                if request.ledger_index != build.size:
                    raise ValueError(f"{path} entry at {build.size} names index {request.ledger_index}")
                root = frontier_root(build.frontier).hex()
                out = _line(request, root)
                build.digest.update(out)
                build.lines.append(out)
                build.requests.append(request)
                build.roots[build.size] = root
                new.append(out)
            build.size += 1
    return new


def _signed_head(layout: DataLayout):
    """The latest signed tree head, its signature checked with the published key; None when the
    ledger has no head yet. ValueError when the signature does not verify."""
    from records.ledger import Ledger

    if not (layout.ledger / TREE_HEADS).exists():
        return None
    ledger = Ledger(layout.ledger)
    head = ledger.tree_head()
    if not head.verify(ledger.public_key_pem()):
        raise ValueError(f"{layout.ledger / TREE_HEADS}: the latest tree head's signature does not verify")
    committed = (layout.ledger / LEAF_HASHES).stat().st_size // HASH_SIZE
    if head.tree_size > committed:
        raise ValueError(f"the latest tree head signs {head.tree_size} entries but {committed} are committed")
    return head


def _save(layout: DataLayout, build: _Build, new: list[bytes], rewrite: bool) -> None:
    index_path, state_path = _paths(layout)
    index_path.parent.mkdir(parents=True, exist_ok=True)
    # The lines first, then the state: a crash between leaves lines the state does not cover, which
    # the next load detects and rebuilds (the index is derived, so no fsync either).
    with open(index_path, "wb" if rewrite else "ab") as f:
        f.write(b"".join(build.lines if rewrite else new))
    state = {
        "format": INDEX_FORMAT, "ledger_size": build.size, "entries_offset": build.offset,
        "frontier": [h.hex() for h in build.frontier], "lines": len(build.lines), "sha256": build.digest.hexdigest(),
    }  # fmt: skip
    write_record(state_path, state)


def _refresh(layout: DataLayout, build: _Build | None = None) -> tuple[_Build, str | None]:
    """(the index as of the latest signed head, why it was rebuilt or None). From ``build`` (what
    this process read and saved under the same lock hold) when given, else from the stored files.
    Call under the request lock."""
    head = _signed_head(layout)
    if head is None:
        return _Build(), None
    rebuilt, stored_size = None, None
    try:
        build = _read_stored(layout) if build is None else build
        stored_size = build.size
        if build.size > head.tree_size:
            raise ValueError(f"it was built to {build.size} entries, past the signed head's {head.tree_size}")
        new = _extend(layout, build, head.tree_size)
        if frontier_root(build.frontier).hex() != head.root_hash:
            raise ValueError("the ledger it was built on is not the ledger's signed history")
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
        rebuilt = str(e)
        build = _Build()
        new = _extend(layout, build, head.tree_size)
        if frontier_root(build.frontier).hex() != head.root_hash:
            raise ValueError(
                f"{layout.ledger}: its entries do not hash to the latest signed tree head; run "
                "`apertus audit verify`"
            ) from None
    if rebuilt is not None or build.size != stored_size:
        _save(layout, build, new, rewrite=rebuilt is not None)
    return build, rebuilt


def _index(build: _Build, rebuilt: str | None = None) -> RequestIndex:
    return RequestIndex(tuple(build.requests), build.size, build.roots, rebuilt)


def _update(layout: DataLayout) -> RequestIndex:
    return _index(*_refresh(layout))


def load_index(layout: DataLayout) -> RequestIndex:
    """The request index as of the latest signed tree head, checked and brought up to date (see the
    module docstring); the files are rewritten only when they changed. Holds the request lock.
    Cost: O(new ledger entries + recorded requests + log n) when the stored index checks out;
    O(ledger) for a rebuild. ValueError when the ledger's entries do not give its signed root or a
    request entry is malformed (a request must never be skipped silently)."""
    with request_lock(layout):
        return _update(layout)


def rebuild_index(layout: DataLayout) -> RequestIndex:
    """The index rebuilt from the ledger's first entry, replacing the stored one. Cost: O(ledger)."""
    with request_lock(layout):
        for path in _paths(layout):
            path.unlink(missing_ok=True)
        return _update(layout)


def stored_index_bytes(layout: DataLayout) -> tuple[bytes, bytes]:
    """The two index files' bytes (lines, state), for comparing an incremental index with a rebuilt one."""
    return tuple(p.read_bytes() if p.exists() else b"" for p in _paths(layout))


def recorded_request_set(config: Mapping) -> dict | list[str] | None:
    """The request set a version's sealed ``config`` applied: ``{"ledger_size", "ledger_root",
    "requests"}`` (the count absent in versions sealed before it was added),
    or for versions sealed before the index the list of request ids; None when it applied none."""
    if REQUEST_SET_KEY in config:
        return dict(config[REQUEST_SET_KEY])
    ids = config.get(LEGACY_REQUEST_SET_KEY)
    return list(ids) if ids else None


def applied_requests(index: RequestIndex, config: Mapping) -> tuple[list[ErasureRequest], str | None]:
    """(the requests a version with sealed ``config`` applied, a problem or None). The problem is
    set when the config names a ledger size and root that the ledger does not hold (then nothing
    counts as applied). O(requests)."""
    recorded = recorded_request_set(config)
    if recorded is None:
        return [], None
    if isinstance(recorded, list):
        ids = set(recorded)
        return [r for r in index.requests if r.request_id in ids], None
    size, root = recorded.get("ledger_size"), recorded.get("ledger_root")
    if not isinstance(size, int) or index.root_after(size) != root:
        return [], f"request set at ledger size {size} root {str(root)[:12]} is not the ledger's"
    applied = index.applied(size)
    if recorded.get("requests", len(applied)) != len(applied):
        return (
            [],
            f"request set at ledger size {size} counts {recorded['requests']} requests, the ledger {len(applied)}",
        )
    return applied, None


def unapplied_requests(index: RequestIndex, config: Mapping) -> list[ErasureRequest]:
    """The recorded requests a version with sealed ``config`` did not apply (recorded since it was
    made), in ledger order: what re-curating its snapshot would add. O(requests)."""
    applied, _ = applied_requests(index, config)
    done = {r.request_id for r in applied}
    return [r for r in index.requests if r.request_id not in done]


__all__ = [
    "REQUEST_INDEX",
    "REQUEST_INDEX_STATE",
    "REQUEST_SET_KEY",
    "RequestIndex",
    "applied_requests",
    "load_index",
    "rebuild_index",
    "recorded_request_set",
    "stored_index_bytes",
    "unapplied_requests",
]
