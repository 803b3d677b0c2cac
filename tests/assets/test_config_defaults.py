"""Each default that enters a run or a version id is defined once: the Dagster config classes read
theirs from the frozen dataclasses of model/ and pipelines/ (a retyped default would drift)."""

from __future__ import annotations

import dataclasses

import pytest

from assets.finetuning import FinetuningConfig
from assets.resources import CurationResource
from assets.training import CONFIG_FIELDS, TrainingConfig
from model.config import CurriculumRun, recipe
from pipelines.executor import ExecutorConfig


def _dagster_default(config_class, name: str):
    return config_class.model_fields[name].default


def _dataclass_default(cls, name: str):
    (field,) = [f for f in dataclasses.fields(cls) if f.name == name]
    return field.default


@pytest.mark.parametrize("name", CONFIG_FIELDS)
def test_training_config_defaults_are_the_curriculum_runs(name):
    assert name in TrainingConfig.model_fields
    assert _dagster_default(TrainingConfig, name) == _dataclass_default(CurriculumRun, name)


def test_the_recipes_max_steps_wins():
    # The asset's config sets no step count of its own: the recipe's max_steps is what trains.
    from model.staged_training import run_config

    request = CurriculumRun(token_shards="unused", out="unused", seq_len=128)
    assert TrainingConfig().max_steps is None
    assert run_config(request).train.max_steps == recipe(request.recipe).train.max_steps
    shorter = run_config(dataclasses.replace(request, max_steps=20)).train
    assert shorter.max_steps == 20 and shorter.warmup_steps + shorter.decay_steps <= 20


def test_finetuning_config_leaves_fine_tuning_defaults_to_finetune_config():
    from model.finetune import FinetuneConfig

    shared = {f.name for f in dataclasses.fields(FinetuneConfig)} & set(FinetuningConfig.model_fields)
    assert shared == {"steps"}
    # None: FinetuneConfig's own default, which the Pipes child keeps (it passes no override).
    assert all(_dagster_default(FinetuningConfig, name) is None for name in shared)


def test_curation_resource_tasks_is_the_executors():
    assert _dagster_default(CurationResource, "tasks") == _dataclass_default(ExecutorConfig, "tasks")
    assert CurationResource().executor().tasks == ExecutorConfig().tasks


def test_curation_resource_leaves_workers_to_the_executor_and_passes_what_is_set():
    default = CurationResource(ray_address=None).executor()
    assert default.workers is None  # follows the Ray cluster's CPUs or the host's cores
    assert default.cpus_per_task == _dataclass_default(ExecutorConfig, "cpus_per_task")
    assert _dagster_default(CurationResource, "cpus_per_task") == _dataclass_default(
        ExecutorConfig, "cpus_per_task"
    )
    chosen = CurationResource(workers=3, cpus_per_task=2).executor()
    assert (chosen.workers, chosen.cpus_per_task) == (3, 2)
