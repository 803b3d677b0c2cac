"""Curricula: config loading and validation, the sampling math, and the stage files they produce."""

from __future__ import annotations

import json
import shutil
from collections import Counter
from dataclasses import replace
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import yaml

from pipelines.curriculum import load_curriculum, validate
from pipelines.curriculum.config import curriculum_from_dict
from pipelines.curriculum.sampling import integer_multiplicities, stage_order, temperature_shares
from pipelines.curriculum.stages import build_curriculum_stages, load_inventory
from pipelines.executor import ExecutorConfig
from pipelines.quality_model import score_quality, train_quality_classifier
from records.layout import DataLayout
from records.ledger import Ledger

CONFIGS = Path(__file__).resolve().parents[2] / "configs" / "curriculum"
SAMPLE = CONFIGS / "sample.yaml"


@pytest.fixture(scope="module")
def scored(curated, tmp_path_factory):
    """A copy of the curated data folder with a quality_scored version of its snapshot."""
    layout, results, _ = curated
    copy = DataLayout(tmp_path_factory.mktemp("curriculum") / "data")
    shutil.copytree(layout.root, copy.root)
    raw, languages, filtered, deduplicated = (r.manifest for r in results)
    classifier = train_quality_classifier(copy, raw, (languages, filtered), seed=0)
    return copy, score_quality(
        copy, deduplicated, classifier.manifest, ExecutorConfig(tasks=2, workers=1)
    ).manifest


@pytest.fixture(scope="module")
def built(scored):
    layout, source = scored
    return (
        layout,
        source,
        build_curriculum_stages(layout, [source], load_curriculum(SAMPLE), where=str(SAMPLE)),
    )


def _stage_frames(folder: Path) -> list[pl.DataFrame]:
    return [pl.read_parquet(p) for p in sorted((folder / "stages").glob("*.parquet"))]


def _sample_dict() -> dict:
    return yaml.safe_load(SAMPLE.read_text())


# --- config --------------------------------------------------------------------------------------


def test_a_mixture_may_be_a_list_of_sources_and_weights():
    values = _sample_dict()
    values["stages"][0]["mixture"] = [
        {"source": "2024-10", "weight": 0.25},
        {"source": "2025-01", "weight": 0.75},
    ]
    mixture = curriculum_from_dict(values).stages[0].mixture
    assert [(w.source, w.weight) for w in mixture] == [("2024-10", 0.25), ("2025-01", 0.75)]


def test_shipped_curricula_load():
    sample = load_curriculum(SAMPLE)
    assert [s.name for s in sample.stages] == ["broad", "mid", "anneal"]
    assert sum(sample.stage_tokens()) == sample.total_tokens
    apertus = load_curriculum(CONFIGS / "apertus-15t.yaml")
    assert len(apertus.stages) == 5 and sum(apertus.stage_tokens()) == 15 * 10**12
    assert apertus.stages[-1].selection.min_quality_percentile == 90  # the top 10% per language


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            lambda d: d["stages"][0].update(mixture={"*": 0.9}),
            r"stages\[0\] \(broad\): mixture: weights sum to 0.9",
        ),
        (lambda d: d["stages"][1].update(fraction=0.5), r"stages\[\]\.fraction: sum to 1\.2"),
        (lambda d: d["stages"][0].update(tokens=10), "set exactly one of tokens and fraction"),
        (
            lambda d: d["stages"][0].update(mixture={"*": 0.5, "small": 0.5}),
            '"\\*" already holds every snapshot',
        ),
        (lambda d: d["stages"][0].update(colour="red"), r"unknown field\(s\) colour"),
        (
            lambda d: d["stages"][0].update(
                mixture=[{"source": "a", "weight": 0.5}, {"source": "a", "weight": 0.5}]
            ),
            "name each source once",
        ),
        (
            lambda d: d["stages"][0]["cluster_upsampling"].append(
                {"min_size": 3, "max_size": 3, "weight": 2}
            ),
            "overlap",
        ),
    ],
)
def test_structural_mistakes_are_named_with_file_and_field(tmp_path, change, message):
    values = _sample_dict()
    change(values)
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(values))
    with pytest.raises(ValueError, match=message) as error:
        load_curriculum(path)
    assert str(path) in str(error.value)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            lambda d: d["stages"][0].update(mixture={"2019-crawl": 1.0}),
            r"unknown source\(s\) \['2019-crawl'\].*available snapshots: \['small'\]",
        ),
        (
            lambda d: d["stages"][2]["selection"].update(languages=["xx", "en"]),
            r"unknown language\(s\) \['xx'\]",
        ),
        (lambda d: d["stages"][2]["selection"].update(min_language_score=1.01), "selects no document"),
        (lambda d: d["stages"][2].update(max_epochs=1), "more repetition than max_epochs 1"),
    ],
)
def test_data_mistakes_are_caught_before_any_work(scored, change, message):
    layout, source = scored
    values = _sample_dict()
    change(values)
    curriculum = curriculum_from_dict(values, "bad.yaml")
    size = Ledger(layout.ledger).size()
    with pytest.raises(ValueError, match=message):
        build_curriculum_stages(layout, [source], curriculum, where="bad.yaml")
    assert Ledger(layout.ledger).size() == size
    assert not list((layout.work / "staging").glob("curriculum_stages-*"))


def test_the_apertus_run_cannot_be_filled_from_the_sample(scored):
    layout, source = scored
    path = CONFIGS / "apertus-15t.yaml"
    with pytest.raises(ValueError, match=r"stage1-broad.*epochs, more repetition than max_epochs 2") as error:
        validate(load_curriculum(path), load_inventory(layout, [source]), str(path))
    assert str(path) in str(error.value)


# --- sampling math -------------------------------------------------------------------------------


def test_temperature_shares():
    tokens = {"en": 900.0, "da": 100.0}
    assert temperature_shares(tokens, 1.0) == pytest.approx({"da": 0.1, "en": 0.9})
    assert temperature_shares(tokens, 2.0) == pytest.approx({"da": 10 / 40, "en": 30 / 40})
    assert temperature_shares(tokens, 1e9) == pytest.approx({"da": 0.5, "en": 0.5})
    assert temperature_shares({"en": 1e13, "da": 1e9}, 0.05)["en"] == pytest.approx(1.0)


def test_integer_multiplicities_hit_the_target_and_follow_the_weights():
    rng = np.random.default_rng(0)
    tokens = rng.integers(50, 400, size=300)
    weights = np.where(rng.random(300) < 0.2, 2.0, 1.0)
    keys = [f"doc-{n}" for n in range(300)]
    target = 2.37 * float((tokens * weights).sum())
    copies = integer_multiplicities(tokens, weights, keys, target, salt="s")
    assert abs(float((copies * tokens).sum()) - target) <= tokens.min() / 2
    assert np.all(np.abs(copies - 2.37 * weights) < 1)  # floor or ceil of each expected count
    again = integer_multiplicities(tokens, weights, keys, target, salt="s")
    assert np.array_equal(copies, again)
    assert sorted(stage_order(10, 1, 0)) == list(range(10))
    assert not np.array_equal(stage_order(50, 1, 0), stage_order(50, 2, 0))


# --- curriculum_stages ---------------------------------------------------------------------------


def test_stage_rows_point_at_the_documents_of_the_source_version(built):
    layout, source, result = built
    index = pl.read_parquet(layout.datasets / source.ref / "index.parquet")
    for frame in _stage_frames(result.folder):
        assert frame["position"].to_list() == list(range(frame.height))
        joined = frame.join(index, on=["shard", "row"], how="left", suffix="_index")
        assert (joined["doc_id"] == joined["doc_id_index"]).all() and (
            joined["sha256"] == joined["sha256_index"]
        ).all()
        assert (frame["source_version"] == source.ref).all()
        assert frame["doc_id"].n_unique() == frame.height and (frame["multiplicity"] >= 1).all()


def test_proportions_and_language_temperatures_match_the_config(built):
    layout, source, result = built
    curriculum = load_curriculum(SAMPLE)
    index = pl.read_parquet(layout.datasets / source.ref / "index.parquet")
    frames = _stage_frames(result.folder)
    frames = [f.with_columns(pl.col("num_tokens_est") * pl.col("multiplicity")) for f in frames]
    totals = [int(f["num_tokens_est"].sum()) for f in frames]
    for stage, frame, total in zip(curriculum.stages, frames, totals, strict=True):
        assert total / sum(totals) == pytest.approx(stage.fraction, rel=0.02), stage.name
        # The expected shares, recomputed here from the index: selection, then n_l ** (1 / T).
        rule = stage.selection
        pool = index.filter(
            (pl.col("language_score") >= rule.min_language_score)
            & (pl.col("quality_percentile") >= rule.min_quality_percentile)
        )
        unique = dict(pool.group_by("language").agg(pl.col("num_tokens_est").sum()).iter_rows())
        raw = {lang: n ** (1 / stage.language_temperature) for lang, n in unique.items()}
        drawn = dict(frame.group_by("language").agg(pl.col("num_tokens_est").sum()).iter_rows())
        assert set(drawn) == set(unique)
        for language, weight in raw.items():
            expected = weight / sum(raw.values())
            # Within 2%, or, for a language whose share is a few documents, within half its smallest
            # document: whole documents are the unit, and closer than that no draw can come.
            smallest = pool.filter(pl.col("language") == language)["num_tokens_est"].min()
            error = abs(drawn[language] - expected * total)
            assert error <= max(0.02 * expected * total, smallest / 2), (stage.name, language, error)
            assert drawn[language] / unique[language] <= stage.max_epochs


def test_cluster_upsampling_weights_duplicated_documents(built):
    layout, source, result = built
    index = pl.read_parquet(layout.datasets / source.ref / "index.parquet")
    broad = _stage_frames(result.folder)[0]
    sizes = broad.join(index.select("doc_id", "minhash_cluster_size"), on="doc_id")
    mean = dict(sizes.group_by("minhash_cluster_size").agg(pl.col("multiplicity").mean()).iter_rows())
    assert set(mean) == {1, 2}
    assert mean[2] / mean[1] == pytest.approx(2.0, rel=0.25)  # the sample's bucket weight for 2-4


def test_same_seed_same_version_and_another_seed_only_reorders(built):
    layout, source, result = built
    curriculum = load_curriculum(SAMPLE)
    again = build_curriculum_stages(layout, [source], curriculum)
    assert again.manifest.version_id == result.manifest.version_id and not again.created
    other = build_curriculum_stages(layout, [source], replace(curriculum, seed=1))
    assert other.manifest.version_id != result.manifest.version_id
    for mine, theirs in zip(_stage_frames(result.folder), _stage_frames(other.folder), strict=True):
        assert mine["doc_id"].to_list() != theirs["doc_id"].to_list()
        assert Counter(mine.select("doc_id", "multiplicity").rows()) == Counter(
            theirs.select("doc_id", "multiplicity").rows()
        )
    stats = json.loads((result.folder / "stage_stats.json").read_text())
    assert [s["name"] for s in stats["stages"]] == ["broad", "mid", "anneal"]
    assert all(s["by_source"]["*"]["epochs"] <= s["max_epochs"] for s in stats["stages"])


def test_sources_must_be_quality_scored_versions_of_distinct_snapshots(curated, scored):
    layout, source = scored
    deduplicated = curated[1][3].manifest
    with pytest.raises(ValueError, match="pass quality_scored versions"):
        build_curriculum_stages(layout, [deduplicated], load_curriculum(SAMPLE))
    with pytest.raises(ValueError, match="one quality_scored version per snapshot"):
        build_curriculum_stages(layout, [source, source], load_curriculum(SAMPLE))


def test_mixture_weights_split_the_budget_between_sources():
    inventory = pl.DataFrame({
        "source": ["a"] * 4 + ["b"] * 2,
        "language": ["en", "en", "de", "de", "en", "da"],
        "language_score": [0.9] * 6,
        "quality_percentile": [50.0] * 6,
        "num_tokens_est": [300, 600, 100, 100, 400, 100],
    })  # fmt: skip
    stage = {"name": "s", "tokens": 1000, "mixture": {"a": 0.7, "b": 0.3}, "max_epochs": 2}
    curriculum = curriculum_from_dict({"name": "c", "stages": [stage]})
    a, b = validate(curriculum, inventory)[0]
    assert (a.budget, b.budget) == (pytest.approx(700), pytest.approx(300))
    assert a.targets == pytest.approx({"de": 700 * 200 / 1100, "en": 700 * 900 / 1100})
    assert b.unique_tokens == {"da": 100, "en": 400}
    over = curriculum_from_dict({"name": "c", "stages": [{**stage, "mixture": {"a": 0.2, "b": 0.8}}]})
    with pytest.raises(ValueError, match=r"source 'b', language 'da'.*160 tokens from 100.*1\.60 epochs"):
        validate(replace(over, stages=(replace(over.stages[0], max_epochs=1.0),)), inventory)
