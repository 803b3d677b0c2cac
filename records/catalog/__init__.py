"""The catalog: one DuckDB file of tables over every sealed version and the ledger (docs/catalog.md).

A version's rows are added when it is sealed, from the files its manifest lists, each checked
against its recorded hash; a new version adds its rows and touches nothing else, and new ledger
entries are appended past the last one held. Paths are stored relative to the version folder, so
a copied or restored data folder answers from its own catalog. ``apertus audit sql`` runs one
SELECT on it, read-only, with no file access at all and bounded memory, threads and time
(records/catalog/sql.py).

    tables.py  the tables and views
    fill.py    adding a version's rows and the ledger's new entries
    sql.py     the guarded query
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path

import duckdb

from records.catalog.fill import (
    add_versions,
    append_ledger,
    catalog_lock,
    catalogued_refs,
    committed_entries,
    connect_for_writing,
    holds_version,
    is_current,
    read_state,
    rebuild,
    sealed_refs,
)
from records.catalog.sql import query
from records.layout import DataLayout

__all__ = ["add_ledger_entries_to_catalog", "add_version_to_catalog", "query", "refresh_catalog"]


def refresh_catalog(layout: DataLayout) -> Path:
    """Bring the catalog up to date: add the sealed versions it lacks and the ledger entries past
    the last it holds; build it when it is missing or of an older format (views over files).

    Cost when up to date: listing ``datasets/*/`` and reading the catalogued version ids,
    O(versions), no file of any version read; otherwise plus O(the missing versions' catalogued
    files + new ledger entries). Old versions' files are never re-read, except by a first build.
    """
    with catalog_lock(layout, shared=True):  # waits for a writer: DuckDB would refuse the file
        state = read_state(layout)
    if (
        state is not None
        and not sealed_refs(layout) - state.refs
        and committed_entries(layout) == state.ledger_entries
    ):
        return layout.catalog
    return _update(layout, lambda con: sealed_refs(layout) - catalogued_refs(con))


def add_version_to_catalog(layout: DataLayout, ref: str) -> Path:
    """Add one sealed version (``asset/version_id``) and the new ledger entries to the catalog;
    nothing when it is there already. What a step calls after sealing and pinning its version.

    Cost: O(that version's catalogued files + new ledger entries), plus one primary-key lookup
    and the catalog file's open; no folder is listed and no other version is read (a missing or
    older-format catalog is built whole, once).
    """
    return _update(layout, lambda con: set() if holds_version(con, ref) else {ref})


def add_ledger_entries_to_catalog(layout: DataLayout) -> Path:
    """Append the ledger entries past the last the catalog holds (what a writer of ledger entries
    that seals no version calls, an erasure request). Cost: O(new ledger entries); no folder is
    listed (a missing or older-format catalog is built whole, once)."""
    return _update(layout, lambda con: set())


def _update(layout: DataLayout, missing: Callable[[duckdb.DuckDBPyConnection], set[str]]) -> Path:
    with ExitStack() as stack:
        try:
            stack.enter_context(catalog_lock(layout))
        except OSError as error:
            raise ValueError(
                f"{layout.catalog}: missing, of an older format or behind the data folder, and it "
                f"cannot be written ({error}); run the command once where {layout.root} is writable"
            ) from None
        con = connect_for_writing(layout.catalog) if layout.catalog.exists() else None
        try:
            if con is None or not is_current(con):  # checked again: another writer may have built it
                if con is not None:
                    con.close()
                    con = None
                rebuild(layout)
                return layout.catalog
            add_versions(con, layout, missing(con))
            append_ledger(con, layout)
        finally:
            if con is not None:
                con.close()
    return layout.catalog
