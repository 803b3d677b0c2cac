"""The one quoting helper (records.sql_quote): what it writes reads back as the same value in DuckDB,
quotes, non-ASCII and SQL look-alikes included; a NUL or invalid Unicode is refused, never cut. And
no module outside it quotes SQL by hand or formats a file path into SQL."""

from __future__ import annotations

import re
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from records.sql_quote import sql_identifier, sql_literal

REPO = Path(__file__).resolve().parents[2]
ODD = [
    "plain",
    "",
    "it's",
    "''",
    "'); DROP TABLE t; --",
    'double "quoted"',
    "back\\slash\\'",
    "Zürich – 東京 – Ελλάδα – 🙂",
    "line\nbreak\ttab",
    "\u200bzero width",
]


@pytest.mark.parametrize("value", ODD)
def test_a_literal_reads_back_as_the_same_value(value):
    assert duckdb.connect().execute(f"SELECT {sql_literal(value)}").fetchone() == (value,)


@pytest.mark.parametrize("name", [n for n in ODD if n])
def test_an_identifier_names_exactly_that_table_and_column(name):
    con = duckdb.connect()
    con.execute(f"CREATE TABLE {sql_identifier(name)} ({sql_identifier(name)} INTEGER)")
    con.execute(f"INSERT INTO {sql_identifier(name)} VALUES (7)")
    assert con.execute("SELECT table_name, column_name FROM information_schema.columns").fetchall() == [
        (name, name)
    ]
    assert con.execute(f"SELECT {sql_identifier(name)} FROM {sql_identifier(name)}").fetchall() == [(7,)]


def test_a_path_with_quotes_and_non_ascii_in_ddl(tmp_path):
    """A view (which DuckDB will not prepare) over a file whose name holds a quote and non-ASCII."""
    path = tmp_path / "l'été 東京.parquet"
    pq.write_table(pa.table({"a": [1, 2, 3]}), path)
    con = duckdb.connect()
    con.execute(f"CREATE VIEW v AS SELECT * FROM read_parquet({sql_literal(path)})")
    assert con.execute("SELECT sum(a) FROM v").fetchone() == (6,)


@pytest.mark.parametrize("quote", [sql_literal, sql_identifier])
@pytest.mark.parametrize("value", ["a\x00b", "\x00", "x' \x00 --"])
def test_nul_is_refused_not_truncated(quote, value):
    with pytest.raises(ValueError, match="NUL character"):
        quote(value)


@pytest.mark.parametrize("quote", [sql_literal, sql_identifier])
def test_invalid_unicode_and_non_strings_are_refused(quote):
    with pytest.raises(ValueError, match="not valid Unicode"):
        quote("lone \udc80 surrogate")
    with pytest.raises(TypeError):
        quote(b"bytes")


def _code_files() -> list[Path]:
    skip = {"tests", ".venv", "node_modules", ".git", "wheelhouse", "data", "dagster_home"}
    return [
        p
        for p in REPO.rglob("*.py")
        if not skip & set(p.relative_to(REPO).parts) and not p.relative_to(REPO).parts[0].startswith(".")
    ]


def test_no_module_but_the_helper_quotes_sql_by_hand():
    hand_quoting = 'replace("\'", "\'\'")'
    found = sorted(str(p.relative_to(REPO)) for p in _code_files() if hand_quoting in p.read_text("utf-8"))
    assert found == ["records/sql_quote.py"]


def test_no_file_path_or_value_is_formatted_into_sql():
    """read_parquet takes its files as a parameter (``read_parquet(?)``) or, in DDL, through
    sql_literal; an f-string placeholder straight inside read_parquet( or after = ' is a value
    formatted into SQL."""
    formatted = re.compile(r"read_parquet\(\s*'?\{(?!sql_literal\()|=\s*'\{")
    found = [
        f"{p.relative_to(REPO)}:{n}"
        for p in _code_files()
        for n, line in enumerate(p.read_text("utf-8").splitlines(), 1)
        if formatted.search(line)
    ]
    assert found == []
