"""The training loops reproduce, bit for bit, the per-step losses and final weights that the five
separate loops wrote before they became one (tests/model/golden/training_golden.json, written by
tests/model/golden/make_training_golden.py): a change that alters the computation of pre-training,
staged training, fine-tuning or the benchmarks' loops fails here."""

import json

import pytest

from tests.model.golden.make_training_golden import GOLDEN, RUNS, collect, environment

WANT = json.loads(GOLDEN.read_text())


@pytest.mark.parametrize("name", list(RUNS))
def test_loop_reproduces_the_golden_run(name, tmp_path):
    if environment() != WANT["environment"]:
        pytest.skip(f"golden numbers are exact for {WANT['environment']} only; this is {environment()}")
    assert collect(name, tmp_path) == WANT[name]
