"""The files of a ``tokenizer`` version (pipelines.tokenizer writes them)::

    tokenizer.json          the trained byte-level BPE tokenizer (Hugging Face tokenizers format)
    fertility.json          tokens per word by language, on held-out documents
    training_sample.json    which documents trained it and which were held out

The names are spelled here only.
"""

from __future__ import annotations

import json
from pathlib import Path

TOKENIZER_FILE = "tokenizer.json"
FERTILITY = "fertility.json"
TRAINING_SAMPLE = "training_sample.json"

FILE_NAMES = (TOKENIZER_FILE, FERTILITY, TRAINING_SAMPLE)


def read_fertility(folder: Path | str) -> dict:
    """The ``fertility.json`` of a tokenizer version folder."""
    return json.loads((Path(folder) / FERTILITY).read_text(encoding="utf-8"))
