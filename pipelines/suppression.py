"""Suppression: documents named by a recorded erasure or opt-out request never reach a dataset version.

``SuppressionFilter`` runs in ``ingest_snapshot``, the first step, right after normalization (so it
sees the text before PII redaction rewrites it): a document matching any request is dropped with
reason ``suppressed:erasure_request`` and details ``{"request_id", "kind", "value"}``. Its exclusion
row keeps who it was (doc id, URL, sha256) and which request removed it, but not its text: an
erased document must not survive in ``excluded/`` either.

The requests arrive as plain data (``provenance.erasure.ErasureRequest.as_filter()``), read from
the ledger once at step start. ``suppression.json`` in the version lists the ids applied, so a new
request gives the step a new version id even when it matches nothing in this snapshot: the
version then proves that the request was applied. ``suppression_check`` re-finds matching kept
documents with DuckDB, independently of the filter (the asset check: it must return nothing).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path

from datatrove.data import Document
from datatrove.pipeline.filters.base_filter import BaseFilter
from datatrove.pipeline.writers.disk_base import DiskWriter

from pipelines import fields, reasons
from pipelines.shards import DocumentShardWriter
from provenance.erasure import matcher, sql_condition

SUPPRESSION_RECORD = "suppression.json"


def _plain(requests: Sequence[Mapping]) -> list[dict]:
    plain = [{"request_id": r["request_id"], "kind": r["kind"], "value": r["value"]} for r in requests]
    return sorted(plain, key=lambda r: r["request_id"])


class SuppressionFilter(BaseFilter):
    """Drops every document that a request names (by URL, domain, sha256 or text pattern)."""

    name = "⛔ Erasure suppression"

    def __init__(self, requests: Sequence[Mapping], exclusion_writer: DiskWriter | None = None):
        super().__init__(exclusion_writer)
        self.requests = _plain(requests)
        self._matchers = None  # compiled on first use, in the worker that runs the filter

    def filter(self, doc: Document) -> bool | tuple[bool, str]:
        if self._matchers is None:
            self._matchers = [(r, matcher(r)) for r in self.requests]
        url, sha256 = doc.metadata.get(fields.URL), doc.metadata.get(fields.SHA256)
        for request, matches in self._matchers:
            if matches(url, sha256, doc.text):
                doc.metadata[fields.FILTER_DETAILS] = dict(request)
                doc.text = ""  # the exclusion row names the document and the request, not the erased text
                return False, reasons.SUPPRESSED_ERASURE_REQUEST
        return True


def suppression_blocks(requests: Sequence[Mapping], staging: Path) -> list[SuppressionFilter]:
    """The filter for ``requests`` writing its exclusions into ``staging``, and the staging's
    ``suppression.json``; no blocks and no file when there are no requests."""
    if not requests:
        return []
    plain = _plain(requests)
    record = {"requests": [r["request_id"] for r in plain]}
    (staging / SUPPRESSION_RECORD).write_text(json.dumps(record, indent=1) + "\n", encoding="utf-8")
    writer = DocumentShardWriter(staging / "excluded", output_filename="suppression-${rank}.parquet")
    return [SuppressionFilter(plain, exclusion_writer=writer)]


def suppression_config(requests: Sequence[Mapping]) -> dict:
    """The step config entry naming the requests applied (empty when none)."""
    return {"suppression": [r["request_id"] for r in _plain(requests)]} if requests else {}


def suppression_check(folder: Path, requests: Sequence[Mapping]) -> list[str]:
    """Kept documents of the version in ``folder`` (its ``shards/``) that a request names; each as a
    line naming the document and the request. Empty when the suppression held.

    Matches in SQL (DuckDB, RE2 for patterns), not with the filter's code. A pattern is matched
    against the version's text, which later steps may have redacted: run the check on the version
    the filter wrote (``raw_documents``) for patterns; URL, domain and hash checks hold anywhere.
    """
    import duckdb

    files = sorted((Path(folder) / "shards").glob("*.parquet"))
    if not files or not requests:
        return []
    listing = "[" + ", ".join("'" + str(p).replace("'", "''") + "'" for p in files) + "]"
    problems = []
    con = duckdb.connect()
    try:
        for request in _plain(requests):
            condition, params = sql_condition(request)
            rows = con.execute(
                f"SELECT id, url FROM read_parquet({listing}, union_by_name = true) WHERE {condition} ORDER BY id",
                params,
            ).fetchall()
            problems += [
                f"{folder}: document {doc_id} ({url}) is kept but matches erasure request "
                f"{request['request_id'][:12]} ({request['kind']} {request['value']!r})"
                for doc_id, url in rows
            ]
    finally:
        con.close()
    return problems


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
