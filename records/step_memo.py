"""Which version a step made from an input version, a config and the code: the memo that lets a rerun
of a step whose input did not change skip its work.

    <data>/work/step_memo/<snapshot>/<asset>-<key>     the version's ref, one line

``key`` is ``records.layout.inputs_key`` of the step's inputs (input version ref, lineage config, code
version), the key that also names a resumable attempt. A step's output is a function of exactly those
(the curation steps are deterministic: tests/pipelines/test_steps.py reruns them and compares ids), so
running it again can only seal the same version.

The memo is derived, and may be deleted: a missing one means the step runs. It is trusted only as a
pointer. ``recall`` returns a version only when that version's own lineage says it was made from the
same input version with the same config and code, and its ledger pin exists; a stale, foreign or
forged memo makes the step run, never reuse another version. Only steps whose input is a version (a
content address) use it: an ingest's input is a listing of the snapshot (sizes and modification
times), too weak to stand for the bytes, so an ingest always reads them.

Cost: ``recall`` reads the memo, one manifest and one pin marker (O(1) in the history);
``remember`` writes one small file.
"""

from __future__ import annotations

import os
from pathlib import Path

from records.canonical import canonical_json
from records.layout import DataLayout, checkout_relative, validate_snapshot_name
from records.lineage import plain
from records.manifest import Manifest, load_manifest
from records.pins import read_pin

STEP_MEMO = "step_memo"  # under the data folder's work/


def _path(layout: DataLayout, snapshot: str, asset: str, key: str) -> Path:
    return layout.work / STEP_MEMO / validate_snapshot_name(snapshot) / f"{asset}-{key}"


def recall(
    layout: DataLayout, key: str, *, asset: str, snapshot: str, parents: tuple[str, ...], config: dict,
    code_version: str,
) -> Manifest | None:  # fmt: skip
    """The version a run of this step sealed and pinned earlier, or None (the step must run)."""
    try:
        ref = _path(layout, snapshot, asset, key).read_text(encoding="utf-8").strip()
    except (FileNotFoundError, NotADirectoryError, UnicodeDecodeError):
        return None
    name, _, version_id = ref.partition("/")
    if name != asset or not version_id or "/" in version_id or version_id.startswith("."):
        return None
    try:
        manifest = load_manifest(layout.datasets / asset / version_id)
    except (OSError, ValueError, KeyError, TypeError):
        return None
    try:
        same_lineage = (
            manifest.ref == ref
            and manifest.snapshot == snapshot
            and tuple(manifest.parents) == tuple(parents)
            and manifest.code_version == code_version
            and canonical_json(plain(manifest.config)) == canonical_json(plain(checkout_relative(config)))
        )
        # A marker that disagrees with the ledger raises: the step's own path reports and repairs it.
        pinned = same_lineage and read_pin(layout, ref) is not None
    except (TypeError, ValueError):
        return None
    return manifest if pinned else None


def remember(layout: DataLayout, key: str, manifest: Manifest) -> None:
    """Note that this step's inputs (``key``) gave ``manifest``'s version (atomic: a reader sees the
    old memo or the new one)."""
    path = _path(layout, manifest.snapshot, manifest.asset, key)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.{os.getpid()}")
    partial.write_text(manifest.ref + "\n", encoding="utf-8")
    os.replace(partial, path)
