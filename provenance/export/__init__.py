"""Exports of the records in standard formats: OpenLineage, W3C PROV-JSON, CycloneDX 1.6, Croissant 1.0.

Each works from the manifests, the ledger and, for a model, its provenance record, after checking
that every version in scope is pinned by an intact ledger entry (provenance.export.records). None
imports torch or Dagster. docs/audit.md ("Exports") says what each format holds and how to validate it.
"""

from __future__ import annotations

import json
from importlib import metadata
from pathlib import Path

from provenance.audit.lineage import lineage
from provenance.audit.prov import to_prov
from provenance.export.croissant import to_croissant
from provenance.export.cyclonedx import to_cyclonedx
from provenance.export.openlineage import to_openlineage
from provenance.export.records import load_scope
from records.layout import DataLayout

FORMATS = ("openlineage", "prov", "cyclonedx", "croissant")


def tool_version() -> str:
    """This project's installed version (the producer of every export)."""
    try:
        return metadata.version("apertus-pipeline")
    except metadata.PackageNotFoundError:  # a checkout run without `pip install -e .`
        return "0+unknown"


def producer() -> str:
    """The URI that names this project as the producer of OpenLineage events."""
    return f"urn:apertus:producer:apertus-pipeline:{tool_version()}"


def export(
    layout: DataLayout, fmt: str, ref: str | None = None, *, lock: Path | None = None
) -> dict | list[dict]:
    """The export of ``ref`` (``asset/version_id`` or a unique prefix; default: the newest model version).

    ``openlineage`` gives a list of RunEvents (ancestors first); the others one document. ``lock``:
    the requirements.lock a model was trained with (CycloneDX; default the checkout's). ValueError
    names the file and record when the ref is unknown or a record does not match its ledger entry.
    """
    if fmt not in FORMATS:
        raise ValueError(f"{fmt!r}: unknown export format; one of {', '.join(FORMATS)}")
    scope = load_scope(layout, ref)
    if fmt == "openlineage":
        return to_openlineage(scope, producer())
    if fmt == "prov":
        return to_prov(lineage(layout, scope.target))
    if fmt == "cyclonedx":
        return to_cyclonedx(scope, tool_version(), lock)
    return to_croissant(scope)


def serialize(fmt: str, document: dict | list[dict]) -> str:
    """The text form: JSON Lines for OpenLineage (one event a line, as its file transport writes), else JSON."""
    if fmt == "openlineage":
        return "".join(json.dumps(event, sort_keys=True, ensure_ascii=False) + "\n" for event in document)
    return json.dumps(document, indent=2, ensure_ascii=False) + "\n"
