"""Recipes and parameter counts: the published 70B shape is checked without allocating it."""

import pytest

from model.config import apertus_70b, gpu_dense_1b, gpu_moe_1b, recipe, tiny, tiny_dense
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


@pytest.mark.parametrize("make", [gpu_moe_1b, gpu_dense_1b])
def test_gpu_recipes_closed_form_matches_meta_device(make):
    cfg = make().model
    assert count_parameters(cfg) == count_parameters_meta(cfg)


def test_gpu_moe_recipe_sizes_and_attention():
    run = gpu_moe_1b()
    cfg = run.model
    total, active = count_parameters(cfg)
    assert 0.5e9 <= active <= 1e9, active
    assert total <= 4e9, total
    assert (cfg.moe.num_experts, cfg.moe.top_k) == (16, 2)
    att = cfg.attention
    assert (att.impl, att.block_size, att.top_k, att.window_blocks) == ("lasa", 64, 16, 2)
    # Blocks are really dropped at the recipe's context: fewer selected blocks than the sequence has.
    assert 1 + att.window_blocks + att.top_k < run.train.seq_len // att.block_size
    assert run.train.zero_stage in (1, 2)


def test_gpu_dense_recipe_has_the_active_size_of_the_moe_one():
    moe, dense = gpu_moe_1b().model, gpu_dense_1b().model
    gates = moe.n_layers * moe.d_model * moe.moe.num_experts
    dense_total, dense_active = count_parameters(dense)
    assert dense_total == dense_active == count_parameters(moe)[1] - gates
    assert dense.attention == moe.attention and dense.moe is None
    assert recipe("gpu-moe-1b") == gpu_moe_1b() and recipe("gpu-dense-1b") == gpu_dense_1b()
