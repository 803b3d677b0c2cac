"""The catalog's schema: the tables a version's rows go into, and the views over them.

Every column that held a file's place holds it relative to the version folder (``shard``,
``source_file``) or names the version (``asset``, ``dataset_version``): nothing in the catalog is an
absolute path, so a copied or restored data folder answers from its own rows.
"""

from __future__ import annotations

from records.assets import TOKEN_SHARDS, TRAINED_MODEL
from records.models import SEQUENCE_USE
from records.sql_quote import sql_identifier, sql_literal

# Bump when a table or view changes: an older catalog is then rebuilt from the versions' files.
CATALOG_FORMAT = 3

_INDEX_COLUMNS = """asset VARCHAR, dataset_version VARCHAR, doc_id VARCHAR, snapshot VARCHAR, source_id VARCHAR,
    source_file VARCHAR, source_offset BIGINT, url VARCHAR, sha256 VARCHAR, language VARCHAR, language_score DOUBLE,
    script VARCHAR, quality_score DOUBLE, quality_percentile DOUBLE, minhash_cluster_id VARCHAR,
    minhash_cluster_size BIGINT, num_chars BIGINT, num_tokens_est BIGINT, shard VARCHAR, "row" BIGINT"""

TABLES = {
    # One row per catalogued version: its manifest. A version is in the catalog iff it has a row here,
    # written in the same transaction as its other rows.
    # Keyed by (asset, id): two steps can write byte-identical files (until the id covers lineage).
    "dataset_versions": """dataset_version VARCHAR, asset VARCHAR, snapshot VARCHAR, parents VARCHAR[],
        code_version VARCHAR, created_at VARCHAR, config JSON, stats JSON, files JSON,
        PRIMARY KEY (asset, dataset_version)""",
    "document_index": _INDEX_COLUMNS,
    "exclusions": _INDEX_COLUMNS + ", step VARCHAR, reason VARCHAR, details VARCHAR",
    "quarantine": """dataset_version VARCHAR, snapshot VARCHAR, file VARCHAR, "offset" BIGINT, reason VARCHAR,
        detail VARCHAR, excerpt VARCHAR, raw_bytes BIGINT""",
    "sequences": """token_shards_version VARCHAR, stage VARCHAR, sequence BIGINT, doc_id VARCHAR, sha256 VARCHAR,
        source_version VARCHAR, position BIGINT, copy INTEGER, token_start INTEGER, token_end INTEGER,
        doc_token_start BIGINT, doc_num_tokens BIGINT""",
    "training_use": """model_asset VARCHAR, model_version VARCHAR, token_shards_version VARCHAR, stage VARCHAR,
        sequence BIGINT, times_trained INTEGER, held_out BOOLEAN""",
    "ledger_entries": '"index" BIGINT PRIMARY KEY, timestamp VARCHAR, event_type VARCHAR, payload JSON',
    # name -> value: the catalog format, how far into the ledger's entries file the catalog has read
    # (ledger_offset) and how many entries it holds (ledger_entries).
    "catalog_state": "name VARCHAR PRIMARY KEY, value BIGINT",
}

VIEWS = {
    "documents": """
        SELECT i.dataset_version, i.asset, i.snapshot, i.doc_id, i.source_id, i.url, i.sha256, i.language,
               i.language_score, true AS kept, i.asset AS step, NULL::VARCHAR AS reason, NULL::VARCHAR AS details
        FROM document_index i
        UNION ALL
        SELECT e.dataset_version, e.asset, e.snapshot, e.doc_id, e.source_id, e.url, e.sha256, e.language,
               e.language_score, false AS kept, e.step, e.reason, e.details
        FROM exclusions e""",
    # "Did model M train on document D", per trained_model version, staged document and stage: the
    # same answer as provenance.audit.model_use (tests/provenance/test_answers.py holds them equal).
    # use_known is whether the model's manifest lists sequence_use.parquet; without it the
    # per-sequence counts are NULL and the status is 'staged_use_unknown', never 'not trained'.
    "model_training": f"""
        WITH models AS (
            SELECT asset AS model_asset, dataset_version AS model_version,
                   split_part(list_filter(parents, lambda p: starts_with(p, {sql_literal(TOKEN_SHARDS + "/")}))[1], '/', 2)
                       AS token_shards_version,
                   list_contains(json_extract_string(files, '$[*].path'), {sql_literal(SEQUENCE_USE)}) AS use_known
            FROM dataset_versions WHERE asset = {sql_literal(TRAINED_MODEL)}),
        held AS (
            SELECT DISTINCT m.model_asset, m.model_version, m.use_known, s.token_shards_version, s.stage,
                   s.doc_id, s.sha256, s.sequence
            FROM models m JOIN sequences s USING (token_shards_version))
        SELECT h.model_asset, h.model_version, h.token_shards_version, h.stage, h.doc_id, h.sha256,
               count(*) AS sequences,
               CASE WHEN h.use_known THEN count(*) FILTER (WHERE u.times_trained > 0) END AS sequences_trained,
               CASE WHEN h.use_known THEN coalesce(sum(u.times_trained), 0) END AS times_trained,
               CASE WHEN h.use_known THEN count(*) FILTER (WHERE u.held_out) END AS held_out_sequences,
               CASE WHEN NOT h.use_known THEN 'staged_use_unknown'
                    WHEN count(*) FILTER (WHERE u.times_trained > 0) > 0 THEN 'in'
                    ELSE 'staged_not_trained' END AS status
        FROM held h LEFT JOIN training_use u
          ON u.model_asset = h.model_asset AND u.model_version = h.model_version AND u.stage = h.stage
         AND u.sequence = h.sequence
        GROUP BY h.model_asset, h.model_version, h.use_known, h.token_shards_version, h.stage, h.doc_id, h.sha256""",
}


def create_schema(con) -> None:
    """Create the empty tables and the views of a new catalog."""
    for name, columns in TABLES.items():
        con.execute(f"CREATE TABLE {sql_identifier(name)} ({columns})")
    for name, select in VIEWS.items():
        con.execute(f"CREATE VIEW {sql_identifier(name)} AS {select}")
    con.execute(
        "INSERT INTO catalog_state VALUES ('format', ?), ('ledger_offset', 0), ('ledger_entries', 0)",
        [CATALOG_FORMAT],
    )
