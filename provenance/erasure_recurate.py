"""Which snapshots a new erasure request re-curates: only those whose current ``raw_documents``
version keeps a document the request names (docs/compliance.md, Which snapshots a request
re-curates).

The ``raw_documents`` version is the one to ask: it is where the suppression filter runs, on the
text before PII redaction, and every later version of the snapshot holds a subset of its documents
(by id), so a snapshot whose raw version keeps no match has no later version keeping one.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path

import duckdb
import pyarrow.parquet as pq

from records.assets import RAW_DOCUMENTS
from records.catalog import refresh_catalog
from records.documents import SHARDS
from records.erasure_match import HOST_PATTERN, RequestMatcher
from records.layout import DataLayout
from records.ledger import DATASET_VERSION_CREATED
from records.request_index import applied_requests, load_index
from records.requests import ErasureRequest


def current_raw_versions(con: duckdb.DuckDBPyConnection) -> dict[str, tuple[str, dict]]:
    """snapshot -> (raw_documents version id, its sealed config): per snapshot the version created
    last (by creation time, then by the ledger entry that pinned it). One catalog query."""
    rows = con.execute(
        """SELECT v.snapshot, v.dataset_version, v.config::VARCHAR, v.created_at, coalesce(max(l."index"), -1)
           FROM dataset_versions v LEFT JOIN ledger_entries l
             ON l.event_type = ? AND json_extract_string(l.payload, '$.dataset_version') = v.asset || '/' || v.dataset_version
           WHERE v.asset = ? GROUP BY ALL ORDER BY v.created_at, 5, v.dataset_version""",
        [DATASET_VERSION_CREATED, RAW_DOCUMENTS],
    ).fetchall()
    return {snapshot: (version, json.loads(config)) for snapshot, version, config, _, _ in rows}


def snapshots_to_recurate(
    layout: DataLayout,
    new_requests: Sequence[ErasureRequest] | None = None,
    versions: Mapping[str, str] | None = None,
) -> dict[str, list[str]]:
    """The snapshots a request re-curates: snapshot -> ids of the requests (among ``new_requests``)
    that name a document its current ``raw_documents`` version keeps and did not apply; snapshots
    with no such match are absent, so they need no re-curation for these requests.

    ``new_requests``: the requests to place (default: every recorded request, from the request
    index); a request the version already applied (its sealed request set covers it) is skipped
    for that version. ``versions``: snapshot -> raw_documents version id to ask (default: per
    snapshot the version created last, ``current_raw_versions``); the schedule passes the versions
    its last materializations name.

    Matching is the suppression filter's (``records.erasure_match``): URL and sha256 requests are
    one hash join of the versions' kept rows (catalog ``document_index``) with the request keys;
    domain requests are looked up for every label suffix of each distinct host; patterns are one
    RE2 set searched once per kept text. Cost: one columnar scan of the asked versions' kept rows
    (url, sha256), O(distinct hosts x labels) for domains, and for patterns one pass over those
    versions' kept text; never a loop over requests per document. Reads the catalog (brought up
    to date first) and, for patterns only, the raw versions' shards.
    """
    index = load_index(layout)
    wanted = list(index.requests if new_requests is None else new_requests)
    if not wanted:
        return {}
    con = duckdb.connect(str(refresh_catalog(layout)), read_only=True)
    try:
        current = current_raw_versions(con)
        if versions is not None:
            configs = {s: cfg for s, (v, cfg) in current.items() if versions.get(s) == v}
            current = {s: (v, configs.get(s, _config(con, v))) for s, v in versions.items()}
        # Per version, the requests it has not applied: only those can make it re-curate.
        todo: dict[str, list[ErasureRequest]] = {}
        for version, config in current.values():
            done = {r.request_id for r in applied_requests(index, config)[0]}
            todo[version] = [r for r in wanted if r.request_id not in done]
        found = _key_matches(con, todo) | _domain_matches(con, todo)
    finally:
        con.close()
    found |= _pattern_matches(layout, todo)
    by_version = {v: s for s, (v, _) in current.items()}
    result: dict[str, set[str]] = {}
    for version, request_id in found:
        result.setdefault(by_version[version], set()).add(request_id)
    return {s: sorted(ids) for s, ids in sorted(result.items())}


def _config(con: duckdb.DuckDBPyConnection, version: str) -> dict:
    row = con.execute(
        "SELECT config::VARCHAR FROM dataset_versions WHERE asset = ? AND dataset_version = ?",
        [RAW_DOCUMENTS, version],
    ).fetchone()
    if row is None:
        raise ValueError(f"{RAW_DOCUMENTS}/{version}: not in the catalog (no such sealed version)")
    return json.loads(row[0])


def _key_matches(con, todo: Mapping[str, list[ErasureRequest]]) -> set[tuple[str, str]]:
    """(version, request id) for URL and sha256 requests: one hash join over the kept rows."""
    keys = [
        (v, r.kind, r.value, r.request_id)
        for v, rs in todo.items()
        for r in rs
        if r.kind in ("url", "sha256")
    ]
    if not keys:
        return set()
    con.execute(
        "CREATE TEMP TABLE request_keys (version VARCHAR, kind VARCHAR, value VARCHAR, request_id VARCHAR)"
    )
    con.executemany("INSERT INTO request_keys VALUES (?, ?, ?, ?)", keys)
    # Two equi-joins (a hash join each), not one join on an OR, which would compare every pair.
    rows = con.execute(
        """SELECT k.version, k.request_id FROM document_index i JOIN request_keys k
             ON i.dataset_version = k.version AND i.url = k.value WHERE i.asset = ? AND k.kind = 'url'
           UNION
           SELECT k.version, k.request_id FROM document_index i JOIN request_keys k
             ON i.dataset_version = k.version AND i.sha256 = k.value WHERE i.asset = ? AND k.kind = 'sha256'""",
        [RAW_DOCUMENTS, RAW_DOCUMENTS],
    ).fetchall()
    return set(rows)


def _domain_matches(con, todo: Mapping[str, list[ErasureRequest]]) -> set[tuple[str, str]]:
    """(version, request id) for domain requests: each distinct host of a version's kept rows is
    looked up for its every label suffix (``RequestMatcher.by_key``)."""
    versions = {v: [r.as_filter() for r in rs if r.kind == "domain"] for v, rs in todo.items()}
    versions = {v: rs for v, rs in versions.items() if rs}
    if not versions:
        return set()
    hosts = con.execute(
        """SELECT DISTINCT dataset_version, 'http://' || rtrim(lower(regexp_extract(url, ?, 1)), '.')
           FROM document_index WHERE asset = ? AND list_contains(?, dataset_version)""",
        [HOST_PATTERN, RAW_DOCUMENTS, sorted(versions)],
    ).fetchall()
    matchers = {v: RequestMatcher(rs) for v, rs in versions.items()}
    return {(v, r["request_id"]) for v, host in hosts for r in matchers[v].by_key(host, None)}


def _pattern_matches(layout: DataLayout, todo: Mapping[str, list[ErasureRequest]]) -> set[tuple[str, str]]:
    """(version, request id) for patterns: one RE2 set over each kept text of the versions."""
    found = set()
    for version, requests in todo.items():
        patterns = [r.as_filter() for r in requests if r.kind == "regex"]
        if not patterns:
            continue
        matcher = RequestMatcher(patterns)
        for path in sorted((Path(layout.datasets) / RAW_DOCUMENTS / version / SHARDS).glob("*.parquet")):
            for batch in pq.ParquetFile(path).iter_batches(batch_size=1024, columns=["text"]):
                for text in batch.column("text").to_pylist():
                    found |= {(version, r["request_id"]) for r in matcher.by_pattern(text)[0]}
    return found
