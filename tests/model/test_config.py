"""Recipes and parameter counts: the published 70B shape is checked without allocating it."""

import pytest

from model.config import apertus_70b, recipe, tiny, tiny_dense
from model.transformer import count_parameters, count_parameters_meta


def test_apertus_70b_counts_from_meta_device():
    cfg = apertus_70b().model
    total, active = count_parameters_meta(cfg)
    assert abs(total - 70e9) <= 0.05 * 70e9, total
    assert abs(active - 12e9) <= 0.10 * 12e9, active
    assert (cfg.moe.num_experts, cfg.moe.top_k) == (16, 2)


@pytest.mark.parametrize("make", [tiny, tiny_dense, apertus_70b])
def test_closed_form_count_matches_built_model(make):
    cfg = make().model
    assert count_parameters(cfg) == count_parameters_meta(cfg)


def test_tiny_dense_has_the_active_size_of_tiny():
    moe_total, moe_active = count_parameters(tiny().model)
    dense_total, dense_active = count_parameters(tiny_dense().model)
    gates = tiny().model.n_layers * tiny().model.d_model * tiny().model.moe.num_experts
    assert dense_total == dense_active == moe_active - gates
    assert moe_total > 2 * moe_active


def test_unknown_recipe_names_the_known_ones():
    with pytest.raises(ValueError, match="tiny"):
        recipe("tiny-moe")
