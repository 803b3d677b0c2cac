"""Erasure and opt-out request records: their format, id, validation and the lock their writers share.

A request names documents by one of four kinds: ``url`` (exactly as recorded), ``domain`` (the
URL's host is the domain or a subdomain of it), ``sha256`` (of the document's normalized text, its
content identity) or ``regex`` (searched in the document's text, e.g. an email address). It is an
``erasure_requested`` ledger entry whose payload is the request itself; its id is the sha256 of the
request's canonical JSON (format, kind, value, requested_at, note), so the ledger proves when it was
made and the id names it everywhere else (the suppression filter's exclusion rows, the reports).
The request index (``records.request_index``) holds every recorded request, kept up to date as
requests are recorded, so reading them never re-reads the ledger.

Requests are recorded under an advisory lock of their own (``<data>/requests/.lock``), held from
reading the recorded requests to appending the new one, so concurrent writers (the sensor, the CLI,
in any process) record the same request once. ``provenance.erasure`` answers where a request's
documents are; docs/compliance.md describes the workflow.
"""

from __future__ import annotations

import fcntl
import hashlib
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime

from records.canonical import canonical_json
from records.catalog import add_ledger_entries_to_catalog
from records.erasure_match import KINDS, compile_pattern, url_host
from records.layout import DataLayout
from records.ledger import ERASURE_REQUESTED, Ledger
from records.ledger.format import ENTRIES, LedgerEntry

REQUEST_FORMAT = "apertus.erasure-request/1"
# Serializes request writers across processes (read the recorded requests, then append); see
# ``request_lock``. Beside the request files, outside the ledger folder.
REQUESTS = "requests"  # under the data folder
REQUESTS_LOCK = (REQUESTS, ".lock")
# Where request files are dropped for the erasure sensor: outside the inbox (not a snapshot).
ERASURE_INBOX = (REQUESTS, "erasure")
_DOMAIN = re.compile(r"^[a-z0-9_-]+(\.[a-z0-9_-]+)*$")
SUPPRESSED = "suppressed:erasure_request"  # pipelines.reasons.SUPPRESSED_ERASURE_REQUEST
SUPPRESSION_TIMEOUT = "suppression:timeout"  # pipelines.reasons.SUPPRESSION_TIMEOUT


@dataclass(frozen=True)
class ErasureRequest:
    """One recorded request. ``request_id`` is sha256 of the canonical JSON of the other fields
    but ``ledger_index`` (the entry that recorded it)."""

    request_id: str
    kind: str
    value: str
    requested_at: str
    note: str | None = None
    ledger_index: int | None = None

    def as_filter(self) -> dict:
        """What the suppression filter needs, as plain data: id, kind and value."""
        return {"request_id": self.request_id, "kind": self.kind, "value": self.value}


def normalize_value(kind: str, value: str) -> str:
    """The value as it is recorded and matched; ValueError naming the kind and the fix when invalid."""
    if kind not in KINDS:
        raise ValueError(f"request kind {kind!r}: expected one of {', '.join(KINDS)}")
    value = (value or "").strip()
    if not value:
        raise ValueError(f"--{kind}: the value is empty")
    if kind == "url" and url_host(value) is None:
        raise ValueError(f"--url {value!r}: expected an absolute URL such as https://example.org/page")
    if kind == "domain":
        value = value.lower().removeprefix("*.").strip(".")
        if not _DOMAIN.match(value):
            raise ValueError(
                f"--domain {value!r}: expected a host name such as example.org (no scheme, no path)"
            )
    if kind == "sha256":
        value = value.lower()
        if len(value) != 64 or any(c not in "0123456789abcdef" for c in value):
            raise ValueError(f"--sha256 {value!r}: expected 64 hex digits (sha256 of the normalized text)")
    if kind == "regex":
        compile_pattern(value)  # the one matcher's syntax (RE2): refused here, never at curation
    return value


@contextmanager
def request_lock(layout: DataLayout) -> Iterator[None]:
    """An exclusive advisory lock (``fcntl.flock`` on ``<data>/requests/.lock``) serializing every
    writer of requests, in any process: whoever holds it reads the recorded requests and appends
    a new one before the next writer reads. Only ``record_request`` takes it."""
    path = layout.root.joinpath(*REQUESTS_LOCK)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "ab") as lock:
        fcntl.flock(lock.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock.fileno(), fcntl.LOCK_UN)


def request_id_of(kind: str, value: str, requested_at: str, note: str | None) -> str:
    """sha256 of the canonical JSON of the request (the id every record names it by)."""
    body = {
        "format": REQUEST_FORMAT,
        "kind": kind,
        "value": value,
        "requested_at": requested_at,
        "note": note,
    }
    return hashlib.sha256(canonical_json(body)).hexdigest()


def record_request(
    layout: DataLayout, kind: str, value: str, note: str | None = None, *, requested_at: str | None = None
) -> ErasureRequest:
    """Validate a request and append it to the ledger as ``erasure_requested``; return it. The same
    request (same fields, hence the same id) recorded again is not appended twice: the recorded one
    is returned; the check and the append happen under ``request_lock``, so concurrent calls with
    the same request append it once. The request index (records.request_index) is brought up to
    date before and after the append. Cost: O(recorded requests + ledger entries new since the
    index's last update + log n); never a read of the whole ledger.

    ``note``: a reference to the request's paper trail (ticket number, requester reference); it is
    published in the ledger, so it must hold no personal data beyond the value itself.
    """
    value = normalize_value(kind, value)
    requested_at = requested_at or datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
    request_id = request_id_of(kind, value, requested_at, note)
    payload = {
        "format": REQUEST_FORMAT,
        "request_id": request_id,
        "kind": kind,
        "value": value,
        "requested_at": requested_at,
        "note": note,
    }
    from records.request_index import _refresh

    with request_lock(layout):
        build, _ = _refresh(layout)  # the index, not the ledger, says what is recorded
        recorded = next((r for r in build.requests if r.request_id == request_id), None)
        if recorded is not None:
            return recorded
        entry = Ledger(layout.ledger).append(ERASURE_REQUESTED, payload)
        # The index gains the new entry (and any appended meanwhile) from what was just read and
        # saved under this lock hold: O(new entries), the stored lines are not read again.
        _refresh(layout, build)
    add_ledger_entries_to_catalog(layout)  # O(new entries): no version folder is listed
    return ErasureRequest(request_id, kind, value, requested_at, note, entry.index)


def request_from_entry(line: bytes, where: str) -> ErasureRequest:
    """The request an ``erasure_requested`` entry (its stored line) records; ValueError naming
    ``where`` when the entry is not a well-formed request: a request must never be skipped silently."""
    entry = LedgerEntry.from_line(line)
    p = entry.payload
    missing = [k for k in ("request_id", "kind", "value", "requested_at") if k not in p]
    if entry.event_type != ERASURE_REQUESTED or missing or p["kind"] not in KINDS:
        raise ValueError(f"{where}: not an erasure request (missing {missing or 'a known kind'})")
    request = ErasureRequest(
        p["request_id"], p["kind"], p["value"], p["requested_at"], p.get("note"), entry.index
    )
    if request_id_of(request.kind, request.value, request.requested_at, request.note) != request.request_id:
        raise ValueError(f"{where}: request_id does not match the request it names")
    return request


def requests(layout: DataLayout) -> list[ErasureRequest]:
    """Every recorded request, in ledger order (empty when there is no ledger), from the request
    index (records.request_index.load_index: checked against the signed tree head, extended by the
    entries it lacks). Cost: O(requests + new ledger entries), not O(ledger). ValueError when an
    entry is not a well-formed request."""
    from records.request_index import load_index

    return list(load_index(layout).requests)


def requests_from_ledger(layout: DataLayout) -> list[ErasureRequest]:
    """Every recorded request, read from the ledger's entries (the evidence, what the index is
    checked against and rebuilt from). Cost: one read of every ledger entry, O(ledger)."""
    if not (layout.ledger / ENTRIES).exists():
        return []
    found = []
    for entry in Ledger(layout.ledger).entries():
        if entry.event_type == ERASURE_REQUESTED:
            where = f"{layout.ledger / ENTRIES} entry {entry.index}"
            found.append(request_from_entry(entry.canonical_json.encode(), where))
    return found


def find_request(layout: DataLayout, id_or_prefix: str) -> ErasureRequest:
    """The recorded request whose id is or starts with ``id_or_prefix``; ValueError when none does,
    or when the prefix names several different requests. A request recorded more than once (older
    code could, see ``record_request``) is the same request: its first entry is returned
    (``recorded_entries`` lists them all)."""
    prefix = id_or_prefix.strip().lower()
    matches = [r for r in requests(layout) if r.request_id.startswith(prefix)] if prefix else []
    ids = sorted({r.request_id for r in matches})
    if len(ids) != 1:
        found = "no recorded request matches" if not ids else f"{len(ids)} different requests match"
        raise ValueError(f"{id_or_prefix!r}: {found} (record one with `apertus compliance request`)")
    return matches[0]


def recorded_entries(layout: DataLayout, request_id: str) -> list[int]:
    """The ledger entries recording ``request_id`` (more than one only for duplicates of older code)."""
    return [r.ledger_index for r in requests(layout) if r.request_id == request_id]
