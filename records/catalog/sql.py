"""``apertus audit sql``: one SELECT on the catalog, with no way out of it.

Two guards, each enough on its own for what the other misses: the statement is parsed and only a
single SELECT (or ``EXPLAIN`` of one, never ``EXPLAIN ANALYZE``, which runs its statement) reaches
DuckDB; and the connection is read-only with external access off, so no statement, table function
or extension can read or write any file. Memory, threads and time are bounded.
"""

from __future__ import annotations

import os
import threading

import duckdb

from records.layout import DataLayout

TIMEOUT_ENV = "APERTUS_SQL_TIMEOUT_S"
MEMORY_ENV = "APERTUS_SQL_MEMORY_LIMIT"
THREADS_ENV = "APERTUS_SQL_THREADS"
DEFAULT_TIMEOUT_S = 60.0
DEFAULT_MEMORY_LIMIT = "2GB"
DEFAULT_THREADS = 2


class QueryTimeout(ValueError):
    """The query ran past its time limit and was interrupted."""


def query(
    layout: DataLayout, sql: str, parameters: list | None = None, *, timeout_s: float | None = None
) -> tuple[list[str], list[tuple]]:
    """Run one read-only query on the catalog; return (column names, rows). Values go in
    ``parameters``, one per ``?`` in ``sql``, never formatted into it.

    ``ValueError`` for anything but a single SELECT (``WITH … SELECT``, ``FROM …``) or ``EXPLAIN``
    of one; ``QueryTimeout`` (a ValueError) past ``timeout_s`` (default: ``APERTUS_SQL_TIMEOUT_S``
    or 60 s); ``duckdb.Error`` for a query DuckDB rejects, such as any attempt to read a file.
    The catalog is brought up to date first (records.catalog.refresh_catalog: O(versions) when
    nothing is new). Cost: what the query costs, within the memory and thread limits.
    """
    check_statement(sql)
    from records.catalog import refresh_catalog
    from records.catalog.fill import catalog_lock

    refresh_catalog(layout)
    limit = _timeout(timeout_s)
    with catalog_lock(layout, shared=True):  # a step adding a version waits for the answer
        return _run(layout, sql, parameters or [], limit)


def _run(layout: DataLayout, sql: str, parameters: list, limit: float) -> tuple[list[str], list[tuple]]:
    con = duckdb.connect(
        str(layout.catalog),
        read_only=True,
        config={
            "enable_external_access": False,  # no file, URL or database outside the catalog itself
            "autoinstall_known_extensions": False,
            "autoload_known_extensions": False,
            "memory_limit": os.environ.get(MEMORY_ENV) or DEFAULT_MEMORY_LIMIT,
            "threads": _threads(),
            "temp_directory": "",  # nothing spills to disk: past the memory limit the query fails
            "lock_configuration": True,  # and no statement may change any of the above
        },
    )
    timer = threading.Timer(limit, con.interrupt)
    timer.start()
    try:
        result = con.execute(sql, parameters)
        columns = [d[0] for d in result.description]
        return columns, result.fetchall()
    except duckdb.InterruptException:
        raise QueryTimeout(
            f"the query timed out after {limit:g} s and was stopped (set {TIMEOUT_ENV} to allow longer)"
        ) from None
    finally:
        timer.cancel()
        con.close()


def check_statement(sql: str) -> None:
    """ValueError unless ``sql`` is exactly one SELECT, or ``EXPLAIN`` (not ``EXPLAIN ANALYZE``)
    of exactly one SELECT."""
    try:
        statements = duckdb.extract_statements(sql)
    except duckdb.ParserException as error:
        raise ValueError(f"not valid SQL: {error}") from None
    if len(statements) != 1:
        raise ValueError(f"expected exactly one SQL statement, got {len(statements)}")
    kind = statements[0].type.name
    if kind == "SELECT":
        return
    if kind != "EXPLAIN":
        raise ValueError(f"only queries are allowed on the catalog; refused a {kind} statement")
    # What EXPLAIN explains is the text after its keyword (comments are not tokens). It must parse
    # as one SELECT on its own: "ANALYZE …", "(FORMAT …) …" or any other statement does not.
    text = statements[0].query
    start = next(offset for offset, kind in duckdb.tokenize(text) if kind != duckdb.token_type.comment)
    assert text[start : start + len("EXPLAIN")].upper() == "EXPLAIN", text
    try:
        inner = duckdb.extract_statements(text[start + len("EXPLAIN") :])
    except duckdb.Error:
        inner = []
    if len(inner) != 1 or inner[0].type.name != "SELECT":
        raise ValueError(
            "EXPLAIN is allowed only of a single SELECT; refused EXPLAIN ANALYZE and EXPLAIN of other statements"
        )


def _timeout(timeout_s: float | None) -> float:
    if timeout_s is not None:
        return timeout_s
    value = os.environ.get(TIMEOUT_ENV)
    if not value:
        return DEFAULT_TIMEOUT_S
    try:
        seconds = float(value)
    except ValueError:
        seconds = 0.0
    if not seconds > 0:
        raise ValueError(
            f"{TIMEOUT_ENV}={value!r}: give the query time limit as a positive number of seconds"
        )
    return seconds


def _threads() -> int:
    value = os.environ.get(THREADS_ENV)
    if not value:
        return DEFAULT_THREADS
    if not value.isdigit() or int(value) < 1:
        raise ValueError(f"{THREADS_ENV}={value!r}: give the number of query threads as a positive integer")
    return int(value)
