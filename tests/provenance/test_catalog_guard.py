"""`apertus audit sql` has no way out: one SELECT, no file access, bounded time (issue 14, finding 1)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time

import duckdb
import pytest

from records.catalog import query
from records.layout import DataLayout

SLOW = "SELECT count(*) FROM range(100000000) a, range(100000000) b WHERE a.range + b.range = -1"


@pytest.fixture(scope="module")
def data(curated, tmp_path_factory):
    """A copy of the curated folder (the attacks below would change the original on the old code),
    with a secret file inside it, standing for the private key."""
    source, _, _ = curated
    layout = DataLayout(tmp_path_factory.mktemp("guard") / "data")
    shutil.copytree(source.root, layout.root)
    (layout.root / "secret.pem").write_text("PRIVATE KEY\n")
    (layout.root / "secret.pem").chmod(0o600)
    return layout


def _files_state(layout: DataLayout) -> dict:
    """Bytes and modes of the ledger and the secrets: what an escape would change."""
    watched = [*sorted(layout.ledger.rglob("*")), layout.root / "secret.pem"]
    return {p: (p.read_bytes(), p.stat().st_mode) for p in watched if p.is_file()}


@pytest.mark.parametrize(
    "template",
    [
        "EXPLAIN ANALYZE COPY (SELECT 'forged' AS x) TO '{target}' (FORMAT csv, HEADER false)",
        "/* x */ explain /* y */ analyze COPY (SELECT 'forged' AS x) TO '{target}' (FORMAT csv)",
        "EXPLAIN COPY (SELECT 'forged' AS x) TO '{target}' (FORMAT csv)",
        "EXPLAIN (FORMAT json) COPY (SELECT 'forged' AS x) TO '{target}'",
        "EXPLAIN ANALYZE SELECT 1",
        "EXPLAIN EXPLAIN ANALYZE COPY (SELECT 1) TO '{target}'",
        "EXPLAIN SELECT 1; COPY (SELECT 1) TO '{target}'",
    ],
)
def test_explain_analyze_and_explain_of_a_write_are_refused(data, template):
    before = _files_state(data)
    for target in (data.ledger / "entries.jsonl", data.root / "secret.pem"):
        with pytest.raises(
            ValueError, match="EXPLAIN is allowed only of a single SELECT|exactly one|not valid SQL"
        ):
            query(data, template.format(target=target))
    assert _files_state(data) == before


def test_explain_of_a_select_is_answered(data):
    columns, rows = query(data, "EXPLAIN SELECT count(*) FROM documents")
    assert rows[0][0] == "physical_plan" and "Aggregate" in rows[0][1]


@pytest.mark.parametrize(
    "template",
    [
        "SELECT content FROM read_text('{root}/secret.pem')",
        "SELECT content FROM read_blob('{root}/ledger/entries.jsonl')",
        "SELECT * FROM read_csv('{root}/ledger/entries.jsonl')",
        "SELECT * FROM read_json('{root}/ledger/entries.jsonl')",
        "SELECT * FROM read_parquet('{root}/datasets/*/*/index.parquet')",
        "SELECT * FROM glob('{root}/**')",
        "SELECT * FROM read_text('/etc/hostname')",
        "SELECT * FROM '{root}/datasets/*/*/exclusions.parquet'",
    ],
)
def test_no_file_can_be_read(data, template):
    with pytest.raises(duckdb.Error, match="disabled by configuration"):
        query(data, template.format(root=data.root))


def test_limits_are_set_and_locked(data):
    _, [(threads, memory, external, locked)] = query(
        data,
        "SELECT current_setting('threads'), current_setting('memory_limit'), "
        "current_setting('enable_external_access'), current_setting('lock_configuration')",
    )
    assert (threads, external, locked) == (2, False, True)
    assert memory.endswith("GiB") and float(memory.split()[0]) < 2.0


def test_a_slow_query_is_interrupted(data):
    started = time.monotonic()
    with pytest.raises(ValueError, match="timed out after 0.5 s"):
        query(data, SLOW, timeout_s=0.5)
    assert time.monotonic() - started < 3
    assert query(data, "SELECT 1")[1] == [(1,)]  # the catalog is still usable


def test_audit_sql_says_the_query_timed_out(data):
    env = {**os.environ, "APERTUS_DATA": str(data.root), "APERTUS_SQL_TIMEOUT_S": "0.5"}
    started = time.monotonic()
    out = subprocess.run(
        [sys.executable, "-m", "apertus.cli", "audit", "sql", SLOW],
        capture_output=True, text=True, env=env, check=False, timeout=60,
    )  # fmt: skip
    assert out.returncode == 2 and "timed out after 0.5 s" in out.stderr, out.stderr
    assert time.monotonic() - started < 30
    bad = subprocess.run(
        [sys.executable, "-m", "apertus.cli", "audit", "sql", "SELECT 1"],
        capture_output=True, text=True, env={**env, "APERTUS_SQL_TIMEOUT_S": "soon"}, check=False,
    )  # fmt: skip
    assert bad.returncode == 2 and "APERTUS_SQL_TIMEOUT_S" in bad.stderr
