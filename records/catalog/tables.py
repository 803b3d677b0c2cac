"""The catalog's schema: the tables a version's rows go into, and the views over them.

Every column that held a file's place holds it relative to the version folder (``shard``,
``source_file``) or names the version (``asset``, ``dataset_version``): nothing in the catalog is an
absolute path, so a copied or restored data folder answers from its own rows.
"""

from __future__ import annotations

# Bump when a table or view changes: an older catalog is then rebuilt from the versions' files.
CATALOG_FORMAT = 2

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
    # name -> value: the catalog format, and how far into the ledger's entries file the catalog has read.
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
}


def create_schema(con) -> None:
    """Create the empty tables and the views of a new catalog."""
    for name, columns in TABLES.items():
        con.execute(f"CREATE TABLE {name} ({columns})")
    for name, select in VIEWS.items():
        con.execute(f"CREATE VIEW {name} AS {select}")
    con.execute("INSERT INTO catalog_state VALUES ('format', ?), ('ledger_offset', 0)", [CATALOG_FORMAT])
