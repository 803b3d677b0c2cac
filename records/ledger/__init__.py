"""The append-only, signed, tamper-evident ledger (DESIGN.md section 3). Import from here.

The writer, the verifier and the signed heads are loaded on first use, so that a module needing only
the ledger's names (``records.ledger.format``: file names, event types) does not load its cryptography.
"""

from importlib import import_module

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

_LAZY = {
    "Ledger": "records.ledger.log",
    "verify_entry_offline": "records.ledger.verify",
    "verify_ledger_files": "records.ledger.verify",
    "Checkpoint": "records.signing",
    "SignedTreeHead": "records.signing",
}


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


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
