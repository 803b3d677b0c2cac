"""Metadata keys every curation block reads and writes on a datatrove ``Document``.

A document travels through the steps as ``Document(text, id, metadata)``. ``id`` is the stable
document id: ``"{snapshot}/{relative source file}#{line or record or byte offset}"``, so any result
joins back to the input. The keys below are the only metadata the steps agree on; a block may add
its own, but reads only these from other blocks.
"""

SNAPSHOT = "snapshot"  # the source snapshot (Dagster partition) the document came from
SOURCE_ID = "source_id"  # the id the input gave the record, or None when it gave none
SOURCE_FILE = "source_file"  # path of the input file, relative to the snapshot folder
SOURCE_OFFSET = "source_offset"  # line number (JSONL), row (Parquet) or byte offset (WARC)
URL = "url"  # the page's URL when the input had one, else None
SHA256 = "sha256"  # hex sha256 of the normalized text as first read: the document's content identity
LANGUAGE = "language"  # ISO 639-1 (or fastText) code set by language identification
LANGUAGE_SCORE = "language_score"  # fastText probability of LANGUAGE
SCRIPT = "script"  # writing system of LANGUAGE: "Latn", "Cyrl", "Hani", ...
QUALITY_SCORE = "quality_score"  # learned quality score (issue: curriculum), absent before it
QUALITY_PERCENTILE = "quality_percentile"  # percentile of QUALITY_SCORE within its language, 0-100
MINHASH_CLUSTER_ID = "minhash_cluster_id"  # near-duplicate cluster (the id of its kept document)
MINHASH_CLUSTER_SIZE = "minhash_cluster_size"  # documents in that cluster, kept one included
PII_REDACTIONS = "pii_redactions"  # number of PII spans replaced in the text

# Set on a dropped document, written to the step's exclusions.
FILTER_REASON = "filter_reason"  # one of pipelines.reasons; datatrove's BaseFilter sets this key
FILTER_DETAILS = "filter_details"  # JSON object string: the numbers behind the reason
