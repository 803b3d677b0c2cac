"""SovereignTune as a Dagster asset: fine-tune the released model on a file of examples.

model_release -> finetuned_model   (a sealed finetuned_model version: weights, the per-run Merkle tree
                                    of example uses, the evaluation gates, provenance.json)

Like training, fine-tuning runs in a Dagster Pipes child (``python -m assets.external.finetune``,
assets/pipes.py) that calls model.finetune.finetune_and_seal, the function ``apertus finetune`` runs,
with a typed FinetuneConfig; the sealed version, its metadata and its checks come back through Pipes.
The records are records.finetune's; certifying the fine-tune and moving an alias to it stay
decisions (``apertus certify``, ``apertus alias set``), not side effects of a materialization.
"""

import dagster as dg

from assets.checks import VERSION_CHECKS
from assets.curation import CODE_VERSION
from assets.operations import TRAIN_POOL, TRAINING_RETRY
from assets.pipes import ProcessConfig, run_external
from assets.resources import CurationResource
from records.assets import FINETUNED_MODEL
from records.manifest import load_manifest, version_folder
from sample import FINETUNE_EXAMPLES


class FinetuningConfig(ProcessConfig):
    """examples: JSONL of {"prompt", "response"} or {"text"} (default: the bundled sample set).
    steps: optimizer steps; empty (null) keeps model.finetune.FinetuneConfig's default, which is
    defined there only (importing it here would load torch with the code location)."""

    examples: str = str(FINETUNE_EXAMPLES)
    steps: int | None = None


@dg.asset(
    group_name="release",
    code_version=CODE_VERSION,
    check_specs=[dg.AssetCheckSpec(name, asset=FINETUNED_MODEL) for name in (*VERSION_CHECKS, "gates_pass")],
    kinds={"pytorch"},
    retry_policy=TRAINING_RETRY,
    pool=TRAIN_POOL,
)
def finetuned_model(
    context: dg.AssetExecutionContext,
    config: FinetuningConfig,
    curation: CurationResource,
    model_release: str,
):
    """The released model fine-tuned on the examples: every use of an example a leaf of the run's
    Merkle tree (root in the ledger), evaluation gates (held-out loss, per-language perplexity on the
    base's held-out data) recorded, sealed as a finetuned_model version."""
    layout = curation.layout()
    (base,) = load_manifest(version_folder(layout.datasets, model_release)).parents
    overrides = {} if config.steps is None else {"steps": config.steps}
    extras = {"base": base, "examples": config.examples, "config": overrides, "data_folder": str(layout.root)}
    output, checks = run_external(
        context, "assets.external.finetune", extras, config.threads, FINETUNED_MODEL
    )
    yield output
    yield from checks


FINETUNING_ASSETS = [finetuned_model]
