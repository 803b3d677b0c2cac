"""The files of a version of documents (the curation steps' output; docs/data-model.md)::

    shards/*.parquet        kept documents, full text (pipelines.shards.SHARD_SCHEMA)
    excluded/*.parquet      dropped documents, with filter_reason and filter_details
    quarantine/*.parquet    input records that could not be read as documents (raw_documents only)
    index.parquet           one row per kept document (pipelines.tables merges it from shards/' parts)
    exclusions.parquet      one row per dropped document (from excluded/)
    robots.json             the robots.txt opt-out a step applied (pipelines.robots)
    suppression.json        the erasure requests a step applied (pipelines.suppression)

The names are spelled here only; the writers (pipelines.tables, .steps, .robots, .suppression) and
every reader (the catalog, the lookups, the audit) import them.
"""

from __future__ import annotations

SHARDS = "shards"
EXCLUDED = "excluded"
QUARANTINE = "quarantine"
INDEX = "index.parquet"
EXCLUSIONS = "exclusions.parquet"
TABLES = (INDEX, EXCLUSIONS)  # the document tables, kept first
ROBOTS_RECORD = "robots.json"
SUPPRESSION_RECORD = "suppression.json"

FILE_NAMES = (INDEX, EXCLUSIONS, ROBOTS_RECORD, SUPPRESSION_RECORD)
