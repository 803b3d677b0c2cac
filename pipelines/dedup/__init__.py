"""Exact and MinHash near-deduplication: ``deduplicate`` runs the four stages (signatures, buckets,
clusters, filter) over a folder of document shards."""

from pipelines.dedup.config import DedupConfig, DedupSummary
from pipelines.dedup.run import deduplicate

__all__ = ["DedupConfig", "DedupSummary", "deduplicate"]
