"""The trained_model asset in a temporary Dagster instance: training runs as a subprocess over a small
token_shards version, the metadata shows the loss, perplexities, hashes and upstream versions, and the
checks pass on what was written."""

from __future__ import annotations

import json
from pathlib import Path

import dagster as dg
import pytest

from assets.resources import CurationResource
from assets.training import TRAINED_MODEL, trained_model
from records.hashing import sha256_file
from records.manifest import load_manifest, verify_version
from records.models import RECORD, load_record
from tests.model.test_stages import write_token_shards


@pytest.fixture(scope="module")
def materialized(tmp_path_factory):
    root = tmp_path_factory.mktemp("training_data")
    folder = write_token_shards(root / "datasets", root / "work")
    ref = f"token_shards/{folder.name}"

    @dg.asset(name="token_shards")
    def token_shards_version():
        """Stands in for the token_shards asset: the ref of the version written above, its id as the
        data version (as assets/training_data.py reports it)."""
        return dg.Output(ref, data_version=dg.DataVersion(folder.name))

    with dg.instance_for_test() as instance:
        result = dg.materialize(
            [token_shards_version, trained_model],
            instance=instance,
            resources={"curation": CurationResource(data_folder=str(root))},
            run_config={"ops": {"trained_model": {"config": {"max_steps": 20, "threads": 1}}}},
        )
        logs = [e.message for e in instance.all_logs(result.run_id) if e.message]
        yield result, folder, logs


def _model_folder(result, folder: Path) -> Path:
    # The output is the model version's ref; it lives beside the token shards it was trained on.
    return folder.parents[1] / result.output_for_node(TRAINED_MODEL)


def test_training_succeeds_with_its_metadata(materialized):
    result, folder, logs = materialized
    assert result.success
    (event,) = result.asset_materializations_for_node(TRAINED_MODEL)
    metadata = event.metadata
    for key in (
        "model_version", "manifest", "provenance_record", "ledger_index", "upstream_versions", "stage_plan", "first_loss", "final_loss", "tokens_per_s",
        "expert_load_cv", "held_out_perplexity", "model_sha256", "file_sha256", "loss_curve", "perplexity_by_language",
    ):  # fmt: skip
        assert key in metadata, key
    assert metadata["loss_curve"].value.startswith("![loss_curve](data:image/png;base64,")
    assert metadata["final_loss"].value < metadata["first_loss"].value
    assert len(metadata["expert_load_cv"].value) == 2  # one per layer of the tiny recipe
    out = _model_folder(result, folder)
    assert metadata["model_sha256"].value == sha256_file(out / "model.safetensors")
    # The trainer's step lines reached the run's log as it trained.
    assert any(message.startswith("step 20/20 stage 01-anneal") for message in logs)


def test_checks_pass(materialized):
    result, _, _ = materialized
    checks = {c.check_name: c.passed for c in result.get_asset_check_evaluations()}
    assert checks == {
        "version_verifies": True, "ledger_verifies": True, "loss_decreased": True, "export_reloads": True,
    }  # fmt: skip


def test_run_json_names_the_upstream_versions_and_hashes(materialized):
    result, folder, _ = materialized
    out = _model_folder(result, folder)
    run = json.loads((out / "run.json").read_text())
    index = json.loads((folder / "index.json").read_text())
    assert run["upstream"]["token_shards"] == f"token_shards/{folder.name}"
    assert run["upstream"]["curriculum_stages"] == index["stages_version"]
    assert run["upstream"]["tokenizer"] == index["tokenizer"]
    checkpoint_files = [p for p in (out / "checkpoints").rglob("*") if p.is_file()]
    assert {f"checkpoints/{p.relative_to(out / 'checkpoints').as_posix()}" for p in checkpoint_files} <= set(
        run["files"]
    )
    for path, digest in run["files"].items():
        assert sha256_file(out / path) == digest, path
    assert (out / "evaluation.json").exists()


def test_the_model_is_a_sealed_version_pinned_in_the_ledger(materialized):
    result, folder, _ = materialized
    out = _model_folder(result, folder)
    manifest = load_manifest(out)
    assert manifest.asset == TRAINED_MODEL and out.name == manifest.version_id
    assert verify_version(out) == []
    assert manifest.parents[0] == f"token_shards/{folder.name}"
    (event,) = result.asset_materializations_for_node(TRAINED_MODEL)
    entries = [
        json.loads(line) for line in (folder.parents[2] / "ledger" / "entries.jsonl").read_text().splitlines()
    ]
    (entry,) = [e for e in entries if e["event_type"] == "model_trained"]
    assert entry["index"] == event.metadata["ledger_index"].value
    assert entry["payload"]["model_version"] == manifest.ref
    assert entry["payload"]["record_sha256"] == sha256_file(out / RECORD)
    assert entry["payload"]["model_sha256"] == sha256_file(out / "model.safetensors")


def test_the_record_pins_what_dagster_recorded_as_inputs(materialized):
    result, folder, _ = materialized
    out = _model_folder(result, folder)
    record = load_record(out)
    (event,) = result.asset_materializations_for_node(TRAINED_MODEL)
    # Dagster's own record of the input version this run consumed is a tag on the materialization.
    consumed = event.tags["dagster/input_data_version/token_shards"]
    assert record["orchestration"]["input_versions"]["token_shards"] == consumed == folder.name
    assert record["datasets"]["token_shards"] == f"token_shards/{consumed}"
    assert record["orchestration"]["dagster_run_id"] == result.run_id
    assert record["export"]["sha256"] == sha256_file(out / "model.safetensors")
    stages = record["datasets"]["stages"]
    assert [s["stage"] for s in stages] == ["broad", "anneal"]
    assert all(0 < s["sequences_trained"] <= s["sequences"] for s in stages)
    for key in ("code", "config", "dependencies", "hardware", "seeds", "metrics"):
        assert record[key], key
    assert record["config"]["deepspeed"]["train_micro_batch_size_per_gpu"] >= 1
    assert record["dependencies"]["count"] > 50 and len(record["dependencies"]["sha256"]) == 64
