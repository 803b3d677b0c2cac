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
from provenance.hashing import sha256_file
from tests.model.test_stages import write_token_shards


@pytest.fixture(scope="module")
def materialized(tmp_path_factory):
    root = tmp_path_factory.mktemp("training_data")
    folder = write_token_shards(root / "datasets", root / "work")
    ref = f"token_shards/{folder.name}"

    @dg.asset(name="token_shards")
    def token_shards_version() -> str:
        """Stands in for the token_shards asset: the ref of the version written above."""
        return ref

    with dg.instance_for_test() as instance:
        result = dg.materialize(
            [token_shards_version, trained_model],
            instance=instance,
            resources={"curation": CurationResource(data_folder=str(root))},
            run_config={"ops": {"trained_model": {"config": {"max_steps": 20, "threads": 1}}}},
        )
        logs = [e.message for e in instance.all_logs(result.run_id) if e.message]
        yield result, folder, logs


def test_training_succeeds_with_its_metadata(materialized):
    result, folder, logs = materialized
    assert result.success
    (event,) = result.asset_materializations_for_node(TRAINED_MODEL)
    metadata = event.metadata
    for key in (
        "run_folder", "upstream_versions", "stage_plan", "first_loss", "final_loss", "tokens_per_s",
        "expert_load_cv", "held_out_perplexity", "model_sha256", "file_sha256", "loss_curve", "perplexity_by_language",
    ):  # fmt: skip
        assert key in metadata, key
    assert metadata["loss_curve"].value.startswith("![loss_curve](data:image/png;base64,")
    assert metadata["final_loss"].value < metadata["first_loss"].value
    assert len(metadata["expert_load_cv"].value) == 2  # one per layer of the tiny recipe
    out = Path(result.output_for_node(TRAINED_MODEL))
    assert metadata["model_sha256"].value == sha256_file(out / "model.safetensors")
    # The trainer's step lines reached the run's log as it trained.
    assert any(message.startswith("step 20/20 stage 01-anneal") for message in logs)


def test_checks_pass(materialized):
    result, _, _ = materialized
    checks = {c.check_name: c.passed for c in result.get_asset_check_evaluations()}
    assert checks == {"loss_decreased": True, "export_reloads": True}


def test_run_json_names_the_upstream_versions_and_hashes(materialized):
    result, folder, _ = materialized
    out = Path(result.output_for_node(TRAINED_MODEL))
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
    assert out.parent.name == "models" and (out / "evaluation.json").exists()
