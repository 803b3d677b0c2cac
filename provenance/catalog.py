"""The catalog: one DuckDB file of views over every record in the data folder.

The views read the Parquet and JSON files in place (nothing is copied), so the catalog is always
as current as the files and can be rebuilt from them at any time. Auditors open it read-only:
``apertus audit sql`` refuses any statement that is not a query. docs/catalog.md lists the views
with example queries.
"""

from __future__ import annotations

import fcntl
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import duckdb

from provenance.layout import DataLayout

VERSION_FROM_PATH = r"'/datasets/([^/]+)/([0-9a-f]{64})/'"

# Column lists of empty views, so queries work (and return nothing) before any data exists.
_INDEX_COLUMNS = """doc_id VARCHAR, snapshot VARCHAR, source_id VARCHAR, source_file VARCHAR, source_offset BIGINT,
    url VARCHAR, sha256 VARCHAR, language VARCHAR, language_score DOUBLE, script VARCHAR, quality_score DOUBLE, quality_percentile DOUBLE,
    minhash_cluster_id VARCHAR, minhash_cluster_size BIGINT, num_chars BIGINT, num_tokens_est BIGINT,
    shard VARCHAR, "row" BIGINT"""
_EXCLUSION_COLUMNS = _INDEX_COLUMNS + ", step VARCHAR, reason VARCHAR, details VARCHAR"


def _parquet_view(name: str, pattern: Path, empty_columns: str, has_files: bool) -> str:
    if not has_files:
        return f"CREATE OR REPLACE VIEW {name} AS SELECT * FROM (SELECT NULL::VARCHAR AS asset, NULL::VARCHAR AS dataset_version, {_typed_nulls(empty_columns)}) WHERE false"
    return f"""CREATE OR REPLACE VIEW {name} AS
        SELECT regexp_extract(filename, {VERSION_FROM_PATH}, 1) AS asset,
               regexp_extract(filename, {VERSION_FROM_PATH}, 2) AS dataset_version,
               * EXCLUDE (filename)
        FROM read_parquet('{pattern}', filename = true, union_by_name = true)"""


def _typed_nulls(columns: str) -> str:
    parts = [c.strip() for c in columns.replace("\n", " ").split(",") if c.strip()]
    return ", ".join(f"NULL::{p.rsplit(' ', 1)[1]} AS {p.rsplit(' ', 1)[0]}" for p in parts)


def _statements(layout: DataLayout) -> list[str]:
    datasets = layout.datasets
    index_files = list(datasets.glob("*/*/index.parquet"))
    exclusion_files = list(datasets.glob("*/*/exclusions.parquet"))
    quarantine_files = list(datasets.glob("*/*/quarantine/*.parquet"))
    manifests = list(datasets.glob("*/*/manifest.json"))
    statements = [
        _parquet_view("document_index", datasets / "*/*/index.parquet", _INDEX_COLUMNS, bool(index_files)),
        _parquet_view(
            "exclusions", datasets / "*/*/exclusions.parquet", _EXCLUSION_COLUMNS, bool(exclusion_files)
        ),
        """CREATE OR REPLACE VIEW documents AS
            SELECT i.dataset_version, i.asset, i.snapshot, i.doc_id, i.source_id, i.url, i.sha256, i.language,
                   i.language_score, true AS kept, i.asset AS step, NULL::VARCHAR AS reason, NULL::VARCHAR AS details
            FROM document_index i
            UNION ALL
            SELECT e.dataset_version, e.asset, e.snapshot, e.doc_id, e.source_id, e.url, e.sha256, e.language,
                   e.language_score, false AS kept, e.step, e.reason, e.details
            FROM exclusions e""",
    ]
    if quarantine_files:
        statements.append(
            f"""CREATE OR REPLACE VIEW quarantine AS
                SELECT regexp_extract(filename, {VERSION_FROM_PATH}, 2) AS dataset_version, * EXCLUDE (filename)
                FROM read_parquet('{datasets}/*/*/quarantine/*.parquet', filename = true, union_by_name = true)"""
        )
    else:
        statements.append(
            "CREATE OR REPLACE VIEW quarantine AS SELECT * FROM (SELECT NULL::VARCHAR AS dataset_version, "
            'NULL::VARCHAR AS snapshot, NULL::VARCHAR AS file, NULL::BIGINT AS "offset", NULL::VARCHAR AS reason, '
            "NULL::VARCHAR AS detail, NULL::VARCHAR AS excerpt, NULL::BIGINT AS raw_bytes) WHERE false"
        )
    if manifests:
        statements.append(
            f"""CREATE OR REPLACE VIEW dataset_versions AS
                SELECT version_id AS dataset_version, asset, snapshot, parents, code_version, created_at,
                       config, stats, files
                FROM read_json('{datasets}/*/*/manifest.json', format = 'auto', union_by_name = true,
                               maximum_object_size = 268435456)"""
        )
    else:
        statements.append(
            "CREATE OR REPLACE VIEW dataset_versions AS SELECT * FROM (SELECT NULL::VARCHAR AS dataset_version, "
            "NULL::VARCHAR AS asset, NULL::VARCHAR AS snapshot) WHERE false"
        )
    statements += _training_views(datasets)
    entries = layout.ledger / "entries.jsonl"
    if entries.exists() and entries.stat().st_size:
        statements.append(
            f"""CREATE OR REPLACE VIEW ledger_entries AS
                SELECT "index", timestamp, event_type, payload
                FROM read_json('{entries}', format = 'newline_delimited',
                               columns = {{'index': 'BIGINT', 'timestamp': 'VARCHAR', 'event_type': 'VARCHAR', 'payload': 'JSON'}})"""
        )
    else:
        statements.append(
            'CREATE OR REPLACE VIEW ledger_entries AS SELECT * FROM (SELECT NULL::BIGINT AS "index", '
            "NULL::VARCHAR AS timestamp, NULL::VARCHAR AS event_type, NULL::JSON AS payload) WHERE false"
        )
    return statements


_SEQUENCE_COLUMNS = """stage VARCHAR, sequence BIGINT, doc_id VARCHAR, sha256 VARCHAR, source_version VARCHAR,
    position BIGINT, copy INTEGER, token_start INTEGER, token_end INTEGER, doc_token_start BIGINT, doc_num_tokens BIGINT"""
_USE_COLUMNS = "stage VARCHAR, sequence BIGINT, times_trained INTEGER, held_out BOOLEAN"
_STAGE_FROM_PATH = r"'/stages/([^/]+)/sequences[.]parquet$'"


def _training_views(datasets: Path) -> list[str]:
    """``sequences``: every token sequence of every token_shards version and the documents in it;
    ``training_use``: how many times each model trained on each sequence (model/usage.py)."""
    sequences = datasets / "token_shards/*/stages/*/sequences.parquet"
    uses = datasets / "*/*/sequence_use.parquet"
    statements = []
    if list(datasets.glob("token_shards/*/stages/*/sequences.parquet")):
        statements.append(
            f"""CREATE OR REPLACE VIEW sequences AS
                SELECT regexp_extract(filename, {VERSION_FROM_PATH}, 2) AS token_shards_version,
                       regexp_extract(filename, {_STAGE_FROM_PATH}, 1) AS stage, * EXCLUDE (filename)
                FROM read_parquet('{sequences}', filename = true, union_by_name = true)"""
        )
    else:
        statements.append(
            "CREATE OR REPLACE VIEW sequences AS SELECT * FROM (SELECT NULL::VARCHAR AS token_shards_version, "
            f"{_typed_nulls(_SEQUENCE_COLUMNS)}) WHERE false"
        )
    if list(datasets.glob("*/*/sequence_use.parquet")):
        statements.append(
            # The token_shards version a model trained on is its manifest's token_shards parent.
            f"""CREATE OR REPLACE VIEW training_use AS
                WITH models AS (
                    SELECT dataset_version AS model_version,
                           regexp_extract(list_filter(parents, lambda p: p LIKE 'token_shards/%')[1], '/(.*)$', 1)
                               AS token_shards_version
                    FROM dataset_versions)
                SELECT regexp_extract(u.filename, {VERSION_FROM_PATH}, 1) AS model_asset,
                       regexp_extract(u.filename, {VERSION_FROM_PATH}, 2) AS model_version,
                       m.token_shards_version, u.* EXCLUDE (filename)
                FROM read_parquet('{uses}', filename = true, union_by_name = true) u
                LEFT JOIN models m ON m.model_version = regexp_extract(u.filename, {VERSION_FROM_PATH}, 2)"""
        )
    else:
        statements.append(
            "CREATE OR REPLACE VIEW training_use AS SELECT * FROM (SELECT NULL::VARCHAR AS model_asset, "
            "NULL::VARCHAR AS model_version, NULL::VARCHAR AS token_shards_version, "
            f"{_typed_nulls(_USE_COLUMNS)}) WHERE false"
        )
    return statements


@contextmanager
def _catalog_lock(layout: DataLayout) -> Iterator[None]:
    layout.root.mkdir(parents=True, exist_ok=True)
    with open(layout.root / ".catalog.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def refresh_catalog(layout: DataLayout) -> Path:
    """(Re)create the catalog's views so they cover every record now in the data folder."""
    with _catalog_lock(layout):
        con = duckdb.connect(str(layout.catalog))
        try:
            for statement in _statements(layout):
                con.execute(statement)
        finally:
            con.close()
    return layout.catalog


READ_ONLY_STATEMENTS = {"SELECT", "EXPLAIN"}


def query(layout: DataLayout, sql: str) -> tuple[list[str], list[tuple]]:
    """Run one read-only query on the catalog; return (column names, rows).

    Raises ``ValueError`` for anything but a single SELECT (or WITH … SELECT, EXPLAIN) statement:
    the catalog is evidence, and a query must not be able to change it or reach outside it.
    """
    statements = duckdb.extract_statements(sql)
    if len(statements) != 1:
        raise ValueError(f"expected exactly one SQL statement, got {len(statements)}")
    kind = statements[0].type.name
    if kind not in READ_ONLY_STATEMENTS:
        raise ValueError(f"only queries are allowed on the catalog; refused a {kind} statement")
    if not layout.catalog.exists():
        refresh_catalog(layout)
    con = duckdb.connect(str(layout.catalog), read_only=True)
    try:
        # Reads stay inside the data folder; nothing is installed, loaded or written elsewhere.
        con.execute(f"SET allowed_directories = ['{layout.root}/']")
        con.execute("SET enable_external_access = false")
        con.execute("SET autoinstall_known_extensions = false")
        con.execute("SET autoload_known_extensions = false")
        con.execute("SET lock_configuration = true")
        result = con.execute(sql)
        columns = [d[0] for d in result.description]
        return columns, result.fetchall()
    finally:
        con.close()
