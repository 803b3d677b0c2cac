"""Training the Mixture-of-Experts model on the curriculum's token shards, as a Dagster asset.

token_shards -> trained_model   (a run folder under <data>/work/runs/<recipe>-<dagster run id>/,
                                 sealed into <data>/datasets/trained_model/<id>/)

Training runs in a Dagster Pipes child (``python -m assets.external.train``, assets/pipes.py): the
run's config reaches it as a typed object (model.config.CurriculumRun) through the Pipes extras, it
calls model.staged_training.train_curriculum, seals the run folder with its provenance record and reports
each step's line, the materialization (metadata, the version id as data version) and the checks
back through Pipes. The Dagster process never holds the model; a crash in training is a failed step.
"""

import dataclasses
from pathlib import Path

import dagster as dg

from assets.checks import VERSION_CHECKS
from assets.curation import CODE_VERSION
from assets.operations import TRAIN_POOL, TRAINING_RETRY
from assets.pipes import ProcessConfig, run_external
from assets.resources import CurationResource
from assets.versions import latest_data_version
from model.config import CurriculumRun
from records.assets import TOKEN_SHARDS, TRAINED_MODEL
from records.manifest import version_folder

RUNS_DIR = "runs"  # under work/: a run folder until it is sealed into datasets/trained_model/<id>
CHECKS = (*VERSION_CHECKS, "loss_decreased", "export_reloads")
# The fields of CurriculumRun this asset's config exposes; their defaults are CurriculumRun's.
CONFIG_FIELDS = ("recipe", "max_steps", "checkpoint_every", "held_out_fraction")


class TrainingConfig(ProcessConfig):
    """recipe: model/config.py's name; the recipe's values are the run's defaults. max_steps: empty
    (null) trains the recipe's max_steps; a number overrides it (split over the stages by their
    tokens, the recipe's warmup and decay scaled to it). checkpoint_every: steps between checkpoints
    besides the stage ends (empty: the recipe's). held_out_fraction: share of each stage never trained
    on, for the held-out perplexity. Defaults: model.config.CurriculumRun's."""

    recipe: str = CurriculumRun.recipe
    max_steps: int | None = CurriculumRun.max_steps
    checkpoint_every: int | None = CurriculumRun.checkpoint_every
    held_out_fraction: float = CurriculumRun.held_out_fraction


@dg.asset(
    group_name="training",
    code_version=CODE_VERSION,
    check_specs=[dg.AssetCheckSpec(name, asset=TRAINED_MODEL) for name in CHECKS],
    kinds={"pytorch", "deepspeed"},
    retry_policy=TRAINING_RETRY,
    pool=TRAIN_POOL,
)
def trained_model(
    context: dg.AssetExecutionContext, config: TrainingConfig, curation: CurationResource, token_shards: str
):
    """The tiny MoE model trained over the curriculum's stages in order (warmup-stable-decay aligned
    with them), held-out perplexity per language after each stage, checkpoints and a safetensors
    export with their sha256 and the exact upstream versions in run.json."""
    layout = curation.layout()
    # The pinned versions must be the ones this run consumes: the folder trained on (the input's
    # value) and the input's data version Dagster records must agree; the child checks run.json's
    # upstream against it again before sealing.
    consumed = latest_data_version(context.instance, TOKEN_SHARDS)
    if consumed is not None and consumed != token_shards.partition("/")[2]:
        # Deterministic: a retry would find the same two versions.
        raise dg.Failure(
            f"token_shards input version {consumed} differs from the folder to train on {token_shards}",
            allow_retries=False,
        )
    request = CurriculumRun(
        token_shards=str(version_folder(layout.datasets, token_shards)),
        out=str(layout.work / RUNS_DIR / f"{config.recipe}-{context.run_id}"),
        **{name: getattr(config, name) for name in CONFIG_FIELDS},
    )
    extras = {
        "request": dataclasses.asdict(request),
        "data_folder": str(layout.root),
        "input_version": consumed,
        "dagster_config": config.model_dump(),
        "plots": str(Path(context.instance.storage_directory()) / "plots"),
    }
    output, checks = run_external(context, "assets.external.train", extras, config.threads, TRAINED_MODEL)
    yield output
    yield from checks


TRAINING_ASSETS = [trained_model]
