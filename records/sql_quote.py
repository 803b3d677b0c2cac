"""The one way a literal or an identifier is written into SQL text (DuckDB's syntax).

Values reach a query as parameters (``?``); these two are for what cannot be a parameter: names in
DDL (tables, columns) and literals in statements DuckDB will not prepare (``CREATE VIEW``). A value
with a NUL character, or one that is not valid Unicode, is refused with a ValueError naming it:
DuckDB would keep the NUL, but a C reader of the same text would cut it there, and an answer must
never depend on which one reads it. Any other character, quotes and non-ASCII included, is kept
exactly (quotes are doubled, the SQL standard's escape).
"""

from __future__ import annotations

from os import PathLike


def _checked(value: str | PathLike, what: str) -> str:
    text = str(value) if isinstance(value, PathLike) else value
    if not isinstance(text, str):
        raise TypeError(f"SQL {what}: expected a string or a path, got {type(value).__name__}")
    if "\x00" in text:
        raise ValueError(f"SQL {what} {text!r}: holds a NUL character, which SQL text cannot carry; refused")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as error:
        raise ValueError(f"SQL {what} {text!r}: not valid Unicode ({error.reason}); refused") from None
    return text


def sql_literal(value: str | PathLike) -> str:
    """``value`` (a string or a path) as a SQL string literal: ``'it''s'``."""
    return "'" + _checked(value, "literal").replace("'", "''") + "'"


def sql_identifier(name: str) -> str:
    '''``name`` as a quoted SQL identifier (a table, view or column name): ``"my ""col"""``.'''
    return '"' + _checked(name, "identifier").replace('"', '""') + '"'
