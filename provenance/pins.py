"""Pinning a sealed version in the ledger: the ``dataset_version_created`` entry every data version gets.

Its payload names the version, its snapshot and parents, the code that made it and the sha256 of its
manifest as sealed, so ``apertus audit verify`` catches a manifest rewritten after the fact. (Model
versions get ``model_trained`` entries instead: provenance.models, provenance.finetune.)
"""

from __future__ import annotations

from provenance.hashing import sha256_file
from provenance.layout import DataLayout
from provenance.ledger import DATASET_VERSION_CREATED, Ledger
from provenance.manifest import MANIFEST, Manifest


def pin_dataset_version(layout: DataLayout, manifest: Manifest) -> int:
    """Append the version's ``dataset_version_created`` entry; return its ledger index."""
    folder = layout.datasets / manifest.asset / manifest.version_id
    entry = Ledger(layout.ledger).append(
        DATASET_VERSION_CREATED,
        {
            "dataset_version": manifest.ref,
            "snapshot": manifest.snapshot,
            "parents": list(manifest.parents),
            "code_version": manifest.code_version,
            "manifest_sha256": sha256_file(folder / MANIFEST),
        },
    )
    return entry.index
