"""Membership: was a document (by URL, content hash or text snippet) in a set of dataset versions?

The answer is per document: its trail through the versions of its chain (kept, or dropped by
that version's step with the reason and the numbers behind it), and the target versions it is
kept in. "In" means kept in at least one target version. Targets default to the ends of every
curation chain in the catalog (versions of documents only: a tokenizer, a curriculum, token
shards or fine-tuning examples index no documents and are never in scope); a model's provenance record will name its dataset versions by
curriculum stage, and those become the targets (``targets`` accepts any list of versions).
"""

from __future__ import annotations

import json
import unicodedata
from dataclasses import asdict, dataclass, field

from records.assets import MODEL_ASSETS
from records.documents import EXCLUDED, INDEX, SHARDS
from records.layout import DataLayout
from records.lookup import Row, find_rows
from records.manifest import MANIFEST
from records.versions import (
    ancestors,
    depth,
    holds_documents,
    leaves,
    load_versions,
    resolve,
)

IN, DROPPED, NOT_SEEN = "in", "dropped", "not_seen"


@dataclass(frozen=True)
class Step:
    """The document in one version: kept there, or dropped by its step."""

    version: str
    kept: bool
    reason: str | None = None
    details: dict = field(default_factory=dict)
    minhash_cluster_id: str | None = None
    minhash_cluster_size: int | None = None


@dataclass(frozen=True)
class DocumentFate:
    doc_id: str
    sha256: str
    url: str | None
    snapshot: str | None
    status: str  # IN, DROPPED, or NOT_SEEN (seen upstream, absent from every target without a drop)
    kept_in: list[str]  # target versions that keep it
    dropped_at: Step | None  # the first version whose step dropped it
    trail: list[Step]  # every version in scope that holds it, oldest step first


@dataclass(frozen=True)
class Membership:
    query: dict
    targets: list[str]
    documents: list[DocumentFate]

    @property
    def status(self) -> str:
        """IN if any document is in a target; DROPPED if any was seen and dropped; else NOT_SEEN."""
        statuses = {d.status for d in self.documents}
        return IN if IN in statuses else DROPPED if DROPPED in statuses else NOT_SEEN

    def to_dict(self) -> dict:
        return {"status": self.status, **asdict(self)}


def normalize_snippet(text: str) -> str:
    """The snippet as the pipeline stores text: Unicode NFC (pipelines.normalize)."""
    return unicodedata.normalize("NFC", text)


def scope_of(layout: DataLayout, targets: list[str] | None) -> tuple[dict, list[str], list[str]]:
    """(manifests, resolved targets, every version in scope: the targets and their ancestors)."""
    versions = load_versions(layout)
    resolved = [resolve(versions, t) for t in targets] if targets else leaves(versions)
    _refuse(resolved, lambda r: versions[r].asset, lambda r: holds_documents(versions[r]),
            lambda: leaves(versions))  # fmt: skip
    scope: list[str] = []
    for target in resolved:
        scope += [
            r
            for r in ancestors(versions, target)
            if r in versions and r not in scope and holds_documents(versions[r])
        ]
    return versions, resolved, scope


def contains(
    layout: DataLayout,
    *,
    url: str | None = None,
    sha256: str | None = None,
    text: str | None = None,
    targets: list[str] | None = None,
    use_index: bool = True,
    versions=None,
) -> Membership:
    """Answer whether the document(s) named by exactly one of url, sha256, text are in ``targets``.

    ``targets``: dataset versions (``asset/id`` or a unique prefix); None means every chain end.
    Raises ValueError for a bad query or an unknown version.

    With ``use_index`` (the default), ``--url`` and ``--sha256`` ask the audit index
    (records.audit_index) which versions hold the key and open only their lookups and manifests:
    O(log versions) segment probes plus O(versions x a few bytes) to list them and their chain
    ends, whatever the number of documents. ``use_index=False`` (and ``--text``, a full scan
    either way) reads every manifest and every lookup in scope: the same answers, O(versions).
    ``versions``: an open records.indexed_versions.IndexedVersions to reuse (a caller that has one).
    """
    if sum(v is not None for v in (url, sha256, text)) != 1:
        raise ValueError("name exactly one of --url, --sha256, --text")
    if text is not None or not use_index:
        return _contains_by_manifests(layout, url=url, sha256=sha256, text=text, targets=targets)
    from contextlib import nullcontext

    from records.indexed_versions import IndexedVersions

    with nullcontext(versions) if versions is not None else IndexedVersions(layout) as versions:
        resolved, scope = _indexed_scope(versions, targets)
        if url is not None:
            query, found = {"url": url}, versions.holding(url=url)
        else:
            value = _checked_sha256(sha256 or "")
            query, found = {"sha256": value}, versions.holding(sha256=value)
        candidates = sorted(found & scope)
        rows = find_rows(layout, candidates, url=url, sha256s=None if url is not None else [value])
        depths: dict[str, int] = {}
        order = {r.version: (_depth(versions, r.version, depths), r.version) for r in rows}
    documents = [_fate(doc_rows, resolved, order) for _, doc_rows in sorted(_by_document(rows).items())]
    return Membership(query, resolved, documents)


def _checked_sha256(sha256: str) -> str:
    value = sha256.strip().lower()
    if len(value) != 64 or any(c not in "0123456789abcdef" for c in value):
        raise ValueError(f"--sha256 {sha256!r}: expected 64 hex digits (sha256 of the normalized text)")
    return value


def _indexed_scope(versions, targets: list[str] | None) -> tuple[list[str], set[str]]:
    """scope_of's (resolved targets, versions in scope) from the index's facts: without targets,
    every version of documents (each is a chain end or an ancestor of one)."""
    resolved = [resolve(versions, t) for t in targets] if targets else versions.leaves()
    _refuse(resolved, lambda r: r.partition("/")[0], versions.holds_documents, versions.leaves)
    if not targets:
        return resolved, versions.documents()
    scope: set[str] = set()
    for target in resolved:
        stack = [target]
        while stack:
            current = stack.pop()
            if current in scope or current not in versions:
                continue
            if versions.holds_documents(current):
                scope.add(current)
            stack.extend(versions.facts(current).parents)
    return resolved, scope


def _depth(versions, ref: str, memo: dict[str, int]) -> int:
    """records.versions.depth from the index's facts (memoized: O(the chain))."""
    if ref not in memo:
        parents = [p for p in versions.facts(ref).parents if p in versions]
        memo[ref] = 1 + max(_depth(versions, p, memo) for p in parents) if parents else 0
    return memo[ref]


def _refuse(resolved: list[str], asset_of, documents, chain_ends) -> None:
    """ValueError for a target that is a model or holds no documents."""
    models = [r for r in resolved if asset_of(r) in MODEL_ASSETS]
    if models:
        raise ValueError(f"{models[0]} is a model, not a dataset version: ask with --model")
    others = [r for r in resolved if not documents(r)]
    if others:
        raise ValueError(
            f"{others[0]} holds no documents (no {INDEX} of kept or dropped documents), so it "
            "cannot contain one: name a "
            f"curated version with --version (one of: {', '.join(chain_ends()) or 'none'}), a model "
            "with --model, or a fine-tuning example with --example"
        )


def _contains_by_manifests(
    layout: DataLayout,
    *,
    url: str | None = None,
    sha256: str | None = None,
    text: str | None = None,
    targets: list[str] | None = None,
) -> Membership:
    """``contains`` from every manifest and every lookup in scope (no audit index): O(versions)."""
    versions, resolved, scope = scope_of(layout, targets)
    if url is not None:
        query, rows = {"url": url}, find_rows(layout, scope, url=url)
    elif sha256 is not None:
        value = _checked_sha256(sha256)
        query, rows = {"sha256": value}, find_rows(layout, scope, sha256s=[value])
    else:
        snippet = normalize_snippet(text or "")
        if not snippet.strip():
            raise ValueError("--text: the snippet is empty")
        hashes = _hashes_with_text(layout, versions, scope, snippet)
        query, rows = {"text": snippet}, find_rows(layout, scope, sha256s=hashes) if hashes else []
    order = {ref: (depth(versions, ref), ref) for ref in scope}
    documents = [_fate(doc_rows, resolved, order) for _, doc_rows in sorted(_by_document(rows).items())]
    return Membership(query, resolved, documents)


def _by_document(rows: list[Row]) -> dict[tuple[str, str], list[Row]]:
    grouped: dict[tuple[str, str], list[Row]] = {}
    for row in rows:
        grouped.setdefault((row.doc_id, row.sha256), []).append(row)
    return grouped


def _fate(rows: list[Row], targets: list[str], order: dict[str, tuple[int, str]]) -> DocumentFate:
    rows = sorted(rows, key=lambda r: order[r.version])
    trail = [
        Step(r.version, r.kept, r.reason, json.loads(r.details) if r.details else {},
             r.minhash_cluster_id, r.minhash_cluster_size)
        for r in rows
    ]  # fmt: skip
    kept_in = [s.version for s in trail if s.kept and s.version in targets]
    dropped = next((s for s in trail if not s.kept), None)
    status = IN if kept_in else DROPPED if dropped else NOT_SEEN
    first = rows[0]
    return DocumentFate(
        first.doc_id, first.sha256, first.url, first.snapshot, status, kept_in, dropped, trail
    )


def _hashes_with_text(layout: DataLayout, versions: dict, scope: list[str], snippet: str) -> list[str]:
    """sha256 of every document whose text, in any version in scope, contains ``snippet``.

    A full scan of the shard files each version's manifest lists (never a folder listing, so a
    planted file is not read), each first checked against its recorded sha256 (the same order of
    cost): a changed shard raises ValueError naming it, never an answer.
    """
    import duckdb

    from records.hashing import sha256_file

    files = []
    for ref in scope:
        for f in sorted(versions[ref].files, key=lambda f: f.path):
            if not (f.path.startswith((f"{SHARDS}/", f"{EXCLUDED}/")) and f.path.endswith(".parquet")):
                continue
            path = layout.datasets / ref / f.path
            if sha256_file(path) != f.sha256:
                raise ValueError(
                    f"{path}: its sha256 differs from {layout.datasets / ref / MANIFEST}; "
                    "run `apertus audit verify`"
                )
            files.append(path)
    if not files:
        return []
    con = duckdb.connect()
    try:
        result = con.execute(
            "SELECT DISTINCT sha256 FROM read_parquet(?, union_by_name = true) WHERE contains(text, ?)",
            [[str(p) for p in files], snippet],
        ).fetchall()
    finally:
        con.close()
    return sorted(h for (h,) in result if h)
