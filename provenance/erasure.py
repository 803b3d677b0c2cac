"""Erasure and opt-out requests: recorded in the ledger, matched against every record, traced to models.

A request names documents by one of four kinds: ``url`` (exactly as recorded), ``domain`` (the
URL's host is the domain or a subdomain of it), ``sha256`` (of the document's normalized text, its
content identity) or ``regex`` (searched in the document's text, e.g. an email address). It is an
``erasure_requested`` ledger entry whose payload is the request itself; its id is the sha256 of the
request's canonical JSON (kind, value, requested_at, note), so the ledger proves when it was made
and the id names it everywhere else (the suppression filter's exclusion rows, the reports).

``impact`` answers "where is it?": every dataset version holding a matching document, kept or only
excluded (and whether that exclusion row still carries the text), and every model version whose
token shards hold it, with the sequences that were trained on. Matching documents are found in the
catalog (URL, host, hash) or in the shards' text (``provenance.erasure_match``, RE2, the matcher the
suppression filter and its check use too); they are then followed by document id through every
version, because later steps rewrite the text (PII redaction) but never the id.

Requests are recorded under an advisory lock of their own (``<data>/requests/.lock``), held from
reading the recorded requests to appending the new one, so concurrent writers (the sensor, the CLI,
in any process) record the same request once. docs/compliance.md describes the workflow.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import re
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import duckdb
import pyarrow.parquet as pq

from provenance.audit.versions import depth, load_versions
from provenance.catalog import refresh_catalog
from provenance.erasure_match import HOST_PATTERN, KINDS, RequestMatcher, compile_pattern, url_host
from provenance.erasure_models import ModelImpact, model_impacts, tokenizer_impacts
from provenance.layout import DataLayout
from provenance.ledger import ERASURE_REQUESTED, Ledger
from provenance.signing import canonical_json

REQUEST_FORMAT = "apertus.erasure-request/1"
# Serializes request writers across processes (read the recorded requests, then append); see
# ``request_lock``. Beside the request files, outside the ledger folder.
REQUESTS_LOCK = ("requests", ".lock")
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
    the same request append it once. Cost: one read of the ledger's entries (as ``requests``).

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
    with request_lock(layout):
        recorded = next((r for r in requests(layout) if r.request_id == request_id), None)
        if recorded is not None:
            return recorded
        entry = Ledger(layout.ledger).append(ERASURE_REQUESTED, payload)
    refresh_catalog(layout)  # the ledger_entries view exists only once the ledger has entries
    return ErasureRequest(request_id, kind, value, requested_at, note, entry.index)


def requests(layout: DataLayout) -> list[ErasureRequest]:
    """Every recorded request, in ledger order (empty when there is no ledger). ValueError naming the
    entry when one is not a well-formed request: a request must never be skipped silently."""
    if not (layout.ledger / "entries.jsonl").exists():
        return []
    found = []
    for entry in Ledger(layout.ledger).entries():
        if entry.event_type != ERASURE_REQUESTED:
            continue
        where = f"{layout.ledger / 'entries.jsonl'} entry {entry.index}"
        p = entry.payload
        missing = [k for k in ("request_id", "kind", "value", "requested_at") if k not in p]
        if missing or p["kind"] not in KINDS:
            raise ValueError(f"{where}: not an erasure request (missing {missing or 'a known kind'})")
        request = ErasureRequest(
            p["request_id"], p["kind"], p["value"], p["requested_at"], p.get("note"), entry.index
        )
        if (
            request_id_of(request.kind, request.value, request.requested_at, request.note)
            != request.request_id
        ):
            raise ValueError(f"{where}: request_id does not match the request it names")
        found.append(request)
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


def matcher(request: Mapping) -> Callable[[str | None, str | None, str], bool]:
    """A function (url, sha256, text) -> bool that is True for the documents ``request`` names,
    through the one matcher (``provenance.erasure_match``) the filter, impact and check use."""
    one = RequestMatcher([{"request_id": "", "kind": request["kind"], "value": request["value"]}])
    return lambda url, sha256, text: bool(one.all_matches(url, sha256, text))


def sql_condition(
    request: Mapping, *, url: str = "url", sha256: str = "sha256", text: str = "text"
) -> tuple[str, list]:
    """(SQL boolean expression, parameters) naming the rows ``request`` matches by URL, host or hash,
    over the given columns. Patterns are never matched in SQL: only ``RequestMatcher`` searches text."""
    kind, value = request["kind"], request["value"]
    assert kind != "regex", "patterns are matched by provenance.erasure_match, not in SQL"
    if kind == "url":
        return f"{url} = ?", [value]
    if kind == "domain":
        host = f"rtrim(lower(regexp_extract({url}, ?, 1)), '.')"
        return f"({host} = ? OR ends_with({host}, ?))", [HOST_PATTERN, value, HOST_PATTERN, "." + value]
    if kind == "sha256":
        return f"{sha256} = ?", [value]
    raise ValueError(f"request kind {kind!r}: expected one of {', '.join(KINDS)}")


@dataclass(frozen=True)
class DocumentHit:
    """One matching document in one version: kept there, or excluded (with the reason)."""

    doc_id: str
    sha256: str | None
    url: str | None
    kept: bool
    reason: str | None = None
    text_retained: bool = True  # False for rows the suppression filter wrote (text erased, timeouts too)
    request_id: str | None = None  # the request a suppression row names


@dataclass(frozen=True)
class VersionImpact:
    ref: str
    asset: str
    snapshot: str | None
    documents: list[DocumentHit]

    @property
    def num_kept(self) -> int:
        return sum(d.kept for d in self.documents)


@dataclass(frozen=True)
class Impact:
    request: ErasureRequest
    documents: list[dict]  # every matching document: doc_id, sha256, url
    versions: list[VersionImpact]
    models: list[ModelImpact]
    tokenizers: list[str] = field(default_factory=list)  # tokenizer versions trained on a matching document

    @property
    def kept_in(self) -> list[str]:
        return [v.ref for v in self.versions if v.num_kept]

    @property
    def suppressed_in(self) -> list[str]:
        """Versions whose suppression filter dropped a matching document naming this request."""
        return [
            v.ref for v in self.versions if any(d.request_id == self.request.request_id for d in v.documents)
        ]

    def to_dict(self) -> dict:
        return {
            **asdict(self),
            "kept_in": self.kept_in,
            "suppressed_in": self.suppressed_in,
            "models_containing": [m.ref for m in self.models if m.contains],
        }


def _connect(layout: DataLayout) -> duckdb.DuckDBPyConnection:
    refresh_catalog(layout)  # builds it, or adds what it lacks: O(versions) when current
    return duckdb.connect(str(layout.catalog), read_only=True)


def _matching_doc_ids(con, layout: DataLayout, request: ErasureRequest) -> list[str]:
    if request.kind != "regex":
        condition, params = sql_condition(request.as_filter())
        return [
            r[0]
            for r in con.execute(
                f"SELECT DISTINCT doc_id FROM documents WHERE {condition}", params
            ).fetchall()
        ]
    files = sorted(layout.datasets.glob("*/*/shards/*.parquet")) + sorted(
        layout.datasets.glob("*/*/excluded/*.parquet")
    )
    return sorted(text_matches(files, RequestMatcher([request.as_filter()])))


def text_matches(files: list[Path], matcher: RequestMatcher, batch_rows: int = 1024) -> set[str]:
    """Ids of the documents in the Parquet ``files`` (columns ``id``, ``text``) whose text a
    pattern of ``matcher`` occurs in. Reads one batch of rows at a time, so memory is bounded by the
    batch, not the files. Cost: linear in the bytes of text read."""
    found = set()
    for path in files:
        shard = pq.ParquetFile(path)
        if not {"id", "text"} <= set(shard.schema_arrow.names):
            continue
        for batch in shard.iter_batches(batch_size=batch_rows, columns=["id", "text"]):
            for doc_id, text in zip(
                batch.column("id").to_pylist(), batch.column("text").to_pylist(), strict=True
            ):
                if matcher.by_pattern(text)[0]:
                    found.add(doc_id)
    return found


def impact(layout: DataLayout, request: ErasureRequest) -> Impact:
    """Every dataset version and model version that holds a document ``request`` names.

    Documents are found by the request (in the catalog, or for ``regex`` in every version's text),
    then followed by document id through every version; a model holds one when its token shards'
    sequence map names it (docs/tokens.md), and trained on it when a sequence holding it was drawn
    (``sequence_use.parquet`` of the model version).
    """
    con = _connect(layout)
    try:
        doc_ids = sorted(_matching_doc_ids(con, layout, request))
        # A join, not list_contains: a domain may name a large share of the corpus.
        con.execute("CREATE TEMP TABLE wanted AS SELECT unnest(?::VARCHAR[]) AS doc_id", [doc_ids])
        rows = con.execute(
            """SELECT d.asset, d.dataset_version, d.snapshot, d.doc_id, d.sha256, d.url, d.kept, d.reason, d.details
               FROM documents d JOIN wanted USING (doc_id) ORDER BY d.asset, d.dataset_version, d.doc_id"""
        ).fetchall()
    finally:
        con.close()
    documents: dict[str, dict] = {}
    by_version: dict[tuple, list[DocumentHit]] = {}
    for asset, version, snapshot, doc_id, sha256, url, kept, reason, details in rows:
        documents.setdefault(doc_id, {"doc_id": doc_id, "sha256": sha256, "url": url})
        request_id = json.loads(details).get("request_id") if reason == SUPPRESSED and details else None
        erased = reason in (SUPPRESSED, SUPPRESSION_TIMEOUT)
        hit = DocumentHit(doc_id, sha256, url, bool(kept), reason, not erased, request_id)
        by_version.setdefault((asset, version, snapshot), []).append(hit)
    manifests = load_versions(layout)
    order = {ref: depth(manifests, ref) for ref in manifests}
    versions = sorted(
        (VersionImpact(f"{a}/{v}", a, s, hits) for (a, v, s), hits in by_version.items()),
        key=lambda v: (order.get(v.ref, 0), v.ref),
    )
    return Impact(
        request,
        [documents[d] for d in sorted(documents)],
        versions,
        model_impacts(layout, doc_ids),
        tokenizer_impacts(layout, set(doc_ids)),
    )
