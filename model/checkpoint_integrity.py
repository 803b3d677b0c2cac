"""Checkpoint tags that are checked before anything unpickles them.

A checkpoint directory holds one folder per tag (``step_00000012``) and ``latest``, the name of the tag to
resume from. Loading a DeepSpeed checkpoint unpickles its files (DeepSpeed's own loader uses
``torch.load(weights_only=False)``), so a changed file could run code. Each tag therefore gets
``checkpoint_hashes.json`` once all its files are written: the sha256 of every file of the tag, written
atomically before ``latest`` names the tag. Before a resume or an export, ``latest`` is read as a name
(never a path) and every file of the tag is re-hashed against that record; a changed, missing or
unrecorded file stops the load, naming the file, before any of them is opened by a loader.

The record is a work file beside the checkpoint, not a sealed record: it guards against corrupted or
swapped files, while the sealed provenance record (run.json's file hashes, the ledger) is what an auditor
checks.
"""

import json
import os
import re
from pathlib import Path

from records.canonical import write_record
from records.hashing import sha256_file
from records.models import CHECKPOINT_HASHES as HASHES_FILE
from records.models import LATEST as LATEST_FILE

__all__ = [
    "HASHES_FILE",
    "LATEST_FILE",
    "checkpoint_tag",
    "read_latest",
    "verify_tag",
    "write_latest",
    "write_tag_hashes",
]

HASHES_FORMAT = "apertus.checkpoint_hashes/1"
TAG_PATTERN = re.compile(r"step_\d{8}")


def checkpoint_tag(step: int) -> str:
    """The tag (folder name) of the checkpoint saved after `step` optimizer steps."""
    return f"step_{step:08d}"


def read_latest(ckpt_dir: str | Path) -> str | None:
    """The tag named by ckpt_dir/latest, or None when there is no such file. ValueError when its content is
    not a tag name this code writes (``step_`` and 8 digits): it is never used as a path."""
    path = Path(ckpt_dir) / LATEST_FILE
    if not path.exists():
        return None
    tag = path.read_text(encoding="utf-8", errors="replace").strip()
    if not TAG_PATTERN.fullmatch(tag):
        raise ValueError(
            f"{path}: {tag[:80]!r} is not a checkpoint tag (step_ and 8 digits); refusing to load from it. "
            f"Write the name of a tag folder in {path.parent} into it, or start a new --out"
        )
    return tag


def write_latest(ckpt_dir: str | Path, tag: str) -> None:
    """Name tag in ckpt_dir/latest by an atomic rename, so a kill never leaves it empty or cut short."""
    assert TAG_PATTERN.fullmatch(tag), tag
    ckpt_dir = Path(ckpt_dir)
    partial = ckpt_dir / f"{LATEST_FILE}.tmp"
    partial.write_text(tag)
    os.replace(partial, ckpt_dir / LATEST_FILE)


def _tag_files(tag_dir: Path) -> dict[str, Path]:
    """Every file under tag_dir but the hash record (and its partial write), by relative POSIX path."""
    skip = {HASHES_FILE, f"{HASHES_FILE}.tmp"}
    return {
        p.relative_to(tag_dir).as_posix(): p
        for p in sorted(tag_dir.rglob("*"))
        if p.is_file() and p.relative_to(tag_dir).as_posix() not in skip
    }


def write_tag_hashes(tag_dir: str | Path) -> Path:
    """Record the sha256 of every file of the tag in tag_dir/checkpoint_hashes.json, atomically; call once
    all ranks' files are written and before ``latest`` names the tag. Reads every file of the tag once:
    the cost grows with the checkpoint's size."""
    tag_dir = Path(tag_dir)
    files = {name: sha256_file(path) for name, path in _tag_files(tag_dir).items()}
    assert files, f"{tag_dir} holds no checkpoint files"
    write_record(tag_dir / HASHES_FILE, {"format": HASHES_FORMAT, "files": files})
    return tag_dir / HASHES_FILE


def verify_tag(tag_dir: str | Path) -> None:
    """Re-hash every file of the tag against its checkpoint_hashes.json; ValueError naming the first file
    that is missing, changed or not recorded (or the record itself, when it is missing or unreadable).
    Opens no file with a loader. Reads every file of the tag once: the cost grows with the checkpoint's
    size."""
    tag_dir = Path(tag_dir)
    record_path = tag_dir / HASHES_FILE
    refuse = "refusing to load this checkpoint"
    if not tag_dir.is_dir():
        raise ValueError(f"{tag_dir}: the checkpoint tag named in {LATEST_FILE} does not exist; {refuse}")
    try:
        record = json.loads(record_path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ValueError(
            f"{record_path}: missing, so the checkpoint's files cannot be checked before loading ({refuse}); "
            f"it was written by older code or its save did not finish: start a new --out"
        ) from None
    except ValueError as e:
        raise ValueError(f"{record_path}: not JSON ({e}); {refuse}") from None
    if not (
        isinstance(record, dict)
        and record.get("format") == HASHES_FORMAT
        and isinstance(record.get("files"), dict)
    ):
        raise ValueError(f"{record_path}: not a {HASHES_FORMAT} record; {refuse}")
    recorded = record["files"]
    present = _tag_files(tag_dir)
    for name, want in sorted(recorded.items()):
        if name not in present:
            raise ValueError(f"{tag_dir / name}: recorded in {HASHES_FILE} but missing; {refuse}")
        if sha256_file(present[name]) != want:
            raise ValueError(f"{tag_dir / name}: its sha256 differs from {record_path}; {refuse}")
    unrecorded = sorted(present.keys() - recorded.keys())
    if unrecorded:
        raise ValueError(f"{tag_dir / unrecorded[0]}: not recorded in {record_path}; {refuse}")
