"""SovereignTune as a Dagster asset: fine-tune the released model on a file of examples.

model_release -> finetuned_model   (a sealed finetuned_model version: weights, the per-run Merkle tree
                                    of example uses, the evaluation gates, provenance.json)

Like training, fine-tuning runs in a subprocess (``apertus finetune``, the command an operator runs by
hand), so the Dagster process never holds the model and every line it prints reaches the run's log.
The records are records.finetune's; certifying the fine-tune and moving an alias to it stay
decisions (``apertus certify``, ``apertus alias set``), not side effects of a materialization.
"""

import sys

import dagster as dg

from assets.checks import VERSION_CHECKS, check_results, version_outcomes
from assets.curation import CODE_VERSION
from assets.operations import TRAIN_POOL, TRAINING_RETRY
from assets.resources import CurationResource
from assets.training import run_logged
from pipelines.steps import StepResult
from records.assets import FINETUNED_MODEL
from records.manifest import MANIFEST, load_manifest, version_folder
from records.models import RECORD, load_record
from records.versions import ledger_records
from sample import FINETUNE_EXAMPLES


class FinetuningConfig(dg.Config):
    """examples: JSONL of {"prompt", "response"} or {"text"} (default: the bundled sample set).
    steps: optimizer steps (0: model/finetune.py's default). threads: OMP_NUM_THREADS of the run."""

    examples: str = str(FINETUNE_EXAMPLES)
    steps: int = 0
    threads: int = 2


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
    (base,) = [p for p in load_manifest(version_folder(layout.datasets, model_release)).parents]
    command = [sys.executable, "-m", "apertus.cli", "finetune", "--base", base, "--examples", config.examples]
    if config.steps:
        command += ["--steps", str(config.steps)]
    context.log.info(f"fine-tuning {base}: {' '.join(command)}")
    lines = run_logged(context, command, config.threads, env={"APERTUS_DATA": str(layout.root)})
    ref = lines[-1].strip()
    if not ref.startswith(f"{FINETUNED_MODEL}/"):
        raise dg.Failure(f"apertus finetune did not end with the new version's ref: {ref!r}")
    folder = layout.datasets / ref
    manifest = load_manifest(folder)
    record = load_record(folder)
    pinned = ledger_records(layout).get(ref)
    gates = record.get("gates", {})
    metadata = {
        "model_version": dg.MetadataValue.text(manifest.version_id),
        "manifest": dg.MetadataValue.path(str(folder / MANIFEST)),
        "provenance_record": dg.MetadataValue.path(str(folder / RECORD)),
        "base_model": dg.MetadataValue.text(base),
        "examples": dg.MetadataValue.json(record.get("examples", {})),
        "gates": dg.MetadataValue.json(gates),
        "certifiable": dg.MetadataValue.bool(bool(record.get("certifiable"))),
        "metrics": dg.MetadataValue.json(record.get("metrics", {})),
    }
    if pinned is not None:
        metadata["ledger_index"] = dg.MetadataValue.int(pinned.index)
    yield dg.Output(ref, data_version=dg.DataVersion(manifest.version_id), metadata=metadata)
    result = StepResult(manifest, True, {}, {}, folder, None)
    outcomes = {
        **version_outcomes(result, layout),
        "gates_pass": (bool(record.get("certifiable")), {"gates": gates}),
    }
    yield from check_results(FINETUNED_MODEL, outcomes)


FINETUNING_ASSETS = [finetuned_model]
