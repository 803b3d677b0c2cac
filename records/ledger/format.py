"""The ledger's record formats: event types, file names, and the entry as stored.

An entry is the canonical JSON (records.canonical.canonical_json) of exactly
{"event_type", "index", "payload", "timestamp"}; its line bytes, without the newline, are the
RFC 6962 leaf data. docs/ledger.md describes every file.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from records.merkle import leaf_hash

DATASET_VERSION_CREATED = "dataset_version_created"
MODEL_TRAINED = "model_trained"
MODEL_CERTIFIED = "model_certified"
ALIAS_MOVED = "alias_moved"
ERASURE_REQUESTED = "erasure_requested"
ROLLBACK = "rollback"
KEY_ADOPTED = "key_adopted"  # `apertus init --adopt` moved the signing key out of the data folder
# `apertus audit index --audit` rewrote the audit index (records.audit_index) and pins its root here
AUDIT_INDEX_REBUILT = "audit_index_rebuilt"
EVENT_TYPES = frozenset(
    {
        DATASET_VERSION_CREATED,
        MODEL_TRAINED,
        MODEL_CERTIFIED,
        ALIAS_MOVED,
        ERASURE_REQUESTED,
        ROLLBACK,
        KEY_ADOPTED,
        AUDIT_INDEX_REBUILT,
    }
)

ENTRIES = "entries.jsonl"
LEAF_HASHES = "leaf_hashes.bin"
TREE_HEADS = "tree_heads.jsonl"
LATEST_TREE_HEAD = "latest_tree_head.json"
PUBLIC_KEY = "public_key.pem"
ORIGIN = "origin"  # the ledger's name, the first line of its checkpoints; written once, at its first append
ORIGIN_PREFIX = "apertus.ledger/"
LOCK = ".lock"
# The tree's compact range at the latest head ({"size", "nodes"}), so an append costs O(log n); a
# cache checked against the signed head before use (records.ledger.log), rebuilt when it disagrees.
FRONTIER = "frontier.json"
ENTRY_FIELDS = frozenset({"event_type", "index", "payload", "timestamp"})


def utc_now() -> str:
    """Return the current UTC time as ISO 8601 with microseconds and a Z suffix."""
    return datetime.now(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


@dataclass(frozen=True)
class LedgerEntry:
    """One committed event. `canonical_json` is the exact stored line (without newline): the leaf data."""

    index: int
    timestamp: str
    event_type: str
    payload: dict[str, Any]
    leaf_hash: str  # hex SHA-256(0x00 || canonical_json)
    canonical_json: str

    @classmethod
    def from_line(cls, line: bytes) -> LedgerEntry:
        """Parse one stored line (newline stripped); ValueError if it is not a well-formed entry."""
        d = json.loads(line)
        if not isinstance(d, dict) or set(d) != ENTRY_FIELDS:
            raise ValueError(f"an entry must have exactly the fields {sorted(ENTRY_FIELDS)}")
        if type(d["index"]) is not int or not isinstance(d["payload"], dict):
            raise ValueError("entry index must be an integer and payload an object")
        if not isinstance(d["event_type"], str) or not isinstance(d["timestamp"], str):
            raise ValueError("entry event_type and timestamp must be strings")
        return cls(
            d["index"], d["timestamp"], d["event_type"], d["payload"], leaf_hash(line).hex(), line.decode()
        )
