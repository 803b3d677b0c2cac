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
import uuid
from dataclasses import dataclass
from pathlib import Path

DATA_ENV = "APERTUS_DATA"
REPO_ROOT = Path(__file__).resolve().parents[1]


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
        return self.inbox / snapshot

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
