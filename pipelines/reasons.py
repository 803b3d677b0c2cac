"""Why a record was quarantined or a document dropped: the only strings that appear in the
``reason`` column of quarantine and exclusions tables. One constant per reason, grouped by step."""

# Reading (quarantine: the record or file could not become a document)
BAD_JSON = "bad_json"
BAD_UTF8 = "bad_utf8"
TRUNCATED_FILE = "truncated_file"
UNREADABLE_FILE = "unreadable_file"
EMPTY_FILE = "empty_file"
NO_TEXT = "no_text"
NO_TEXT_COLUMN = "no_text_column"
DOCUMENT_TOO_LARGE = "document_too_large"
HTML_EXTRACTION_FAILED = "html_extraction_failed"
# Byte budgets (pipelines.readers.budgets): the rest of a file past max_file_bytes decompressed bytes,
# a Parquet row group with a column chunk over max_column_chunk_bytes (never decoded)
FILE_TOO_LARGE = "file_too_large"
COLUMN_CHUNK_TOO_LARGE = "column_chunk_too_large"
# Entries of a snapshot folder that are not regular files: never followed, never opened
SYMLINK = "symlink"
NOT_A_REGULAR_FILE = "not_a_regular_file"

# Language identification
LANGUAGE_NOT_SELECTED = "language_not_selected"
LOW_LANGUAGE_SCORE = "low_language_score"

# Quality filtering: a rule name is appended, e.g. "gopher_quality:max_avg_word_length"
GOPHER_QUALITY = "gopher_quality"
GOPHER_REPETITION = "gopher_repetition"
C4_QUALITY = "c4_quality"
FINEWEB_QUALITY = "fineweb_quality"

# Deduplication
EXACT_DUPLICATE = "exact_duplicate"
NEAR_DUPLICATE = "near_duplicate"

# Rights of others (ingest): an erasure or opt-out request recorded in the ledger (details name it),
# and a robots.txt that reserves the page from AI crawlers (details name the agent, file and rule)
SUPPRESSED_ERASURE_REQUEST = "suppressed:erasure_request"
# A document whose text could not be searched for the requests' patterns within the per-document
# budget: dropped, fail closed (details name the requests, the time spent and the budget)
SUPPRESSION_TIMEOUT = "suppression:timeout"
OPTOUT_ROBOTS_TXT = "optout:robots_txt"
