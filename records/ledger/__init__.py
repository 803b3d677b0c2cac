"""The append-only, signed, tamper-evident ledger (DESIGN.md section 3). Import from here."""

from records.ledger.format import (
    ALIAS_MOVED,
    DATASET_VERSION_CREATED,
    ERASURE_REQUESTED,
    EVENT_TYPES,
    KEY_ADOPTED,
    MODEL_CERTIFIED,
    MODEL_TRAINED,
    ROLLBACK,
    LedgerEntry,
)
from records.ledger.log import Ledger
from records.ledger.verify import verify_entry_offline, verify_ledger_files
from records.signing import Checkpoint, SignedTreeHead

__all__ = [
    "ALIAS_MOVED",
    "DATASET_VERSION_CREATED",
    "ERASURE_REQUESTED",
    "EVENT_TYPES",
    "KEY_ADOPTED",
    "MODEL_CERTIFIED",
    "MODEL_TRAINED",
    "ROLLBACK",
    "Checkpoint",
    "Ledger",
    "LedgerEntry",
    "SignedTreeHead",
    "verify_entry_offline",
    "verify_ledger_files",
]
