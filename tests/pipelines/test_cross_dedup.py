"""Deduplication across snapshots through the real steps (pipelines.steps) on two small generated
snapshots: B repeats some of A's pages exactly and as near-duplicate variants, and adds its own.

The ground truth is how B was made (which A page each B record copies), not the code's output.
"""

from __future__ import annotations

import dataclasses
import json
import random

import numpy as np
import polars as pl
import pytest

from pipelines import reasons
from pipelines.config import CurationConfig
from pipelines.dedup import DedupConfig
from pipelines.executor import ExecutorConfig
from pipelines.steps import deduplicate_version, filter_quality, identify_languages, ingest_snapshot
from records.dedup_index import Segment, index_version, open_prefix, prefix_blocks, write_segment
from records.layout import DataLayout
from sample.crawl import SOURCES_DIR, cut_pages, load_sources, write_jsonl_gz

EXECUTOR = ExecutorConfig(tasks=2, workers=1, ray_address=None)
NUM_A, NUM_EXACT, NUM_NEAR, NUM_NEW = 30, 8, 8, 12


def _variant(text: str, rng: random.Random) -> str:
    """A near-duplicate: one word replaced and the last few words cut (5-gram Jaccard about 0.9)."""
    tokens = text.split(" ")
    tokens[len(tokens) // 2] = "variant"
    return " ".join(tokens[: max(10, len(tokens) - rng.randint(2, 6))])


def _record(number: int, text: str, snapshot: str) -> dict:
    return {"id": f"{snapshot}-{number:04d}", "url": f"https://example.org/{snapshot}/{number}.html",
            "text": text, "language": "en", "date": "2025-01-01T00:00:00Z"}  # fmt: skip


@pytest.fixture(scope="module")
def two_snapshots(tmp_path_factory):
    """A and B ingested (A first), filtered, then deduplicated in registration order. Returns the
    layout, the dedup results, B's quality version, and B's truth: record id -> (A page, kind)."""
    rng = random.Random(3)
    pages = [p.text for p in cut_pages({"en": load_sources(SOURCES_DIR)["en"]}, rng)]
    assert len(pages) >= NUM_A + NUM_NEW
    layout = DataLayout(tmp_path_factory.mktemp("cross") / "data")
    a_records = [_record(i, pages[i], "a") for i in range(NUM_A)]
    b_records, truth = [], {}
    for i in range(NUM_EXACT):
        b_records.append(_record(len(b_records), pages[i], "b"))
        truth[b_records[-1]["id"]] = (i, "exact")
    b_records.append(_record(len(b_records), pages[0], "b"))  # twice in B: an in-snapshot group too
    truth[b_records[-1]["id"]] = (0, "exact")
    for i in range(NUM_EXACT, NUM_EXACT + NUM_NEAR):
        b_records.append(_record(len(b_records), _variant(pages[i], rng), "b"))
        truth[b_records[-1]["id"]] = (i, "near")
    for i in range(NUM_A, NUM_A + NUM_NEW):
        b_records.append(_record(len(b_records), pages[i], "b"))
        truth[b_records[-1]["id"]] = (None, "new")
    for name, records in (("A", a_records), ("B", b_records)):
        # Two files, so two tasks: B's two copies of page 0 (one cluster) fall in different tasks.
        (layout.snapshot_dir(name) / "jsonl").mkdir(parents=True)
        chunks = (
            [r for k, r in enumerate(records) if k % 3 == 0],
            [r for k, r in enumerate(records) if k % 3],
        )
        for part, chunk in enumerate(chunks):
            write_jsonl_gz(layout.snapshot_dir(name) / "jsonl" / f"part-{part:05d}.jsonl.gz", chunk)
    config = CurationConfig()
    filtered = {}
    for name in ("A", "B"):
        raw = ingest_snapshot(layout, name, config, EXECUTOR)
        languages = identify_languages(layout, raw.manifest, config, EXECUTOR)
        filtered[name] = filter_quality(layout, languages.manifest, config, EXECUTOR).manifest
    with pytest.raises(ValueError, match="'A' has no deduplicated version yet"):
        deduplicate_version(layout, filtered["B"], config, EXECUTOR)  # A registered first, not curated
    dedup_a = deduplicate_version(layout, filtered["A"], config, EXECUTOR)
    dedup_b = deduplicate_version(layout, filtered["B"], config, EXECUTOR)
    return layout, dedup_a, dedup_b, filtered["B"], truth, {r["id"]: r["text"] for r in a_records}


def test_b_keeps_one_copy_per_cluster_and_names_the_a_document(two_snapshots):
    layout, dedup_a, dedup_b, _, truth, a_texts = two_snapshots
    a_kept = pl.read_parquet(dedup_a.folder / "index.parquet")
    a_kept_ids = set(a_kept["source_id"].to_list())
    b_index = pl.read_parquet(dedup_b.folder / "index.parquet")
    b_exclusions = pl.read_parquet(dedup_b.folder / "exclusions.parquet")
    details = {row["source_id"]: (row["reason"], json.loads(row["details"]))
               for row in b_exclusions.to_dicts()}  # fmt: skip
    b_kept = set(b_index["source_id"].to_list())
    checked = []
    for b_id, (page, kind) in truth.items():
        a_id = f"a-{page:04d}" if page is not None else None
        if kind == "new":
            assert details.get(b_id, (None, {}))[1].get("duplicate_of_snapshot") is None, b_id
            continue
        if a_id not in a_kept_ids:
            continue  # A dropped that page itself (quality): B's copy has nothing to duplicate
        checked.append(b_id)
        assert b_id not in b_kept, (b_id, kind)
        reason, why = details[b_id]
        assert reason == (reasons.EXACT_DUPLICATE if kind == "exact" else reasons.NEAR_DUPLICATE), b_id
        assert why["duplicate_of_snapshot"] == "A" and why["duplicate_of_version"] == dedup_a.manifest.ref
        a_doc = a_kept.filter(pl.col("source_id") == a_id)["doc_id"].item()
        assert why["duplicate_of"] == a_doc, (b_id, why)
        if b_id == "b-0008":  # B's second copy of page 0, in the other task: B's own cluster of two
            assert why["cluster_size"] == 2 and why["cluster_id"].startswith("B/jsonl/part-00000")
    assert len(checked) >= NUM_EXACT + NUM_NEAR - 4  # the quality filters keep nearly all of these pages
    assert "b-0008" in checked and dedup_b.excluded["documents"] >= len(checked)
    # New pages of B are kept unless B's own filters dropped them.
    new_kept = [b for b, (_, kind) in truth.items() if kind == "new" and b in b_kept]
    assert len(new_kept) >= NUM_NEW - 2
    assert len(a_texts) == NUM_A


def test_snapshot_scope_keeps_both_copies(two_snapshots):
    layout, dedup_a, _, filtered_b, truth, _ = two_snapshots
    config = CurationConfig(dedup=DedupConfig(scope="snapshot"))
    alone = deduplicate_version(layout, filtered_b, config, EXECUTOR)
    kept = set(pl.read_parquet(alone.folder / "index.parquet")["source_id"].to_list())
    a_kept = set(pl.read_parquet(dedup_a.folder / "index.parquet")["source_id"].to_list())
    repeated = [b for b, (page, kind) in truth.items() if kind != "new" and f"a-{page:04d}" in a_kept]
    # Each repeated page survives in B (once: the second exact copy of page 0 is B's own duplicate).
    assert len([b for b in repeated if b in kept]) == len({truth[b][0] for b in repeated})
    assert "cross_snapshot" not in alone.manifest.config
    assert alone.manifest.config["dedup"]["scope"] == "snapshot"


def test_the_index_version_is_sealed_in_lineage_and_a_rerun_reuses_the_version(two_snapshots):
    layout, dedup_a, dedup_b, filtered_b, _, _ = two_snapshots
    assert dedup_a.manifest.config["cross_snapshot"] == {
        "scope": "global", "index_version": index_version([]), "earlier_versions": 0,
    }  # fmt: skip
    assert dedup_b.manifest.config["cross_snapshot"] == {
        "scope": "global", "index_version": index_version([("A", dedup_a.manifest.ref)]), "earlier_versions": 1,
    }  # fmt: skip
    again = deduplicate_version(layout, filtered_b, CurationConfig(), EXECUTOR)
    assert again.manifest.version_id == dedup_b.manifest.version_id and not again.created


def test_re_curating_a_does_not_re_curate_b_but_changes_what_b_would_be_checked_against(two_snapshots):
    layout, dedup_a, dedup_b, filtered_b, _, _ = two_snapshots
    from pipelines.dedup.scope import prepare

    config = CurationConfig(dedup=DedupConfig(min_jaccard=0.75))  # same signatures: the same index
    view_before = prepare(layout, "B", config.dedup)
    assert view_before.earlier == (("A", dedup_a.manifest.ref),)
    parent_a = dedup_a.manifest.parents[0]
    from records.manifest import load_manifest

    a_quality = load_manifest(layout.datasets / parent_a)
    again_a = deduplicate_version(layout, a_quality, config, EXECUTOR)
    assert again_a.created and again_a.manifest.ref != dedup_a.manifest.ref
    assert prepare(layout, "B", config.dedup).earlier == (("A", again_a.manifest.ref),)
    assert (dedup_b.folder / "manifest.json").exists()  # B's version stands as it was
    # Back to A's first version, so the other tests see the index they expect.
    deduplicate_version(layout, a_quality, CurationConfig(), EXECUTOR)


def _synthetic(tmp_path, num_segments: int, rows: int, seed: int):
    rng = np.random.default_rng(seed)
    ids = []
    for s in range(num_segments):
        sha = [rng.bytes(32).hex() for _ in range(rows)]
        sig = rng.integers(0, 2**32, (rows, 4), dtype=np.uint32)
        bands = rng.integers(0, 2**64, (rows, 2), dtype=np.uint64)
        write_segment(
            tmp_path / "segments" / f"v{s}", versions=[f"deduplicated/v{s}"], snapshots=[f"S{s}"],
            ids=[f"doc{s}-{r}" for r in range(rows)], sha256_hex=sha, sources=np.zeros(rows, np.uint32),
            exact_keys=np.array([int(h[:16], 16) for h in sha], np.uint64), signatures=sig,
            signed_rows=np.arange(rows, dtype=np.uint32), band_keys=bands,
        )  # fmt: skip
        ids.append(f"v{s}")
    return ids


def test_prefix_blocks_cover_the_prefix_with_one_block_per_set_bit():
    for length in range(0, 70):
        blocks = prefix_blocks(length)
        assert len(blocks) == bin(length).count("1")
        assert sum(size for _, size in blocks) == length
        assert all(start % size == 0 for start, size in blocks)  # aligned: shared by later prefixes


def test_merged_blocks_answer_as_the_segments_they_merge(tmp_path):
    ids = _synthetic(tmp_path, 7, 50, seed=1)
    singles = [Segment.open(tmp_path / "segments" / i) for i in ids]
    merged = open_prefix(tmp_path, ids)
    assert len(merged) == 3 and [m.meta["num_documents"] for m in merged] == [200, 100, 50]
    for band in range(2):
        keys = np.concatenate([np.asarray(s.array("band_keys")[band][::7]) for s in singles])
        expected = sorted((q, ids[k], r) for k, s in enumerate(singles)
                          for q, r in zip(*[a.tolist() for a in s.band_candidates(band, keys)], strict=True))  # fmt: skip
        found = []
        for m in merged:
            query, signed = m.band_candidates(band, keys)
            rows = m.rows_of_signed(signed)
            for q, (doc_id, _, version, _) in zip(query.tolist(), m.describe(rows), strict=True):
                segment, row = version.split("/")[1], int(doc_id.split("-")[1])
                found.append((q, segment, row))
        assert sorted(found) == expected
    # The exact keys too: each single row is found once, in the block that holds it.
    shas = [d[1] for s in singles for d in s.describe(np.arange(50))]
    keys = np.array([int(h[:16], 16) for h in shas], np.uint64)
    hits = sum(len(m.exact_candidates(keys)[0]) for m in merged)
    assert hits == 7 * 50
    assert dataclasses.is_dataclass(merged[0])
