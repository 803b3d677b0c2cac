"""Every file name a version or the data folder holds, gathered from the modules that own them.

Each name is spelled once, in its owner (the table in docs/data-model.md); this module only lists
them, so that tests/records/test_one_owner_per_name.py can check no other module spells one again.
"""

from __future__ import annotations

from records import curriculum, documents, finetune, models, quality, release, token_shards, tokenizer
from records.assets import ASSET_NAMES
from records.audit_index import AUDIT_INDEX, STATE
from records.audit_index_build import LOCK as AUDIT_INDEX_LOCK
from records.dedup_index import DEDUP_INDEX, INDEX_LOCK, INDEX_RECORD, MERGED, SEGMENT_META, SEGMENTS
from records.keys import PRIVATE_KEY, PUBLIC_KEY
from records.layout import CATALOG, CATALOG_LOCK
from records.ledger.format import ENTRIES, FRONTIER, LATEST_TREE_HEAD, LEAF_HASHES, TREE_HEADS
from records.ledger.format import PUBLIC_KEY as LEDGER_PUBLIC_KEY
from records.lookup import LEGACY_LOOKUP, LOOKUP
from records.manifest import MANIFEST
from records.pins import PINS
from records.request_index import REQUEST_INDEX, REQUEST_INDEX_STATE
from records.request_keys import KEYS_STATE, PATTERNS, REQUEST_KEYS
from records.retrain_state import (
    RETRAIN_LOCK,
    RETRAIN_SNAPSHOTS,
    RETRAIN_STATE,
    RETRAIN_SUMMARY,
    RETRAIN_UPDATES,
)
from records.retrain_tick import RETRAIN_TICK
from records.step_memo import STEP_MEMO

# Files of a version, by the asset kinds that hold them.
VERSION_FILES = (
    MANIFEST,
    *documents.FILE_NAMES,
    *curriculum.FILE_NAMES,
    *tokenizer.FILE_NAMES,
    *token_shards.FILE_NAMES,
    *quality.FILE_NAMES,
    *models.FILE_NAMES,
    *finetune.FILE_NAMES,
    *release.FILE_NAMES,
    LOOKUP,
    LEGACY_LOOKUP,
)
# Files and folders of the data folder and of the key folder beside it.
DATA_FOLDER_FILES = (
    CATALOG,
    CATALOG_LOCK,
    PINS,
    REQUEST_INDEX,
    REQUEST_INDEX_STATE,
    REQUEST_KEYS,
    KEYS_STATE,
    PATTERNS,
    AUDIT_INDEX,
    STATE,
    AUDIT_INDEX_LOCK,
    RETRAIN_STATE,
    RETRAIN_SUMMARY,
    RETRAIN_LOCK,
    RETRAIN_SNAPSHOTS,
    RETRAIN_UPDATES,
    RETRAIN_TICK,
    ENTRIES,
    LEAF_HASHES,
    TREE_HEADS,
    LATEST_TREE_HEAD,
    FRONTIER,
    LEDGER_PUBLIC_KEY,
    PRIVATE_KEY,
    PUBLIC_KEY,
    DEDUP_INDEX,
    INDEX_RECORD,
    INDEX_LOCK,
    SEGMENTS,
    MERGED,
    SEGMENT_META,
    STEP_MEMO,
)
FILE_NAMES = VERSION_FILES + DATA_FOLDER_FILES
# Every name no module but its owner may spell: the file names and the asset names.
OWNED_NAMES = FILE_NAMES + ASSET_NAMES
