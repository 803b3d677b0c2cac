"""The catalog's tables over a curated snapshot, and the read-only guard of `apertus audit sql`."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from records.catalog import query


def test_documents_view_has_the_promised_columns(curated):
    layout, results, _ = curated
    columns, rows = query(layout, "SELECT * FROM documents LIMIT 5")
    assert columns == [
        "dataset_version", "asset", "snapshot", "doc_id", "source_id", "url", "sha256", "language",
        "language_score", "kept", "step", "reason", "details",
    ]  # fmt: skip
    assert len(rows) == 5


def test_views_agree_with_the_manifests(curated):
    layout, results, _ = curated
    for result in results:
        _, [(kept, removed)] = query(
            layout,
            f"""SELECT count(*) FILTER (WHERE kept), count(*) FILTER (WHERE NOT kept)
                FROM documents WHERE dataset_version = '{result.manifest.version_id}'""",
        )
        assert (kept, removed) == (result.kept["documents"], result.excluded["documents"])
    _, versions = query(layout, "SELECT asset, dataset_version FROM dataset_versions ORDER BY created_at")
    assert {v for _, v in versions} == {r.manifest.version_id for r in results}
    _, entries = query(
        layout, "SELECT event_type, payload->>'dataset_version' FROM ledger_entries ORDER BY 1"
    )
    assert {e[1] for e in entries} == {r.manifest.ref for r in results}


def test_removed_documents_name_their_step_reason_and_numbers(curated):
    layout, _, _ = curated
    _, rows = query(layout, "SELECT step, reason, details FROM documents WHERE NOT kept")
    assert rows
    for step, reason, details in rows:
        assert step in {"language_identified", "quality_filtered", "deduplicated"}
        assert reason
        assert isinstance(json.loads(details), dict) and json.loads(details)
    _, near = query(layout, "SELECT details FROM documents WHERE reason = 'near_duplicate' LIMIT 1")
    assert {"cluster_id", "cluster_size", "duplicate_of"} <= set(json.loads(near[0][0]))


@pytest.mark.parametrize(
    "sql",
    [
        "DELETE FROM documents",
        "DROP VIEW documents",
        "CREATE TABLE x AS SELECT 1",
        "ATTACH '/tmp/other.duckdb' AS other",
        "COPY (SELECT 1) TO '/tmp/out.csv'",
        "INSTALL httpfs",
        "LOAD httpfs",
        "SET enable_external_access = true",
        "SELECT 1; DELETE FROM documents",
    ],
)
def test_writes_and_escapes_are_refused(curated, sql):
    layout, _, _ = curated
    with pytest.raises(ValueError):
        query(layout, sql)


def test_queries_cannot_read_outside_the_data_folder(curated, tmp_path):
    layout, _, _ = curated
    outside = tmp_path / "secret.csv"
    outside.write_text("a\n1\n")
    import duckdb

    with pytest.raises(duckdb.Error):
        query(layout, f"SELECT * FROM read_csv('{outside}')")


def test_audit_sql_command(curated):
    layout, _, _ = curated
    env = {"APERTUS_DATA": str(layout.root), "PATH": "/usr/bin:/bin"}
    ok = subprocess.run(
        [sys.executable, "-m", "apertus.cli", "audit", "sql", "SELECT count(*) AS n FROM documents", "--format", "json"],
        capture_output=True, text=True, env=env, check=False,
    )  # fmt: skip
    assert ok.returncode == 0, ok.stderr
    assert json.loads(ok.stdout)[0]["n"] > 0
    refused = subprocess.run(
        [sys.executable, "-m", "apertus.cli", "audit", "sql", "DELETE FROM documents"],
        capture_output=True, text=True, env=env, check=False,
    )  # fmt: skip
    assert refused.returncode == 2 and "refused a DELETE statement" in refused.stderr


def test_audit_cli_imports_neither_dagster_nor_torch(curated):
    layout, _, _ = curated
    code = (
        "import sys; from apertus.cli import main; main(['audit', 'sql', 'SELECT 1']); "
        "print(sorted(m for m in ('dagster', 'torch', 'ray', 'datatrove') if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True,
        env={"APERTUS_DATA": str(layout.root), "PATH": "/usr/bin:/bin"},
    )  # fmt: skip
    assert out.stdout.strip().splitlines()[-1] == "[]"
