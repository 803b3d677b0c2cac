"""The four curation steps end to end on a generated snapshot, from plain Python (no Dagster)."""

from __future__ import annotations

import dataclasses
import shutil

import duckdb
import polars as pl

from pipelines.config import CurationConfig
from pipelines.executor import ExecutorConfig
from pipelines.steps import curate_snapshot, identify_languages
from records.layout import DataLayout
from records.ledger import Ledger
from records.manifest import verify_version
from records.step_memo import STEP_MEMO


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


def test_rerun_with_unchanged_input_reuses_every_version(curated, capfd):
    layout, results, _ = curated
    capfd.readouterr()
    again = curate_snapshot(layout, "small", CurationConfig(), ExecutorConfig(tasks=2, workers=2))
    assert [r.manifest.version_id for r in again] == [r.manifest.version_id for r in results]
    assert not any(r.created for r in again)
    assert Ledger(layout.ledger).size() == len(results)
    # The ingest reads the snapshot again (its input is a listing); the steps whose input is a
    # version run nothing: each reuses the version its first run made from that input.
    err = capfd.readouterr().err
    assert "apertus: raw_documents-" in err  # its task log folder, as it starts its tasks
    for result in results[1:]:
        assert f"{result.manifest.ref} was made from {result.manifest.parents[0]}" in err
        assert f"apertus: {result.manifest.asset}-" not in err
    assert "apertus: signatures:" not in err  # no deduplication stage either


def test_a_memo_is_only_a_pointer_the_version_lineage_must_confirm(curated, tmp_path, capfd):
    source, results, _ = curated
    layout = DataLayout(tmp_path / "data")
    shutil.copytree(source.root, layout.root)
    raw, languages, quality, _ = (r.manifest for r in results)
    memos = sorted((layout.work / STEP_MEMO / "small").iterdir())
    assert [m.name.split("-")[0] for m in memos] == [
        "deduplicated",
        "language_identified",
        "quality_filtered",
    ]
    # Forged: the language step's memo names the quality version (another lineage). The step runs
    # and seals its own version again, and the memo points at it afterwards.
    memo = next(m for m in memos if m.name.startswith("language_identified"))
    memo.write_text(quality.ref + "\n")
    capfd.readouterr()
    again = identify_languages(layout, raw, CurationConfig(), ExecutorConfig(tasks=2, workers=1))
    assert again.manifest.ref == languages.ref
    assert "apertus: language_identified-" in capfd.readouterr().err  # its tasks ran
    assert memo.read_text().strip() == languages.ref
    # Another config is another memo: nothing reused.
    other = CurationConfig(language=dataclasses.replace(CurationConfig().language, min_score=0.9))
    changed = identify_languages(layout, raw, other, ExecutorConfig(tasks=2, workers=1))
    assert changed.manifest.ref != languages.ref and changed.created


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


def test_a_snapshot_filtered_to_nothing_gives_empty_versions_for_every_later_step(tmp_path):
    """Finding 13: every document dropped at language identification; the later steps still seal and
    pin a version, of 0 documents, with its tables present and empty."""
    import dataclasses

    from pipelines.langid import LanguageIdConfig
    from records.layout import DataLayout
    from sample.crawl import generate_snapshot

    layout = DataLayout(tmp_path / "data")
    generate_snapshot(layout.snapshot_dir("nothing"), seed=3, num_documents=60)
    config = dataclasses.replace(CurationConfig(), language=LanguageIdConfig(languages=("xx",)))
    raw, languages, filtered, deduplicated = curate_snapshot(
        layout, "nothing", config, ExecutorConfig(tasks=2, workers=1)
    )
    assert raw.kept["documents"] > 0 and languages.kept["documents"] == 0
    ledger = Ledger(layout.ledger)
    for step in (languages, filtered, deduplicated):
        assert step.created and step.ledger_index is not None
        assert step.kept["documents"] == 0
        assert verify_version(step.folder) == []
        assert pl.read_parquet(step.folder / "index.parquet").height == 0
        assert (step.folder / "exclusions.parquet").exists()
    assert ledger.verify() == []
    pinned = [e.payload["dataset_version"] for e in ledger.entries()]
    assert pinned == [r.manifest.ref for r in (raw, languages, filtered, deduplicated)]
    assert pl.read_parquet(filtered.folder / "exclusions.parquet").height == 0
    # Same (empty) tables, yet each step's version is its own: the tables name the step that wrote them.
    assert len({step.manifest.version_id for step in (languages, filtered, deduplicated)}) == 3
    # The quality score, the last step `apertus curate` runs, scores nothing, and says so.
    from pipelines.quality_model import score_quality, train_quality_classifier

    classifier = train_quality_classifier(
        layout, raw.manifest, (languages.manifest, filtered.manifest), seed=0
    )
    scored = score_quality(
        layout, deduplicated.manifest, classifier.manifest, ExecutorConfig(tasks=2, workers=1)
    )
    assert scored.created and scored.kept["documents"] == 0 and verify_version(scored.folder) == []
    assert _staging_folders(layout) == []


def test_two_snapshots_filtered_to_nothing_never_share_a_version(tmp_path):
    """Issue 15: the steps after language identification write byte-identical (empty) files for two
    snapshots; older code sealed both under the first one's id and manifest. Each now seals its own
    version, whose lineage names its snapshot and parents."""
    import dataclasses

    from pipelines.langid import LanguageIdConfig
    from records.layout import DataLayout
    from records.manifest import load_manifest
    from sample.crawl import generate_snapshot

    layout = DataLayout(tmp_path / "data")
    config = dataclasses.replace(CurationConfig(), language=LanguageIdConfig(languages=("xx",)))
    results = {}
    for snapshot, seed in (("empty-a", 3), ("empty-b", 4)):
        generate_snapshot(layout.snapshot_dir(snapshot), seed=seed, num_documents=20)
        results[snapshot] = curate_snapshot(layout, snapshot, config, ExecutorConfig(tasks=1, workers=1))
    a, b = results["empty-a"][2], results["empty-b"][2]  # quality_filtered: 0 in, 0 out
    assert a.kept["documents"] == b.kept["documents"] == 0
    same_files = {f.path: f.sha256 for f in a.manifest.files if f.path != "lineage.json"}
    assert same_files == {f.path: f.sha256 for f in b.manifest.files if f.path != "lineage.json"}
    assert b.created and a.manifest.version_id != b.manifest.version_id
    assert load_manifest(a.folder).snapshot == "empty-a" and load_manifest(b.folder).snapshot == "empty-b"
    assert verify_version(a.folder) == [] and verify_version(b.folder) == []


def test_configs_name_files_of_the_checkout_relative_to_it():
    """A version's config enters its id: the same code checked out elsewhere must give the same id."""
    from pathlib import Path

    from records.layout import REPO_ROOT as REPO_DIR
    from records.layout import checkout_relative as portable

    config = {"model_path": str(REPO_DIR / "resources/models/m.ftz"), "dir": REPO_DIR / "sample",
              "elsewhere": "/srv/data/x", "names": ("de", "fr"), "n": 4}  # fmt: skip
    assert portable(config) == {"model_path": "resources/models/m.ftz", "dir": "sample",
                                "elsewhere": "/srv/data/x", "names": ["de", "fr"], "n": 4}  # fmt: skip
    assert Path(REPO_DIR / "pipelines").is_dir()


def test_a_step_that_fails_leaves_no_staging_folder(tmp_path):
    """Finding 13: the staging folder of a failed step does not pile up (here the language model does
    not match its recorded hash, so the step raises). It is kept for a retry with the same inputs
    (records.layout.resumable_staging), and the next attempt with other inputs removes it."""
    import dataclasses

    import pytest

    from pipelines.langid import LanguageIdConfig
    from pipelines.steps import identify_languages, ingest_snapshot
    from records.layout import DataLayout
    from sample.crawl import generate_snapshot

    layout = DataLayout(tmp_path / "data")
    generate_snapshot(layout.snapshot_dir("tiny"), seed=5, num_documents=20)
    executor = ExecutorConfig(tasks=1, workers=1)
    raw = ingest_snapshot(layout, "tiny", CurationConfig(), executor)
    broken = dataclasses.replace(CurationConfig(), language=LanguageIdConfig(model_sha256="0" * 64))
    with pytest.raises(ValueError, match="sha256"):
        identify_languages(layout, raw.manifest, broken, executor)
    assert [p.name for p in (layout.work / "staging/resumable/tiny").iterdir() if p.is_dir()] != []
    identify_languages(layout, raw.manifest, CurationConfig(), executor)
    assert _staging_folders(layout) == []


def test_staging_left_by_a_dead_process_is_removed_and_others_are_kept(tmp_path):
    """A kill runs no ``finally``: the next step removes staging folders whose owner process on this
    host is gone, and leaves those of live processes (other snapshots' steps) and of other hosts."""
    import subprocess
    import sys

    from records.layout import STAGING_OWNER_PREFIX, DataLayout, ProcessId, new_staging

    layout = DataLayout(tmp_path / "data")
    root = layout.work / "staging"
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        here = ProcessId.current()
        owners = {
            "dead": ProcessId(here.host, _exited_pid(), 0),
            "live": ProcessId.parse(f"{here.host}-{child.pid}-0"),
            "remote": ProcessId("elsewhere.example", 1, 1),
        }
        for owner in owners.values():
            (root / f"{STAGING_OWNER_PREFIX}{owner}" / "raw_documents-abc").mkdir(parents=True)
        (root / "trained_model-run1").mkdir()  # not made by new_staging: not ours to judge
        mine = new_staging(layout, "language_identified")
        left = sorted(p.relative_to(root).as_posix() for p in root.glob("*/*"))
        assert left == sorted(
            [
                f"{STAGING_OWNER_PREFIX}{owners['live']}/raw_documents-abc",
                f"{STAGING_OWNER_PREFIX}{owners['remote']}/raw_documents-abc",
                mine.relative_to(root).as_posix(),
            ]
        )
        assert (root / "trained_model-run1").is_dir()
    finally:
        child.kill()
        child.wait()


def _exited_pid() -> int:
    import subprocess
    import sys

    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def _staging_folders(layout) -> list[str]:
    """Folders under ``work/staging`` other than the (empty) per-process owner folders."""
    root = layout.work / "staging"
    return [
        p.name
        for p in root.rglob("*")
        if not (p.is_dir() and p.name.startswith("owner-") and p.parent == root)
    ]
