"""metrics.jsonl is sealed into a model version: its lines are canonical JSON, and a diverged loss
(NaN, infinity) is recorded as null rather than as bytes no JSON reader accepts."""

import json
import math

from records.canonical import canonical_json
from records.models import metrics_lines


def test_metrics_lines_are_canonical_and_finite():
    rows = [
        {"step": 0, "lm_loss": 6.5, "lr": 1e-05, "load_cv": [0.1, 0.2]},
        {"step": 1, "lm_loss": math.nan, "grad_norm": math.inf, "load_cv": [-math.inf, 0.3], "stage": "é"},
    ]
    data = metrics_lines(rows)
    lines = data.split(b"\n")
    assert lines[-1] == b"" and len(lines) == 3  # one line per record, each ending in a newline
    assert lines[0] == canonical_json(rows[0])
    second = json.loads(lines[1])  # strict readers too: no NaN or Infinity tokens
    assert b"NaN" not in data and b"Infinity" not in data
    assert second == {"step": 1, "lm_loss": None, "grad_norm": None, "load_cv": [None, 0.3], "stage": "é"}
    assert lines[1] == canonical_json(second)
