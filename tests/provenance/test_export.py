"""`apertus audit export`: OpenLineage, PROV-JSON, CycloneDX 1.6 and Croissant 1.0 from the records.

Ground truth: the official CycloneDX 1.6 and OpenLineage 2-0-2 JSON schemas (tests/resources, see
their READMEs), the manifests' parents, sha256 recomputed here from the files, the ledger's own
lines, and the Parquet schema the pipeline writes (pipelines.shards.SHARD_SCHEMA). Read-only tests
use the shared `curated` folder; a model version and anything that tampers live in a copy.
"""

from __future__ import annotations

import argparse
import dataclasses
import fnmatch
import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

import jsonschema
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT7, DRAFT202012
from safetensors.numpy import save_file

from apertus.export_cli import add_export_command
from model.config import tiny
from pipelines.shards import SHARD_SCHEMA
from pipelines.steps import finish_step, new_staging
from pipelines.token_shards import TokenShardConfig, build_token_shards
from pipelines.tokenizer import TokenizerConfig, train_tokenizer
from provenance.audit.lineage import lineage
from provenance.audit.prov import to_prov
from provenance.export import FORMATS, export, serialize
from records.hashing import sha256_file
from records.layout import DATA_ENV, REPO_ROOT, DataLayout
from records.manifest import MANIFEST, load_manifest
from records.models import code_state, dependency_state, load_record, seal_model

RESOURCES = Path(__file__).resolve().parents[1] / "resources"
FACETS = REPO_ROOT / "provenance/export/openlineage_facets.json"


def _registry(paths: list[Path], spec) -> Registry:
    resources = []
    for path in paths:
        contents = json.loads(path.read_text(encoding="utf-8"))
        resources.append((contents["$id"], Resource.from_contents(contents, default_specification=spec)))
    return Registry().with_resources(resources)


def _cyclonedx_errors(bom: dict) -> list[str]:
    """Every violation of the official CycloneDX 1.6 schema (its spdx and jsf schemas resolved locally)."""
    schema = json.loads((RESOURCES / "cyclonedx/bom-1.6.schema.json").read_text(encoding="utf-8"))
    registry = _registry(sorted((RESOURCES / "cyclonedx").glob("*.json")), DRAFT7)
    validator = jsonschema.Draft7Validator(
        schema, registry=registry, format_checker=jsonschema.Draft7Validator.FORMAT_CHECKER
    )
    return [f"{list(e.absolute_path)}: {e.message}" for e in validator.iter_errors(bom)]


def _openlineage_errors(event: dict) -> list[str]:
    """Violations of OpenLineage 2-0-2 by the event, and by each facet of its own schema (_schemaURL)."""
    registry = _registry(sorted((RESOURCES / "openlineage").glob("*.json")) + [FACETS], DRAFT202012)
    checker = jsonschema.Draft202012Validator.FORMAT_CHECKER

    def errors(schema: dict, instance: dict) -> list[str]:
        validator = jsonschema.Draft202012Validator(schema, registry=registry, format_checker=checker)
        return [f"{list(e.absolute_path)}: {e.message}" for e in validator.iter_errors(instance)]

    found = errors({"$ref": "https://openlineage.io/spec/2-0-2/OpenLineage.json"}, event)
    facets = [*event["run"]["facets"].values(), *event["job"]["facets"].values()]
    facets += [f for d in event["inputs"] + event["outputs"] for f in d["facets"].values()]
    for facet in facets:
        found += errors({"$ref": facet["_schemaURL"]}, facet)
    return found


def _manifest_sha256(layout: DataLayout, ref: str) -> str:
    return hashlib.sha256((layout.datasets / ref / MANIFEST).read_bytes()).hexdigest()


def _ledger_index(layout: DataLayout, ref: str) -> int:
    for line in (layout.ledger / "entries.jsonl").read_text(encoding="utf-8").splitlines():
        entry = json.loads(line)
        if ref in (entry["payload"].get("dataset_version"), entry["payload"].get("model_version")):
            return entry["index"]
    raise AssertionError(f"{ref} is not in the ledger")


def _all_components(bom: dict) -> list[dict]:
    return [bom["metadata"]["component"], *bom["components"]]


@pytest.fixture(scope="module")
def chain(curated):
    """The data folder and the curated snapshot's manifests as stored, oldest first."""
    layout, results, _ = curated
    return layout, [load_manifest(layout.datasets / r.manifest.ref) for r in results]


@pytest.fixture(scope="module")
def model_data(curated, tmp_path_factory):
    """A copy of the curated folder with a real tokenizer, hand-made curriculum stages and real token
    shards over the deduplicated version, and a model version sealed from a hand-written run folder
    (random weights: nothing is trained). Returns (layout, model manifest, its record)."""
    source, results, _ = curated
    layout = DataLayout(tmp_path_factory.mktemp("export-model") / "data")
    shutil.copytree(source.root, layout.root, ignore=shutil.ignore_patterns("work", "*.lock"))
    deduplicated = results[-1].manifest
    tokenizer = train_tokenizer(layout, deduplicated, config=TokenizerConfig(vocab_size=512)).manifest
    index = pq.read_table(layout.datasets / deduplicated.ref / "index.parquet").to_pylist()[:60]
    staging = new_staging(layout, "curriculum_stages")
    (staging / "stages").mkdir()
    stage = pa.table({
        "stage": ["broad"] * len(index), "stage_index": [0] * len(index), "position": list(range(len(index))),
        "doc_id": [r["doc_id"] for r in index], "sha256": [r["sha256"] for r in index],
        "source_version": [deduplicated.ref] * len(index), "shard": [r["shard"] for r in index],
        "row": [r["row"] for r in index], "language": [r["language"] for r in index],
        "multiplicity": [1] * len(index), "num_tokens_est": [r["num_tokens_est"] for r in index],
    })  # fmt: skip
    pq.write_table(stage, staging / "stages" / "00-broad.parquet")
    stages = finish_step(
        layout, staging, asset="curriculum_stages", snapshot=None, parents=(deduplicated.ref,), config={}
    ).manifest
    config = TokenShardConfig(seq_len=64, sequences_per_shard=500, batch_documents=50, seed=0)
    shards = build_token_shards(layout, stages, tokenizer, config=config).manifest

    run = layout.work / "run"
    rng = np.random.default_rng(0)
    tensors = {
        "embed": rng.standard_normal((512, 16)).astype(np.float32),
        "head": rng.standard_normal((16, 8)),
    }
    (run / "checkpoints/step-4").mkdir(parents=True)
    save_file(tensors, str(run / "model.safetensors"))
    save_file(tensors, str(run / "checkpoints/step-4/model.safetensors"))
    (run / "metrics.jsonl").write_text('{"step": 4, "lm_loss": 6.1}\n')
    recipe = tiny()
    record = {
        "format": "apertus.provenance-record/1",
        "model": {
            "recipe": "tiny",
            "config": dataclasses.asdict(recipe.model),
            "parameters": {"total": sum(t.size for t in tensors.values()), "active": 8192},
        },
        "export": {"path": "model.safetensors", "sha256": sha256_file(run / "model.safetensors")},
        "checkpoint": {"step": 4, "files": {"checkpoints/step-4/model.safetensors": sha256_file(run / "model.safetensors")}},
        "datasets": {
            "token_shards": shards.ref,
            "tokenizer": tokenizer.ref,
            "curriculum_stages": stages.ref,
            "stages": [{"stage": "broad", "index": 0, "sequences": 10, "tokens": 640, "dataset_versions": [deduplicated.ref]}],
        },
        "code": code_state(),
        "config": {"run": dataclasses.asdict(recipe), "deepspeed": {"train_batch_size": 8}},
        "dependencies": dependency_state(),
        "hardware": {"device": "cpu"},
        "seeds": {"train": 0, "token_shards": 0},
        "metrics": {
            "first_loss": 6.3,
            "final_loss": 6.1,
            "perplexity_after_stage": [{"stage": "broad", "overall": 455.2, "by_language": {"de": 470.5, "en": 440.25}}],
        },
        "orchestration": {},
    }  # fmt: skip
    manifest, index_ = seal_model(layout, run, record)
    assert index_ is not None
    return layout, manifest, record


def test_cyclonedx_data_bom_is_valid_and_states_every_version(chain):
    layout, manifests = chain
    subject = manifests[-1]
    bom = export(layout, "cyclonedx", subject.ref[:30])
    assert _cyclonedx_errors(bom) == []
    components = {c["bom-ref"]: c for c in _all_components(bom)}
    assert bom["metadata"]["component"]["bom-ref"] == f"apertus:version/{subject.ref}"
    assert set(components) == {
        f"apertus:version/{m.ref}" for m in manifests
    }  # data only: no model, no libraries
    for m in manifests:
        component = components[f"apertus:version/{m.ref}"]
        assert component["type"] == "data" and component["version"] == m.version_id
        assert component["hashes"] == [{"alg": "SHA-256", "content": _manifest_sha256(layout, m.ref)}]
        files = {f["name"]: f["hashes"][0]["content"] for f in component["components"]}
        assert files == {f.path: sha256_file(layout.datasets / m.ref / f.path) for f in m.files}
        properties = {p["name"]: p["value"] for p in component["properties"]}
        assert properties["apertus:ledger_index"] == str(_ledger_index(layout, m.ref))
        ancestors = component.get("pedigree", {}).get("ancestors", [])
        assert [a["version"] for a in ancestors] == [p.split("/")[1] for p in m.parents]
    assert {d["ref"]: d["dependsOn"] for d in bom["dependencies"]} == {
        f"apertus:version/{m.ref}": [f"apertus:version/{p}" for p in m.parents] for m in manifests
    }
    assert export(layout, "cyclonedx", subject.ref) == bom  # the same records give the same BOM


def test_cyclonedx_schema_check_catches_a_broken_bom(chain):
    layout, manifests = chain
    bom = export(layout, "cyclonedx", manifests[-1].ref)
    bom["metadata"]["component"]["hashes"][0]["alg"] = "SHA-257"
    del bom["components"][0]["name"]
    assert len(_cyclonedx_errors(bom)) == 2


def test_cyclonedx_model_bom(model_data):
    layout, manifest, record = model_data
    bom = export(layout, "cyclonedx", manifest.ref)
    assert _cyclonedx_errors(bom) == []
    model = bom["metadata"]["component"]
    assert model["type"] == "machine-learning-model" and model["version"] == manifest.version_id
    weights = sha256_file(layout.datasets / manifest.ref / "model.safetensors")
    assert model["hashes"] == [{"alg": "SHA-256", "content": weights}]
    card = model["modelCard"]
    components = {c["bom-ref"]: c for c in _all_components(bom)}
    trained_on = [c["ref"] for c in card["modelParameters"]["datasets"]]
    datasets = record["datasets"]
    expected = [datasets["token_shards"], datasets["tokenizer"], datasets["curriculum_stages"]]
    assert trained_on == [
        f"apertus:version/{r}" for r in [*expected, *datasets["stages"][0]["dataset_versions"]]
    ]
    assert all(components[ref]["type"] == "data" for ref in trained_on)
    metrics = {
        (m["slice"], m["type"]): m["value"] for m in card["quantitativeAnalysis"]["performanceMetrics"]
    }
    assert metrics == {
        ("held-out, after stage broad", "perplexity"): "455.2",
        ("held-out, after stage broad, language de", "perplexity"): "470.5",
        ("held-out, after stage broad, language en", "perplexity"): "440.25",
    }
    pins = [
        line.split("==")
        for line in (REPO_ROOT / "requirements.lock").read_text().splitlines()
        if "==" in line
    ]
    libraries = [c for c in bom["components"] if c["type"] == "library"]
    assert [(c["name"], c["version"]) for c in libraries] == [(n, v) for n, v in pins]
    assert f"pkg:pypi/torch@{dict(pins)['torch']}" in components
    assert components["apertus:code"]["pedigree"]["commits"] == [{"uid": record["code"]["commit"]}]
    depends = {d["ref"]: d["dependsOn"] for d in bom["dependencies"]}[model["bom-ref"]]
    assert depends == [f"apertus:version/{p}" for p in manifest.parents] + ["apertus:code"] + [
        c["bom-ref"] for c in libraries
    ]
    # Every dataset version of the lineage, down to raw_documents, is a data component with its hash.
    for ref, component in components.items():
        if component["type"] == "data":
            version = ref.removeprefix("apertus:version/")
            assert component["hashes"][0]["content"] == _manifest_sha256(layout, version)


def test_cyclonedx_needs_the_lock_the_model_was_trained_with(model_data, tmp_path):
    layout, manifest, _ = model_data
    other = tmp_path / "requirements.lock"
    other.write_text((REPO_ROOT / "requirements.lock").read_text() + "extra-package==1.0\n")
    with pytest.raises(ValueError, match=r"differs from dependencies.lock_sha256 .*--lock FILE"):
        export(layout, "cyclonedx", manifest.ref, lock=other)
    same = tmp_path / "trained-with.lock"
    shutil.copy(REPO_ROOT / "requirements.lock", same)
    assert export(layout, "cyclonedx", manifest.ref, lock=same) == export(layout, "cyclonedx", manifest.ref)


def test_openlineage_events_follow_the_manifests(chain):
    layout, manifests = chain
    events = export(layout, "openlineage", manifests[-1].ref)
    assert [e["outputs"][0]["name"] for e in events] == [m.ref for m in manifests]  # ancestors first
    for event, m in zip(events, manifests, strict=True):
        assert _openlineage_errors(event) == []
        assert event["eventType"] == "COMPLETE" and event["eventTime"] == m.created_at
        assert event["job"] == {**event["job"], "namespace": "apertus", "name": m.asset}
        assert [d["name"] for d in event["inputs"]] == list(m.parents)
        (output,) = event["outputs"]
        facet = output["facets"]["apertus_version"]
        assert output["facets"]["version"]["datasetVersion"] == m.version_id
        assert facet["manifestSha256"] == _manifest_sha256(layout, m.ref)
        assert facet["ledger"]["index"] == _ledger_index(layout, m.ref)
        assert {f["path"]: f["sha256"] for f in facet["files"]} == {f.path: f.sha256 for f in m.files}
        assert event["run"]["facets"]["apertus_run"]["config"] == m.config
    assert len({e["run"]["runId"] for e in events}) == len(events)
    broken = json.loads(json.dumps(events[-1]))
    broken["run"]["runId"] = "not-a-uuid"
    del broken["outputs"][0]["facets"]["apertus_version"]["manifestSha256"]
    assert len(_openlineage_errors(broken)) == 2
    lines = serialize("openlineage", events).splitlines()
    assert [json.loads(line) for line in lines] == events


def test_openlineage_model_event(model_data):
    layout, manifest, record = model_data
    events = export(layout, "openlineage", manifest.ref)
    assert all(_openlineage_errors(e) == [] for e in events)
    last = events[-1]
    assert last["job"]["name"] == "trained_model"
    assert [d["name"] for d in last["inputs"]] == list(manifest.parents)
    produced = [e["outputs"][0]["name"] for e in events]
    assert all(produced.index(d["name"]) < len(produced) - 1 for d in last["inputs"])
    model = last["outputs"][0]["facets"]["apertus_model"]
    assert model["modelSha256"] == sha256_file(layout.datasets / manifest.ref / "model.safetensors")
    assert model["code"]["commit"] == record["code"]["commit"]


def test_croissant_lists_every_file_and_the_shard_schema(chain):
    layout, manifests = chain
    subject = manifests[-1]
    doc = export(layout, "croissant", subject.ref)
    required = [
        "@context",
        "@type",
        "conformsTo",
        "name",
        "description",
        "license",
        "url",
        "creator",
        "datePublished",
    ]
    assert all(doc.get(key) for key in required)
    assert doc["@type"] == "sc:Dataset" and doc["conformsTo"] == "http://mlcommons.org/croissant/1.0"
    objects = {d["@id"]: d for d in doc["distribution"] if d["@type"] == "cr:FileObject"}
    assert set(objects) == {f.path for f in subject.files}
    for f in subject.files:
        recomputed = sha256_file(layout.datasets / subject.ref / f.path)
        assert objects[f.path]["sha256"] == f.sha256 == recomputed
        assert objects[f.path]["contentUrl"] == f"datasets/{subject.ref}/{f.path}"
    sets = {d["@id"]: d for d in doc["distribution"] if d["@type"] == "cr:FileSet"}
    shard_urls = {f"datasets/{subject.ref}/{f.path}" for f in subject.files if f.path.startswith("shards/")}
    urls = {o["contentUrl"] for o in objects.values()}
    assert {u for u in urls if fnmatch.fnmatch(u, sets["shards/*.parquet"]["includes"])} == shard_urls
    record_sets = {r["@id"]: r for r in doc["recordSet"]}
    assert [f["name"] for f in record_sets["shards"]["field"]] == SHARD_SCHEMA.names
    index_columns = pq.read_schema(layout.datasets / subject.ref / "index.parquet").names
    assert [f["name"] for f in record_sets["index"]["field"]] == index_columns
    ids = {d["@id"] for d in doc["distribution"]}
    for record_set in record_sets.values():
        for field in record_set["field"]:
            (source,) = [v["@id"] for k, v in field["source"].items() if k in ("fileSet", "fileObject")]
            assert source in ids and field["dataType"] in {"sc:Text", "sc:Integer", "sc:Float", "sc:Boolean"}
    steps = doc["rai:dataPreprocessingProtocol"]
    assert [s.split(" ")[0] for s in steps] == [m.ref for m in manifests]
    assert doc["isBasedOn"] == [f"urn:apertus:version/{p}" for p in subject.parents]


def test_croissant_refuses_a_model(model_data):
    layout, manifest, _ = model_data
    with pytest.raises(ValueError, match="is a model version; Croissant describes datasets"):
        export(layout, "croissant", manifest.ref)


def test_prov_is_the_lineage_prov(chain):
    layout, manifests = chain
    ref = manifests[2].ref
    assert export(layout, "prov", ref) == to_prov(lineage(layout, ref))


def test_default_is_the_newest_model(chain, model_data):
    layout, manifest, _ = model_data
    assert (
        export(layout, "cyclonedx")["metadata"]["component"]["bom-ref"] == f"apertus:version/{manifest.ref}"
    )
    with pytest.raises(ValueError, match="no model version"):
        export(chain[0], "cyclonedx")


@pytest.fixture
def data_copy(curated, tmp_path):
    layout, results, _ = curated
    shutil.copytree(layout.root, tmp_path / "data", ignore=shutil.ignore_patterns("work", "*.lock"))
    return DataLayout(tmp_path / "data"), [r.manifest for r in results]


def test_changed_manifest_or_unknown_ref_is_a_clear_error(data_copy):
    layout, manifests = data_copy
    path = layout.datasets / manifests[1].ref / MANIFEST
    data = json.loads(path.read_text())
    data["config"]["language"]["min_score"] = 0.0  # still a readable manifest, no longer the pinned one
    path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
    # Readers take the lineage from the sealed lineage.json, not from the manifest's copy.
    assert load_manifest(path.parent).config["language"]["min_score"] == 0.65
    for fmt in FORMATS:
        with pytest.raises(
            ValueError, match=rf"{path}: sha256 \w+ differs from manifest_sha256 \w+ .* entry 1"
        ):
            export(layout, fmt, manifests[-1].ref)
    export(layout, "cyclonedx", manifests[0].ref)  # a version below the change is still exported
    with pytest.raises(ValueError, match="no dataset version matches"):
        export(layout, "openlineage", "deduplicated/ffff")
    with pytest.raises(ValueError, match="unknown export format"):
        export(layout, "spdx", manifests[0].ref)


def _run_cli(monkeypatch, layout: DataLayout, *argv: str) -> int:
    parser = argparse.ArgumentParser(prog="apertus audit")
    add_export_command(parser.add_subparsers(dest="audit_command", required=True))
    monkeypatch.setenv(DATA_ENV, str(layout.root))
    args = parser.parse_args(list(argv))
    return args.func(args)


def test_cli_writes_stdout_or_file_and_exits_2_on_error(chain, monkeypatch, capsys, tmp_path):
    layout, manifests = chain
    ref = manifests[-1].ref
    assert _run_cli(monkeypatch, layout, "export", "--format", "openlineage", ref[:25]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [json.loads(line)["outputs"][0]["name"] for line in lines] == [m.ref for m in manifests]
    out = tmp_path / "bom.json"
    assert _run_cli(monkeypatch, layout, "export", "--format", "cyclonedx", ref, "-o", str(out)) == 0
    assert json.loads(out.read_text()) == export(layout, "cyclonedx", ref)
    assert str(out) in capsys.readouterr().err
    assert _run_cli(monkeypatch, layout, "export", "--format", "croissant", "nothing/abc") == 2
    err = capsys.readouterr().err
    assert err.startswith("apertus: error: 'nothing/abc': no dataset version matches")


def test_export_imports_neither_torch_nor_dagster(chain, tmp_path):
    layout, manifests = chain
    code = (
        "import sys\n"
        "from apertus.export_cli import main\n"
        f"for fmt in ('openlineage', 'prov', 'cyclonedx', 'croissant'):\n"
        f"    assert main(['--format', fmt, {manifests[-1].ref!r}, '-o', {str(tmp_path)!r} + '/' + fmt]) == 0\n"
        "loaded = [m for m in ('torch', 'dagster', 'datatrove') if m in sys.modules]\n"
        "assert not loaded, loaded\n"
    )
    env = {"PATH": "/usr/bin:/bin", DATA_ENV: str(layout.root)}
    subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, env=env, check=True, timeout=120)
    assert json.loads((tmp_path / "cyclonedx").read_text())["bomFormat"] == "CycloneDX"


def test_exports_of_a_trained_model(trained):
    """The session's really trained model (tests/conftest.py `trained`): its record as build_record wrote it."""
    layout, model, shards = trained
    record = load_record(layout.datasets / model.ref)
    bom = export(layout, "cyclonedx", model.ref)
    assert _cyclonedx_errors(bom) == []
    metrics = bom["metadata"]["component"]["modelCard"]["quantitativeAnalysis"]["performanceMetrics"]
    overall = {m["slice"]: m["value"] for m in metrics if "language" not in m["slice"]}
    assert overall == {
        f"held-out, after stage {s['stage']}": str(s["overall"])
        for s in record["metrics"]["perplexity_after_stage"]
    }
    events = export(layout, "openlineage", model.ref)
    assert all(_openlineage_errors(e) == [] for e in events)
    assert [d["name"] for d in events[-1]["inputs"]] == list(model.parents)
    croissant = export(layout, "croissant", shards.ref)
    objects = {d["@id"]: d["sha256"] for d in croissant["distribution"] if d["@type"] == "cr:FileObject"}
    assert objects == {f.path: f.sha256 for f in shards.files}
