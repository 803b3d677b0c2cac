"""``apertus init`` and the held heads: make the instance identity, adopt an older data folder's key,
and keep the latest verified head of each ledger in the key folder (records.keys, docs/security.md)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from records.keys import (
    LEGACY_KEY,
    PRIVATE_KEY,
    PUBLIC_KEY,
    create_identity,
    held_head_path,
    keys_folder,
    read_held_head,
    write_held_head,
)
from records.layout import DataLayout
from records.ledger import KEY_ADOPTED, Ledger
from records.merkle import verify_consistency
from records.signing import KEY_ENV, Checkpoint, TreeHead, key_id, load_private_key, load_public_key


@dataclass(frozen=True)
class Identity:
    """What `apertus init` made or found."""

    folder: Path
    key_id: str
    created: bool  # a new key was generated
    adopted_from: Path | None = None  # the older key moved into the folder
    adoption_entry: int | None = None


def _ledger_key_id(ledger: Ledger) -> str | None:
    path = ledger.public_key_path
    return key_id(load_public_key(path.read_bytes())) if path.exists() else None


def init_instance(layout: DataLayout, *, adopt: bool = False) -> Identity:
    """Create the key folder (``APERTUS_KEYS``, outside the data folder) with this instance's key, or
    with ``adopt`` move the key older code left in ``<data>/ledger/keys/`` (or ``APERTUS_LEDGER_KEY``)
    into it, recording a ``key_adopted`` ledger entry. Idempotent when the folder is already made.
    ValueError naming the fix when the folder is inside the data folder, or when the ledger was signed
    by a key that would be lost."""
    folder = keys_folder(layout)
    ledger = Ledger(layout.ledger)
    signed_by = _ledger_key_id(ledger)
    default_legacy = layout.ledger / LEGACY_KEY
    legacy = Path(os.environ.get(KEY_ENV) or default_legacy)
    if adopt:
        return _adopt(layout, folder, ledger, legacy, signed_by)
    if default_legacy.exists():
        raise ValueError(
            f"the ledger in {layout.ledger} was signed by a key older code kept in the data folder "
            f"({default_legacy}); run `apertus init --adopt` to move it into {folder}"
        )
    if signed_by is not None and not (folder / PRIVATE_KEY).exists():
        raise ValueError(
            f"the ledger in {layout.ledger} was signed by key {signed_by[:16]}, which is not in {folder}: point "
            "APERTUS_KEYS at the key folder that signed it (a new key could not extend this ledger)"
        )
    key, created = create_identity(folder)
    made = key_id(key.public_key())
    if signed_by is not None and signed_by != made:
        raise ValueError(
            f"the key in {folder} ({made[:16]}) did not sign the ledger in {layout.ledger} ({signed_by[:16]}); "
            "point APERTUS_KEYS at the key folder that signed it"
        )
    return Identity(folder, made, created)


def _adopt(layout: DataLayout, folder: Path, ledger: Ledger, legacy: Path, signed_by: str | None) -> Identity:
    if not legacy.is_file():
        raise ValueError(
            f"nothing to adopt: no private key at {legacy} (a new instance needs `apertus init`)"
        )
    old = load_private_key(legacy)
    old_id = key_id(old.public_key())
    if signed_by is not None and signed_by != old_id:
        raise ValueError(
            f"{legacy} ({old_id[:16]}) did not sign the ledger in {layout.ledger} ({signed_by[:16]}); not adopted"
        )
    existing = folder / PRIVATE_KEY
    if existing.exists() and key_id(load_private_key(existing).public_key()) != old_id:
        raise ValueError(f"{folder} already holds another key; adopt into an empty key folder (APERTUS_KEYS)")
    key, _ = create_identity(folder, old)
    assert key_id(key.public_key()) == old_id
    legacy.unlink()  # the key is safe in the folder now; the ledger refuses to sign while this exists
    if legacy.parent.name == LEGACY_KEY.parent.name and not any(legacy.parent.iterdir()):
        legacy.parent.rmdir()
    where = legacy.relative_to(layout.root) if legacy.is_relative_to(layout.root) else KEY_ENV
    entry = ledger.append(KEY_ADOPTED, {"key_id": old_id, "from": str(where), "to": KEYS_NOTE})
    return Identity(folder, old_id, False, legacy, entry.index)


KEYS_NOTE = "the key folder (APERTUS_KEYS), outside the data folder"


def head_text(head: TreeHead) -> str:
    """The head as published and held: the checkpoint note, or an older head's JSON line."""
    return head.note() if isinstance(head, Checkpoint) else head.to_json() + "\n"


def hold_head(ledger: Ledger, folder: Path, head: TreeHead) -> tuple[Path, str | None]:
    """Keep `head` (already verified by the caller) as ledger's held head in key folder `folder`.

    Returns (path, None) when written, or (path, why not) when the head held there is not a prefix
    of `head` (it is then kept: a held head only ever moves forward). Cost: one consistency proof
    (hashes the leaf cache up to the head's size).
    """
    origin = (
        head.origin if isinstance(head, Checkpoint) else (ledger.origin() or f"legacy-{ledger.root.name}")
    )
    path = held_head_path(folder, origin)
    if path.exists():
        old = read_held_head(path)
        if old.tree_size > head.tree_size:
            return path, f"it holds a larger head ({old.tree_size} entries) than this one ({head.tree_size})"
        try:
            proof = [bytes.fromhex(p) for p in ledger.consistency_proof(old.tree_size, head.tree_size)]
        except ValueError as e:
            return path, f"no consistency proof from the held head ({e})"
        roots = bytes.fromhex(old.root_hash), bytes.fromhex(head.root_hash)
        if not verify_consistency(old.tree_size, head.tree_size, *roots, proof):
            return path, f"the log does not extend the held head ({old.tree_size} entries)"
    write_held_head(path, head_text(head))
    return path, None


__all__ = ["PUBLIC_KEY", "Identity", "head_text", "hold_head", "init_instance"]
