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
from tests.model.test_staged_training import write_token_shards


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


def test_refuses_to_train_on_another_version_than_dagster_recorded(tmp_path):
    # The input's value names one token_shards folder, Dagster's data version another: nothing may
    # be trained (or sealed) on a version the run's lineage would not name.
    @dg.asset(name="token_shards")
    def mismatched():
        return dg.Output("token_shards/" + "a" * 64, data_version=dg.DataVersion("b" * 64))

    with dg.instance_for_test() as instance:
        result = dg.materialize(
            [mismatched, trained_model],
            instance=instance,
            resources={"curation": CurationResource(data_folder=str(tmp_path))},
            raise_on_error=False,
        )
    assert not result.success
    (failure,) = [e for e in result.all_events if e.event_type_value == "STEP_FAILURE"]
    assert "differs from the folder to train on" in failure.event_specific_data.user_failure_data.description
    assert not (tmp_path / "datasets" / TRAINED_MODEL).exists()


STOPPED_RUN = """
import sys
import dagster as dg
from apertus.stopping import stoppable
from assets.resources import CurationResource
from assets.run_claims import take_signal_from_dagster
from assets.training import trained_model

root, ref, version = sys.argv[1:4]

@dg.asset(name="token_shards")
def token_shards_version():
    return dg.Output(ref, data_version=dg.DataVersion(version))

# As `apertus train` runs it (apertus/cli.py: _run_stoppable).
with dg.instance_for_test() as instance, stoppable(take_signal_from_dagster) as stop:
    try:
        dg.materialize(
            [token_shards_version, trained_model],
            instance=instance,
            resources={"curation": CurationResource(data_folder=root)},
            run_config={"ops": {"trained_model": {"config": {"max_steps": 5000, "threads": 1}}}},
        )
    except BaseException:
        if stop.signo is None:
            raise
sys.exit(stop.exit_code if stop.signo else 0)
"""


def test_sigterm_stops_the_training_child(tmp_path):
    # SIGTERM to the Dagster process (run as the CLI runs it) while the Pipes child trains: the step
    # forwards SIGINT to the child, which exits; the command ends with 143 within seconds (not after
    # the step's retry delay), and no training process outlives it.
    import os
    import signal
    import subprocess
    import sys
    import time

    import psutil

    root = tmp_path / "data"
    folder = write_token_shards(root / "datasets", root / "work")
    log = tmp_path / "run.log"
    env = {**os.environ, "DAGSTER_DISABLE_TELEMETRY": "1"}
    with open(log, "w") as out:
        parent = subprocess.Popen(
            [sys.executable, "-c", STOPPED_RUN, str(root), f"token_shards/{folder.name}", folder.name],
            stdout=out, stderr=subprocess.STDOUT, env=env, cwd=Path(__file__).resolve().parents[2],
        )  # fmt: skip
    try:
        deadline = time.monotonic() + 240
        while "step 2/5000" not in log.read_text() and time.monotonic() < deadline:
            assert parent.poll() is None, log.read_text()[-3000:]
            time.sleep(0.5)
        assert "step 2/5000" in log.read_text(), log.read_text()[-3000:]
        children = psutil.Process(parent.pid).children(recursive=True)
        assert any("assets.external.train" in " ".join(c.cmdline()) for c in children)
        parent.send_signal(signal.SIGTERM)
        stopped_at = time.monotonic()
        parent.wait(timeout=60)
        seconds_to_stop = time.monotonic() - stopped_at
        _, alive = psutil.wait_procs(children, timeout=10)
    finally:
        parent.kill()
        parent.wait()
    output = log.read_text()
    assert parent.returncode == 128 + signal.SIGTERM, output[-3000:]
    assert seconds_to_stop < 20, seconds_to_stop
    assert "sending SIGINT to subprocess" in output, output[-3000:]
    assert not alive, [c.cmdline() for c in alive]
    assert "step 5000/5000" not in output
