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

The requests arrive as plain data (``provenance.erasure.ErasureRequest.as_filter()``), read from
the ledger once at step start. ``suppression.json`` in the version lists the ids applied, so a new
request gives the step a new version id even when it matches nothing in this snapshot: the
version then proves that the request was applied (it records the budget too). ``suppression_check``
re-reads the version's kept documents and matches them again (the asset check, which blocks the
run: it must find nothing).
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
        requests: Sequence[Mapping],
        exclusion_writer: DiskWriter | None = None,
        budget_ms: float = DEFAULT_BUDGET_MS,
    ):
        super().__init__(exclusion_writer)
        self.requests = _plain(requests)
        self.budget_ms = budget_ms
        RequestMatcher(self.requests)  # a pattern RE2 refuses fails here, at step start
        self._matcher = None  # compiled again in the worker that runs the filter (RE2 does not pickle)

    def __getstate__(self):
        return {**self.__dict__, "_matcher": None}

    def filter(self, doc: Document) -> bool | tuple[bool, str]:
        """Cost per document: O(1) for URL, hash and host; linear in the text for patterns, at most
        about ``budget_ms`` of CPU time before the document is dropped as a timeout."""
        if self._matcher is None:
            self._matcher = RequestMatcher(self.requests)
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
    requests: Sequence[Mapping], staging: Path, budget_ms: float | None = None
) -> list[SuppressionFilter]:
    """The filter for ``requests`` writing its exclusions into ``staging``, and the staging's
    ``suppression.json`` (the request ids and the per-document budget); no blocks and no file when
    there are no requests. ``budget_ms`` None: ``budget_ms_from_env()``."""
    if not requests:
        return []
    plain = _plain(requests)
    budget = budget_ms_from_env() if budget_ms is None else budget_ms
    writer = DocumentShardWriter(staging / EXCLUDED, output_filename="suppression-${rank}.parquet")
    block = SuppressionFilter(plain, exclusion_writer=writer, budget_ms=budget)
    record = {"requests": [r["request_id"] for r in plain], "budget_ms": budget}
    write_record(staging / SUPPRESSION_RECORD, record)
    return [block]


def suppression_config(requests: Sequence[Mapping]) -> dict:
    """The step config entry naming the requests applied (empty when none)."""
    return {"suppression": [r["request_id"] for r in _plain(requests)]} if requests else {}


def suppression_check(folder: Path, requests: Sequence[Mapping], batch_rows: int = 1024) -> list[str]:
    """Kept documents of the version in ``folder`` (its ``shards/``) that a request names; each as a
    line naming the document and the request, by request then document id. Empty when the
    suppression held.

    Matches with the filter's matcher (RE2), with no time budget: a document the filter kept was
    searched in full, so it is searched in full again. A pattern is matched against the version's
    text, which later steps may have redacted: run the check on the version the filter wrote
    (``raw_documents``) for patterns; URL, domain and hash checks hold anywhere. Cost: linear in the
    version's kept text; memory bounded by ``batch_rows``.
    """
    files = sorted((Path(folder) / SHARDS).glob("*.parquet"))
    if not files or not requests:
        return []
    plain = _plain(requests)
    matcher = RequestMatcher(plain)
    hits: dict[str, list[tuple[str, str | None]]] = {r["request_id"]: [] for r in plain}
    for path in files:
        shard = pq.ParquetFile(path)
        for batch in shard.iter_batches(batch_size=batch_rows, columns=["id", "url", "sha256", "text"]):
            for row in batch.to_pylist():
                for request in matcher.all_matches(row["url"], row["sha256"], row["text"]):
                    hits[request["request_id"]].append((row["id"], row["url"]))
    return [
        f"{folder}: document {doc_id} ({url}) is kept but matches erasure request "
        f"{request['request_id'][:12]} ({request['kind']} {request['value']!r})"
        for request in plain
        for doc_id, url in sorted(hits[request["request_id"]], key=lambda hit: hit[0])
    ]


def suppression_outcome(folder: Path, config: Mapping, recorded: Sequence[Mapping]) -> tuple[bool, dict]:
    """The asset check of the version in ``folder`` (manifest ``config``) against the requests
    ``recorded`` in the ledger: (passed, metadata). It passes when no kept document matches a request
    the version applied; requests recorded after the version are pending (the next curation applies
    them), listed with the number of kept documents they name."""
    applied = set(config.get("suppression", []))
    done = [r for r in recorded if r["request_id"] in applied]
    pending = [r for r in recorded if r["request_id"] not in applied]
    problems = suppression_check(folder, done)
    waiting = suppression_check(folder, pending)
    return not problems, {
        "requests_applied": len(done),
        "kept_but_requested": problems[:20],
        "requests_pending": [r["request_id"][:12] for r in pending],
        "documents_named_by_pending_requests": len(waiting),
    }
