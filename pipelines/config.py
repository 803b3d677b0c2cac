"""The curation config: one frozen dataclass per step, gathered in ``CurationConfig``.

Every field has a default that suits the bundled sample and a multilingual web crawl; a YAML file
(``apertus curate --config FILE``) overrides any of them by the same names.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields, is_dataclass, replace
from pathlib import Path
from typing import Any

import yaml

from pipelines.dedup import DedupConfig
from pipelines.langid import LanguageIdConfig
from pipelines.quality import QualityConfig
from pipelines.readers.budgets import ByteBudgets
from pipelines.robots import RobotsConfig


@dataclass(frozen=True)
class CurationConfig:
    language: LanguageIdConfig = field(default_factory=LanguageIdConfig)
    quality: QualityConfig = field(default_factory=QualityConfig)
    dedup: DedupConfig = field(default_factory=DedupConfig)
    robots: RobotsConfig = field(default_factory=RobotsConfig)
    max_document_bytes: int = 10_000_000  # one record's raw bytes (a JSON line, a text cell, a WARC payload)
    budgets: ByteBudgets = field(default_factory=ByteBudgets)  # per file, Parquet column chunk, shard buffer


def _override(obj: Any, values: dict[str, Any], where: str) -> Any:
    known = {f.name: f for f in fields(obj)}
    changes = {}
    for key, value in values.items():
        if key not in known:
            raise ValueError(f"{where}: unknown field {key!r}; known fields: {', '.join(sorted(known))}")
        current = getattr(obj, key)
        if is_dataclass(current) and isinstance(value, dict):
            changes[key] = _override(current, value, f"{where}.{key}")
        elif isinstance(current, tuple) and isinstance(value, list):
            changes[key] = tuple(value)
        else:
            changes[key] = value
    return replace(obj, **changes)


def load_curation_config(path: str | Path | None) -> CurationConfig:
    """The default config, with the values of the YAML file at ``path`` (if any) applied."""
    config = CurationConfig()
    if path is None:
        return config
    values = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
    if not isinstance(values, dict):
        raise ValueError(f"{path}: expected a mapping of config fields at the top level")
    return _override(config, values, str(path))
