"""Which earlier documents a snapshot is deduplicated against (``DedupConfig.scope``), and keeping
the cross-snapshot index (records.dedup_index) up to date.

Registration order: a snapshot's position is the ledger index of the entry that pinned its first
``raw_documents`` version (the smallest such index). The ledger is append-only and each entry read
is checked against its leaf hash, so the order cannot be changed without detection. Snapshots are deduplicated against the index one at a time in this
order: the index a snapshot S is checked against holds the current ``deduplicated`` version of
every snapshot registered before S, and nothing else. If one of those has none, the step fails
naming it: curate it first (or choose ``scope="snapshot"``). Which version is "current" is the one
the last dedup step of that snapshot sealed (or reused); re-curating an earlier snapshot changes
it, and later snapshots keep the versions they were checked against until they are curated again
(materialize their ``deduplicated`` partitions, or ``apertus curate --snapshot NAME``: the index
version in their lineage changes, so they seal new versions).

Cost per step: the ledger entries appended since the last step (the record keeps its position in
the ledger), one index record read, and at most log2(snapshots) + 1 segments opened
(records.dedup_index.open_prefix).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

from pipelines.dedup.config import DedupConfig
from records.assets import DEDUPLICATED, RAW_DOCUMENTS
from records.canonical import canonical_json
from records.dedup_index import (
    index_folder,
    index_version,
    locked,
    open_prefix,
    read_index_record,
    segment_path,
    write_index_record,
)
from records.hashing import sha256_bytes
from records.layout import DataLayout
from records.ledger import DATASET_VERSION_CREATED
from records.ledger.format import LEAF_HASHES
from records.merkle import HASH_SIZE

SIGNATURE_FIELDS = ("n_grams", "char_n_grams", "num_bands", "rows_per_band", "seed", "no_space_languages")


def fingerprint(config: DedupConfig) -> str:
    """The settings a signature or band key depends on: documents signed differently never meet."""
    settings = {k: sorted(v) if isinstance(v, frozenset) else v for k, v in asdict(config).items()
                if k in SIGNATURE_FIELDS}  # fmt: skip
    return sha256_bytes(canonical_json(settings))[:16]


@dataclass(frozen=True)
class IndexView:
    """What one snapshot is checked against: the earlier (snapshot, version ref) pairs in
    registration order, and the index folder they live in."""

    folder: Path
    snapshot: str
    registered: int  # the ledger index of its first raw_documents pin
    earlier: tuple[tuple[str, str], ...]

    def lineage(self) -> dict:
        """What enters the version's sealed config: the index version it was checked against."""
        return {"scope": "global", "index_version": index_version(list(self.earlier)),
                "earlier_versions": len(self.earlier)}  # fmt: skip

    def segments(self) -> list[str]:
        """The segment folders to probe (merged blocks built where missing), oldest first."""
        ids = [ref.split("/", 1)[1] for _, ref in self.earlier]
        return [str(segment.folder) for segment in open_prefix(self.folder, ids)]


def _registrations(layout: DataLayout, record: dict) -> bool:
    """Add to ``record`` the snapshots whose ``raw_documents`` versions the ledger pinned since it was
    last updated (``record["ledger"]``: entries read and the byte offset past them); return whether
    it changed. A snapshot's registration is the smallest ledger index among its raw versions' pins.
    Cost: O(ledger entries appended since the last step), each checked against its leaf hash; the
    whole ledger once, for a new index or one whose position no longer reads back (a replaced
    ledger)."""
    from records.catalog.fill import read_entries

    path = layout.ledger / LEAF_HASHES
    size = path.stat().st_size // HASH_SIZE if path.exists() else 0
    held = record.get("ledger") or {"size": 0, "offset": 0}
    if size == held["size"]:
        return False
    try:
        if size < held["size"]:
            raise ValueError("the ledger is shorter than the index record says")
        entries, offset = read_entries(layout, held["size"], size, held["offset"])
    except ValueError:  # not the ledger this record followed: read it all again
        record["snapshots"] = {n: {**e, "registered": None} for n, e in record["snapshots"].items()}
        entries, offset = read_entries(layout, 0, size, 0)
    for entry in entries:
        ref, snapshot = entry.payload.get("dataset_version", ""), entry.payload.get("snapshot")
        if (
            entry.event_type != DATASET_VERSION_CREATED
            or not snapshot
            or not ref.startswith(f"{RAW_DOCUMENTS}/")
        ):
            continue
        state = record["snapshots"].setdefault(snapshot, {"registered": entry.index, "current": None})
        if state["registered"] is None or entry.index < state["registered"]:
            state["registered"] = entry.index
    record["snapshots"] = {n: e for n, e in record["snapshots"].items() if e["registered"] is not None}
    record["ledger"] = {"size": size, "offset": offset}
    record.pop("seen_raw", None)
    return True


def prepare(layout: DataLayout, snapshot: str, config: DedupConfig) -> IndexView | None:
    """The view ``snapshot`` is deduplicated against (None in ``snapshot`` scope).

    ValueError naming every snapshot registered earlier that has no deduplicated version yet.
    """
    if config.scope == "snapshot":
        return None
    folder = index_folder(layout, fingerprint(config))
    with locked(folder):
        record = read_index_record(folder)
        if _registrations(layout, record):
            write_index_record(folder, record)
    entries = record["snapshots"]
    if snapshot not in entries:
        raise ValueError(f"snapshot {snapshot!r} has no pinned {RAW_DOCUMENTS} version: ingest it first")
    mine = entries[snapshot]["registered"]
    before = sorted((e["registered"], name) for name, e in entries.items() if e["registered"] < mine)
    missing = [name for _, name in before if entries[name]["current"] is None]
    if missing:
        raise ValueError(
            f"snapshot {snapshot!r}: dedup scope 'global' checks it against every snapshot registered "
            f"before it, and {', '.join(repr(m) for m in missing)} has no {DEDUPLICATED} version yet: curate "
            f"those first, in registration order (`apertus curate --snapshot {missing[0]}`), or set the "
            "dedup scope to 'snapshot'"
        )
    return IndexView(folder, snapshot, mine, tuple((name, entries[name]["current"]) for _, name in before))


def register(view: IndexView, ref: str, work_dir: Path, config: DedupConfig) -> None:
    """Make ``ref`` (a sealed deduplicated version of ``view.snapshot``) the snapshot's current
    version in the index, writing its segment from the run's work files unless it exists (a rerun
    that reused the version)."""
    from pipelines.dedup.cross import write_kept_segment

    dest = segment_path(view.folder, ref.split("/", 1)[1])
    if not dest.exists():  # an empty work dir (a version of no documents) gives an empty segment
        write_kept_segment(work_dir, dest, version=ref, snapshot=view.snapshot, config=config)
    with locked(view.folder):
        record = read_index_record(view.folder)
        record["snapshots"].setdefault(view.snapshot, {"registered": view.registered, "current": None})
        record["snapshots"][view.snapshot]["current"] = ref
        write_index_record(view.folder, record)
