"""The difference between two dataset versions: documents added and removed, by reason.

A document is its (doc_id, sha256) pair: the id names where it came from, the hash what it said
when first read. Removed documents (kept in A, not in B) get the reason from the exclusions of
B's steps that A did not go through (B itself and its ancestors that are not A's); one that no
such step names is counted under ``UNEXPLAINED``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from records.documents import EXCLUSIONS, INDEX
from records.layout import DataLayout
from records.versions import ancestors, depth, load_versions, resolve

UNEXPLAINED = "(no exclusion names it)"


@dataclass
class VersionDiff:
    a: str
    b: str
    num_added: int
    num_removed: int
    removed_by_reason: dict[str, int]  # reason -> documents
    removed_by_step: dict[str, dict[str, int]]  # step (asset) -> reason -> documents
    examples: dict[str, list[dict]] = field(default_factory=dict)  # "added" or a reason -> documents

    def to_dict(self) -> dict:
        return asdict(self)


def diff(layout: DataLayout, a: str, b: str, *, limit: int = 5) -> VersionDiff:
    """Compare versions ``a`` and ``b`` (refs or unique prefixes); ``limit`` examples per group.
    Cost: O(bytes of both indexes and of the exclusions of the steps between them), each file
    hashed against its manifest before it is read."""
    import duckdb

    versions = load_versions(layout)
    a, b = resolve(versions, a), resolve(versions, b)
    between = [r for r in ancestors(versions, b) if r in versions and r not in ancestors(versions, a)]
    con = duckdb.connect()
    try:
        # Each table is read as its manifest lists it, from bytes checked against the recorded
        # sha256 (records.verified), and handed to DuckDB as Arrow: no path or value is in the SQL.
        for name, ref in (("index_a", a), ("index_b", b)):
            con.register(name, _table(layout, versions, ref, INDEX, ["doc_id", "sha256", "url"]))
        con.execute(
            """CREATE TEMP TABLE steps (doc_id VARCHAR, sha256 VARCHAR, url VARCHAR, step VARCHAR,
               reason VARCHAR, details VARCHAR, depth INTEGER)"""
        )
        columns = ["doc_id", "sha256", "url", "step", "reason", "details"]
        for ref in between:
            con.register("exclusions", _table(layout, versions, ref, EXCLUSIONS, columns))
            con.execute(
                "INSERT INTO steps SELECT doc_id, sha256, url, step, reason, details, ? FROM exclusions",
                [depth(versions, ref)],
            )
            con.unregister("exclusions")
        con.execute(f"CREATE TEMP TABLE added AS {_only_in('index_b', 'index_a')}")
        con.execute(
            f"""CREATE TEMP TABLE removed AS
            SELECT r.doc_id, r.sha256, r.url, coalesce(e.step, '') AS step, coalesce(e.reason, ?) AS reason,
                   e.details
            FROM ({_only_in("index_a", "index_b")}) r
            LEFT JOIN (SELECT doc_id, sha256, arg_min(step, depth) AS step, arg_min(reason, depth) AS reason,
                              arg_min(details, depth) AS details
                       FROM steps GROUP BY doc_id, sha256) e USING (doc_id, sha256)""",
            [UNEXPLAINED],
        )
        (num_added,) = con.execute("SELECT count(*) FROM added").fetchone()
        by_step: dict[str, dict[str, int]] = {}
        for step, reason, n in con.execute(
            "SELECT step, reason, count(*) FROM removed GROUP BY ALL ORDER BY ALL"
        ).fetchall():
            by_step.setdefault(step, {})[reason] = n
        by_reason: dict[str, int] = {}
        for reasons in by_step.values():
            for reason, n in reasons.items():
                by_reason[reason] = by_reason.get(reason, 0) + n
        examples: dict[str, list[dict]] = {}
        if limit > 0:
            columns = ["doc_id", "sha256", "url"]
            added = con.execute(
                "SELECT doc_id, sha256, url FROM added ORDER BY doc_id LIMIT ?", [int(limit)]
            ).fetchall()
            if added:
                examples["added"] = [dict(zip(columns, row, strict=True)) for row in added]
            rows = con.execute(
                """SELECT reason, doc_id, sha256, url, step, details FROM (
                SELECT *, row_number() OVER (PARTITION BY reason ORDER BY doc_id) AS n FROM removed)
                WHERE n <= ? ORDER BY reason, doc_id""",
                [int(limit)],
            ).fetchall()
            for reason, *values in rows:
                examples.setdefault(reason, []).append(
                    dict(zip(columns + ["step", "details"], values, strict=True))
                )
    finally:
        con.close()
    total_removed = sum(by_reason.values())
    return VersionDiff(a, b, num_added, total_removed, dict(sorted(by_reason.items())), by_step, examples)


def _table(layout: DataLayout, versions: dict, ref: str, name: str, columns: list[str]):
    """A version's table, hash-checked against its manifest (ValueError naming it if it differs)."""
    from records.verified import verified_parquet

    return verified_parquet(layout.datasets / ref, versions[ref], name, columns)


def _only_in(left: str, right: str) -> str:
    """Rows of table ``left`` whose (doc_id, sha256) table ``right`` lacks (both names are ours)."""
    return (f"SELECT x.doc_id, x.sha256, x.url FROM {left} AS x ANTI JOIN {right} AS y "
            "ON x.doc_id = y.doc_id AND x.sha256 = y.sha256")  # fmt: skip


def diff_text(result: VersionDiff) -> str:
    """Counts first, then the examples."""
    lines = [f"{result.a}  ->  {result.b}",
             f"added: {result.num_added} documents", f"removed: {result.num_removed} documents"]  # fmt: skip
    for step, reasons in sorted(result.removed_by_step.items()):
        for reason, n in sorted(reasons.items(), key=lambda kv: -kv[1]):
            lines.append(f"  {n:>8}  {step or '-'}: {reason}")
    for group, docs in result.examples.items():
        lines.append(f"examples, {group}:")
        lines += [
            f"  {d['doc_id']}  {d['url']}" + (f"  {d['details']}" if d.get("details") else "") for d in docs
        ]
    return "\n".join(lines)
