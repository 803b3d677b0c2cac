"""The names of the assets: each is a Dagster asset key and the folder ``datasets/<asset>/`` its
versions live in, and a model's provenance record keys its input versions by them. Spelled here
only; every other module imports the constant (tests/records/test_one_owner_per_name.py checks).
"""

from __future__ import annotations

RAW_DOCUMENTS = "raw_documents"
LANGUAGE_IDENTIFIED = "language_identified"
QUALITY_FILTERED = "quality_filtered"
DEDUPLICATED = "deduplicated"
QUALITY_CLASSIFIER = "quality_classifier"
QUALITY_SCORED = "quality_scored"
CURRICULUM_STAGES = "curriculum_stages"
TOKENIZER = "tokenizer"
TOKEN_SHARDS = "token_shards"
TRAINED_MODEL = "trained_model"
MODEL_RELEASE = "model_release"
FINETUNE_EXAMPLES = "finetune_examples"
FINETUNED_MODEL = "finetuned_model"

# Versions that are models (records.models, records.finetune), not data: never a target of a
# document query.
MODEL_ASSETS = (TRAINED_MODEL, FINETUNED_MODEL)
# The inputs of a trained model, as its provenance record's ``datasets`` keys them.
MODEL_INPUTS = (TOKEN_SHARDS, TOKENIZER, CURRICULUM_STAGES)

ASSET_NAMES = (
    RAW_DOCUMENTS,
    LANGUAGE_IDENTIFIED,
    QUALITY_FILTERED,
    DEDUPLICATED,
    QUALITY_CLASSIFIER,
    QUALITY_SCORED,
    CURRICULUM_STAGES,
    TOKENIZER,
    TOKEN_SHARDS,
    TRAINED_MODEL,
    MODEL_RELEASE,
    FINETUNE_EXAMPLES,
    FINETUNED_MODEL,
)
