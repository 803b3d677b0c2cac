"""A lineage as OpenLineage RunEvents (spec 2-0-2, https://openlineage.io/spec/2-0-2/OpenLineage.json).

One ``COMPLETE`` RunEvent per version in scope, ancestors first: the job is the asset (the step that
made the version), the inputs are the version's parents exactly as its manifest names them, the
output is the version. Datasets are named by their ref (``asset/version_id``) in the namespace
``apertus``; the run id is a UUID derived from the ref, so the same records always give the same
events. eventTime is the manifest's ``created_at``.

Standard facets: ``version`` (DatasetVersionDatasetFacet: the version id) on every dataset, and
``jobType`` on the job. Our own facets, prefixed ``apertus_`` and described by the JSON Schema
``openlineage_facets.json`` beside this file: ``apertus_version`` on every dataset (ref, version id,
manifest sha256, the pinning ledger entry's index and leaf hash; on the output also every file's
path, bytes and sha256), ``apertus_run`` on the run (snapshot, code version, the step's full config),
and ``apertus_model`` on a model output (weights and record sha256, code commit, recipe).
"""

from __future__ import annotations

import uuid

from provenance.export.records import Scope, Version, model_record

SPEC_URL = "https://openlineage.io/spec/2-0-2/OpenLineage.json"
SCHEMA_URL = f"{SPEC_URL}#/$defs/RunEvent"
NAMESPACE = "apertus"
FACETS_SCHEMA = "urn:apertus:schema:openlineage-facets:1"  # the $id of openlineage_facets.json
VERSION_FACET_URL = "https://openlineage.io/spec/facets/1-0-1/DatasetVersionDatasetFacet.json#/$defs/DatasetVersionDatasetFacet"
JOB_TYPE_FACET_URL = "https://openlineage.io/spec/facets/2-0-4/JobTypeJobFacet.json#/$defs/JobTypeJobFacet"


def run_id(ref: str) -> str:
    """The run id of the step that made ``ref``: a UUID (version 5) of ``urn:apertus:step/<ref>``."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"urn:apertus:step/{ref}"))


def to_openlineage(scope: Scope, producer: str) -> list[dict]:
    """One COMPLETE RunEvent per version of ``scope``, ancestors first."""
    return [_event(scope, version, producer) for version in scope.versions.values()]


def _facet(producer: str, schema_url: str, body: dict) -> dict:
    return {"_producer": producer, "_schemaURL": schema_url, **body}


def _ours(producer: str, name: str, body: dict) -> dict:
    return _facet(producer, f"{FACETS_SCHEMA}#/$defs/{name}", body)


def _dataset(version: Version, producer: str, *, with_files: bool) -> dict:
    m = version.manifest
    body = {
        "ref": version.ref,
        "versionId": m.version_id,
        "manifestSha256": version.manifest_sha256,
        "ledger": {
            "index": version.ledger.index,
            "leafHash": version.ledger_leaf_hash,
            "eventType": "model_trained" if version.is_model else "dataset_version_created",
        },
    }
    if with_files:
        body["files"] = [{"path": f.path, "bytes": f.bytes, "sha256": f.sha256} for f in m.files]
    facets = {
        "version": _facet(producer, VERSION_FACET_URL, {"datasetVersion": m.version_id}),
        "apertus_version": _ours(producer, "ApertusVersionDatasetFacet", body),
    }
    if with_files and version.is_model:
        record = model_record(version)
        model = {
            "modelSha256": record["export"]["sha256"],
            "recordSha256": version.ledger.payload["record_sha256"],
            "recipe": record["model"].get("recipe"),
            "code": {k: record["code"].get(k) for k in ("commit", "dirty", "diff_sha256")},
        }
        facets["apertus_model"] = _ours(producer, "ApertusModelDatasetFacet", model)
    return {"namespace": NAMESPACE, "name": version.ref, "facets": facets}


def _event(scope: Scope, version: Version, producer: str) -> dict:
    m = version.manifest
    run = {"snapshot": m.snapshot, "codeVersion": m.code_version, "config": m.config}
    job_type = {"processingType": "BATCH", "integration": "APERTUS", "jobType": "ASSET"}
    return {
        "eventType": "COMPLETE",
        "eventTime": m.created_at,
        "producer": producer,
        "schemaURL": SCHEMA_URL,
        "run": {
            "runId": run_id(version.ref),
            "facets": {"apertus_run": _ours(producer, "ApertusRunFacet", run)},
        },
        "job": {
            "namespace": NAMESPACE,
            "name": m.asset,
            "facets": {"jobType": _facet(producer, JOB_TYPE_FACET_URL, job_type)},
        },
        "inputs": [_dataset(scope.versions[p], producer, with_files=False) for p in m.parents],
        "outputs": [_dataset(version, producer, with_files=True)],
    }
