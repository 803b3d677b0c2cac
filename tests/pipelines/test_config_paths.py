"""Configs that enter a version's lineage never hold a path of this machine: the files the product
ships with are named relative to the checkout, so a version's id does not depend on where it is."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from pipelines.langid import LanguageIdConfig, load_lid_model
from pipelines.quality_model import QualityModelConfig
from records.layout import REPO_ROOT, checkout_path


def _strings(value):
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for v in value.values():
            yield from _strings(v)
    elif isinstance(value, list | tuple):
        for v in value:
            yield from _strings(v)


def test_default_configs_name_no_absolute_path():
    for config in (LanguageIdConfig(), QualityModelConfig()):
        recorded = dataclasses.asdict(config)
        absolute = [s for s in _strings(recorded) if s.startswith("/") or str(REPO_ROOT) in s]
        assert not absolute, f"{type(config).__name__} records a machine path: {absolute}"


def test_relative_paths_are_files_of_the_checkout(tmp_path):
    assert checkout_path(LanguageIdConfig().model_path).is_file()
    assert (checkout_path(QualityModelConfig().reference_dir) / "en.jsonl.gz").is_file() or any(
        checkout_path(QualityModelConfig().reference_dir).glob("*.jsonl.gz")
    )
    assert checkout_path(tmp_path) == tmp_path  # an absolute path is the user's, unchanged
    assert checkout_path("x/y") == REPO_ROOT / "x" / "y"


def test_the_default_model_loads_from_another_working_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # relative to the checkout, not to the working directory
    assert load_lid_model(LanguageIdConfig()) is not None
    assert not Path(LanguageIdConfig().model_path).is_absolute()
