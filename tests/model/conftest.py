"""Shared fixtures of the model tests: a learnable synthetic corpus and small-batch variants of `tiny`."""

import dataclasses
import os

import pytest

# Two shared cores: one thread per process (oversubscription made steps 10-20x slower).
os.environ.setdefault("OMP_NUM_THREADS", "1")

from model.config import RunConfig, tiny  # noqa: E402
from model.data import MemmapTokens, write_markov_tokens  # noqa: E402

SEQ_LEN = 64


def tiny_run(**train_overrides) -> RunConfig:
    """The tiny recipe's model with a small batch (4 x 64 tokens) and a short schedule."""
    base = tiny()
    train = dict(
        seq_len=SEQ_LEN, micro_batch_size=4, max_steps=24, warmup_steps=3, decay_steps=6, checkpoint_every=12
    )
    train.update(train_overrides)
    return RunConfig(base.model, dataclasses.replace(base.train, **train))


@pytest.fixture(scope="session")
def markov_path(tmp_path_factory):
    """A 100k-token first-order Markov corpus over 256 ids with 4 successors each (entropy log 4)."""
    path = tmp_path_factory.mktemp("data") / "markov.bin"
    write_markov_tokens(path, 100_000, num_states=256, branching=4, seed=0)
    return path


@pytest.fixture(scope="session")
def markov(markov_path):
    return MemmapTokens(markov_path, SEQ_LEN)
