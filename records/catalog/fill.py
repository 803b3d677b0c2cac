"""Filling the catalog: a sealed version's rows from its own verified files, and the ledger's new entries.

Only files a version's manifest lists are read, each checked against its recorded sha256 before
its bytes are decoded; a folder without a manifest, or a file its manifest does not list, never
reaches the catalog. Nothing here globs a folder or re-reads a version already catalogued.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

import duckdb

from records.assets import TOKEN_SHARDS
from records.canonical import canonical_json
from records.catalog.tables import CATALOG_FORMAT, create_schema
from records.documents import EXCLUSIONS as EXCLUSIONS_FILE
from records.documents import INDEX as INDEX_FILE
from records.documents import QUARANTINE
from records.layout import CATALOG_LOCK, DataLayout
from records.ledger import Ledger, LedgerEntry
from records.ledger.format import ENTRIES, LEAF_HASHES
from records.manifest import MANIFEST, Manifest, manifest_of, version_id_of
from records.merkle import HASH_SIZE
from records.models import SEQUENCE_USE as SEQUENCE_USE_FILE
from records.sql_quote import sql_identifier
from records.token_shards import SEQUENCES_PATH as SEQUENCES_FILE
from records.verified import verified_parquet_file

# The files of a version that have rows in the catalog, by their path in the version folder.
QUARANTINE_FILE = re.compile(rf"{QUARANTINE}/[^/]+\.parquet")
SCRATCH = "catalog"  # under the work folder: the private copies of the files being inserted


@dataclass(frozen=True)
class CatalogState:
    """What a current-format catalog holds: its versions (``asset/id``) and ledger entries."""

    refs: frozenset[str]
    ledger_entries: int


def connect_for_writing(path: Path) -> duckdb.DuckDBPyConnection:
    """A writable connection to a catalog file that reads no other file: rows arrive as Arrow
    tables decoded here from verified bytes, never through a DuckDB file reader."""
    return duckdb.connect(
        str(path),
        config={
            "enable_external_access": False,
            "autoinstall_known_extensions": False,
            "autoload_known_extensions": False,
        },
    )


def read_state(layout: DataLayout) -> CatalogState | None:
    """The catalog's contents, or None when it is missing or of an older format (views, absolute
    paths). Cost: O(catalogued versions): for ``refresh_catalog``, never per step."""
    if not layout.catalog.exists():
        return None
    con = duckdb.connect(str(layout.catalog), read_only=True)
    try:
        if not is_current(con):
            return None
        return CatalogState(frozenset(catalogued_refs(con)), held_entries(con))
    finally:
        con.close()


def is_current(con: duckdb.DuckDBPyConnection) -> bool:
    """Whether the catalog is of the current format (else it is rebuilt). Cost: O(1)."""
    try:
        row = con.execute("SELECT value FROM catalog_state WHERE name = 'format'").fetchone()
    except duckdb.CatalogException:
        return False
    return row is not None and row[0] == CATALOG_FORMAT


def catalogued_refs(con: duckdb.DuckDBPyConnection) -> set[str]:
    """``asset/id`` of every catalogued version. Cost: O(catalogued versions)."""
    return {
        r for (r,) in con.execute("SELECT asset || '/' || dataset_version FROM dataset_versions").fetchall()
    }


def holds_version(con: duckdb.DuckDBPyConnection, ref: str) -> bool:
    """Whether the version ``asset/id`` is catalogued. Cost: one primary-key lookup."""
    asset, _, version_id = ref.partition("/")
    found = con.execute(
        "SELECT 1 FROM dataset_versions WHERE asset = ? AND dataset_version = ?", [asset, version_id]
    ).fetchone()
    return found is not None


def held_entries(con: duckdb.DuckDBPyConnection) -> int:
    """How many ledger entries the catalog holds: its ``ledger_entries`` state row, O(1) (a catalog
    written before that row existed counts its rows once, and gets the row)."""
    row = con.execute("SELECT value FROM catalog_state WHERE name = 'ledger_entries'").fetchone()
    if row is not None:
        return row[0]
    (count,) = con.execute("SELECT count(*) FROM ledger_entries").fetchone()
    if not _read_only(con):
        con.execute("INSERT INTO catalog_state VALUES ('ledger_entries', ?)", [count])
    return count


def _read_only(con: duckdb.DuckDBPyConnection) -> bool:
    (setting,) = con.execute("SELECT current_setting('access_mode')").fetchone()
    return setting.lower() == "read_only"


def sealed_refs(layout: DataLayout) -> set[str]:
    """``asset/id`` of every folder ``datasets/<asset>/<id>/`` holding a manifest (symlinked folders
    are not versions). Lists two directory levels and reads no file: O(versions)."""
    refs = set()
    if not layout.datasets.is_dir():
        return refs
    for asset in layout.datasets.iterdir():
        if asset.name.startswith(".") or asset.is_symlink() or not asset.is_dir():
            continue
        for folder in asset.iterdir():
            if not folder.is_symlink() and (folder / MANIFEST).is_file():
                refs.add(f"{asset.name}/{folder.name}")
    return refs


def committed_entries(layout: DataLayout) -> int:
    """The number of committed ledger entries (from the size of its leaf-hash file: O(1))."""
    return Ledger(layout.ledger).size()


@contextmanager
def catalog_lock(layout: DataLayout, *, shared: bool = False) -> Iterator[None]:
    """Writers of the catalog hold it exclusively, readers shared: DuckDB refuses to open a file
    another process is writing, so a reader waits for the writer here instead of failing, and
    the other way round. A reader of a data folder it cannot write (a read-only copy) reads
    without the lock: no writer can be there either."""
    path = layout.root / CATALOG_LOCK
    try:
        if not shared:
            layout.root.mkdir(parents=True, exist_ok=True)
        lock = open(path, "a")  # noqa: SIM115 (closed below; a with-block would not cover the fallback)
    except OSError:
        if not shared:
            raise
        yield
        return
    try:
        fcntl.flock(lock, fcntl.LOCK_SH if shared else fcntl.LOCK_EX)
        yield
    finally:
        lock.close()  # releases the lock


def rebuild(layout: DataLayout) -> None:
    """Write a new catalog from every sealed version and the whole ledger, then swap it in (readers
    holding the old file keep it). Caller holds ``catalog_lock``. Cost: O(all versions' catalogued
    files + ledger entries); only for a missing or older-format catalog."""
    fresh = layout.catalog.with_name(layout.catalog.name + ".rebuild")
    for leftover in (fresh, fresh.with_name(fresh.name + ".wal")):
        leftover.unlink(missing_ok=True)
    con = connect_for_writing(fresh)
    try:
        create_schema(con)
        add_versions(con, layout, sealed_refs(layout))
        append_ledger(con, layout)
    finally:
        con.close()
    layout.catalog.with_name(layout.catalog.name + ".wal").unlink(missing_ok=True)
    os.replace(fresh, layout.catalog)


def add_versions(con: duckdb.DuckDBPyConnection, layout: DataLayout, refs: set[str]) -> None:
    """Add the versions ``refs`` in the order they were sealed (so a rebuild orders rows as the
    incremental catalog did). Cost: O(their catalogued files)."""
    manifests = [_checked_manifest(layout, ref) for ref in refs]
    for raw, manifest in sorted(manifests, key=lambda m: (m[1].created_at, m[1].ref)):
        _add_version(con, layout, raw, manifest)


def _checked_manifest(layout: DataLayout, ref: str) -> tuple[dict, Manifest]:
    asset, _, version_id = ref.partition("/")
    path = layout.datasets / asset / version_id / MANIFEST
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
        manifest = manifest_of(raw, path.parent, strict=True)  # lineage from the sealed lineage.json
    except (OSError, ValueError, TypeError, KeyError) as error:
        raise ValueError(f"{path}: not a readable manifest ({error}); run `apertus audit verify`") from None
    if (manifest.asset, manifest.version_id) != (asset, version_id) or version_id_of(
        manifest.files
    ) != version_id:
        raise ValueError(
            f"{path}: its asset, version_id or files do not match the folder {ref}; run `apertus audit verify`"
        )
    return raw, manifest


def _add_version(con: duckdb.DuckDBPyConnection, layout: DataLayout, raw: dict, manifest: Manifest) -> None:
    """Insert a version's rows, one verified file at a time and each a row group at a time (the
    index's row groups are its shards' parts, pipelines.tables): memory is bounded by a row group,
    not by the version. Cost: O(the catalogued files' bytes)."""
    folder = layout.datasets / manifest.asset / manifest.version_id
    con.begin()
    try:
        for entry in manifest.files:
            target = _rows_of(manifest, entry.path)
            if target is not None:
                table, constants = target
                with verified_parquet_file(folder, manifest, entry.path, layout.work / SCRATCH) as parquet:
                    for group in range(parquet.num_row_groups) or [None]:
                        rows = (
                            parquet.schema_arrow.empty_table()
                            if group is None
                            else parquet.read_row_group(group)
                        )
                        _insert(con, table, constants, rows)
        con.execute(
            "INSERT INTO dataset_versions VALUES (?, ?, ?, ?, ?, ?, ?::JSON, ?::JSON, ?::JSON)",
            [
                manifest.version_id, manifest.asset, manifest.snapshot, list(manifest.parents),
                manifest.code_version, manifest.created_at, json.dumps(manifest.config),
                json.dumps(raw.get("stats", {})), json.dumps([asdict(f) for f in manifest.files]),
            ],
        )  # fmt: skip
        con.commit()
    except BaseException:
        con.rollback()
        raise


def _rows_of(manifest: Manifest, path: str) -> tuple[str, dict[str, str | None]] | None:
    """The table a listed file's rows go to, with the columns the version gives them; None for a
    file with no rows in the catalog (shards, text, weights)."""
    version = {"asset": manifest.asset, "dataset_version": manifest.version_id}
    if path == INDEX_FILE:
        return "document_index", version
    if path == EXCLUSIONS_FILE:
        return "exclusions", version
    if QUARANTINE_FILE.fullmatch(path):
        return "quarantine", {"dataset_version": manifest.version_id}
    stage = SEQUENCES_FILE.fullmatch(path)
    if stage and manifest.asset == TOKEN_SHARDS:
        return "sequences", {"token_shards_version": manifest.version_id, "stage": stage.group(1)}
    if path == SEQUENCE_USE_FILE:
        # The token_shards version a model trained on is its manifest's token_shards parent.
        shards = [p.partition("/")[2] for p in manifest.parents if p.startswith(TOKEN_SHARDS + "/")]
        return "training_use", {
            "model_asset": manifest.asset,
            "model_version": manifest.version_id,
            "token_shards_version": shards[0] if shards else None,
        }
    return None


def _insert(con: duckdb.DuckDBPyConnection, table: str, constants: dict, rows) -> None:
    """Insert ``rows`` (an Arrow table) into ``table`` by column name, with ``constants`` as the
    version's columns; a column the table lacks is added (as a union of the files' columns would)."""
    con.register("incoming", rows)
    try:
        existing = {r[0] for r in con.execute(f"DESCRIBE {sql_identifier(table)}").fetchall()}
        incoming = con.execute("DESCRIBE incoming").fetchall()
        for name, kind, *_ in incoming:
            if name not in existing and name not in constants:
                # kind is DuckDB's own name of the column's type, from DESCRIBE above.
                con.execute(f"ALTER TABLE {sql_identifier(table)} ADD COLUMN {sql_identifier(name)} {kind}")
        shadowed = [sql_identifier(n) for n, *_ in incoming if n in constants]
        columns = ", ".join(f"?::VARCHAR AS {sql_identifier(n)}" for n in constants)
        rest = f"* EXCLUDE ({', '.join(shadowed)})" if shadowed else "*"
        con.execute(
            f"INSERT INTO {sql_identifier(table)} BY NAME SELECT {columns}, {rest} FROM incoming",
            list(constants.values()),
        )
    finally:
        con.unregister("incoming")


def append_ledger(con: duckdb.DuckDBPyConnection, layout: DataLayout) -> None:
    """Append the committed ledger entries past the last one the catalog holds, each checked against
    its leaf hash. Cost: O(new entries) (the count held and the offset are state rows, the count
    committed is the leaf-hash file's size); O(all entries) only if the entries file is no longer
    the one the catalog read (it shrank or its line at the stored offset is not the next entry)."""
    committed = committed_entries(layout)
    held = held_entries(con)
    (offset,) = con.execute("SELECT value FROM catalog_state WHERE name = 'ledger_offset'").fetchone()
    if committed == held:
        return
    new = None
    if committed > held:
        try:
            new, end = read_entries(layout, held, committed, offset)
        except ValueError:
            new = None  # not the file the catalog read: read it whole again
    if new is None:
        held = 0
        new, end = read_entries(layout, 0, committed, 0)  # ValueError naming the file if it is bad
    import pyarrow as pa

    rows = pa.table(
        {
            "index": pa.array([e.index for e in new], pa.int64()),
            "timestamp": [e.timestamp for e in new],
            "event_type": [e.event_type for e in new],
            "payload": [canonical_json(e.payload).decode() for e in new],
        }
    )
    con.begin()
    try:
        if held == 0:
            con.execute("DELETE FROM ledger_entries")
        con.register("incoming", rows)
        con.execute(
            'INSERT INTO ledger_entries SELECT "index", timestamp, event_type, payload::JSON FROM incoming'
        )
        con.unregister("incoming")
        con.execute("UPDATE catalog_state SET value = ? WHERE name = 'ledger_offset'", [end])
        con.execute("UPDATE catalog_state SET value = ? WHERE name = 'ledger_entries'", [committed])
        con.commit()
    except BaseException:
        con.rollback()
        raise


def read_entries(layout: DataLayout, first: int, end: int, offset: int) -> tuple[list[LedgerEntry], int]:
    """Entries ``first`` … ``end - 1`` read from byte ``offset`` of the entries file, each matched to
    its leaf hash; and the offset past them. ValueError naming the file when they do not match."""
    entries, hashes = layout.ledger / ENTRIES, layout.ledger / LEAF_HASHES
    with open(hashes, "rb") as f:
        f.seek(first * HASH_SIZE)
        leaves = f.read((end - first) * HASH_SIZE)
    found = []
    with open(entries, "rb") as f:
        f.seek(offset)
        for index in range(first, end):
            line = f.readline()
            if not line.endswith(b"\n"):
                raise ValueError(f"{entries}: entry {index} is missing; run `apertus audit verify`")
            try:
                entry = LedgerEntry.from_line(line[:-1])
            except ValueError as error:
                raise ValueError(f"{entries}: entry {index}: {error}; run `apertus audit verify`") from None
            leaf = leaves[(index - first) * HASH_SIZE : (index - first + 1) * HASH_SIZE]
            if entry.index != index or bytes.fromhex(entry.leaf_hash) != leaf:
                raise ValueError(
                    f"{entries}: entry {index} does not match its leaf hash in {hashes}; run `apertus audit verify`"
                )
            found.append(entry)
        return found, f.tell()
