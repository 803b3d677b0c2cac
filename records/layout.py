"""Where everything lives in the data folder (``APERTUS_DATA``; default ``data/`` in the checkout).

inbox/<snapshot>/                 raw source snapshots, one folder each (a Dagster partition)
datasets/<asset>/<version id>/    immutable dataset versions (records.manifest)
ledger/                           the signed, append-only ledger (records.ledger)
robots/<host>/<YYYY-MM-DD>.txt    dated robots.txt files, applied as an AI-crawler opt-out (pipelines.robots)
catalog.duckdb                    views over all of the above, for SQL and the audit CLI
work/                             staging and intermediate files; safe to delete between runs
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

DATA_ENV = "APERTUS_DATA"
CATALOG = "catalog.duckdb"
CATALOG_LOCK = ".catalog.lock"  # serializes the catalog's writers and readers (records.catalog)
REPO_ROOT = Path(__file__).resolve().parents[1]
# A snapshot name is a folder name under inbox/ and a Dagster partition key: one path component that
# cannot climb (".", ".."), hide ("."), read as an option ("-") or hold separators or control characters.
SNAPSHOT_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")


def checkout_path(path: str | Path) -> Path:
    """``path`` as a file of this checkout when it is relative, unchanged when absolute.

    Configs that enter a version's lineage name the files they ship with (the vendored language id
    model, the quality reference set) relative to the checkout, so a version's id does not depend on
    where the code is checked out; the files' own hashes are recorded where they are read.
    """
    path = Path(path)
    return path if path.is_absolute() else REPO_ROOT / path


def checkout_relative(value):
    """``value`` (a config: nested dicts, lists, strings, paths) with every absolute path inside this
    checkout written relative to it, the inverse of ``checkout_path``: the config enters a version's
    id through its lineage, and the same code in another folder must give the same id. The files
    those paths name are covered by the code version."""
    if isinstance(value, dict):
        return {k: checkout_relative(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [checkout_relative(v) for v in value]
    if isinstance(value, str | Path) and Path(value).is_absolute() and Path(value).is_relative_to(REPO_ROOT):
        return Path(value).relative_to(REPO_ROOT).as_posix()
    return value


def validate_snapshot_name(name: str) -> str:
    """``name`` unchanged when it is a valid snapshot name; ValueError naming it and the rule otherwise.

    The one check every entry point uses (``apertus ingest`` and ``curate``, the inbox sensor, the remote
    inbox, ``DataLayout.snapshot_dir``): a letter or digit, then up to 127 letters, digits, ``.``, ``_``
    or ``-``. So ``..``, ``.``, the empty name, ``a/b``, ``.hidden``, ``-x`` and control characters are
    refused, and a name is always one folder directly under ``inbox/``.
    """
    if not isinstance(name, str) or not SNAPSHOT_NAME.fullmatch(name):
        raise ValueError(
            f"snapshot name {name!r} is not valid: use a letter or digit, then letters, digits, '.', '_' "
            "or '-' (at most 128 characters; no '/', no leading '.' or '-')"
        )
    return name


@dataclass(frozen=True)
class DataLayout:
    root: Path

    def __post_init__(self) -> None:
        object.__setattr__(self, "root", Path(self.root).resolve())

    @classmethod
    def from_env(cls) -> DataLayout:
        """The data folder named by ``APERTUS_DATA``, or ``<checkout>/data``."""
        return cls(Path(os.environ.get(DATA_ENV) or REPO_ROOT / "data").resolve())

    @property
    def inbox(self) -> Path:
        return self.root / "inbox"

    @property
    def datasets(self) -> Path:
        return self.root / "datasets"

    @property
    def ledger(self) -> Path:
        return self.root / "ledger"

    @property
    def work(self) -> Path:
        return self.root / "work"

    @property
    def robots(self) -> Path:
        return self.root / "robots"

    @property
    def lookup(self) -> Path:
        return self.root / "lookup"

    @property
    def catalog(self) -> Path:
        return self.root / CATALOG

    def snapshot_dir(self, snapshot: str) -> Path:
        """``inbox/<snapshot>``; ValueError for a name ``validate_snapshot_name`` refuses."""
        return self.inbox / validate_snapshot_name(snapshot)

    def snapshots(self) -> list[str]:
        """Names of the snapshot folders in the inbox, sorted."""
        if not self.inbox.exists():
            return []
        return sorted(p.name for p in self.inbox.iterdir() if p.is_dir() and not p.name.startswith("."))


STAGING = "staging"  # under work/
STAGING_OWNER_PREFIX = "owner-"  # work/staging/owner-<host>-<pid>-<start>/: one folder per process
RESUMABLE = "resumable"  # work/staging/resumable/<snapshot>/<asset>-<inputs hash>/: kept after a failure


@dataclass(frozen=True)
class ProcessId:
    """A process, told apart from a later one reusing its pid by its start time (Linux clock ticks
    since boot; 0 where ``/proc`` does not say)."""

    host: str
    pid: int
    start: int

    @classmethod
    def current(cls) -> ProcessId:
        return cls(_host(), os.getpid(), _start_ticks(os.getpid()))

    @classmethod
    def parse(cls, text: str) -> ProcessId | None:
        """The inverse of ``str()``; None for text of another form."""
        host, _, rest = text.rpartition("-")
        host, _, pid = host.rpartition("-")
        if not (host and pid.isdigit() and rest.isdigit()):
            return None
        return cls(host, int(pid), int(rest))

    def __str__(self) -> str:
        return f"{self.host}-{self.pid}-{self.start}"

    def alive(self) -> bool | None:
        """Whether the process still runs; None when it ran on another host (nothing here can tell)."""
        if self.host != _host():
            return None
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            pass  # it exists, under another user
        stat = _proc_stat(self.pid)
        if stat is None:
            return True
        state, start = stat
        return state not in ("Z", "X") and (self.start == 0 or start == self.start)


def _host() -> str:
    # Folder-name safe; '-' separates the fields of ProcessId's text form, so it is replaced too.
    import socket  # here, not at the top: see _remove_tree

    return re.sub(r"[^A-Za-z0-9.]", "_", socket.gethostname())[:64] or "localhost"


def _remove_tree(path: Path) -> None:
    # shutil (with bz2, lzma), socket and uuid (with platform) are imported where used, not at the
    # top: every cold `apertus audit` process imports this module, and they cost it ~10 ms.
    import shutil

    shutil.rmtree(path, ignore_errors=True)


def _proc_stat(pid: int) -> tuple[str, int] | None:
    """(state, start time in clock ticks) from ``/proc/<pid>/stat``, or None without ``/proc``."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text[text.rindex(")") + 2 :].split()  # after "pid (comm) ": comm may hold spaces
    return fields[0], int(fields[19])


def _start_ticks(pid: int) -> int:
    stat = _proc_stat(pid)
    return stat[1] if stat else 0


def new_staging(layout: DataLayout, asset: str) -> Path:
    """A fresh, empty folder for a version of ``asset`` about to be sealed:
    ``work/staging/owner-<this process>/<asset>-<random>``.

    Steps of several processes (other snapshots, other runs) stage side by side; the owner folder
    says whose each one is, so that ``remove_stale_staging`` (called here first) deletes only what
    was left by processes of this host that are gone (a kill, where no ``finally`` ran).
    Cost: one listing of ``work/staging`` and a ``/proc`` read per owner folder.
    """
    import uuid  # here, not at the top: see _remove_tree

    root = layout.work / STAGING
    remove_stale_staging(root)
    path = root / f"{STAGING_OWNER_PREFIX}{ProcessId.current()}" / f"{asset}-{uuid.uuid4().hex[:12]}"
    path.mkdir(parents=True)
    return path


def remove_stale_staging(root: Path) -> list[Path]:
    """Delete the owner folders under ``root`` whose process ran on this host and is gone; return them.

    Folders of live processes, of other hosts, and entries not made by ``new_staging`` are left alone.
    """
    removed = []
    if not root.is_dir():
        return removed
    for folder in root.iterdir():
        if not folder.name.startswith(STAGING_OWNER_PREFIX):
            continue
        owner = ProcessId.parse(folder.name[len(STAGING_OWNER_PREFIX) :])
        if owner is not None and owner.alive() is False:
            _remove_tree(folder)
            removed.append(folder)
    return removed


@contextmanager
def discard_on_failure(staging: Path) -> Iterator[Path]:
    """Remove ``staging`` if the block raises (or is interrupted); on success it is left to be sealed."""
    try:
        yield staging
    except BaseException:
        _remove_tree(staging)
        raise


@dataclass(frozen=True)
class Attempt:
    """A step's staging folder and task log folder, and whether they may carry a failed attempt's
    completed tasks: ``resume`` (the folders are keyed by the step's inputs, so a run may skip the
    tasks with a completion marker) and ``resumed`` (a failed attempt's work was there)."""

    staging: Path
    logs: Path
    resume: bool
    resumed: bool
    sealing_marker: Path | None = None

    def sealing(self) -> None:
        """Mark that the tasks are done and sealing begins: from here a failure (or a kill) leaves
        nothing to resume, since sealing writes into the folder (its lineage, its tables)."""
        if self.sealing_marker is not None:
            self.sealing_marker.touch()


def inputs_key(inputs: dict) -> str:
    """The hash that names a resumable staging folder: of everything that decides a step's output
    (input version, config, code version, task count), as canonical JSON."""
    text = json.dumps(inputs, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:20]


@contextmanager
def resumable_staging(layout: DataLayout, asset: str, snapshot: str, inputs: dict) -> Iterator[Attempt]:
    """A staging folder (and task log folder) for a version of ``asset`` that a failed attempt with
    the same ``inputs`` left behind, or a fresh one: ``work/staging/resumable/<snapshot>/<asset>-<key>``
    with its logs in ``work/logs/<asset>-<key>``, ``key = inputs_key(inputs)``.

    The name is the inputs' hash, so a retry finds the folder only when input version, config, code
    and task count all match; the leftovers of this snapshot's and asset's attempts with other
    inputs are deleted here (no retry can resume them). A lock held for the whole step keeps a second
    process with the same inputs out: that one gets a fresh ``new_staging`` folder (``resume``
    False) and runs from zero. On a failure in the tasks (an exception, or a kill where no
    ``finally`` runs) folder and logs stay for the next attempt; once ``Attempt.sealing`` was called,
    a failure discards them. A fresh attempt clears old logs first, so completion markers never
    outlive the output they describe. Cost: one listing of the snapshot's resumable folders.
    """
    root = layout.work / STAGING / RESUMABLE / validate_snapshot_name(snapshot)
    name = f"{asset}-{inputs_key(inputs)}"
    staging, logs = root / name, layout.work / "logs" / name
    record, sealing = root / f"{name}.json", root / f"{name}.sealing"
    lock = _lock(root / f"{name}.lock")
    if lock is None:  # the same step on the same inputs runs elsewhere now: no sharing
        fresh = new_staging(layout, asset)
        with discard_on_failure(fresh):
            yield Attempt(fresh, layout.work / "logs" / fresh.name, resume=False, resumed=False)
        return
    try:
        _discard_other_attempts(root, layout.work / "logs", asset, keep=name)
        resumed = staging.is_dir() and record.is_file() and not sealing.exists()
        if not resumed:
            for folder in (staging, logs):
                _remove_tree(folder)
            sealing.unlink(missing_ok=True)
            staging.mkdir()
            record.write_text(json.dumps(inputs, sort_keys=True, indent=1, default=str))
        try:
            yield Attempt(staging, logs, resume=True, resumed=resumed, sealing_marker=sealing)
        except BaseException:
            if sealing.exists():
                _remove_tree(staging)
                record.unlink(missing_ok=True)
                sealing.unlink(missing_ok=True)
            raise
        # Sealed: the folder was renamed into datasets/ (or removed, a duplicate). Nothing to resume.
        for path in (record, sealing, root / f"{name}.lock"):
            path.unlink(missing_ok=True)  # the lock file while held: _lock re-checks the path
        for folder in (root, root.parent):
            with suppress(OSError):  # not empty: other attempts, other snapshots
                folder.rmdir()
    finally:
        lock.close()


_HELD: set[str] = set()  # lock files this process holds: POSIX locks do not exclude the own process
_HELD_GUARD = threading.Lock()


class _Held:
    """An exclusive lock on a file, for this process only (see ``_lock``); ``close`` releases it."""

    def __init__(self, path: Path, handle):
        self.path, self.handle = path, handle

    def close(self) -> None:
        with _HELD_GUARD:
            _HELD.discard(str(self.path))
        self.handle.close()

    def __enter__(self) -> _Held:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _lock(path: Path) -> _Held | None:
    """``path`` opened and exclusively locked, or None when another process or thread holds it.

    A POSIX record lock (``lockf``), not ``flock``: it belongs to this process alone, so the worker
    processes a step forks (datatrove's pool, its manager) do not inherit it and it is released the
    moment this process ends, even by a kill. A lock file unlinked by its holder after this opened
    it is detected (its inode is no longer at ``path``) and the lock taken again.
    """
    with _HELD_GUARD:  # held throughout: closing any handle of the file drops this process's lock
        while True:
            if str(path) in _HELD:
                return None
            path.parent.mkdir(parents=True, exist_ok=True)
            try:
                handle = open(path, "a")  # noqa: SIM115 (held until the step ends)
            except FileNotFoundError:  # the folder was removed as empty in between
                continue
            try:
                fcntl.lockf(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:  # EACCES or EAGAIN: held by another process
                handle.close()
                return None
            try:
                same = os.stat(path).st_ino == os.fstat(handle.fileno()).st_ino
            except FileNotFoundError:
                same = False
            if same:
                _HELD.add(str(path))
                return _Held(path, handle)
            handle.close()


def _discard_other_attempts(root: Path, logs_root: Path, asset: str, *, keep: str) -> None:
    """Delete the resumable folders (and logs) of ``asset`` under ``root`` other than ``keep`` whose
    lock no live process holds: attempts with other inputs, which no retry can resume."""
    for record in root.glob(f"{asset}-*.json"):
        name = record.name[: -len(".json")]
        if name == keep or not re.fullmatch(rf"{re.escape(asset)}-[0-9a-f]{{20}}", name):
            continue
        lock = _lock(root / f"{name}.lock")
        if lock is None:
            continue  # running now, in another process
        with lock:
            for folder in (root / name, logs_root / name):
                _remove_tree(folder)
            for path in (root / f"{name}.sealing", record, root / f"{name}.lock"):
                path.unlink(missing_ok=True)
