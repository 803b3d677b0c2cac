"""The replayed use of each sequence equals the batches training actually drew (model.data.batch_indices)."""

import numpy as np
import pytest

from model.data import batch_indices
from model.usage import trained_counts


@pytest.mark.parametrize(("num", "steps", "batch", "seed"), [(37, 11, 8, 0), (5, 9, 4, 3), (100, 3, 16, 7)])
def test_trained_counts_match_batch_indices(num, steps, batch, seed):
    expected = np.zeros(num, dtype=np.int64)
    for step in range(steps):
        np.add.at(expected, batch_indices(num, step, batch, seed).numpy(), 1)
    assert np.array_equal(trained_counts(num, 0, steps, batch, seed), expected)
    assert trained_counts(num, 0, steps, batch, seed).sum() == steps * batch
