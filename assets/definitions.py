"""The Dagster code location: assets, jobs, schedules, sensors and resources (``workspace.yaml`` loads this module)."""

import dagster as dg

from assets.curation import CURATION_ASSETS
from assets.finetuning import FINETUNING_ASSETS
from assets.jobs import (
    curate_job,
    erasure_job,
    finetune_job,
    release_job,
    retrain_job,
    stage_job,
    train_job,
)
from assets.release import RELEASE_ASSETS
from assets.resources import CurationResource
from assets.schedules import retraining
from assets.sensors import erasure_requests, new_snapshots
from assets.training import TRAINING_ASSETS
from assets.training_data import TRAINING_DATA_ASSETS

# Evaluates the assets' automation conditions (assets/operations.py). Stopped until an operator
# starts it (Automation in the UI): with it running, every curated snapshot re-stages the curriculum,
# tokenizer and token shards over all snapshots, which at scale is hours of work that the weekly
# retraining schedule does anyway; the schedule and the two sensors keep the data current without it.
automation = dg.AutomationConditionSensorDefinition(
    "automation",
    target=dg.AssetSelection.all(),
    default_status=dg.DefaultSensorStatus.STOPPED,
    minimum_interval_seconds=60,
    description="Rebuilds curation and staging assets whose upstream dataset versions changed.",
)

defs = dg.Definitions(
    assets=[*CURATION_ASSETS, *TRAINING_DATA_ASSETS, *TRAINING_ASSETS, *RELEASE_ASSETS, *FINETUNING_ASSETS],
    jobs=[curate_job, stage_job, train_job, retrain_job, erasure_job, release_job, finetune_job],
    schedules=[retraining],
    sensors=[new_snapshots, erasure_requests, automation],
    resources={"curation": CurationResource()},
)
