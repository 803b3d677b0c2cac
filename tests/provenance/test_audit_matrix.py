"""Every `apertus audit` question on a data folder holding every kind of version (the `audited_folder`
fixture: curated, staged, trained, fine-tuned, certified, alias moved, erasure requested), asked the
way an auditor asks it, with the documented answer and exit status (docs/audit.md): for a kept
document the model trained on, a document dropped by a step with a reason, and one never seen; by
URL, content hash and text snippet; in the default scope, in each document version, in each model
and in all models; as text and as JSON. Then the other subcommands on the same folder: the
fine-tune's example membership, lineage (tree, PROV-JSON), diff, verify, history, sql in each
format, index, export, and `compliance impact` of the recorded erasure request.

Most questions go through the CLI's own entry point in this process (`apertus.cli.main`, output
captured), which is the real command minus the interpreter's start-up; a few run the real command
in a subprocess. Both read `APERTUS_DATA`, set to a copy of the fixture's folder.
"""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from apertus.cli import main

DOCUMENTS = ("kept", "dropped", "unseen")
SELECTORS = ("url", "sha256", "text")
STATUS_HEAD = {"in": "IN", "dropped": "NOT IN (dropped)", "not_seen": "NOT IN (never seen)"}
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def audited(audited_folder, tmp_path_factory):
    """The fixture's folder copied, with APERTUS_DATA naming the copy for this module's tests."""
    root = tmp_path_factory.mktemp("audit-matrix") / "data"
    shutil.copytree(audited_folder.root, root)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("APERTUS_DATA", str(root))
        yield audited_folder, root


def cli(capsys, *argv: str) -> tuple[int, str, str]:
    """`apertus *argv` in this process: (exit status, stdout, stderr)."""
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def run_cli(root: Path, *argv: str) -> subprocess.CompletedProcess:
    """`python -m apertus.cli *argv` as a user runs it, on the data folder ``root``."""
    env = {**os.environ, "APERTUS_DATA": str(root)}
    return subprocess.run(
        [sys.executable, "-m", "apertus.cli", *argv],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )


def short(ref: str) -> str:
    """A ref as the terminal answers show it (provenance.audit.render)."""
    asset, _, version = ref.partition("/")
    return f"{asset}/{version[:12]}"


def load_refs(root: Path) -> list[str]:
    """Every version of the data folder ``root``, models included, as ``asset/version_id``."""
    return sorted(
        f"{p.parent.parent.name}/{p.parent.name}" for p in (root / "datasets").glob("*/*/manifest.json")
    )


def ask(folder, document: str, selector: str) -> list[str]:
    return [f"--{selector}", getattr(getattr(folder, document), selector)]


def expected_status(folder, document: str, target_asset: str | None) -> str:
    """What the records say of ``document`` in the version of ``target_asset`` (None: the chain ends)."""
    if document == "unseen":
        return "not_seen"
    if document == "kept":
        return "in"
    order = list(folder.document_versions)
    if target_asset is not None and order.index(target_asset) < order.index(folder.dropped.dropped_step):
        return "in"  # asked about a version before the step that dropped it
    return "dropped"


def check_membership(folder, document: str, selector: str, status: str, answer: dict) -> None:
    """The JSON membership answer (docs/audit.md, `contains --json`) for one of the three documents."""
    assert answer["status"] == status
    assert answer["query"] == {selector: getattr(getattr(folder, document), selector)}
    if document == "unseen":
        assert answer["documents"] == []
        return
    doc = getattr(folder, document)
    (fate,) = [d for d in answer["documents"] if d["doc_id"] == doc.doc_id]
    assert fate["url"] == doc.url and fate["sha256"] == doc.sha256
    assert fate["status"] == status
    assert [s["version"] for s in fate["trail"]][0] == folder.document_versions["raw_documents"]
    if status == "in":
        assert fate["kept_in"] and set(fate["kept_in"]) <= set(answer["targets"])
        assert fate["dropped_at"] is None and all(s["kept"] for s in fate["trail"])
    else:
        dropped_at = fate["dropped_at"]
        assert dropped_at["version"] == folder.document_versions[doc.dropped_step]
        assert dropped_at["reason"] == doc.dropped_reason and dropped_at["details"]
        assert fate["kept_in"] == []
        assert [s["kept"] for s in fate["trail"]][-1] is False


def check_membership_text(folder, document: str, selector: str, status: str, text: str) -> None:
    """The terminal answer: its first line states it, then each document's trail."""
    value = getattr(getattr(folder, document), selector)
    head = text.splitlines()[0]
    assert head.startswith(STATUS_HEAD[status] + ":") and repr(value) in head, text
    if document == "unseen":
        assert len(text.strip().splitlines()) == 1, text  # no document to trail
        return
    doc = getattr(folder, document)
    assert f"document {doc.doc_id}  sha256 {doc.sha256[:12]}…  url {doc.url}  -> {status}" in text
    if status == "dropped":
        drop = short(folder.document_versions[doc.dropped_step])
        (line,) = [line for line in text.splitlines() if line.strip().startswith(drop)]
        assert f"dropped: {doc.dropped_reason}  (" in line, line  # the reason, then its numbers


# contains: dataset versions --------------------------------------------------------------------


@pytest.mark.parametrize("as_json", [False, True], ids=["text", "json"])
@pytest.mark.parametrize("selector", SELECTORS)
@pytest.mark.parametrize("document", DOCUMENTS)
def test_contains_default_scope(audited, capsys, document, selector, as_json):
    """Without a scope, the targets are the ends of the curation chains (docs/audit.md): versions that
    keep documents. The fine-tuning examples (no document index) are no target and no error, and
    the token shards (an empty index) are not the only target, or a kept document would be "not
    seen" (finding 14)."""
    folder, _ = audited
    code, out, err = cli(
        capsys, "audit", "contains", *ask(folder, document, selector), *(["--json"] * as_json)
    )
    status = expected_status(folder, document, None)
    assert code == (0 if status == "in" else 1), err
    argv = ["audit", "contains", *ask(folder, document, selector), "--all-versions"]
    assert cli(capsys, *argv, *(["--json"] * as_json)) == (code, out, err)  # the default, spelled out
    if as_json:
        answer = json.loads(out)
        check_membership(folder, document, selector, status, answer)
        assert answer["targets"] and not any(t.startswith("finetune_examples/") for t in answer["targets"])
    else:
        check_membership_text(folder, document, selector, status, out)


@pytest.mark.parametrize("as_json", [False, True], ids=["text", "json"])
@pytest.mark.parametrize("selector", SELECTORS)
@pytest.mark.parametrize("document", DOCUMENTS)
def test_contains_in_each_document_version(audited, capsys, document, selector, as_json):
    folder, _ = audited
    for asset, ref in folder.document_versions.items():
        argv = ["audit", "contains", *ask(folder, document, selector), "--version", ref[:30]]
        code, out, err = cli(capsys, *argv, *(["--json"] * as_json))
        status = expected_status(folder, document, asset)
        assert code == (0 if status == "in" else 1), (asset, err)
        if as_json:
            answer = json.loads(out)
            assert answer["targets"] == [ref]
            check_membership(folder, document, selector, status, answer)
        else:
            check_membership_text(folder, document, selector, status, out)


def test_contains_in_several_versions(audited, capsys):
    """--version is repeatable: in if kept in one of them (the dropped document, before its step)."""
    folder, _ = audited
    versions = list(folder.document_versions.values())
    drop = folder.document_versions[folder.dropped.dropped_step]
    before = versions[versions.index(drop) - 1]
    argv = ["audit", "contains", "--url", folder.dropped.url, "--json"]
    code, out, err = cli(capsys, *argv, "--version", before[:30], "--version", drop[:30])
    answer = json.loads(out)
    assert code == 0 and answer["status"] == "in" and answer["targets"] == [before, drop], err
    (fate,) = answer["documents"]
    assert fate["kept_in"] == [before] and fate["dropped_at"]["version"] == drop


def test_a_model_is_asked_about_with_model_not_version(audited, capsys):
    folder, _ = audited
    for model in (folder.model, folder.finetuned):
        code, out, err = cli(capsys, "audit", "contains", "--url", folder.kept.url, "--version", model)
        assert code == 2 and out == "" and "ask with --model" in err


def test_a_version_holding_no_documents_is_refused_as_a_target(audited, capsys):
    """Token shards, tokenizer, curriculum, quality classifier and fine-tuning examples hold no
    documents (some carry an empty index): naming one with --version is exit 2 saying so, not an
    answer. Before, token shards answered "NOT IN (never seen): no document … in 1 target version(s)
    or their inputs" while listing the document kept in five of those inputs."""
    folder, root = audited
    assets = ("token_shards", "tokenizer", "curriculum_stages", "quality_classifier", "finetune_examples")
    for ref in [r for r in load_refs(root) if r.split("/")[0] in assets]:
        code, out, err = cli(capsys, "audit", "contains", "--url", folder.kept.url, "--version", ref)
        assert (code, out) == (2, ""), (ref, out)
        assert f"{ref} holds no documents" in err


# contains: models ------------------------------------------------------------------------------


@pytest.mark.parametrize("as_json", [False, True], ids=["text", "json"])
@pytest.mark.parametrize("selector", SELECTORS)
@pytest.mark.parametrize("document", DOCUMENTS)
def test_contains_in_models(audited, capsys, document, selector, as_json):
    """--model for the trained model and for its fine-tune (which answers for its base's pretraining
    data), and --all-models: trained on (exit 0) only for the kept document."""
    folder, root = audited
    status = expected_status(folder, document, None)
    (shards,) = [p for p in load_refs(root) if p.startswith("token_shards/")]
    scopes = [["--model", folder.model[:30]], ["--model", folder.finetuned[:30]], ["--all-models"]]
    for scope in scopes:
        argv = ["audit", "contains", *ask(folder, document, selector), *scope]
        code, out, err = cli(capsys, *argv, *(["--json"] * as_json))
        assert code == (0 if status == "in" else 1), (scope, err)
        models = {
            folder.model[:30]: [folder.model],
            folder.finetuned[:30]: [folder.finetuned],
        }.get(scope[-1], sorted([folder.model, folder.finetuned]))
        if not as_json:
            heads = [line for line in out.splitlines() if line.startswith(("IN ", "NOT IN "))]
            for model in models:
                word = "IN" if status == "in" else "NOT IN"
                assert any(h.startswith(f"{word} {short(model)}") for h in heads), out
            check_membership_text(folder, document, selector, status, _membership_part(out))
            continue
        answers = json.loads(out)
        assert [a["model"] for a in answers] == models
        for answer in answers:
            assert answer["status"] == status and answer["token_shards"] == shards
            check_membership(folder, document, selector, status, answer["membership"])
            if status == "in":
                (use,) = [u for u in answer["uses"] if u["doc_id"] == folder.kept.doc_id]
                assert sum(s["times_trained"] for s in use["stages"]) > 0
            else:
                assert answer["uses"] == []


def _membership_part(out: str) -> str:
    """The data-trail answer inside the first model's answer (it follows the model's head and stages)."""
    first = out.split("\n\n")[0].splitlines()
    start = next(
        i for i, line in enumerate(first) if line.startswith(tuple(f"{h}:" for h in STATUS_HEAD.values()))
    )
    return "\n".join(first[start:])


@pytest.mark.parametrize("as_json", [False, True], ids=["text", "json"])
def test_contains_example_of_the_fine_tune(audited, capsys, as_json):
    """`contains --example SHA --run finetuned_model/…`: a trained-on example has an inclusion proof
    (exit 0); a held-out one is named as such (exit 1); an example never in the file, exit 1."""
    folder, root = audited
    run = root / "datasets" / folder.finetuned
    rows = [json.loads(line) for line in (run / "examples.jsonl").read_text().splitlines()]
    used = {json.loads(line)["example_sha256"] for line in (run / "usage.jsonl").read_text().splitlines()}
    trained = next(r["sha256"] for r in rows if r["sha256"] in used)
    held = next(r for r in rows if r["split"] != "train")
    assert held["sha256"] not in used
    flag = ["--json"] * as_json
    code, out, err = cli(capsys, "audit", "contains", "--example", trained, "--run", folder.finetuned, *flag)
    assert code == 0, err
    if as_json:
        proof = json.loads(out)
        assert proof["in"] is True and proof["example_sha256"] == trained and proof["audit_path"]
    else:
        assert out.startswith(f"IN: example {trained[:16]}… trained on in {folder.finetuned}")
    code, out, _ = cli(
        capsys, "audit", "contains", "--example", held["sha256"], "--run", folder.finetuned, *flag
    )
    reason = f"is in the run's examples file (line {held['line'] + 1}) but was held out, never trained on"
    assert code == 1 and (json.loads(out)["reason"] if as_json else out.strip()).endswith(reason)
    code, out, _ = cli(
        capsys, "audit", "contains", "--example", folder.unseen.sha256, "--run", folder.finetuned, *flag
    )
    assert code == 1 and "is not in the run's examples file" in out


# lineage, diff, verify, history, sql, compliance impact, index, export ------------------------


@pytest.mark.parametrize("which", ["model", "finetuned"])
def test_lineage_of_a_model(audited, capsys, which, tmp_path):
    folder, _ = audited
    ref = getattr(folder, which)
    code, tree, err = cli(capsys, "audit", "lineage", ref[:30])
    assert code == 0, err
    for asset in (
        "trained_model",
        "token_shards",
        "curriculum_stages",
        "tokenizer",
        "deduplicated",
        "raw_documents",
    ):
        assert f"{asset}/" in tree
    assert "snapshot small: " in tree and "MISSING" not in tree and "NOT IN LEDGER" not in tree
    if which == "finetuned":
        assert tree.startswith(f"finetuned_model/{ref.split('/')[1][:12]}") and short(folder.examples) in tree
    history = tree.split("ledger history of ")[1]
    for detail in ("trained", "certified by pytest", "alias production -> here", "rollback of production"):
        assert detail in history

    code, out, _ = cli(capsys, "audit", "lineage", ref, "--json")
    prov = json.loads(out)
    assert code == 0 and f"apertus:version/{ref}" in prov["entity"]
    assert prov["entity"][f"apertus:version/{ref}"]["prov:type"] == "apertus:ModelVersion"
    for version in folder.document_versions.values():
        assert f"apertus:version/{version}" in prov["entity"]
    code, out, _ = cli(capsys, "audit", "lineage", ref, "--prov", "-")
    assert code == 0 and json.loads(out) == prov
    code, out, _ = cli(capsys, "audit", "lineage", ref, "--prov", str(tmp_path / "lineage.json"))
    assert code == 0 and json.loads((tmp_path / "lineage.json").read_text()) == prov


def test_lineage_of_a_dataset_version(audited, capsys):
    folder, _ = audited
    ref = folder.document_versions["deduplicated"]
    chain = [
        folder.document_versions[a]
        for a in ("raw_documents", "language_identified", "quality_filtered", "deduplicated")
    ]
    code, tree, err = cli(capsys, "audit", "lineage", ref[:30])
    assert code == 0, err
    assert tree.startswith(short(ref) + "  created ")
    for version in chain:
        assert f"version id {version.split('/')[1]}" in tree
    assert "ledger history" not in tree and "NOT IN LEDGER" not in tree
    code, out, _ = cli(capsys, "audit", "lineage", ref, "--json")
    versions = {
        k for k, v in json.loads(out)["entity"].items() if v.get("prov:type") == "apertus:DatasetVersion"
    }
    assert code == 0 and versions == {f"apertus:version/{v}" for v in chain}


@pytest.mark.parametrize("as_json", [False, True], ids=["text", "json"])
def test_diff_of_two_versions(audited, capsys, as_json):
    folder, root = audited
    a, b = folder.document_versions["quality_filtered"], folder.document_versions["deduplicated"]
    removed = Counter(
        pq.read_table(root / "datasets" / b / "exclusions.parquet", columns=["reason"])["reason"].to_pylist()
    )
    code, out, err = cli(capsys, "audit", "diff", a[:30], b[:30], *(["--json"] * as_json))
    assert code == 0, err
    if as_json:
        answer = json.loads(out)
        assert (answer["a"], answer["b"], answer["num_added"]) == (a, b, 0)
        assert answer["num_removed"] == sum(removed.values())
        assert answer["removed_by_reason"] == dict(removed)
        assert answer["removed_by_step"] == {"deduplicated": dict(removed)}
        assert set(answer["examples"]) == set(removed)
    else:
        assert "added: 0 documents" in out and f"removed: {sum(removed.values())} documents" in out
        for reason, n in removed.items():
            assert f"{n}  deduplicated: {reason}" in out


def test_verify_everything_and_one_version(audited, capsys):
    folder, root = audited
    refs = load_refs(root)
    code, out, err = cli(capsys, "audit", "verify")
    assert code == 0, out + err
    assert out.startswith(f"OK: {len(refs)} dataset versions")
    code, out, _ = cli(capsys, "audit", "verify", "--json")
    report = json.loads(out)
    assert code == 0 and report["problems"] == [] and sorted(report["versions"]) == refs
    for ref in (folder.document_versions["deduplicated"], folder.finetuned):
        code, out, err = cli(capsys, "audit", "verify", ref[:30])
        assert code == 0 and out.startswith("OK: "), out + err


def test_history_of_the_model_family(audited, capsys):
    folder, _ = audited
    code, out, err = cli(capsys, "audit", "history", folder.finetuned[:30])
    assert code == 0, err
    events = [(line.split()[2], " ".join(line.split()[3:])) for line in out.splitlines()]
    assert [version for version, _ in events] == [folder.model] * 3 + [folder.finetuned] * 3 + [
        folder.model
    ] * 2
    details = [detail for _, detail in events]
    assert details[0] == "trained" and details[3].startswith("fine-tuned, examples root")
    assert details[1].startswith("certified by pytest") and details[4].startswith("certified by pytest")
    assert details[2] == "alias production -> here (was None)"
    assert details[5] == f"alias production -> here (was {folder.model})"
    assert details[6] == f"rollback of production from {folder.finetuned}"
    assert details[7] == f"alias production -> here (was {folder.finetuned})"
    code, base, _ = cli(capsys, "audit", "history", folder.model[:30])
    assert code == 0 and base == out


EXCLUSIONS_SQL = "SELECT step, reason, count(*) AS n FROM documents WHERE NOT kept GROUP BY ALL ORDER BY ALL"


def expected_exclusions(root: Path) -> list[tuple[str, str, int]]:
    counts: Counter = Counter()
    for path in (root / "datasets").glob("*/*/exclusions.parquet"):
        table = pq.read_table(path, columns=["step", "reason"])
        counts.update(zip(table["step"].to_pylist(), table["reason"].to_pylist(), strict=True))
    return sorted((step, reason, n) for (step, reason), n in counts.items())


@pytest.mark.parametrize("output", ["table", "csv", "json"])
def test_sql_on_the_catalog(audited, capsys, output):
    """Every exclusion of every version, counted by the catalog as the Parquet files count them, on a
    copied data folder (finding 6: the catalog must answer from the copy, not name the original's paths)."""
    _, root = audited
    expected = expected_exclusions(root)
    code, out, err = cli(capsys, "audit", "sql", EXCLUSIONS_SQL, "--format", output)
    assert code == 0, err
    if output == "json":
        assert [(r["step"], r["reason"], r["n"]) for r in json.loads(out)] == expected
    elif output == "csv":
        rows = list(csv.reader(io.StringIO(out)))
        assert rows[0] == ["step", "reason", "n"]
        assert [(s, r, int(n)) for s, r, n in rows[1:]] == expected
    else:
        lines = out.splitlines()
        assert lines[0].split() == ["step", "reason", "n"] and lines[-1] == f"({len(expected)} rows)"
        assert [tuple(line.split()) for line in lines[2:-1]] == [(s, r, str(n)) for s, r, n in expected]


@pytest.mark.parametrize("as_json", [False, True], ids=["text", "json"])
def test_compliance_impact_of_the_recorded_request(audited, capsys, as_json):
    folder, _ = audited
    code, out, err = cli(capsys, "compliance", "impact", folder.request_id[:12], *(["--json"] * as_json))
    assert code == 0, err
    if as_json:
        answer = json.loads(out)
        assert answer["request"]["request_id"] == folder.request_id
        assert answer["request"]["value"] == folder.kept.url
        assert [d["doc_id"] for d in answer["documents"]] == [folder.kept.doc_id]
        assert set(answer["kept_in"]) == set(folder.document_versions.values())
        assert set(answer["models_containing"]) == {folder.model, folder.finetuned}
        assert answer["suppressed_in"] == []
    else:
        assert out.startswith(f"erasure request {folder.request_id[:12]}  url {folder.kept.url!r}")
        assert "matching documents: 1" in out and folder.kept.doc_id in out
        assert f"{len(folder.document_versions)} hold them; {len(folder.document_versions)} keep them" in out
        assert "not yet suppressed" in out


def test_index_writes_the_missing_lookup_files(audited_folder, tmp_path, capsys, monkeypatch):
    """`audit index` on the folder (every lookup present: nothing to write), and with --rebuild (every
    version with a document index); versions without one, the fine-tuning examples, are no error."""
    root = tmp_path / "data"
    shutil.copytree(audited_folder.root, root)
    monkeypatch.setenv("APERTUS_DATA", str(root))
    refs = load_refs(root)
    code, out, err = cli(capsys, "audit", "index")
    assert code == 0, err
    assert out.strip() == f"lookup files written for 0 of {len(refs)} dataset versions"
    code, out, err = cli(capsys, "audit", "index", "--rebuild")
    assert code == 0, err
    with_index = [r for r in refs if (root / "datasets" / r / "index.parquet").exists()]
    assert out.strip() == f"lookup files written for {len(with_index)} of {len(refs)} dataset versions"
    deduplicated = audited_folder.document_versions["deduplicated"]
    argv = ["audit", "contains", "--url", audited_folder.kept.url, "--json", "--version", deduplicated]
    code, out, _ = cli(capsys, *argv)
    assert code == 0 and json.loads(out)["status"] == "in"


@pytest.mark.parametrize("which", ["model", "finetuned", None], ids=["model", "finetuned", "newest"])
@pytest.mark.parametrize("output", ["openlineage", "prov", "cyclonedx"])
def test_export_of_a_model(audited, capsys, which, output, tmp_path):
    """Each export of each model, and of the newest one (no V: the fine-tune); the documented exit is
    0 or 2, never a traceback (docs/audit.md, Exports)."""
    folder, _ = audited
    ref = getattr(folder, which) if which else folder.finetuned
    where = tmp_path / f"export.{output}"
    code, out, err = cli(
        capsys, "audit", "export", "--format", output, *([ref[:30]] if which else []), "-o", str(where)
    )
    assert code == 0, err
    assert err.strip() == f"wrote the {output} export to {where}" and out == ""
    _, lineage, _ = cli(capsys, "audit", "lineage", ref, "--json")
    prov = json.loads(lineage)
    if output == "prov":
        assert json.loads(where.read_text()) == prov
    elif output == "openlineage":
        events = [json.loads(line) for line in where.read_text().splitlines()]
        versions = [k for k, v in prov["entity"].items() if v.get("prov:type", "").endswith("Version")]
        assert len(events) == len(versions) and {e["eventType"] for e in events} == {"COMPLETE"}
        assert [o["name"] for o in events[-1]["outputs"]] == [ref]
    else:
        bom = json.loads(where.read_text())
        assert (bom["bomFormat"], bom["specVersion"]) == ("CycloneDX", "1.6")
        component = bom["metadata"]["component"]
        assert component["type"] == "machine-learning-model"
        assert (component["name"], component["version"]) == tuple(ref.split("/"))


def test_croissant_export_of_dataset_versions(audited, capsys, tmp_path):
    folder, _ = audited
    for ref in (folder.document_versions["deduplicated"], folder.examples):
        code, out, err = cli(
            capsys, "audit", "export", "--format", "croissant", ref[:30], "-o", str(tmp_path / "c.json")
        )
        assert code == 0, err
        assert (
            json.loads((tmp_path / "c.json").read_text())["@context"]["cr"]
            == "http://mlcommons.org/croissant/"
        )
    code, out, err = cli(capsys, "audit", "export", "--format", "croissant", folder.finetuned)
    assert code == 2 and "is a model version" in err and folder.examples in err


# The real command, as a user runs it ------------------------------------------------------------


def test_the_command_answers_the_default_question(audited):
    """`apertus audit contains --url <kept URL>` on the folder the demo leaves: exit 0 (finding 14)."""
    folder, root = audited
    done = run_cli(root, "audit", "contains", "--url", folder.kept.url)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"IN: url {folder.kept.url!r} is kept in")
    done = run_cli(root, "audit", "contains", "--url", folder.unseen.url, "--json")
    assert done.returncode == 1, done.stderr
    assert json.loads(done.stdout)["status"] == "not_seen"


def test_the_command_answers_for_models_and_verifies(audited):
    folder, root = audited
    done = run_cli(root, "audit", "contains", "--sha256", folder.dropped.sha256, "--all-models", "--json")
    assert done.returncode == 1, done.stderr
    answers = json.loads(done.stdout)
    assert [a["status"] for a in answers] == ["dropped", "dropped"]
    done = run_cli(root, "audit", "contains", "--text", folder.kept.text, "--model", folder.finetuned[:30])
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"IN {short(folder.finetuned)}: text")
    done = run_cli(root, "audit", "verify")
    assert done.returncode == 0 and done.stdout.startswith("OK: "), done.stdout + done.stderr


def test_the_command_queries_the_catalog(audited):
    _, root = audited
    done = run_cli(root, "audit", "sql", EXCLUSIONS_SQL, "--format", "json")
    assert done.returncode == 0, done.stderr
    assert [(r["step"], r["reason"], r["n"]) for r in json.loads(done.stdout)] == expected_exclusions(root)


def test_the_command_shows_the_impact_of_the_request(audited):
    folder, root = audited
    done = run_cli(root, "compliance", "impact", folder.request_id[:12], "--json")
    assert done.returncode == 0, done.stderr
    assert set(json.loads(done.stdout)["models_containing"]) == {folder.model, folder.finetuned}
