"""Heuristic quality filtering with per-language thresholds: ``quality_blocks(config, ...)`` gives the
blocks in the order they run, which is FineWeb's: repetition, Gopher quality, C4, FineWeb."""

from __future__ import annotations

from collections.abc import Callable

from datatrove.pipeline.base import PipelineStep
from datatrove.pipeline.writers.disk_base import DiskWriter

from pipelines import reasons
from pipelines.quality.heuristics import (
    C4QualityFilter,
    FineWebQualityFilter,
    GopherQualityFilter,
    GopherRepetitionFilter,
    HeuristicFilter,
)
from pipelines.quality.settings import (
    C4Settings,
    FineWebSettings,
    GopherQualitySettings,
    GopherRepetitionSettings,
    LanguageSettings,
    QualityConfig,
    default_language_settings,
)

__all__ = [
    "C4QualityFilter", "C4Settings", "FineWebQualityFilter", "FineWebSettings", "GopherQualityFilter",
    "GopherQualitySettings", "GopherRepetitionFilter", "GopherRepetitionSettings", "HeuristicFilter",
    "LanguageSettings", "QualityConfig", "default_language_settings", "quality_blocks",
]  # fmt: skip


def quality_blocks(
    config: QualityConfig, exclusion_writer_factory: Callable[[str], DiskWriter | None] | None = None
) -> list[PipelineStep]:
    """The enabled filters of ``config``, in running order. ``exclusion_writer_factory(prefix)`` gives
    each filter its exclusion writer; ``prefix`` is its reason prefix (``reasons.GOPHER_QUALITY``...)."""
    chosen = [
        (config.gopher_repetition, GopherRepetitionFilter, reasons.GOPHER_REPETITION),
        (config.gopher_quality, GopherQualityFilter, reasons.GOPHER_QUALITY),
        (config.c4, C4QualityFilter, reasons.C4_QUALITY),
        (config.fineweb, FineWebQualityFilter, reasons.FINEWEB_QUALITY),
    ]
    return [
        block(config, exclusion_writer_factory(prefix) if exclusion_writer_factory else None)
        for enabled, block, prefix in chosen
        if enabled
    ]
