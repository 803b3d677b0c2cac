"""Fine-tuning records, certification, aliases and rollback (records/finetune.py, provenance/certify.py,
apertus/tune_cli.py) on real fine-tuning runs of a hand-built base model (tests/model/test_finetune.py).

What must hold: a used example has an inclusion proof that verifies offline against the root the
ledger recorded, a held-out one has none and a borrowed proof does not verify for it; a run whose
gates failed cannot be certified; rollback restores bit-identical weights and refuses a non-certified
or tampered target; every certification and alias move is a ledger entry the signed tree head covers.
"""

from __future__ import annotations

import dataclasses
import json
import shutil

import pytest

from apertus.tune_cli import add_commands, finetune_and_seal, print_example_contains, run_tune_demo
from provenance.certify import (
    alias_target,
    certification,
    certify,
    gate_problems,
    materialize_alias,
    model_history,
    rollback,
    set_alias,
)
from records.finetune import (
    contains_example,
    example_hash_of,
    read_examples,
    split_held_out,
    verify_example_proof,
)
from records.hashing import sha256_file
from records.layout import DataLayout
from records.ledger import MODEL_CERTIFIED, MODEL_TRAINED, Ledger, verify_entry_offline
from records.ledger.format import TREE_HEADS
from records.manifest import verify_version
from records.models import load_record
from tests.model.test_finetune import PASSING, SAMPLE, build_base

QUIET = {"log": lambda _: None}


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """A base version and three fine-tunes of it: a and b pass their gates, failed does not."""
    layout, base_ref, reference = build_base(tmp_path_factory.mktemp("certify-data"))
    a, run_a = finetune_and_seal(layout, base_ref, SAMPLE, PASSING, reference_texts=reference, **QUIET)
    b, _ = finetune_and_seal(
        layout, base_ref, SAMPLE, dataclasses.replace(PASSING, seed=1), reference_texts=reference, **QUIET
    )
    hard = dataclasses.replace(PASSING, peak_lr=3e-2, steps=8, perplexity_margin=0.0)
    failed, _ = finetune_and_seal(layout, base_ref, SAMPLE, hard, reference_texts=reference, **QUIET)
    return layout, base_ref, a.ref, b.ref, failed.ref, run_a


def _copy(layout: DataLayout, tmp_path) -> DataLayout:
    """A private copy of the module's data folder (keys included), for tests that change it."""
    shutil.copytree(layout.root, tmp_path / "data")
    return DataLayout(tmp_path / "data")


def test_sealed_run_and_its_ledger_entry(runs):
    layout, base_ref, a, _, _, run_a = runs
    folder = layout.datasets / a
    assert verify_version(folder) == []
    record = load_record(folder)
    assert record["format"] == "apertus.finetune-record/1" and record["base"]["model_version"] == base_ref
    assert record["export"]["sha256"] == sha256_file(folder / "model.safetensors")
    examples_ref = record["examples"]["dataset_version"]
    assert examples_ref.startswith("finetune_examples/")
    assert (layout.datasets / examples_ref / "examples.jsonl").read_bytes() == SAMPLE.read_bytes()
    entries = list(Ledger(layout.ledger).entries())
    (trained,) = [e for e in entries if e.event_type == MODEL_TRAINED and e.payload["model_version"] == a]
    assert trained.payload["kind"] == "finetune" and trained.payload["parents"] == [base_ref, examples_ref]
    assert trained.payload["examples_root"] == run_a["examples"]["root"] == record["examples"]["root"]
    # The examples version is pinned like every dataset version, once although three runs used it.
    pinned = [e for e in entries if e.event_type == "dataset_version_created"]
    assert [e.payload["dataset_version"] for e in pinned].count(examples_ref) == 1


def test_inclusion_proof_of_a_used_example_verifies_and_none_exists_for_a_held_out_one(runs, tmp_path):
    layout, _, a, _, _, _ = runs
    examples = read_examples(SAMPLE)
    train, held = split_held_out(examples, PASSING.held_out_fraction)
    usage = (layout.datasets / a / "usage.jsonl").read_text()
    used = next(e for e in train if e.sha256 in usage)
    one = tmp_path / "example.json"
    one.write_text(json.dumps(used.record, ensure_ascii=False, indent=2))  # formatting does not matter
    assert example_hash_of(one) == used.sha256

    found, proof = contains_example(layout, one, a)
    assert found and proof["example_sha256"] == used.sha256
    (trained,) = [e for e in Ledger(layout.ledger).entries() if e.payload.get("model_version") == a]
    assert verify_example_proof(json.loads(json.dumps(proof)), used.sha256, trained.payload["examples_root"])
    assert proof["uses"] == usage.count(used.sha256)

    for example in held:
        assert contains_example(layout, example.sha256, a) == (False, None)
        assert not verify_example_proof(proof, example.sha256, trained.payload["examples_root"])
        # Another example's proof, relabelled, does not verify for it.
        forged = {
            **proof,
            "example_sha256": example.sha256,
            "leaf": proof["leaf"].replace(used.sha256, example.sha256),
        }
        assert not verify_example_proof(forged, example.sha256, trained.payload["examples_root"])
    tampered = {**proof, "audit_path": proof["audit_path"][:-1]}
    assert not verify_example_proof(tampered, used.sha256, trained.payload["examples_root"])


def test_a_run_whose_gates_failed_is_not_certified(runs, tmp_path):
    layout, _, _, _, failed, _ = runs
    problems = gate_problems(load_record(layout.datasets / failed))
    assert any("gate base_perplexity failed" in p for p in problems)
    with pytest.raises(ValueError, match="base_perplexity failed"):
        certify(layout, failed, by="auditor")
    assert certification(layout, failed) is None

    # Editing the record to say the gates passed: the numbers contradict it, and the file its manifest.
    layout = _copy(layout, tmp_path)
    path = layout.datasets / failed / "provenance.json"
    record = json.loads(path.read_text())
    record["gates"]["base_perplexity"]["passed"] = True
    record["gates"]["base_perplexity"]["languages"] = {
        k: {**v, "passed": True} for k, v in record["gates"]["base_perplexity"]["languages"].items()
    }
    assert gate_problems(record) and all("does not follow" in p for p in gate_problems(record))
    for v in record["gates"]["base_perplexity"]["languages"].values():
        v["finetuned"] = v["limit"]  # numbers that do support the verdict
    assert gate_problems(record) == []
    path.write_text(json.dumps(record))
    with pytest.raises(ValueError, match="provenance.json: sha256"):
        certify(layout, failed, by="auditor")


def test_certify_alias_and_rollback_restore_the_certified_bytes(runs, tmp_path):
    layout, base_ref, a, b, failed, _ = runs
    layout = _copy(layout, tmp_path)
    cert_a = certify(layout, a[:30], by="auditor")
    assert cert_a.event_type == MODEL_CERTIFIED and cert_a.payload["model_version"] == a
    assert cert_a.payload["model_sha256"] == sha256_file(layout.datasets / a / "model.safetensors")
    assert certify(layout, a, by="someone else").index == cert_a.index  # certified once
    ledger = Ledger(layout.ledger)
    head = ledger.tree_head()
    assert verify_entry_offline(
        cert_a.canonical_json,
        cert_a.index,
        ledger.inclusion_proof(cert_a.index),
        head.to_json(),
        ledger.public_key_pem(),
    )
    certify(layout, b, by="auditor")

    with pytest.raises(ValueError, match="not certified"):
        set_alias(layout, "production", failed, by="ops")
    set_alias(layout, "production", a, by="ops")
    moved = set_alias(layout, "production", b, by="ops")
    assert moved.payload == {"alias": "production", "model_version": b, "previous": a, "by": "ops"}
    served_b = materialize_alias(layout, "production", tmp_path / "served-b.safetensors")
    assert served_b.read_bytes() == (layout.datasets / b / "model.safetensors").read_bytes()

    heads = (layout.ledger / TREE_HEADS).read_text().splitlines()
    back, moved = rollback(layout, "production", a, by="ops")
    assert (
        back.payload["from"] == b and back.payload["to"] == a and back.payload["certified_at"] == cert_a.index
    )
    # One batch: consecutive entries, one signed tree head covering both, no head after the rollback alone.
    assert moved.index == back.index + 1 and back.timestamp == moved.timestamp
    assert len((layout.ledger / TREE_HEADS).read_text().splitlines()) == len(heads) + 1
    assert Ledger(layout.ledger).tree_head().tree_size == moved.index + 1
    assert alias_target(layout, "production") == a
    restored = materialize_alias(layout, "production", tmp_path / "restored.safetensors")
    assert restored.read_bytes() == (layout.datasets / a / "model.safetensors").read_bytes()
    assert sha256_file(restored) == cert_a.payload["model_sha256"]
    assert Ledger(layout.ledger).verify() == []

    with pytest.raises(ValueError, match="not certified"):
        rollback(layout, "production", failed, by="ops")
    with pytest.raises(ValueError, match="not certified"):
        rollback(layout, "production", base_ref, by="ops")
    with pytest.raises(ValueError, match="never set"):
        rollback(layout, "staging", a, by="ops")

    history = model_history(layout, a)
    events = [(h["event"], h["model_version"], h["depth"]) for h in history]
    assert events[0] == ("model_trained", base_ref, 0)
    assert ("model_certified", a, 1) in events and ("rollback", a, 1) in events
    assert [h["index"] for h in history] == sorted(h["index"] for h in history)
    assert {h["model_version"] for h in history} == {base_ref, a, b, failed}


def test_a_tampered_checkpoint_is_refused(runs, tmp_path):
    layout, _, a, b, _, _ = runs
    layout = _copy(layout, tmp_path)
    certify(layout, a, by="auditor")
    certify(layout, b, by="auditor")
    set_alias(layout, "fallback", a, by="ops")
    set_alias(layout, "production", a, by="ops")
    set_alias(layout, "production", b, by="ops")
    path = layout.datasets / a / "model.safetensors"
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01  # one bit of one weight
    path.write_bytes(bytes(data))
    with pytest.raises(ValueError, match="model.safetensors"):
        rollback(layout, "production", a, by="ops")
    assert alias_target(layout, "production") == b
    with pytest.raises(ValueError, match="differs from the certified"):
        materialize_alias(layout, "fallback", tmp_path / "served.safetensors")
    assert not (tmp_path / "served.safetensors").exists()
    with pytest.raises(ValueError, match="differs"):
        certify(layout, a, by="auditor")


def test_a_tampered_ledger_refuses_rollback(runs, tmp_path):
    layout, _, a, b, _, _ = runs
    layout = _copy(layout, tmp_path)
    certify(layout, a, by="auditor")
    certify(layout, b, by="auditor")
    set_alias(layout, "production", b, by="ops")
    entries = layout.ledger / "entries.jsonl"
    entries.write_text(entries.read_text().replace('"by":"auditor"', '"by":"mallory"', 1))
    with pytest.raises(ValueError, match="entries.jsonl"):
        rollback(layout, "production", a, by="ops")


def test_cli_commands(runs, tmp_path, monkeypatch, capsys):
    import argparse

    layout, base_ref, a, b, failed, _ = runs
    layout = _copy(layout, tmp_path)
    monkeypatch.setenv("APERTUS_DATA", str(layout.root))
    parser = argparse.ArgumentParser(prog="apertus")
    add_commands(parser.add_subparsers(dest="command", required=True))

    def run(*argv):
        args = parser.parse_args(argv)
        return args.func(args)

    assert run("certify", a, "--by", "auditor") == 0
    assert run("certify", failed) == 1 and "base_perplexity failed" in capsys.readouterr().err
    assert run("alias", "set", "production", a) == 0
    assert run("alias", "set", "production", b) == 1  # b is not certified
    assert run("certify", b) == 0 and run("alias", "set", "production", b) == 0
    capsys.readouterr()
    assert run("alias", "show") == 0 and capsys.readouterr().out.strip() == f"production  {b}"
    assert run("rollback", "production", "--to", a) == 0 and alias_target(layout, "production") == a

    train, held = split_held_out(read_examples(SAMPLE), PASSING.held_out_fraction)
    used = next(e for e in train if e.sha256 in (layout.datasets / a / "usage.jsonl").read_text())
    capsys.readouterr()
    assert print_example_contains(used.sha256, a, as_json=True) == 0
    answer = json.loads(capsys.readouterr().out)
    assert answer["in"] and verify_example_proof(
        answer, used.sha256, load_record(layout.datasets / a)["examples"]["root"]
    )
    assert print_example_contains(held[0].sha256, a, as_json=True) == 1
    assert "held out" in json.loads(capsys.readouterr().out)["reason"]
    assert print_example_contains("0" * 64, a, as_json=False) == 1

    reference = layout.root / "reference.jsonl"
    capsys.readouterr()
    argv = ["--examples", str(SAMPLE), "--reference-texts", str(reference), "--steps", "2", "--seed", "5"]
    assert run("finetune", "--base", base_ref[:24], *argv) == 0
    ref = capsys.readouterr().out.strip().splitlines()[-1]
    record = load_record(layout.datasets / ref)
    assert record["config"]["steps"] == 2 and record["config"]["seed"] == 5
    assert record["base"]["model_version"] == base_ref


def test_demo_act(runs, tmp_path, monkeypatch):
    import apertus.tune_cli as tune_cli

    layout, base_ref, _, _, _, _ = runs
    layout = _copy(layout, tmp_path)
    # The demo's base has its token_shards version; this one is given reference texts, and a short run.
    original = tune_cli.finetune_and_seal
    reference = layout.root / "reference.jsonl"
    monkeypatch.setattr(
        tune_cli,
        "finetune_and_seal",
        lambda lay, base, examples, cfg=None, **kw: original(
            lay, base, examples, PASSING, reference_texts=reference, **kw
        ),
    )
    lines = []
    assert run_tune_demo(layout, base_ref, log=lines.append) == 0
    text = "\n".join(lines)
    assert "bit-identical to the certified ones: True" in text and "proof verifies: True" in text
    assert alias_target(layout, "production") == base_ref
