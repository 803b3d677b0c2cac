"""A CycloneDX 1.6 BOM (https://cyclonedx.org/docs/1.6/json/): an ML-BOM for a model, a data BOM otherwise.

The subject (``metadata.component``) is the named version. Every dataset version in its lineage is a
``data`` component: name = asset, version = version id, hash = SHA-256 of its ``manifest.json`` (the
file the ledger pinned, which names every file's sha256), each file a nested ``file`` component with
its SHA-256, lineage as ``pedigree.ancestors`` (its parents) and as ``dependencies`` (each version
depends on its parents), and the ledger entry, snapshot, code version and counts as ``apertus:``
properties.

For a model version the subject is a ``machine-learning-model`` component: hash = SHA-256 of
``model.safetensors``, a ``modelCard`` (approach, task, architecture, the training datasets by
bom-ref, held-out perplexity per stage and language), its files (checkpoints, record) as nested
components, and it depends on the code (an ``application`` component whose pedigree names the
commit), its parent versions and every pinned dependency of requirements.lock as a ``library``
(``pkg:pypi/<name>@<version>``). The lock must be the one the model was trained with: its sha256
must equal the record's ``dependencies.lock_sha256``.

Timestamps and the serial number derive from the records, so the same records give the same BOM.
"""

from __future__ import annotations

import hashlib
import re
import uuid
from pathlib import Path

from provenance.export.records import Scope, Version, model_record
from records.assets import MODEL_INPUTS
from records.layout import REPO_ROOT
from records.models import RECORD, REQUIREMENTS_LOCK

SPEC_VERSION = "1.6"
SCHEMA = "http://cyclonedx.org/schema/bom-1.6.schema.json"
LOCK = REPO_ROOT / REQUIREMENTS_LOCK
_PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;#]+)")


def bom_ref(ref: str) -> str:
    """The bom-ref of a version: ``apertus:version/<asset>/<version id>`` (as in our PROV-JSON)."""
    return f"apertus:version/{ref}"


def to_cyclonedx(scope: Scope, tool_version: str, lock: Path | None = None) -> dict:
    """The BOM of ``scope``'s subject and its lineage (see the module docstring)."""
    subject = scope.subject
    components = [_component(scope, v) for v in scope.versions.values() if v.ref != subject.ref]
    dependencies = [
        {"ref": bom_ref(v.ref), "dependsOn": [bom_ref(p) for p in v.manifest.parents]}
        for v in scope.versions.values()
    ]
    main = _component(scope, subject)
    if subject.is_model:
        record = model_record(subject)
        code, libraries = _code_component(record), _libraries(subject, record, lock or LOCK)
        components += [code, *libraries]
        own = next(d for d in dependencies if d["ref"] == main["bom-ref"])
        own["dependsOn"] += [code["bom-ref"]] + [lib["bom-ref"] for lib in libraries]
    serial = uuid.uuid5(uuid.NAMESPACE_URL, f"urn:apertus:bom/{subject.ref}/{subject.manifest_sha256}")
    tool = {"type": "application", "name": "apertus-pipeline", "version": tool_version}
    return {
        "$schema": SCHEMA,
        "bomFormat": "CycloneDX",
        "specVersion": SPEC_VERSION,
        "serialNumber": f"urn:uuid:{serial}",
        "version": 1,
        "metadata": {
            "timestamp": subject.manifest.created_at,
            "tools": {"components": [tool]},
            "component": main,
        },
        "components": components,
        "dependencies": dependencies,
    }


def _sha256(content: str) -> list[dict]:
    return [{"alg": "SHA-256", "content": content}]


def _properties(values: dict) -> list[dict]:
    return [{"name": f"apertus:{k}", "value": str(v)} for k, v in values.items() if v is not None]


def _files(version: Version) -> list[dict]:
    return [
        {
            "type": "file",
            "bom-ref": f"apertus:file/{version.ref}/{f.path}",
            "name": f.path,
            "hashes": _sha256(f.sha256),
            "properties": _properties(
                {"bytes": f.bytes, "num_documents": f.num_documents, "num_tokens": f.num_tokens}
            ),
        }
        for f in version.manifest.files
    ]


def _ledger_properties(version: Version) -> dict:
    m = version.manifest
    return {
        "version_id": m.version_id,
        "manifest_sha256": version.manifest_sha256,
        "ledger_index": version.ledger.index,
        "ledger_leaf_hash": version.ledger_leaf_hash,
        "created_at": m.created_at,
        "snapshot": m.snapshot,
        "code_version": m.code_version,
    }


def _ancestor(scope: Scope, ref: str) -> dict:
    parent = scope.versions[ref]
    return {  # the same identity and hash as the parent's own component
        "type": "machine-learning-model" if parent.is_model else "data",
        "name": parent.manifest.asset,
        "version": parent.manifest.version_id,
        "hashes": _sha256(
            model_record(parent)["export"]["sha256"] if parent.is_model else parent.manifest_sha256
        ),
    }


def _component(scope: Scope, version: Version) -> dict:
    if version.is_model:
        component = _model_component(scope, version, model_record(version))
    else:
        component = _data_component(version)
    if version.manifest.parents:
        component["pedigree"] = {"ancestors": [_ancestor(scope, p) for p in version.manifest.parents]}
    return component


def _data_component(version: Version) -> dict:
    m = version.manifest
    kept, excluded = m.stats.get("kept", {}), m.stats.get("excluded", {})
    counts = {"documents_kept": kept.get("documents"), "documents_excluded": excluded.get("documents")}
    counts |= {f"excluded.{reason}": n for reason, n in sorted(excluded.get("by_reason", {}).items())}
    return {
        "type": "data",
        "bom-ref": bom_ref(version.ref),
        "name": m.asset,
        "version": m.version_id,
        "description": f"dataset version {version.ref} ({len(m.files)} files)",
        "hashes": _sha256(version.manifest_sha256),
        "data": [{"type": "dataset", "name": version.ref, "contents": {"url": f"datasets/{version.ref}/"}}],
        "components": _files(version),
        "properties": _properties(_ledger_properties(version) | counts),
    }


def _model_component(scope: Scope, version: Version, record: dict) -> dict:
    config = record["model"]["config"]
    moe = config.get("moe")
    shape = f"{config['n_layers']} layers, d_model {config['d_model']}, {config['n_heads']} heads"
    architecture = (
        f"decoder-only mixture-of-experts transformer ({moe['num_experts']} experts, top-{moe['top_k']}), {shape}"
        if moe
        else f"decoder-only dense transformer, {shape}"
    )
    finetune = record.get("kind") == "finetune"
    if finetune:  # a fine-tune's data is its examples version; its base model is a pedigree ancestor
        trained_on = [record["examples"]["dataset_version"]]
    else:
        datasets = record["datasets"]
        trained_on = [datasets[k] for k in MODEL_INPUTS if datasets.get(k)]
        trained_on += [ref for stage in datasets.get("stages", []) for ref in stage["dataset_versions"]]
    missing = [ref for ref in trained_on if ref not in scope.versions]
    if missing:
        raise ValueError(
            f"{version.folder / RECORD}: names dataset versions outside the model's lineage: {missing}"
        )
    metrics = []
    for stage in record["metrics"].get("perplexity_after_stage", []):
        name = f"held-out, after stage {stage['stage']}"
        metrics.append({"type": "perplexity", "value": str(stage["overall"]), "slice": name})
        metrics += [
            {"type": "perplexity", "value": str(value), "slice": f"{name}, language {language}"}
            for language, value in sorted(stage.get("by_language", {}).items())
        ]
    parameters = record["model"].get("parameters") or {}
    final = {"final_loss": record["metrics"].get("final_loss"), "recipe": record["model"].get("recipe")}
    return {
        "type": "machine-learning-model",
        "bom-ref": bom_ref(version.ref),
        "name": version.manifest.asset,
        "version": version.manifest.version_id,
        "description": f"model version {version.ref}",
        "hashes": _sha256(record["export"]["sha256"]),
        "modelCard": {
            "modelParameters": {
                "approach": {"type": "supervised" if finetune else "self-supervised"},
                "task": "text-generation",
                "architectureFamily": "transformer",
                "modelArchitecture": architecture,
                "datasets": [{"ref": bom_ref(ref)} for ref in dict.fromkeys(trained_on)],
                "inputs": [{"format": "text"}],
                "outputs": [{"format": "text"}],
            },
            "quantitativeAnalysis": {"performanceMetrics": metrics},
            "properties": _properties({f"parameters_{k}": v for k, v in parameters.items()} | final),
        },
        "components": _files(version),
        "properties": _properties(
            _ledger_properties(version)
            | {
                "record_sha256": version.ledger.payload.get("record_sha256"),
                "checkpoint_step": record.get("checkpoint", {}).get("step"),  # a fine-tune has none
            }
            | {f"dependencies_{k}": v for k, v in record.get("dependencies", {}).items()}
        ),
    }


def _code_component(record: dict) -> dict:
    code = record["code"]
    commit = code.get("commit") or code.get("source_sha256")
    component = {
        "type": "application",
        "bom-ref": "apertus:code",
        "name": "apertus-pipeline",
        "version": commit or "unknown",
        "description": "the training code, at the commit the model's provenance record names",
        "properties": _properties({"dirty": code.get("dirty"), "diff_sha256": code.get("diff_sha256")}),
    }
    if code.get("commit"):
        component["pedigree"] = {"commits": [{"uid": code["commit"]}]}
    return component


def _libraries(version: Version, record: dict, lock: Path) -> list[dict]:
    recorded = record.get("dependencies", {}).get("lock_sha256")
    if recorded is None:
        return []
    lock = Path(lock)
    if not lock.is_file():
        raise ValueError(
            f"{lock}: no such lock file (the model was trained with a lock of sha256 {recorded})"
        )
    digest = hashlib.sha256(lock.read_bytes()).hexdigest()
    if digest != recorded:
        commit = record["code"].get("commit") or "<commit>"
        raise ValueError(
            f"{lock}: sha256 {digest} differs from dependencies.lock_sha256 {recorded} in "
            f"{version.folder / RECORD}; pass the lock the model was trained with "
            f"(--lock FILE, e.g. from `git show {commit}:{REQUIREMENTS_LOCK}`)"
        )
    libraries = []
    for number, line in enumerate(lock.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        match = _PIN.match(line.strip())
        if match is None:
            raise ValueError(f"{lock} line {number}: {line.strip()!r} is not a 'name==version' pin")
        name, pinned = match.groups()
        purl = f"pkg:pypi/{re.sub(r'[-_.]+', '-', name).lower()}@{pinned}"
        libraries.append({"type": "library", "bom-ref": purl, "name": name, "version": pinned, "purl": purl})
    return libraries
