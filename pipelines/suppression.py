"""Suppression: documents named by a recorded erasure or opt-out request never reach a dataset version.

``SuppressionFilter`` runs in ``ingest_snapshot``, the first step, right after normalization (so it
sees the text before PII redaction rewrites it): a document matching any request is dropped with
reason ``suppressed:erasure_request`` and details ``{"request_id", "kind", "value"}``. Its exclusion
row keeps who it was (doc id, URL, sha256) and which request removed it, but not its text: an
erased document must not survive in ``excluded/`` either.

Matching is ``records.erasure_match.RequestMatcher`` (RE2), the one matcher ``impact`` and the
check use too. A document whose text search uses more than the per-document budget of CPU time
(``budget_ms``, default 50 ms, ``APERTUS_SUPPRESSION_BUDGET_MS``) is dropped with reason
``suppression:timeout`` and its text erased as well: a request must never let through a document
that might match it.

In ``ingest_snapshot`` the requests arrive as the request key index (``records.request_keys``),
brought up to date once at step start in O(new requests): the filter ships its paths and roots, and
each worker probes its sorted key segments on disk and compiles its patterns file (once per process
and patterns file). Elsewhere (tests, ``impact``) they may arrive as plain data
(``records.requests.ErasureRequest.as_filter()``), matched from in-memory hash sets; both go through
the same ``RequestMatcher``. The version records the request set it applied as the ledger size and
root just past the last request (config ``erasure_requests``, and ``suppression.json`` with the
budget): a new request gives the step a new version id even when it matches nothing in this
snapshot, and a rerun with no new request gives the same id. Per document the filter costs
O(labels of the host) key look-ups for URL, hash and domain requests (each O(segments x log
requests) from disk), plus one RE2 set search of the text when there are patterns. ``suppression_check``
re-reads the version's kept documents once and matches them against every request (the asset
check, which blocks the run: it must find nothing the version applied).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import pyarrow.parquet as pq
from datatrove.data import Document
from datatrove.pipeline.filters.base_filter import BaseFilter
from datatrove.pipeline.writers.disk_base import DiskWriter

from pipelines import fields, reasons
from pipelines.shards import DocumentShardWriter
from records.canonical import write_record
from records.documents import EXCLUDED, SHARDS, SUPPRESSION_RECORD
from records.erasure_match import BUDGET_ENV, DEFAULT_BUDGET_MS, RequestMatcher
from records.request_index import REQUEST_SET_KEY, RequestIndex, applied_requests, recorded_request_set
from records.request_keys import StoredRequests, stored_matcher


def _plain(requests: Sequence[Mapping]) -> list[dict]:
    plain = [{"request_id": r["request_id"], "kind": r["kind"], "value": r["value"]} for r in requests]
    return sorted(plain, key=lambda r: r["request_id"])


def budget_ms_from_env() -> float:
    """The per-document budget: ``APERTUS_SUPPRESSION_BUDGET_MS`` when set, else the default."""
    raw = os.environ.get(BUDGET_ENV, "").strip()
    if not raw:
        return DEFAULT_BUDGET_MS
    try:
        budget = float(raw)
    except ValueError:
        budget = -1.0
    if not budget > 0:
        raise ValueError(f"{BUDGET_ENV}={raw!r}: expected a positive number of milliseconds, e.g. 50")
    return budget


class SuppressionFilter(BaseFilter):
    """Drops every document that a request names (by URL, domain, sha256 or text pattern)."""

    name = "⛔ Erasure suppression"

    def __init__(
        self,
        requests: Sequence[Mapping] = (),
        exclusion_writer: DiskWriter | None = None,
        budget_ms: float = DEFAULT_BUDGET_MS,
        stored: StoredRequests | None = None,
    ):
        """``requests`` as plain data, or ``stored``: the request key index (records.request_keys),
        shipped to the workers as paths and probed there on disk."""
        super().__init__(exclusion_writer)
        self.requests = _plain(requests)
        self.stored = stored
        self.budget_ms = budget_ms
        if stored is None:
            # A pattern RE2 refuses (or an unknown kind) fails here, at step start; the hash sets
            # are built in the worker, so this costs O(patterns), not O(requests). Stored patterns
            # were checked when they were recorded (records.requests.normalize_value).
            RequestMatcher([r for r in self.requests if r["kind"] not in ("url", "sha256", "domain")])
        self._matcher = None  # compiled again in the worker that runs the filter (RE2 does not pickle)

    def __getstate__(self):
        return {**self.__dict__, "_matcher": None}

    def filter(self, doc: Document) -> bool | tuple[bool, str]:
        """Cost per document: O(1) for URL, hash and host; linear in the text for patterns, at most
        about ``budget_ms`` of CPU time before the document is dropped as a timeout."""
        if self._matcher is None:
            self._matcher = (
                RequestMatcher(self.requests) if self.stored is None else stored_matcher(self.stored)
            )
        url, sha256 = doc.metadata.get(fields.URL), doc.metadata.get(fields.SHA256)
        verdict = self._matcher.verdict(url, sha256, doc.text, self.budget_ms)
        if verdict.request is not None:
            doc.metadata[fields.FILTER_DETAILS] = dict(verdict.request)
            reason = reasons.SUPPRESSED_ERASURE_REQUEST
        elif verdict.timed_out:
            doc.metadata[fields.FILTER_DETAILS] = {
                "request_ids": [r["request_id"] for r in self._matcher.patterns],
                "elapsed_ms": round(verdict.elapsed_ms, 3),
                "budget_ms": self.budget_ms,
            }
            reason = reasons.SUPPRESSION_TIMEOUT
        else:
            return True
        doc.text = ""  # the exclusion row names the document and the request, not the erased text
        return False, reason


def suppression_blocks(
    requests: Sequence[Mapping] | StoredRequests,
    staging: Path,
    budget_ms: float | None = None,
    request_set: Mapping | None = None,
) -> list[SuppressionFilter]:
    """The filter for ``requests`` (plain data, or the request key index as
    ``records.request_keys_build.refresh_keys`` returned it, which names its own request set)
    writing its exclusions into ``staging``, and the staging's ``suppression.json`` (the request
    set applied, ``RequestIndex.request_set()``, the number of requests and the per-document
    budget); no blocks and no file when there are no requests. ``budget_ms`` None:
    ``budget_ms_from_env()``. Cost: O(1) for the key index, O(requests) for plain data."""
    stored = requests if isinstance(requests, StoredRequests) else None
    count = stored.num_requests if stored is not None else len(requests)
    if not count:
        return []
    plain = [] if stored is not None else _plain(requests)
    request_set = stored.request_set() if stored is not None else request_set
    budget = budget_ms_from_env() if budget_ms is None else budget_ms
    writer = DocumentShardWriter(staging / EXCLUDED, output_filename="suppression-${rank}.parquet")
    block = SuppressionFilter(plain, exclusion_writer=writer, budget_ms=budget, stored=stored)
    record = {**(request_set or {}), "requests": count, "budget_ms": budget}
    write_record(staging / SUPPRESSION_RECORD, record)
    return [block]


def suppression_config(index: RequestIndex | StoredRequests) -> dict:
    """The step config entry naming the request set applied: ``{"erasure_requests": {"ledger_size",
    "ledger_root"}}`` just past the last recorded request (empty when none). Its size does not grow
    with the number of requests, and it changes only when a request is recorded."""
    request_set = index.request_set()
    return {REQUEST_SET_KEY: request_set} if request_set else {}


def _matches(folder: Path, matcher: RequestMatcher, batch_rows: int) -> list[tuple[dict, str, str | None]]:
    """(request, doc id, url) for every kept document of ``folder`` a request of ``matcher`` names:
    one pass over the shards; the text is read only when there are patterns."""
    files = sorted((Path(folder) / SHARDS).glob("*.parquet"))
    columns = ["id", "url", "sha256"] + (["text"] if matcher.patterns else [])
    hits = []
    for path in files:
        for batch in pq.ParquetFile(path).iter_batches(batch_size=batch_rows, columns=columns):
            rows = zip(*(batch.column(c).to_pylist() for c in columns), strict=True)
            for doc_id, url, sha256, *text in rows:
                for request in matcher.all_matches(url, sha256, text[0] if text else None):
                    hits.append((request, doc_id, url))
    return hits


def _lines(folder: Path, hits: list[tuple[dict, str, str | None]]) -> list[str]:
    return [
        f"{folder}: document {doc_id} ({url}) is kept but matches erasure request "
        f"{request['request_id'][:12]} ({request['kind']} {request['value']!r})"
        for request, doc_id, url in sorted(hits, key=lambda h: (h[0]["request_id"], h[1]))
    ]


def suppression_check(folder: Path, requests: Sequence[Mapping], batch_rows: int = 1024) -> list[str]:
    """Kept documents of the version in ``folder`` (its ``shards/``) that a request names; each as a
    line naming the document and the request, by request then document id. Empty when the
    suppression held.

    Matches with the filter's matcher (RE2), with no time budget: a document the filter kept was
    searched in full, so it is searched in full again. A pattern is matched against the version's
    text, which later steps may have redacted: run the check on the version the filter wrote
    (``raw_documents``) for patterns; URL, domain and hash checks hold anywhere. Cost: one pass over
    the version's kept rows, O(labels of the host) per row whatever the number of requests, plus
    one RE2 set search of each text when there are patterns; memory bounded by ``batch_rows``.
    """
    if not requests or not any((Path(folder) / SHARDS).glob("*.parquet")):
        return []
    return _lines(folder, _matches(folder, RequestMatcher(_plain(requests)), batch_rows))


def suppression_outcome(folder: Path, config: Mapping, index: RequestIndex) -> tuple[bool, dict]:
    """The asset check of the version in ``folder`` (manifest ``config``) against the requests in
    the request ``index``: (passed, metadata). It passes when the request set the config names is
    the ledger's (its size and root, ``records.request_index.applied_requests``) and no kept
    document matches a request of it; requests recorded after that size are pending (the next
    curation applies them), listed with the number of kept documents they name. One pass over the
    kept documents for all requests."""
    applied, problem = applied_requests(index, config)
    done = {r.request_id for r in applied}
    plain = [r.as_filter() for r in index.requests]
    pending = [r for r in plain if r["request_id"] not in done]
    hits = _matches(folder, RequestMatcher(plain), 1024) if plain else []
    problems = _lines(folder, [h for h in hits if h[0]["request_id"] in done])
    waiting = [h for h in hits if h[0]["request_id"] not in done]
    metadata = {
        "requests_applied": len(done),
        "request_set": recorded_request_set(config),
        "kept_but_requested": problems[:20],
        "requests_pending": [r["request_id"][:12] for r in pending],
        "documents_named_by_pending_requests": len(waiting),
    }
    if problem is not None:
        metadata["request_set_problem"] = problem
    return problem is None and not problems, metadata
