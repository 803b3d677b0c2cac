"""The four curation steps end to end on a generated snapshot, from plain Python (no Dagster)."""

from __future__ import annotations

import duckdb
import polars as pl

from pipelines.config import CurationConfig
from pipelines.executor import ExecutorConfig
from pipelines.steps import curate_snapshot
from provenance.ledger import Ledger
from provenance.manifest import verify_version


def test_each_step_seals_a_verifiable_version_pinned_in_the_ledger(curated):
    layout, results, _ = curated
    assert [r.manifest.asset for r in results] == [
        "raw_documents", "language_identified", "quality_filtered", "deduplicated",
    ]  # fmt: skip
    for parent, child in zip(results, results[1:], strict=False):
        assert child.manifest.parents == (parent.manifest.ref,)
    for result in results:
        assert result.created and verify_version(result.folder) == []
    ledger = Ledger(layout.ledger)
    assert ledger.verify() == []
    pinned = [e.payload["dataset_version"] for e in ledger.entries()]
    assert pinned == [r.manifest.ref for r in results]


def test_rerun_with_unchanged_input_reuses_every_version(curated):
    layout, results, _ = curated
    again = curate_snapshot(layout, "small", CurationConfig(), ExecutorConfig(tasks=2, workers=2))
    assert [r.manifest.version_id for r in again] == [r.manifest.version_id for r in results]
    assert not any(r.created for r in again)
    assert Ledger(layout.ledger).size() == len(results)


def test_every_raw_document_is_kept_or_removed_exactly_once(curated):
    layout, results, _ = curated
    con = duckdb.connect(str(layout.catalog), read_only=True)
    raw = results[0].manifest.version_id
    later = [r.manifest.version_id for r in results[1:]]
    (num_raw,) = con.execute("SELECT count(*) FROM documents WHERE dataset_version = ?", [raw]).fetchone()
    outcomes = con.execute(
        """SELECT doc_id, count(*) FILTER (WHERE NOT kept) AS removed,
                  count(*) FILTER (WHERE kept AND dataset_version = ?) AS kept_at_end
           FROM documents WHERE dataset_version IN (SELECT unnest(?)) GROUP BY doc_id""",
        [later[-1], later],
    ).fetchall()
    assert num_raw == results[0].kept["documents"] > 0
    assert len(outcomes) == num_raw
    assert all(removed + kept == 1 for _, removed, kept in outcomes)


def test_reasons_and_counts_match_the_ground_truth(curated):
    layout, results, truth = curated
    con = duckdb.connect(str(layout.catalog), read_only=True)
    removed = dict(
        con.execute(
            "SELECT source_id, reason FROM documents WHERE NOT kept AND snapshot = 'small'"
        ).fetchall()
    )
    spam = truth.filter(pl.col("kind").is_in(["repetition_spam", "symbol_spam"]))["source_id"].to_list()
    dropped_spam = [s for s in spam if s in removed]
    assert len(dropped_spam) >= 0.9 * len(spam)
    exact = truth.filter(pl.col("kind") == "exact_duplicate")
    kept_ids = {
        row[0]
        for row in con.execute(
            "SELECT source_id FROM documents WHERE kept AND dataset_version = ?",
            [results[-1].manifest.version_id],
        ).fetchall()
    }
    # Of each exact-duplicate pair, at most one survives.
    for source_id, original in exact.select("source_id", "duplicate_of").iter_rows():
        assert not (source_id in kept_ids and original in kept_ids), (source_id, original)


def test_pii_is_redacted_in_everything_kept(curated):
    layout, results, truth = curated
    final = results[-1].folder
    texts = pl.read_parquet(final / "shards" / "*.parquet").select("source_id", "text")
    pii = truth.filter(pl.col("kind") == "pii").select("source_id", "pii")
    joined = texts.join(pii, on="source_id")
    assert joined.height > 0
    for text, strings in joined.select("text", "pii").iter_rows():
        for s in strings:
            assert s not in text
