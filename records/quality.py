"""The files of a ``quality_classifier`` version (pipelines.quality_model writes them)::

    model.bin               the fastText classifier
    train.txt, test.txt     its training and test splits, in fastText's label format
    metrics.json            AUC, precision and recall on the held-out split, per language too
    examples.parquet        every example: split, label, document, language, text sha256
    reference_set.json      the decontaminated reference set the positives came from

The names are spelled here only.
"""

from __future__ import annotations

import json
from pathlib import Path

CLASSIFIER = "model.bin"
TRAIN_SPLIT = "train.txt"
TEST_SPLIT = "test.txt"
METRICS = "metrics.json"
EXAMPLES = "examples.parquet"
REFERENCE_SET = "reference_set.json"

FILE_NAMES = (CLASSIFIER, TRAIN_SPLIT, TEST_SPLIT, METRICS, EXAMPLES, REFERENCE_SET)


def read_metrics(folder: Path | str) -> dict:
    """The ``metrics.json`` of a quality_classifier version folder."""
    return json.loads((Path(folder) / METRICS).read_text(encoding="utf-8"))
