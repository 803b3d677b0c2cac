"""Jobs: named selections of assets that the UI, schedules and sensors launch."""

import dagster as dg

from assets.curation import CURATION_ASSETS, snapshots
from assets.training import trained_model
from assets.training_data import (
    curriculum_stages,
    quality_classifier,
    quality_scored,
    token_shards,
    tokenizer,
)

curate_job = dg.define_asset_job(
    "curate",
    selection=dg.AssetSelection.assets(*CURATION_ASSETS, quality_classifier, quality_scored),
    partitions_def=snapshots,
    description="Curate one source snapshot: read, identify languages, filter, deduplicate, score quality.",
)

stage_job = dg.define_asset_job(
    "stage",
    selection=dg.AssetSelection.assets(curriculum_stages, tokenizer, token_shards),
    description="Stage the curated snapshots into the curriculum, train the tokenizer, write token shards.",
)

train_job = dg.define_asset_job(
    "train",
    selection=dg.AssetSelection.assets(trained_model),
    description="Train the MoE model over the curriculum's token shards, stage by stage.",
)
