"""Jobs: named selections of assets that the UI, schedules and sensors launch.

Every job carries run-retry tags (assets/operations.py): the daemon relaunches a run whose worker
died; a failed step has already been retried by its asset's retry policy.
"""

import dagster as dg

from assets.curation import CURATION_ASSETS, snapshots
from assets.finetuning import finetuned_model
from assets.operations import HEAVY_TAGS, RUN_RETRY_TAGS, TRAIN_RUN_RETRY_TAGS
from assets.release import model_release
from assets.training import trained_model
from assets.training_data import (
    curriculum_stages,
    quality_classifier,
    quality_scored,
    token_shards,
    tokenizer,
)

# The curate job's selection: the curation steps of assets/curation.py, then the quality score.
CURATE_JOB_ASSETS = [*CURATION_ASSETS, quality_classifier, quality_scored]
STAGE_ASSETS = [curriculum_stages, tokenizer, token_shards]

curate_job = dg.define_asset_job(
    "curate",
    selection=dg.AssetSelection.assets(*CURATE_JOB_ASSETS),
    partitions_def=snapshots,
    description="Curate one source snapshot: read, identify languages, filter, deduplicate, score quality.",
    tags=RUN_RETRY_TAGS,
)

stage_job = dg.define_asset_job(
    "stage",
    selection=dg.AssetSelection.assets(*STAGE_ASSETS),
    description="Stage the curated snapshots into the curriculum, train the tokenizer, write token shards.",
    tags={**RUN_RETRY_TAGS, **HEAVY_TAGS},
)

train_job = dg.define_asset_job(
    "train",
    selection=dg.AssetSelection.assets(trained_model),
    description="Train the MoE model over the curriculum's token shards, stage by stage.",
    tags={**TRAIN_RUN_RETRY_TAGS, **HEAVY_TAGS},
)

# The retraining schedule's job: one snapshot's curation per run (a partition), or staging and
# training together (no partition); each run request selects which (assets/schedules.py).
retrain_job = dg.define_asset_job(
    "retrain",
    selection=dg.AssetSelection.assets(*CURATE_JOB_ASSETS, *STAGE_ASSETS, trained_model),
    description=(
        "What the retraining schedule launches: re-curation of a snapshot whose curation is missing or "
        "stale, or staging plus training when the curated data changed since the last trained model."
    ),
    tags=TRAIN_RUN_RETRY_TAGS,
)

# Suppression of erased documents is applied by curation itself (the first step drops every
# document a recorded request names), so an erasure request re-curates each snapshot keeping a match.
erasure_job = dg.define_asset_job(
    "erasure",
    selection=dg.AssetSelection.assets(*CURATE_JOB_ASSETS),
    description=(
        "Apply a recorded erasure request: re-curate one snapshot, so that its new versions no longer "
        "hold the documents the request names (launched by the erasure_requests sensor, per snapshot)."
    ),
    tags=RUN_RETRY_TAGS,
)

# Release is a decision, so nothing triggers it: an operator launches it for the trained model.
release_job = dg.define_asset_job(
    "release",
    selection=dg.AssetSelection.assets(model_release),
    description=(
        "Release the latest trained model: certify it against its record and the ledger, generate its "
        "model card and compliance documents, and move the production alias to it."
    ),
    tags=RUN_RETRY_TAGS,
)

finetune_job = dg.define_asset_job(
    "finetune",
    selection=dg.AssetSelection.assets(finetuned_model),
    description=(
        "Fine-tune the released model on a file of examples (SovereignTune): every example use a leaf of "
        "the run's Merkle tree, evaluation gates recorded; certify it afterwards with `apertus certify`."
    ),
    tags={**TRAIN_RUN_RETRY_TAGS, **HEAVY_TAGS},
)
