"""The retraining state index: what the retraining schedule needs, per snapshot, in small files.

A fold over the ledger's creation entries, kept on disk so that a schedule tick reads it instead of
the ledger and Dagster's event log:

    <data>/retrain_state/_summary.json     {"format", "ledger_size", "ledger_offset", "last_leaf",
                                            "num_requests", "model", "generation"}
    <data>/retrain_state/_updates.jsonl    one line per version noted: {"snapshot", "ref",
                                            "code_version", "applied_requests" (raw_documents only)},
                                            or per clear check: {"snapshot", "checked": [ref, n]}
    <data>/retrain_state/_snapshots.json   {"log_offset", "snapshots": {name: {"assets": {asset:
                                            [ref, code_version]}, "applied_requests": n,
                                            "checked": [ref, n]}}}

``ledger_size`` entries of the ledger are folded in, read up to byte ``ledger_offset`` of its entries
file, the last of them with leaf hash ``last_leaf``. Per snapshot: the latest version of each asset
that has a snapshot (the last ``dataset_version_created`` entry naming it, or the version a step
last reused, see ``record_version``) with the code that made it, and how many erasure requests its
raw_documents version applied (``applied_requests``), and how many it was checked clear of
(``checked``: the erasure sensor found no document of that version named by any request up to the
n-th, ``record_checked``; it holds only while that version is the snapshot's latest). Globally: the number of erasure requests
recorded (``num_requests``) and the last ``trained_model`` version (``model``). A writer appends
lines to ``_updates.jsonl`` (O(1)); a read replays the lines past ``log_offset`` onto
``_snapshots.json`` and writes it back with the new offset. ``generation`` changes whenever the
updates file is started again (a rebuild), so a reader that keeps its own offset into it (the tick's
records.retrain_tick) can tell that offset still means what it did; ``read_changes`` gives such a
reader the updates past its offset only: O(changes), not O(snapshots).

Writers: a step that seals or reuses a version (``record_version``, O(the new ledger entries + one
manifest)), a trained model (``record_model``, the same). Entries appended by other writers (erasure
requests, releases, certifications) are folded in by the next writer or the next read, from the
stored offset: O(the entries since). A read checks the summary against the ledger with one 32-byte
read (the leaf hash at ``ledger_size - 1``); a missing, unreadable or inconsistent index (the ledger
shrank or was replaced, the updates file is shorter than compacted) is rebuilt from the whole ledger
and the snapshots' raw manifests, with a warning logged (O(ledger entries + snapshots), that once).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from records.assets import RAW_DOCUMENTS, TRAINED_MODEL
from records.layout import DataLayout, validate_snapshot_name
from records.ledger.format import DATASET_VERSION_CREATED, ERASURE_REQUESTED, LEAF_HASHES, MODEL_TRAINED
from records.manifest import MANIFEST, Manifest, load_manifest
from records.merkle import HASH_SIZE
from records.request_index import recorded_request_set

RETRAIN_STATE = "retrain_state"  # under the data folder
RETRAIN_SUMMARY = "_summary.json"  # snapshot names start with a letter or digit: no clash
RETRAIN_LOCK = "_lock"
RETRAIN_SNAPSHOTS = "_snapshots.json"
RETRAIN_UPDATES = "_updates.jsonl"
STATE_FORMAT = 1
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SnapshotState:
    """One snapshot's latest version per asset (``asset -> (ref, code_version)``) and the number of
    erasure requests its latest raw_documents version applied or was checked clear of."""

    assets: dict[str, tuple[str, str]]
    applied_requests: int  # applied by its raw version, or checked clear of (the larger)


@dataclass(frozen=True)
class RetrainState:
    """What a tick reads: the snapshots' states, the erasure requests recorded, the last trained
    model's ref (None when none was), and why the index was rebuilt on this read (None if it was not)."""

    snapshots: dict[str, SnapshotState]
    num_requests: int
    model: str | None
    rebuilt: str | None = None


def applied_requests(manifest: Manifest) -> int:
    """How many recorded erasure requests a raw_documents version applied: the count its sealed
    request set states (records.request_index: every request recorded before step start), or, for
    versions sealed before the request index, the length of their list of request ids. The one place
    that reads the request watermark of a version. O(1)."""
    recorded = recorded_request_set(manifest.config)
    if recorded is None:
        return 0
    if isinstance(recorded, list):
        return len(recorded)
    return int(recorded.get("requests", 0))


def requests_since(state: RetrainState, snapshot: SnapshotState) -> int:
    """Erasure requests recorded after the snapshot's raw_documents version was made."""
    return max(0, state.num_requests - snapshot.applied_requests)


def read_state(layout: DataLayout, names: Iterable[str]) -> RetrainState:
    """The state of the snapshots ``names`` (those without one are left out), brought up to date with
    the ledger first. Cost: the ledger summary, one 32-byte ledger read, the compacted snapshot
    states (one file, O(snapshots) bytes) and the updates appended since they were compacted (then
    compacted again); plus O(ledger entries appended since the last update) when some writer did
    not update the index, and O(ledger + snapshots) once when it must be rebuilt."""
    summary, held, _, rebuilt = read_all(layout)
    wanted = set(names)
    snapshots = {
        name: snapshot_state(state) for name, state in held.items() if name in wanted and state["assets"]
    }
    return RetrainState(snapshots, summary["num_requests"], summary["model"], rebuilt)


def snapshot_state(state: dict) -> SnapshotState:
    """One snapshot's record of ``_snapshots.json`` (or of ``read_all``) as a ``SnapshotState``."""
    return SnapshotState(
        {a: (ref, code) for a, (ref, code) in state["assets"].items()}, covered_requests(state)
    )


def read_all(layout: DataLayout) -> tuple[dict, dict[str, dict], int, str | None]:
    """Every snapshot's record, caught up with the ledger: (the summary, snapshot -> record as in
    ``_snapshots.json``, the updates file's offset they include, why the index was rebuilt or None).
    Cost: as ``read_state``, O(snapshots)."""
    with _locked(layout):
        summary, rebuilt = _current(layout)
        held = _compacted(layout)
        if held is None:  # the compacted states do not fit the updates file: start again
            summary, rebuilt = _current(layout, problem="its snapshot states do not read back")
            held = _compacted(layout)
    return summary, held[0], held[1], rebuilt


@dataclass(frozen=True)
class Changes:
    """What changed since a reader's offset: the caught-up summary, the updates past the offset
    (each a line of ``_updates.jsonl``, parsed; None when the offset means nothing any more: another
    generation, past the end, or a torn line), the offset after them, and why the index was rebuilt
    on this read (None if it was not)."""

    summary: dict
    updates: list[dict] | None
    end: int
    rebuilt: str | None = None


def read_changes(layout: DataLayout, generation: str | None, offset: int) -> Changes:
    """The index caught up with the ledger, and the updates appended since byte ``offset`` of the
    updates file of ``generation``. Cost: the summary, one 32-byte ledger read and the updates since
    (O(changes)), plus what catching up costs (see ``read_state``); nothing per snapshot."""
    with _locked(layout):
        summary, rebuilt = _current(layout)
        path = _folder(layout) / RETRAIN_UPDATES
        size = path.stat().st_size if path.exists() else 0
        if rebuilt or generation != summary.get("generation") or offset > size:
            return Changes(summary, None, 0, rebuilt)
        with open(path, "rb") as f:
            f.seek(offset)
            tail = f.read(size - offset)
    try:
        updates = [json.loads(line) for line in tail.splitlines()]
    except ValueError:  # a torn line: a full read repairs the index
        return Changes(summary, None, 0)
    return Changes(summary, updates, offset + len(tail))


def record_version(layout: DataLayout, manifest: Manifest) -> None:
    """Note that a step produced ``manifest`` (sealed now and pinned, or reused): fold in the ledger's
    new entries, then make it its snapshot's latest version of its asset. Nothing for a version
    without a snapshot. Cost: O(new ledger entries) and one snapshot file written."""
    with _locked(layout):
        _current(layout)
        if manifest.snapshot is not None:
            _set_versions(layout, [manifest])


def record_checked(layout: DataLayout, checked: dict[str, tuple[str, int]]) -> None:
    """Note, per snapshot, that its raw_documents version ``ref`` keeps no document named by the
    first ``n`` recorded erasure requests beyond those it applied (``checked``: snapshot -> (ref,
    n)), so the tick need not re-curate it for them. A check of a version that is no longer the
    snapshot's latest, or of fewer requests than it applied, counts for nothing. Operational state,
    not evidence: the proof that a version holds no match is the audit's (docs/compliance.md).
    Cost: one line appended per snapshot."""
    lines = [
        json.dumps({"snapshot": name, "checked": [ref, n]}, sort_keys=True) + "\n"
        for name, (ref, n) in checked.items()
    ]
    if not lines:
        return
    with _locked(layout), open(_folder(layout) / RETRAIN_UPDATES, "a", encoding="utf-8") as f:
        f.write("".join(lines))


def covered_requests(state: dict) -> int:
    """The requests a snapshot's latest raw version applied or was checked clear of (``state``: its
    record in ``_snapshots.json``)."""
    raw = state["assets"].get(RAW_DOCUMENTS)
    checked = state.get("checked")
    if raw and checked and checked[0] == raw[0]:
        return max(state["applied_requests"], checked[1])
    return state["applied_requests"]


def record_model(layout: DataLayout, manifest: Manifest) -> None:
    """Note that ``manifest`` (a trained model, sealed now or reused) is the last model trained.
    Cost: O(new ledger entries)."""
    with _locked(layout):
        summary, _ = _current(layout)
        if manifest.asset == TRAINED_MODEL:
            _write(_folder(layout) / RETRAIN_SUMMARY, {**summary, "model": manifest.ref})


def _folder(layout: DataLayout) -> Path:
    return layout.root / RETRAIN_STATE


@contextmanager
def _locked(layout: DataLayout) -> Iterator[None]:
    """Writers and readers in any process, one at a time (a read may catch up, hence write)."""
    folder = _folder(layout)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        lock = open(folder / RETRAIN_LOCK, "a")  # noqa: SIM115 (closed below)
    except OSError:  # a read-only data folder: no writer can be there either
        yield
        return
    try:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield
    finally:
        lock.close()


def _current(layout: DataLayout, problem: str | None = None) -> tuple[dict, str | None]:
    """The summary, caught up with the ledger (rebuilt when it cannot be, or when ``problem`` says
    why it must be), and why it was rebuilt."""
    from records.catalog.fill import read_entries

    size = _ledger_size(layout)
    summary = None
    if problem is None:
        summary, problem = _checked_summary(layout, size)
    if summary is None and problem is None:  # a new data folder: no ledger, no index yet
        summary = _empty()
    if problem is None and summary["ledger_size"] < size:
        try:
            entries, end = read_entries(layout, summary["ledger_size"], size, summary["ledger_offset"])
        except ValueError as error:
            problem = (
                f"the ledger past entry {summary['ledger_size']} does not read from its offset ({error})"
            )
        else:
            summary = _fold(layout, summary, entries, end)
    if problem is None:
        return summary, None
    # A missing index is how every data folder starts (and one of older code): built, not repaired.
    level = logging.INFO if problem == "missing" else logging.WARNING
    log.log(level, "%s: %s; rebuilding it from the ledger and the manifests", _folder(layout), problem)
    entries, end = read_entries(layout, 0, size, 0) if size else ([], 0)
    return _fold(layout, _empty(), entries, end, clear=True), problem


def _empty() -> dict:
    return {
        "format": STATE_FORMAT,
        "ledger_size": 0,
        "ledger_offset": 0,
        "last_leaf": None,
        "num_requests": 0,
        "model": None,
        "generation": None,
    }


def _checked_summary(layout: DataLayout, size: int) -> tuple[dict | None, str | None]:
    """The stored summary and None, or None and why it cannot be used."""
    path = _folder(layout) / RETRAIN_SUMMARY
    try:
        summary = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None, "missing" if size else None
    except ValueError as error:
        return None, f"{path.name} is not JSON ({error})"
    if not isinstance(summary, dict) or summary.get("format") != STATE_FORMAT:
        return None, f"{path.name} is of another format"
    held = summary["ledger_size"]
    if held > size:
        return None, f"it holds {held} ledger entries, the ledger {size}"
    if held and _leaf(layout, held - 1) != summary["last_leaf"]:
        return None, f"ledger entry {held - 1} is not the one it folded in"
    return summary, None


def _ledger_size(layout: DataLayout) -> int:
    path = layout.ledger / LEAF_HASHES
    return path.stat().st_size // HASH_SIZE if path.exists() else 0


def _leaf(layout: DataLayout, index: int) -> str:
    with open(layout.ledger / LEAF_HASHES, "rb") as f:
        f.seek(index * HASH_SIZE)
        return f.read(HASH_SIZE).hex()


def _fold(layout: DataLayout, summary: dict, entries, end: int, *, clear: bool = False) -> dict:
    """Fold ``entries`` (the ledger's next ones) into the index and write it; ``clear``: the snapshot
    files are rebuilt whole. Cost: O(entries) plus one manifest per version folded in."""
    num_requests, model, latest = summary["num_requests"], summary["model"], {}
    for entry in entries:
        payload = entry.payload
        if entry.event_type == ERASURE_REQUESTED:
            num_requests += 1
        elif entry.event_type == MODEL_TRAINED:
            ref = payload.get("model_version", "")
            if ref.startswith(TRAINED_MODEL + "/"):
                model = ref
        elif (
            entry.event_type == DATASET_VERSION_CREATED
            and payload.get("snapshot")
            and payload.get("dataset_version")
        ):
            latest[(payload["snapshot"], payload["dataset_version"].partition("/")[0])] = payload
    folder = _folder(layout)
    if clear:  # the summary goes first: a rebuild cut short is done again
        (folder / RETRAIN_SUMMARY).unlink(missing_ok=True)
        (folder / RETRAIN_UPDATES).write_bytes(b"")
        _write(folder / RETRAIN_SNAPSHOTS, {"log_offset": 0, "snapshots": {}})
    _set_versions(layout, latest.values())
    last = entries[-1].leaf_hash if entries else summary["last_leaf"]
    summary = {
        "format": STATE_FORMAT,
        "ledger_size": summary["ledger_size"] + len(entries),
        "ledger_offset": end,
        "last_leaf": last,
        "num_requests": num_requests,
        "model": model,
        # A new updates file, a new generation: offsets into the old one mean nothing in it.
        "generation": os.urandom(8).hex() if clear else summary.get("generation"),
    }
    _write(folder / RETRAIN_SUMMARY, summary)
    return summary


def _set_versions(layout: DataLayout, versions: Iterable[Manifest | dict]) -> None:
    """Make each version (a manifest, or a creation entry's payload) its snapshot's latest of its
    asset: one line appended to the updates file per version (O(1); the tick compacts them)."""
    lines = []
    for version in versions:
        if isinstance(version, Manifest):
            snapshot, ref, code = version.snapshot, version.ref, version.code_version
        else:
            snapshot, ref, code = (
                version["snapshot"],
                version["dataset_version"],
                version.get("code_version", ""),
            )
        try:
            validate_snapshot_name(snapshot)
        except ValueError:
            continue  # no partition can have that name, so no tick asks for it
        update = {"snapshot": snapshot, "ref": ref, "code_version": code}
        if ref.partition("/")[0] == RAW_DOCUMENTS:
            folder = layout.datasets / ref  # a full ref: no listing of the asset's versions
            update["applied_requests"] = (
                applied_requests(load_manifest(folder)) if (folder / MANIFEST).exists() else 0
            )
        lines.append(json.dumps(update, sort_keys=True) + "\n")
    if lines:
        with open(_folder(layout) / RETRAIN_UPDATES, "a", encoding="utf-8") as f:
            f.write("".join(lines))


def _compacted(layout: DataLayout) -> tuple[dict[str, dict], int] | None:
    """Every snapshot's state and the updates file's offset it includes: the compacted file plus the
    updates appended since, which are then compacted into it (so the next read starts from one
    file); None when they cannot be read (the
    updates file is shorter than the compacted file says, or a line is torn). Writers append under
    the same lock, so a torn line is a crash's. Cost: O(snapshots + updates since)."""
    folder = _folder(layout)
    updates = folder / RETRAIN_UPDATES
    try:
        try:
            compacted = json.loads((folder / RETRAIN_SNAPSHOTS).read_text(encoding="utf-8"))
        except FileNotFoundError:
            compacted = {"log_offset": 0, "snapshots": {}}
        held, offset = compacted["snapshots"], compacted["log_offset"]
        if (updates.stat().st_size if updates.exists() else 0) < offset:
            return None
        tail = b""
        if updates.exists():
            with open(updates, "rb") as f:
                f.seek(offset)
                tail = f.read()
        for line in tail.splitlines():
            update = json.loads(line)
            apply_update(held.setdefault(update["snapshot"], new_record()), update)
    except (ValueError, KeyError, TypeError, AttributeError):
        return None
    if tail:
        with contextlib.suppress(OSError):  # a read-only data folder: the next read replays them again
            _write(folder / RETRAIN_SNAPSHOTS, {"log_offset": offset + len(tail), "snapshots": held})
    return held, offset + len(tail)


def new_record() -> dict:
    """A snapshot's record before any update: no version, no request applied."""
    return {"assets": {}, "applied_requests": 0}


def apply_update(state: dict, update: dict) -> None:
    """Replay one line of the updates file onto its snapshot's record (in place). O(1)."""
    if "checked" in update:
        state["checked"] = update["checked"]
        return
    state["assets"][update["ref"].partition("/")[0]] = [update["ref"], update["code_version"]]
    if "applied_requests" in update:
        state["applied_requests"] = update["applied_requests"]


def _write(path: Path, value: dict) -> None:
    """Replace ``path`` atomically (a reader sees the old or the new file, never half of one)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(value, sort_keys=True) + "\n", encoding="utf-8")
    os.replace(tmp, path)
