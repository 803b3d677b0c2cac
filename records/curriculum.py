"""The files of a ``curriculum_stages`` version (pipelines.curriculum writes them)::

    stages/<index>-<name>.parquet   one row per document with its multiplicity, in a seeded order
    curriculum.json                 the resolved curriculum config
    stage_stats.json                tokens per language before and after sampling, epochs per source

A token_shards version mirrors the same ``stages/`` folder, one subfolder per stage file
(records.token_shards). The names are spelled here only.
"""

from __future__ import annotations

import json
from pathlib import Path

STAGES = "stages"
CURRICULUM = "curriculum.json"
STAGE_STATS = "stage_stats.json"

FILE_NAMES = (CURRICULUM, STAGE_STATS)


def stage_file(index: int, name: str) -> str:
    """A stage file's path relative to the version folder: ``stages/00-<name>.parquet``."""
    return f"{STAGES}/{index:02d}-{name}.parquet"


def read_stage_stats(folder: Path | str) -> dict:
    """The ``stage_stats.json`` of a curriculum_stages version folder."""
    return json.loads((Path(folder) / STAGE_STATS).read_text(encoding="utf-8"))
