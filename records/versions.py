"""The dataset versions of a data folder as a graph, and the ledger entries that pinned them.

Reads only manifests and ``ledger/entries.jsonl``; tolerant of a damaged ledger line (the
verifier reports it), so every question can still be answered from what is intact.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from records.documents import INDEX
from records.layout import DataLayout
from records.ledger.format import DATASET_VERSION_CREATED, ENTRIES, MODEL_TRAINED
from records.manifest import MANIFEST, Manifest, load_manifest

# The creation events' payload key naming the version.
CREATION_EVENTS = {DATASET_VERSION_CREATED: "dataset_version", MODEL_TRAINED: "model_version"}


@dataclass(frozen=True)
class LedgerRecord:
    """The entry that pinned a version (``dataset_version_created`` or ``model_trained``) as stored:
    its index, exact line and payload."""

    index: int
    line: str
    payload: dict


def version_folders(layout: DataLayout) -> list[Path]:
    """Every sealed version folder (one holding a manifest), sorted by asset then id."""
    if not layout.datasets.exists():
        return []
    return sorted(p.parent for p in layout.datasets.glob(f"*/*/{MANIFEST}"))


def load_versions(layout: DataLayout, problems: list[str] | None = None) -> dict[str, Manifest]:
    """``asset/version_id`` -> manifest, for every version in the data folder.

    A manifest that cannot be read raises ValueError, or, when ``problems`` is given, is left out
    and named there.
    """
    versions = {}
    for folder in version_folders(layout):
        try:
            manifest = load_manifest(folder)
        except (ValueError, KeyError, TypeError) as e:
            if problems is None:
                raise ValueError(f"{folder / MANIFEST}: not a readable manifest ({e})") from None
            problems.append(f"{folder / MANIFEST}: not a readable manifest ({e})")
            continue
        versions[f"{folder.parent.name}/{folder.name}"] = manifest
    return versions


def resolve(versions: dict[str, Manifest], ref: str) -> str:
    """The full ref of ``asset/version_id`` or ``asset/<unique prefix>``; ValueError otherwise.
    Cost: O(1) for a full ref, O(versions) for a prefix."""
    if ref in versions:  # a full ref (ids have one length, so no other starts with it): O(1)
        return ref
    asset, _, prefix = ref.partition("/")
    if not asset or not prefix:
        raise ValueError(
            f"{ref!r}: name a dataset version as 'asset/version_id' (a unique id prefix is enough)"
        )
    matches = [r for r in versions if r.startswith(f"{asset}/{prefix}")]
    if len(matches) != 1:
        known = ", ".join(sorted({r.split("/")[0] for r in versions})) or "none"
        found = "no dataset version matches" if not matches else f"{len(matches)} dataset versions match"
        raise ValueError(f"{ref!r}: {found} (assets: {known}; see `apertus audit sql` on dataset_versions)")
    return matches[0]


def ancestors(versions: dict[str, Manifest], ref: str) -> list[str]:
    """``ref`` and every version it derives from, each once, the named one first (parents may be missing)."""
    order, stack = [], [ref]
    while stack:
        current = stack.pop()
        if current in order:
            continue
        order.append(current)
        if current in versions:
            stack.extend(reversed(versions[current].parents))
    return order


def depth(versions: dict[str, Manifest], ref: str) -> int:
    """Steps from a root (a version without parents) to ``ref``, along the longest path."""
    parents = [p for p in versions[ref].parents if p in versions]
    return 1 + max(depth(versions, p) for p in parents) if parents else 0


def holds_documents(manifest: Manifest) -> bool:
    """A version of documents: it has a document index and its step kept or dropped documents (the
    curated versions; not a tokenizer, a classifier, a curriculum, token shards, fine-tuning
    examples or a model, whose index.parquet, when a step writes one, is empty), so membership can
    be asked of it. Reads only the manifest (its ``stats``, as pipelines.tables counts them)."""
    stats = manifest.stats or {}
    documents = sum(int((stats.get(side) or {}).get("documents") or 0) for side in ("kept", "excluded"))
    return documents > 0 and any(f.path == INDEX for f in manifest.files)


def leaves(versions: dict[str, Manifest]) -> list[str]:
    """Versions of documents no other version of documents derives from: the ends of the curation
    chains (a version a model, a curriculum or a tokenizer was made from is still an end)."""
    data = {r: m for r, m in versions.items() if holds_documents(m)}
    used = {p for m in data.values() for p in m.parents}
    return sorted(r for r in data if r not in used)


def ledger_records(layout: DataLayout) -> dict[str, LedgerRecord]:
    """``asset/version_id`` -> the entry that pinned it; unparseable lines are skipped."""
    path = layout.ledger / ENTRIES
    records: dict[str, LedgerRecord] = {}
    if not path.exists():
        return records
    with open(path, "rb") as f:
        for raw in f:
            line = raw.rstrip(b"\n")
            try:
                entry = json.loads(line)
                key = CREATION_EVENTS.get(entry["event_type"])
                if key is None:
                    continue
                records[entry["payload"][key]] = LedgerRecord(entry["index"], line.decode(), entry["payload"])
            except (ValueError, KeyError, TypeError):
                continue
    return records
