"""A declarative curriculum: stages of a training run, what each draws from, and how.

``load_curriculum(path)`` reads a YAML file into frozen dataclasses and checks what can be checked
without data (weights and fractions sum to one, budgets are set once, buckets do not overlap);
``validate(curriculum, inventory)`` checks it against the documents there are (known sources and
languages, enough tokens within ``max_epochs``). Both raise ``ValueError`` naming the file, the
field and the fix, before any work starts. docs/curriculum.md is the reference.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

ALL_SOURCES = "*"  # every snapshot, pooled
TOLERANCE = 1e-6


@dataclass(frozen=True)
class SourceWeight:
    source: str  # a snapshot name, or "*" for all snapshots
    weight: float


@dataclass(frozen=True)
class Selection:
    """Which documents of a source a stage may draw from."""

    languages: tuple[str, ...] = ()  # empty: every language
    min_language_score: float = 0.0
    min_quality_percentile: float = 0.0  # 0-100, within the document's language
    min_quality_percentile_by_language: dict[str, float] = field(default_factory=dict)  # overrides the above

    def percentile_for(self, language: str) -> float:
        return self.min_quality_percentile_by_language.get(language, self.min_quality_percentile)


@dataclass(frozen=True)
class ClusterBucket:
    min_size: int
    max_size: int | None  # None: no upper bound
    weight: float


@dataclass(frozen=True)
class ClusterUpsampling:
    """FineWeb-2's rehydration: a kept document stands for its MinHash cluster, so it is upsampled
    by a weight that depends on the cluster's size. Sizes no bucket covers get weight 1."""

    buckets: tuple[ClusterBucket, ...] = ()

    def weight(self, cluster_size: int | None) -> float:
        size = cluster_size or 1
        for bucket in self.buckets:
            if size >= bucket.min_size and (bucket.max_size is None or size <= bucket.max_size):
                return bucket.weight
        return 1.0


@dataclass(frozen=True)
class Stage:
    name: str
    mixture: tuple[SourceWeight, ...]
    tokens: int | None = None  # the stage's budget; or
    fraction: float | None = None  # its share of Curriculum.total_tokens
    selection: Selection = field(default_factory=Selection)
    language_temperature: float = 1.0  # p_l proportional to n_l ** (1 / T); 1: as available
    max_epochs: float = 1.0  # most tokens drawn / unique tokens per source and language
    cluster_upsampling: ClusterUpsampling = field(default_factory=ClusterUpsampling)


@dataclass(frozen=True)
class Curriculum:
    name: str
    stages: tuple[Stage, ...]
    seed: int = 0
    total_tokens: int | None = None
    description: str = ""

    def stage_tokens(self) -> list[int]:
        """Each stage's token budget, resolved from ``tokens`` or ``fraction``."""
        return [
            s.tokens if s.tokens is not None else round(s.fraction * self.total_tokens) for s in self.stages
        ]


def _error(where: str, message: str) -> ValueError:
    return ValueError(f"{where}: {message}")


def _known(values: dict, cls: type, where: str) -> None:
    names = {f.name for f in fields(cls)}
    unknown = sorted(set(values) - names)
    if unknown:
        raise _error(where, f"unknown field(s) {', '.join(unknown)}; known: {', '.join(sorted(names))}")


def _mapping(value: Any, where: str) -> dict:
    if not isinstance(value, dict):
        raise _error(where, f"expected a mapping, got {type(value).__name__}")
    return value


def _selection(values: dict, where: str) -> Selection:
    _known(values, Selection, where)
    by_language = {
        str(k): float(v)
        for k, v in _mapping(values.get("min_quality_percentile_by_language", {}), where).items()
    }
    return Selection(
        languages=tuple(str(x) for x in values.get("languages", ()) or ()),
        min_language_score=float(values.get("min_language_score", 0.0)),
        min_quality_percentile=float(values.get("min_quality_percentile", 0.0)),
        min_quality_percentile_by_language=by_language,
    )


def _upsampling(values: list, where: str) -> ClusterUpsampling:
    buckets = []
    for n, bucket in enumerate(values or ()):
        _known(_mapping(bucket, f"{where}[{n}]"), ClusterBucket, f"{where}[{n}]")
        max_size = bucket.get("max_size")
        buckets.append(
            ClusterBucket(
                int(bucket["min_size"]), None if max_size is None else int(max_size), float(bucket["weight"])
            )
        )
    return ClusterUpsampling(tuple(buckets))


def _mixture(values: dict | list, where: str) -> tuple[SourceWeight, ...]:
    """``{source: weight, ...}`` or ``[{source: ..., weight: ...}, ...]``; a source named twice is an error."""
    if isinstance(values, list):
        for n, entry in enumerate(values):
            _known(_mapping(entry, f"{where}[{n}]"), SourceWeight, f"{where}[{n}]")
        pairs = [(str(e["source"]), float(e["weight"])) for e in values]
    else:
        pairs = [(str(source), float(weight)) for source, weight in _mapping(values, where).items()]
    names = [source for source, _ in pairs]
    if len(set(names)) != len(names):
        raise _error(where, f"sources {names}: name each source once")
    return tuple(SourceWeight(source, weight) for source, weight in pairs)


def _stage(values: dict, where: str) -> Stage:
    _known(values, Stage, where)
    return Stage(
        name=str(values.get("name", "")),
        mixture=_mixture(values.get("mixture", {}), f"{where}.mixture"),
        tokens=None if values.get("tokens") is None else int(values["tokens"]),
        fraction=None if values.get("fraction") is None else float(values["fraction"]),
        selection=_selection(
            _mapping(values.get("selection", {}), f"{where}.selection"), f"{where}.selection"
        ),
        language_temperature=float(values.get("language_temperature", 1.0)),
        max_epochs=float(values.get("max_epochs", 1.0)),
        cluster_upsampling=_upsampling(values.get("cluster_upsampling", ()), f"{where}.cluster_upsampling"),
    )


def curriculum_from_dict(values: dict, where: str = "curriculum") -> Curriculum:
    """Build and check a curriculum from plain data (the parsed YAML); ``where`` names it in errors."""
    _known(_mapping(values, where), Curriculum, where)
    stages = tuple(
        _stage(_mapping(s, f"{where}: stages[{n}]"), f"{where}: stages[{n}]")
        for n, s in enumerate(values.get("stages") or ())
    )
    curriculum = Curriculum(
        name=str(values.get("name", "")),
        stages=stages,
        seed=int(values.get("seed", 0)),
        total_tokens=None if values.get("total_tokens") is None else int(values["total_tokens"]),
        description=str(values.get("description", "")),
    )
    check_structure(curriculum, where)
    return curriculum


def load_curriculum(path: str | Path) -> Curriculum:
    """The curriculum of the YAML file at ``path``, structurally checked (``check_structure``)."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{path}: no such curriculum file")
    return curriculum_from_dict(yaml.safe_load(path.read_text(encoding="utf-8")) or {}, str(path))


def check_structure(curriculum: Curriculum, where: str = "curriculum") -> None:
    """Raise ``ValueError`` for what is wrong without looking at data: missing names, weights or
    fractions that do not sum to one, budgets given twice or not at all, bad temperatures or buckets."""
    if not curriculum.name:
        raise _error(where, "name: missing; give the curriculum a name")
    if not curriculum.stages:
        raise _error(where, "stages: empty; list at least one stage")
    names = [s.name for s in curriculum.stages]
    if len(set(names)) != len(names) or not all(names):
        raise _error(where, f"stages[].name: {names}; every stage needs a distinct, non-empty name")
    with_fraction = [s.fraction is not None for s in curriculum.stages]
    for n, stage in enumerate(curriculum.stages):
        at = f"{where}: stages[{n}] ({stage.name})"
        if (stage.tokens is None) == (stage.fraction is None):
            raise _error(at, "set exactly one of tokens and fraction")
        if (
            stage.tokens is not None
            and stage.tokens <= 0
            or stage.fraction is not None
            and not 0 < stage.fraction <= 1
        ):
            raise _error(at, "tokens must be > 0 and fraction in (0, 1]")
        if not stage.mixture:
            raise _error(at, 'mixture: empty; e.g. mixture: {"*": 1.0}')
        total = sum(w.weight for w in stage.mixture)
        if abs(total - 1.0) > TOLERANCE or any(w.weight <= 0 for w in stage.mixture):
            raise _error(at, f"mixture: weights sum to {total:.6g}; make them positive and sum to 1")
        if ALL_SOURCES in {w.source for w in stage.mixture} and len(stage.mixture) > 1:
            raise _error(at, 'mixture: "*" already holds every snapshot; use it alone or name snapshots')
        if not stage.language_temperature > 0 or not stage.max_epochs > 0:
            raise _error(at, "language_temperature and max_epochs must be > 0")
        if not 0 <= stage.selection.min_quality_percentile <= 100 or not all(
            0 <= v <= 100 for v in stage.selection.min_quality_percentile_by_language.values()
        ):
            raise _error(at, "selection: quality percentiles are between 0 and 100")
        _check_buckets(stage.cluster_upsampling, f"{at} cluster_upsampling")
    if any(with_fraction):
        if not all(with_fraction):
            raise _error(where, "stages: use fraction in every stage or in none")
        if curriculum.total_tokens is None:
            raise _error(where, "total_tokens: missing; stages given as fractions need it")
        total = sum(s.fraction for s in curriculum.stages)
        if abs(total - 1.0) > TOLERANCE:
            raise _error(where, f"stages[].fraction: sum to {total:.6g}; make them sum to 1")
    elif curriculum.total_tokens is not None and curriculum.total_tokens != sum(curriculum.stage_tokens()):
        raise _error(
            where,
            f"total_tokens: {curriculum.total_tokens} but the stages' tokens sum to {sum(curriculum.stage_tokens())}",
        )


def _check_buckets(upsampling: ClusterUpsampling, where: str) -> None:
    spans = sorted(
        (b.min_size, math.inf if b.max_size is None else b.max_size, b.weight) for b in upsampling.buckets
    )
    for lo, hi, weight in spans:
        if lo < 1 or hi < lo or weight <= 0:
            raise _error(
                where,
                f"bucket [{lo}, {hi}] weight {weight}: sizes from 1 up, max_size >= min_size, weight > 0",
            )
    for (_, hi, _), (lo, _, _) in zip(spans, spans[1:], strict=False):
        if lo <= hi:
            raise _error(where, f"buckets overlap at cluster size {lo}")


@dataclass(frozen=True)
class SourcePlan:
    """What one mixture entry of a stage draws: unique tokens selected and targets, per language."""

    source: str
    weight: float
    budget: float
    unique_tokens: dict[str, int]
    targets: dict[str, float]

    def epochs(self, language: str) -> float:
        return self.targets[language] / self.unique_tokens[language]


def selection_filter(selection: Selection):
    """The polars predicate of ``selection`` over an inventory (see ``validate``)."""
    import polars as pl

    expr = pl.col("language_score").fill_null(0.0) >= selection.min_language_score
    if selection.languages:
        expr &= pl.col("language").is_in(list(selection.languages))
    threshold = pl.col("language").replace_strict(
        selection.min_quality_percentile_by_language,
        default=selection.min_quality_percentile,
        return_dtype=pl.Float64,
    )
    return expr & (pl.col("quality_percentile").fill_null(0.0) >= threshold)


def plan_stage(stage: Stage, budget: float, inventory) -> list[SourcePlan]:
    """Per mixture entry: the selected documents' unique tokens per language and the temperature-
    sampled targets (``pipelines.curriculum.sampling.language_targets``)."""
    import polars as pl

    from pipelines.curriculum.sampling import language_targets

    selected = inventory.filter(selection_filter(stage.selection))
    plans = []
    for entry in stage.mixture:
        pool = selected if entry.source == ALL_SOURCES else selected.filter(pl.col("source") == entry.source)
        per_language = pool.group_by("language").agg(pl.col("num_tokens_est").sum()).sort("language")
        unique = {row[0]: int(row[1]) for row in per_language.iter_rows() if row[1] > 0}
        targets = language_targets(unique, budget * entry.weight, stage.language_temperature)
        plans.append(SourcePlan(entry.source, entry.weight, budget * entry.weight, unique, targets))
    return plans


def validate(curriculum: Curriculum, inventory, where: str = "curriculum") -> list[list[SourcePlan]]:
    """Check ``curriculum`` against the documents there are and return each stage's plan.

    ``inventory`` is a polars frame with one row per available document and at least the columns
    source (snapshot), language, language_score, quality_percentile, num_tokens_est. Raises
    ``ValueError`` for an unknown source or language, a stage that selects nothing, or a budget that
    needs more than ``max_epochs`` passes over a source's tokens in some language.
    """
    check_structure(curriculum, where)
    sources = set(inventory["source"].unique().to_list())
    languages = set(inventory["language"].unique().to_list())
    plans = []
    for n, (stage, budget) in enumerate(zip(curriculum.stages, curriculum.stage_tokens(), strict=True)):
        at = f"{where}: stages[{n}] ({stage.name})"
        unknown = sorted({w.source for w in stage.mixture} - sources - {ALL_SOURCES})
        if unknown:
            raise _error(
                at, f'mixture: unknown source(s) {unknown}; available snapshots: {sorted(sources)} or "*"'
            )
        missing = sorted(set(stage.selection.languages) - languages)
        missing += sorted(set(stage.selection.min_quality_percentile_by_language) - languages)
        if missing:
            raise _error(at, f"selection: unknown language(s) {missing}; the data has {sorted(languages)}")
        stage_plans = plan_stage(stage, budget, inventory)
        for plan in stage_plans:
            if not plan.unique_tokens:
                raise _error(
                    at, f"selection: selects no document of source {plan.source!r}; loosen the selection"
                )
            worst = max(plan.unique_tokens, key=plan.epochs)
            if plan.epochs(worst) > stage.max_epochs * (1 + TOLERANCE):
                raise _error(
                    at,
                    f"source {plan.source!r}, language {worst!r}: the budget needs {plan.targets[worst]:,.0f} tokens "
                    f"from {plan.unique_tokens[worst]:,} unique selected tokens, {plan.epochs(worst):,.2f} epochs, "
                    f"more repetition than max_epochs {stage.max_epochs:g}; lower tokens/fraction, raise max_epochs, "
                    "loosen the selection or add data",
                )
        plans.append(stage_plans)
    return plans
