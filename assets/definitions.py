"""The Dagster code location: assets, jobs, sensors and resources (``workspace.yaml`` loads this module)."""

import dagster as dg

from assets.curation import CURATION_ASSETS
from assets.jobs import curate_job, stage_job, train_job
from assets.resources import CurationResource
from assets.sensors import new_snapshots
from assets.training import TRAINING_ASSETS
from assets.training_data import TRAINING_DATA_ASSETS

defs = dg.Definitions(
    assets=[*CURATION_ASSETS, *TRAINING_DATA_ASSETS, *TRAINING_ASSETS],
    jobs=[curate_job, stage_job, train_job],
    sensors=[new_snapshots],
    resources={"curation": CurationResource()},
)
