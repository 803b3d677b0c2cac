"""A version's lineage record, ``lineage.json``: sealed inside the version, so part of its id.

What made a version (its asset, snapshot, parent versions, step config and code version) decides
its identity together with its bytes: equal inputs and code give the same id, equal bytes made
from other inputs give another version, and two snapshots never share one. The record holds no
timestamp (``created_at`` stays in the manifest), so sealing the same thing twice gives the same
id. Versions sealed by older code (manifest format 1) have no lineage.json; their manifest's copy
of these fields is their lineage.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from records.canonical import CANONICAL_FORMAT, canonical_json, read_record, write_record

LINEAGE = "lineage.json"
LINEAGE_FORMAT = "apertus.lineage/1"
# The fields a manifest repeats from its lineage (the manifest is outside the id; lineage.json wins).
LINEAGE_FIELDS = ("asset", "snapshot", "parents", "config", "code_version")


def lineage_record(
    *, asset: str, snapshot: str | None, parents: tuple[str, ...], config: dict[str, Any], code_version: str
) -> dict[str, Any]:
    """The lineage record of a version, as JSON values (config sets become sorted lists, tuples
    lists, paths strings); ``encoding`` names the JSON form of every record in the version."""
    return {
        "format": LINEAGE_FORMAT,
        "encoding": CANONICAL_FORMAT,
        "asset": asset,
        "snapshot": snapshot,
        "parents": list(parents),
        "config": plain(config),
        "code_version": code_version,
    }


def write_lineage(folder: Path, record: dict[str, Any]) -> None:
    """Write ``record`` as ``folder/lineage.json``; a step that wrote a file of that name itself is
    refused (ValueError), since its bytes would silently stand in for the version's lineage."""
    path = Path(folder) / LINEAGE
    if path.exists():
        raise ValueError(
            f"{path}: a step wrote {LINEAGE} itself; the name is reserved for the sealed lineage"
        )
    write_record(path, record)


def read_lineage(folder: Path) -> dict[str, Any] | None:
    """The lineage record of a version folder, or None when it has none (sealed by older code)."""
    path = Path(folder) / LINEAGE
    return read_record(path) if path.is_file() else None


def lineage_problems(folder: Path, manifest_raw: dict[str, Any]) -> list[str]:
    """What is wrong with the lineage of a version sealed with lineage (manifest format 2 or later):
    lineage.json missing, not in the canonical form, of an unknown format, or differing from the
    manifest's copy of a lineage field (the manifest is outside the id, so it is the one to distrust).
    """
    path = Path(folder) / LINEAGE
    if not path.is_file():
        return [
            f"{path}: missing; a version of manifest format {manifest_raw.get('format')} seals its lineage"
        ]
    data = path.read_bytes()
    try:
        record = read_record(path)
    except ValueError as error:
        return [f"{path}: not readable JSON ({error})"]
    problems = []
    if not isinstance(record, dict) or record.get("format") != LINEAGE_FORMAT:
        return [f"{path}: format is not {LINEAGE_FORMAT}"]
    if canonical_json(record) + b"\n" != data:
        problems.append(f"{path}: not in the canonical JSON form {CANONICAL_FORMAT}")
    for name in LINEAGE_FIELDS:
        if canonical_json(record.get(name)) != canonical_json(plain(manifest_raw.get(name))):
            problems.append(f"{path}: {name} differs from the manifest's copy")
    return problems


def plain(value: Any) -> Any:
    """``value`` as plain JSON values: sets and frozensets become sorted lists, tuples lists, paths
    strings (configs hold sets of languages and paths); anything else JSON cannot hold is refused."""
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    if isinstance(value, set | frozenset):
        return sorted(plain(v) for v in value)
    if isinstance(value, Path):
        return str(value)
    if value is None or isinstance(value, str | int | float | bool):
        return value
    raise TypeError(f"{type(value).__name__} is not JSON serializable in a version's lineage")
