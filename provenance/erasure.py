"""Erasure impact: where the documents an erasure or opt-out request names are, and what follows.

``impact`` answers "where is it?": every dataset version holding a matching document, kept or only
excluded (and whether that exclusion row still carries the text), and every model version whose
token shards hold it, with the sequences that were trained on. Matching documents are found in the
catalog (URL, host, hash) or in the shards' text (``records.erasure_match``, RE2, the matcher the
suppression filter and its check use too); they are then followed by document id through every
version, because later steps rewrite the text (PII redaction) but never the id. The requests
themselves are records (``records.requests``); docs/compliance.md describes the workflow.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path

import duckdb
import pyarrow.parquet as pq

from provenance.audit.model_use import STAGED_USE_UNKNOWN
from provenance.erasure_models import ModelImpact, model_impacts, tokenizer_impacts
from records.catalog import refresh_catalog
from records.erasure_match import HOST_PATTERN, KINDS, RequestMatcher
from records.layout import DataLayout
from records.requests import SUPPRESSED, SUPPRESSION_TIMEOUT, ErasureRequest
from records.versions import depth, load_versions


def matcher(request: Mapping) -> Callable[[str | None, str | None, str], bool]:
    """A function (url, sha256, text) -> bool that is True for the documents ``request`` names,
    through the one matcher (``records.erasure_match``) the filter, impact and check use."""
    one = RequestMatcher([{"request_id": "", "kind": request["kind"], "value": request["value"]}])
    return lambda url, sha256, text: bool(one.all_matches(url, sha256, text))


def sql_condition(
    request: Mapping, *, url: str = "url", sha256: str = "sha256", text: str = "text"
) -> tuple[str, list]:
    """(SQL boolean expression, parameters) naming the rows ``request`` matches by URL, host or hash,
    over the given columns. Patterns are never matched in SQL: only ``RequestMatcher`` searches text."""
    kind, value = request["kind"], request["value"]
    assert kind != "regex", "patterns are matched by records.erasure_match, not in SQL"
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
            # Staged in a model that recorded no per-sequence use: neither in nor out.
            "models_use_unknown": [m.ref for m in self.models if m.status == STAGED_USE_UNKNOWN],
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
    then followed by document id through every version; each model's answer is the one
    ``apertus audit contains --model`` gives (provenance.erasure_models.model_impacts).
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
