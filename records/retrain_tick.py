"""The retraining tick's own record: what the last tick concluded, so the next reads only what changed.

records.retrain_state folds the ledger into per-snapshot records; reading all of them is
O(snapshots). A tick needs far less: which registered snapshots need curating (the standing "needs
work" set) and whether the current ``quality_scored`` versions still equal the ones the last model
was trained on. This record keeps those conclusions, with the position up to which it has seen the
state index's updates file and Dagster's registered snapshots (the cursors), in one SQLite file:

    <data>/retrain_state/_tick.sqlite
      meta(key, value)       generation and offset of the updates file seen, the instance and the
                             partition cursor seen, the code version, request count and model the
                             conclusions were drawn under
      snapshots(name, record, registered, qs, in_model, needs)
                             per snapshot: its state-index record (JSON), whether it is registered,
                             its current quality_scored ref, whether the last model consumed that ref,
                             and why it needs curating (NULL: it does not)
      consumed(ref, current) the quality_scored refs the last model's curriculum drew from, and
                             whether some registered snapshot still has it as its current version

A tick (``catch_up``) replays the updates appended since its offset onto the snapshots they name,
marks the snapshots registered since its cursor, and recomputes ``needs`` and ``in_model`` for those
snapshots only: O(changed snapshots), through indexes. Facts that touch every snapshot are one global
value each, compared once per tick: a new curation code version or a new erasure request
recomputes ``needs`` for every snapshot, a new model recomputes ``in_model`` (O(snapshots), once,
when that happens; after that the record is again O(changes) per tick). The decision then reads the
needs set and two "exists" queries (a registered snapshot whose version the model lacks, a consumed
version no longer current), each a partial index: O(answers), not O(snapshots).

Derived and disposable: any doubt (another updates-file generation, an offset past its end, a torn
line, another Dagster instance, a registration count that does not add up, e.g. a deleted
partition) rebuilds it from every snapshot record (``read_all``) and the full partition list,
O(snapshots) once. A data folder that cannot be written gets a record in memory, rebuilt per tick.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

from records.assets import QUALITY_SCORED
from records.layout import DataLayout
from records.retrain_state import (
    RETRAIN_STATE,
    apply_update,
    covered_requests,
    new_record,
    read_all,
    read_changes,
)

RETRAIN_TICK = "_tick.sqlite"  # in the state index's folder
TICK_FORMAT = 1
_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT)",
    "CREATE TABLE IF NOT EXISTS snapshots (name TEXT PRIMARY KEY, record TEXT NOT NULL, registered "
    "INTEGER NOT NULL DEFAULT 0, qs TEXT, in_model INTEGER NOT NULL DEFAULT 0, needs TEXT)",
    "CREATE TABLE IF NOT EXISTS consumed (ref TEXT PRIMARY KEY, current INTEGER NOT NULL DEFAULT 0)",
    "CREATE INDEX IF NOT EXISTS snapshots_qs ON snapshots (qs)",
    "CREATE INDEX IF NOT EXISTS snapshots_needs ON snapshots (name) WHERE registered = 1 AND needs IS NOT NULL",
    "CREATE INDEX IF NOT EXISTS snapshots_fresh ON snapshots (name) WHERE registered = 1 AND in_model = 0",
    "CREATE INDEX IF NOT EXISTS consumed_gone ON consumed (ref) WHERE current = 0",
)


@dataclass(frozen=True)
class Rules:
    """What a snapshot's curation is judged against: the ``curate`` selection's assets, in order,
    and the curation code version loaded now."""

    asset_names: tuple[str, ...]
    code_version: str


@dataclass(frozen=True)
class Registered:
    """Dagster's registered snapshots as the tick found them: the instance's identity, the cursor
    after the last one, the snapshots registered after the record's cursor (``full``: every one),
    and how many are registered in all."""

    instance: str
    cursor: str
    added: list[str]
    full: bool
    count: int


def stale_reason(
    assets: dict, covered: int, num_requests: int, rules: Rules
) -> str | None:  # fmt: skip
    """Why a snapshot with these versions (``asset -> (ref, code_version)``), whose raw version
    applied or was cleared of ``covered`` requests, needs curating when ``num_requests`` are
    recorded: an asset never materialized, one made by other code, or requests recorded since;
    None when it is current. The one rule, for the tick and for assets.schedules.curation_needed. O(assets)."""
    for name in rules.asset_names:
        version = assets.get(name)
        if version is None:
            return f"{name} never materialized"
        if version[1] != rules.code_version:
            return f"{name} made by code {version[1]}, now {rules.code_version}"
    missing = max(0, num_requests - covered)
    return f"{missing} erasure request(s) recorded since its curation" if missing else None


class TickRecord:
    """An open tick record (one transaction: ``open``). ``records_read`` counts the snapshot
    records it parsed, so tests and bench/ can tell a tick that reads every snapshot from one that
    reads what changed."""

    def __init__(self, db: sqlite3.Connection):
        self.db = db
        self.records_read = 0
        self.rebuilt: str | None = None

    @classmethod
    @contextlib.contextmanager
    def open(cls, layout: DataLayout) -> Iterator[TickRecord]:
        """The record of ``layout``'s data folder, in one write transaction (ticks one at a time),
        committed when the block ends without an error; in memory when the folder cannot be written."""
        folder = layout.root / RETRAIN_STATE
        try:
            folder.mkdir(parents=True, exist_ok=True)
            db = sqlite3.connect(folder / RETRAIN_TICK, timeout=60, isolation_level=None)
            db.execute("BEGIN IMMEDIATE")
        except (OSError, sqlite3.Error):
            db = sqlite3.connect(":memory:", isolation_level=None)
            db.execute("BEGIN")
        try:
            for statement in _SCHEMA:
                db.execute(statement)
            yield cls(db)
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        finally:
            db.close()

    def meta(self, key: str):
        row = self.db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return json.loads(row[0]) if row else None

    def _set_meta(self, **values) -> None:
        self.db.executemany(
            "INSERT OR REPLACE INTO meta VALUES (?, ?)", [(k, json.dumps(v)) for k, v in values.items()]
        )

    def seen(self, instance: str) -> tuple[str | None, int | None]:
        """The partition cursor and registered count this record holds for ``instance`` ((None,
        None): it holds none for it, so the tick lists every registered snapshot)."""
        if self.meta("format") != TICK_FORMAT or self.meta("instance") != instance:
            return None, None
        return self.meta("partitions_cursor"), self.meta("registered")

    def catch_up(
        self,
        layout: DataLayout,
        registered: Registered,
        rules: Rules,
        trained_on: Callable[[str | None], tuple[str | None, set[str] | None]],
    ) -> tuple[int, str | None]:
        """Bring the record up to date (see the module docstring) and return the erasure requests
        recorded and the last model's ref. Cost: O(updates since + snapshots registered since);
        O(snapshots) once when the code version, the request count or the model changed, or when
        the record must be rebuilt."""
        full = self.meta("format") != TICK_FORMAT or registered.full
        changes = (
            None if full else read_changes(layout, self.meta("generation"), self.meta("log_offset") or 0)
        )
        if changes is None or changes.updates is None:
            summary, held, end, self.rebuilt = read_all(layout)
            self.rebuilt = self.rebuilt or (changes.rebuilt if changes else None)
            self.records_read += len(held)
            self._replace(held)
            full = True
            dirty: set[str] = set()
        else:
            summary, end, self.rebuilt = changes.summary, changes.end, changes.rebuilt
            dirty = self._replay(changes.updates)
        if registered.full:
            self.db.execute("UPDATE snapshots SET registered = 0")
        self._register(registered.added)
        dirty.update(registered.added)
        model, num_requests = summary["model"], summary["num_requests"]
        every = (
            full
            or self.meta("code_version") != rules.code_version
            or self.meta("num_requests") != num_requests
        )
        # A model whose versions are unknown (its folder is not here, its lineage is broken) is
        # looked at again each tick, as before the record: one folder check while it stays so.
        if full or self.meta("model") != model or (model is not None and not self.meta("consumed_known")):
            try:
                self._consumed(trained_on(model))
            except ValueError as error:  # a broken lineage: said when a decision needs the model
                self._consumed((model, None))
                self._set_meta(consumed_error=str(error))
        self._judge(None if every else dirty, rules, num_requests)
        self._set_meta(
            format=TICK_FORMAT, generation=summary.get("generation"), log_offset=end,
            instance=registered.instance, partitions_cursor=registered.cursor, registered=registered.count,
            code_version=rules.code_version, num_requests=num_requests, model=model,
        )  # fmt: skip
        return num_requests, model

    def _replace(self, held: dict[str, dict]) -> None:
        """Every snapshot's record replaced by ``held`` (a full read); registration kept."""
        self.db.execute("UPDATE snapshots SET record = ?", (json.dumps(new_record()),))
        self.db.executemany(
            "INSERT INTO snapshots (name, record) VALUES (?, ?) ON CONFLICT (name) DO UPDATE SET record = excluded.record",
            [(name, json.dumps(state)) for name, state in held.items()],
        )

    def _replay(self, updates: list[dict]) -> set[str]:
        """The updates replayed onto the records they name; returns those snapshots. O(updates)."""
        records: dict[str, dict] = {}
        for update in updates:
            name = update["snapshot"]
            if name not in records:
                row = self.db.execute("SELECT record FROM snapshots WHERE name = ?", (name,)).fetchone()
                records[name] = json.loads(row[0]) if row else new_record()
                self.records_read += 1
            apply_update(records[name], update)
        self.db.executemany(
            "INSERT INTO snapshots (name, record) VALUES (?, ?) ON CONFLICT (name) DO UPDATE SET record = excluded.record",
            [(name, json.dumps(state)) for name, state in records.items()],
        )
        return set(records)

    def _register(self, names: Iterable[str]) -> None:
        self.db.executemany(
            "INSERT INTO snapshots (name, record, registered) VALUES (?, ?, 1) "
            "ON CONFLICT (name) DO UPDATE SET registered = 1",
            [(name, json.dumps(new_record())) for name in names],
        )

    def _consumed(self, trained: tuple[str | None, set[str] | None]) -> None:
        """The last model's consumed versions stored (a new model: O(snapshots), once)."""
        model, consumed = trained
        self._set_meta(consumed_error=None)
        self.db.execute("DELETE FROM consumed")
        self.db.executemany("INSERT INTO consumed (ref) VALUES (?)", [(ref,) for ref in consumed or ()])
        self._set_meta(consumed_known=model is not None and consumed is not None)
        self.db.execute("UPDATE snapshots SET in_model = qs IS NOT NULL AND qs IN (SELECT ref FROM consumed)")
        self.db.execute(
            "UPDATE consumed SET current = EXISTS (SELECT 1 FROM snapshots WHERE registered = 1 AND qs = ref)"
        )

    def _judge(self, names: set[str] | None, rules: Rules, num_requests: int) -> None:
        """``needs``, ``qs`` and ``in_model`` recomputed for ``names`` (None: every snapshot), and the
        ``current`` flag of the consumed versions they held or hold now."""
        if names is None:
            rows = self.db.execute("SELECT name, record, qs FROM snapshots").fetchall()
        else:
            rows = [
                row
                for name in names
                for row in self.db.execute("SELECT name, record, qs FROM snapshots WHERE name = ?", (name,))
            ]
        self.records_read += len(rows)
        touched, judged = set(), []
        for name, text, old in rows:
            record = json.loads(text)
            qs = record["assets"].get(QUALITY_SCORED, [None])[0]
            reason = stale_reason(record["assets"], covered_requests(record), num_requests, rules)
            judged.append((qs, reason, qs, name))
            touched.update(ref for ref in (old, qs) if ref)
        self.db.executemany(
            "UPDATE snapshots SET qs = ?, needs = ?, in_model = ? IS NOT NULL AND ? IN (SELECT ref FROM consumed) "
            "WHERE name = ?",
            [(qs, reason, qs, qs, name) for qs, reason, _, name in judged],
        )
        self.db.executemany(
            "UPDATE consumed SET current = EXISTS (SELECT 1 FROM snapshots WHERE registered = 1 AND qs = ?) "
            "WHERE ref = ?",
            [(ref, ref) for ref in touched],
        )

    def needs(self) -> dict[str, str]:
        """The registered snapshots that need curating, with why. O(answers)."""
        query = "SELECT name, needs FROM snapshots WHERE registered = 1 AND needs IS NOT NULL"
        return dict(self.db.execute(query).fetchall())

    def model(self) -> str | None:
        """The last trained model's ref (None: none was); raises the ValueError its lineage gave."""
        error = self.meta("consumed_error")
        if error:
            raise ValueError(error)
        return self.meta("model")

    def model_is_current(self) -> bool:
        """Whether the last model was trained on exactly the registered snapshots' current versions:
        a model whose versions are known, no registered snapshot with a version it lacks, and no
        version it consumed that is no longer current. Two index look-ups."""
        if not self.meta("consumed_known"):
            return False
        fresh = "SELECT 1 FROM snapshots WHERE registered = 1 AND in_model = 0 LIMIT 1"
        gone = "SELECT 1 FROM consumed WHERE current = 0 LIMIT 1"
        return self.db.execute(fresh).fetchone() is None and self.db.execute(gone).fetchone() is None

    def current(self) -> dict[str, str]:
        """Every registered snapshot's current quality_scored ref: O(snapshots), read only when a
        retraining is due (its run will read every one of them anyway)."""
        query = "SELECT name, qs FROM snapshots WHERE registered = 1"
        rows = self.db.execute(query).fetchall()
        self.records_read += len(rows)
        return dict(rows)

    def consumed(self) -> set[str]:
        """The refs the last model consumed (O(snapshots); read only when a retraining is due)."""
        return {ref for (ref,) in self.db.execute("SELECT ref FROM consumed")}
