"""Model versions: the provenance record of a real (tiny) training run, its seal and ledger entry,
`verify` over it, and `contains --model` answering from the model's own record of what it trained on."""

from __future__ import annotations

import json
import shutil

import polars as pl
import pyarrow.parquet as pq

from apertus.cli import main
from provenance.audit.contains import DROPPED, IN, NOT_SEEN
from provenance.audit.lineage import lineage
from provenance.audit.model_use import contains_in_model
from provenance.audit.verify import verify
from records.hashing import sha256_file
from records.layout import DataLayout
from records.ledger import Ledger
from records.manifest import verify_version
from records.models import RECORD, load_record


def _sequence_use(layout, model) -> pl.DataFrame:
    return pl.read_parquet(layout.datasets / model.ref / "sequence_use.parquet")


def test_the_record_pins_data_code_config_and_environment(trained):
    layout, model, shards = trained
    folder = layout.datasets / model.ref
    record = load_record(folder)
    assert record["format"] == "apertus.provenance-record/1"
    assert record["datasets"]["token_shards"] == shards.ref
    assert set(model.parents) == {shards.ref, *shards.parents}
    assert [s["stage"] for s in record["datasets"]["stages"]] == ["broad", "mid", "anneal"]
    assert record["export"]["sha256"] == sha256_file(folder / "model.safetensors")
    assert set(record["checkpoint"]["files"]) <= {f.path for f in model.files}
    assert len(record["code"]["commit"]) == 40 and isinstance(record["code"]["dirty"], bool)
    assert record["config"]["run"]["train"]["max_steps"] == 16
    assert record["config"]["deepspeed"]["gradient_clipping"] == record["config"]["run"]["train"]["grad_clip"]
    assert record["hardware"]["cpu_count"] >= 1 and record["hardware"]["torch"]
    assert record["model"]["parameters"]["total"] > record["model"]["parameters"]["active"] > 0
    assert record["metrics"]["steps"] == 16
    entry = next(e for e in Ledger(layout.ledger).entries() if e.event_type == "model_trained")
    assert entry.payload["model_version"] == model.ref
    assert entry.payload["record_sha256"] == sha256_file(folder / RECORD)


def test_verify_passes_then_names_a_changed_checkpoint_byte(trained, tmp_path):
    layout, model, _ = trained
    assert verify(layout, model.ref).ok
    copy = DataLayout(tmp_path / "data")
    shutil.copytree(layout.root, copy.root)
    folder = copy.datasets / model.ref
    victim = sorted(p for p in (folder / "checkpoints").rglob("*.pt"))[0]
    data = bytearray(victim.read_bytes())
    data[len(data) // 2] ^= 1
    victim.write_bytes(bytes(data))
    report = verify(copy, model.ref)
    assert not report.ok
    assert any(str(victim) in p for p in report.problems), report.problems


def test_a_rewritten_record_is_caught_by_the_ledger(trained, tmp_path):
    layout, model, _ = trained
    copy = DataLayout(tmp_path / "data")
    shutil.copytree(layout.root, copy.root)
    folder = copy.datasets / model.ref
    record = load_record(folder)
    record["datasets"]["stages"] = []
    (folder / RECORD).write_text(json.dumps(record))
    problems = verify(copy, model.ref).problems
    assert any(RECORD in p for p in problems), problems


def test_sequence_use_replays_the_batches(trained):
    layout, model, _ = trained
    use = _sequence_use(layout, model)
    record = load_record(layout.datasets / model.ref)
    draws = use["times_trained"].sum()
    run = record["config"]["run"]["train"]
    assert draws == run["max_steps"] * run["micro_batch_size"] * run["grad_accum_steps"]
    assert use.filter(pl.col("held_out"))["times_trained"].sum() == 0


def _a_trained_document(layout, model, shards) -> str:
    use = _sequence_use(layout, model).filter(pl.col("times_trained") > 0)
    stage = use["stage"][0]
    sequences = pq.read_table(
        layout.datasets / shards.ref / "stages" / stage / "sequences.parquet"
    ).to_pylist()
    trained = set(use.filter(pl.col("stage") == stage)["sequence"].to_list())
    return next(r["sha256"] for r in sequences if r["sequence"] in trained)


def test_contains_model_for_a_trained_document(trained):
    layout, model, shards = trained
    sha = _a_trained_document(layout, model, shards)
    answer = contains_in_model(layout, model.ref, sha256=sha)
    assert answer.status == IN
    (use,) = answer.uses
    assert sum(s.times_trained for s in use.stages) >= 1


def test_contains_model_for_dropped_and_unseen_documents(trained, curated):
    layout, model, _ = trained
    _, results, _ = curated
    # A page the quality filter dropped (an exact duplicate's hash would also name its kept twin).
    kept = set(pq.read_table(results[-1].folder / "index.parquet", columns=["sha256"])["sha256"].to_pylist())
    excluded = pq.read_table(results[2].folder / "exclusions.parquet", columns=["sha256"])[
        "sha256"
    ].to_pylist()
    dropped = next(h for h in excluded if h not in kept)
    answer = contains_in_model(layout, model.ref, sha256=dropped)
    assert answer.status == DROPPED and answer.uses == []
    assert answer.membership.documents[0].dropped_at.reason.startswith(("gopher", "c4", "fineweb"))
    assert contains_in_model(layout, model.ref, sha256="0" * 64).status == NOT_SEEN


def test_the_cli_answers_for_models(trained, monkeypatch, capsys):
    layout, model, shards = trained
    monkeypatch.setenv("APERTUS_DATA", str(layout.root))
    sha = _a_trained_document(layout, model, shards)
    assert main(["audit", "contains", "--sha256", sha, "--model", model.ref[:24]]) == 0
    assert capsys.readouterr().out.startswith(f"IN {model.ref[:26]}")
    assert main(["audit", "contains", "--sha256", sha, "--all-models", "--json"]) == 0
    (answer,) = json.loads(capsys.readouterr().out)
    assert answer["model"] == model.ref and answer["status"] == IN
    assert main(["audit", "contains", "--sha256", "f" * 64, "--all-models"]) == 1
    assert main(["audit", "contains", "--sha256", sha, "--version", model.ref]) == 2
    assert "is a model" in capsys.readouterr().err


def test_lineage_of_a_model_reaches_the_raw_snapshot(trained):
    layout, model, _ = trained
    root = lineage(layout, model.ref)
    seen, stack = set(), [root]
    while stack:
        node = stack.pop()
        seen.add(node.ref.split("/")[0])
        stack.extend(node.parents)
    assert {
        "trained_model",
        "token_shards",
        "tokenizer",
        "curriculum_stages",
        "quality_scored",
        "raw_documents",
    } <= seen
    assert root.ledger_index is not None and verify_version(layout.datasets / model.ref) == []


def test_the_catalog_joins_documents_to_the_model_that_trained_on_them(trained):
    layout, model, shards = trained
    from records.catalog import query

    _, [(draws,)] = query(layout, "SELECT sum(times_trained) FROM training_use WHERE model_version = "
                          f"'{model.version_id}'")  # fmt: skip
    assert draws == _sequence_use(layout, model)["times_trained"].sum()
    sha = _a_trained_document(layout, model, shards)
    _, rows = query(
        layout,
        "SELECT DISTINCT u.model_version, s.stage FROM sequences s JOIN training_use u "
        "ON u.token_shards_version = s.token_shards_version AND u.stage = s.stage "
        "AND u.sequence = s.sequence AND u.times_trained > 0 "
        f"WHERE s.sha256 = '{sha}' AND s.token_shards_version = '{shards.version_id}'",
    )
    assert rows and all(version == model.version_id for version, _ in rows)
