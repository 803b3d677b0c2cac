"""Where everything lives in the data folder (``APERTUS_DATA``; default ``data/`` in the checkout).

inbox/<snapshot>/                 raw source snapshots, one folder each (a Dagster partition)
datasets/<asset>/<version id>/    immutable dataset versions (provenance.manifest)
ledger/                           the signed, append-only ledger (provenance.ledger)
robots/<host>/<YYYY-MM-DD>.txt    dated robots.txt files, applied as an AI-crawler opt-out (pipelines.robots)
catalog.duckdb                    views over all of the above, for SQL and the audit CLI
work/                             staging and intermediate files; safe to delete between runs
"""

from __future__ import annotations

import os
import re
import uuid
from dataclasses import dataclass
from pathlib import Path

DATA_ENV = "APERTUS_DATA"
REPO_ROOT = Path(__file__).resolve().parents[1]
# A snapshot name is a folder name under inbox/ and a Dagster partition key: one path component that
# cannot climb (".", ".."), hide ("."), read as an option ("-") or hold separators or control characters.
SNAPSHOT_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")


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
        return self.root / "catalog.duckdb"

    def snapshot_dir(self, snapshot: str) -> Path:
        """``inbox/<snapshot>``; ValueError for a name ``validate_snapshot_name`` refuses."""
        return self.inbox / validate_snapshot_name(snapshot)

    def snapshots(self) -> list[str]:
        """Names of the snapshot folders in the inbox, sorted."""
        if not self.inbox.exists():
            return []
        return sorted(p.name for p in self.inbox.iterdir() if p.is_dir() and not p.name.startswith("."))


def new_staging(layout: DataLayout, asset: str) -> Path:
    """A fresh, empty folder under ``work/staging/`` for a version of ``asset`` about to be sealed."""
    path = layout.work / "staging" / f"{asset}-{uuid.uuid4().hex[:12]}"
    path.mkdir(parents=True)
    return path
