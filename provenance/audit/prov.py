"""A lineage as W3C PROV-JSON (https://www.w3.org/submissions/prov-json/).

Entities: every dataset version (``apertus:version/<asset>/<id>``), every file of it
(``apertus:file/<asset>/<id>/<path>``), the snapshot folder's raw files
(``apertus:file/<inbox path>``). Activities: the step that made each version
(``apertus:step/<asset>/<id>``). Relations: ``wasGeneratedBy`` (version by its step),
``used`` (step used its parent versions, or the root step its snapshot files),
``wasDerivedFrom`` (version from each parent), ``hadMember`` (version has its files).
"""

from __future__ import annotations

import json

from provenance.audit.lineage import Node
from records.assets import MODEL_ASSETS

NAMESPACE = "urn:apertus:"


def _version(ref: str) -> str:
    return f"apertus:version/{ref}"


def _step(ref: str) -> str:
    return f"apertus:step/{ref}"


def to_prov(root: Node) -> dict:
    """The PROV-JSON document of a lineage tree."""
    doc: dict[str, dict] = {
        "prefix": {"apertus": NAMESPACE},
        "entity": {},
        "activity": {},
        "wasGeneratedBy": {},
        "used": {},
        "wasDerivedFrom": {},
        "hadMember": {},
    }
    counter = iter(range(1, 1 << 62))

    def relation(kind: str, body: dict) -> None:
        doc[kind][f"_:{kind}{next(counter)}"] = body

    for node in root.walk():
        entity = {"prov:type": "apertus:DatasetVersion", "prov:label": node.ref}
        if node.manifest is None:
            entity["apertus:missing"] = True
            doc["entity"][_version(node.ref)] = entity
            continue
        m = node.manifest
        attributes = {"apertus:asset": m.asset, "apertus:version_id": m.version_id, "apertus:snapshot": m.snapshot,
                      "apertus:manifest_sha256": node.manifest_sha256, "apertus:ledger_index": node.ledger_index}  # fmt: skip
        # PROV-JSON has no null: an attribute a version does not have is left out.
        entity.update({k: v for k, v in attributes.items() if v is not None})
        if m.asset in MODEL_ASSETS:
            entity["prov:type"] = "apertus:ModelVersion"
        doc["entity"][_version(node.ref)] = entity
        doc["activity"][_step(node.ref)] = {
            "prov:type": "apertus:CurationStep",
            "prov:label": m.asset,
            "prov:endTime": m.created_at,
            "apertus:code_version": m.code_version,
            "apertus:config": json.dumps(m.config, sort_keys=True),
        }
        relation("wasGeneratedBy", {"prov:entity": _version(node.ref), "prov:activity": _step(node.ref),
                                    "prov:time": m.created_at})  # fmt: skip
        for f in m.files:
            file_id = f"apertus:file/{node.ref}/{f.path}"
            doc["entity"][file_id] = {
                "prov:type": "apertus:File",
                "apertus:sha256": f.sha256,
                "apertus:bytes": f.bytes,
            }
            relation("hadMember", {"prov:collection": _version(node.ref), "prov:entity": file_id})
        for parent in m.parents:
            relation("used", {"prov:activity": _step(node.ref), "prov:entity": _version(parent)})
            relation("wasDerivedFrom", {"prov:generatedEntity": _version(node.ref), "prov:usedEntity": _version(parent),
                                        "prov:activity": _step(node.ref)})  # fmt: skip
        for source in node.snapshot_files:
            file_id = f"apertus:file/{source.path}"
            doc["entity"][file_id] = {"prov:type": "apertus:SourceFile", "apertus:sha256": source.sha256,
                                      "apertus:bytes": source.bytes}  # fmt: skip
            relation("used", {"prov:activity": _step(node.ref), "prov:entity": file_id})
            relation("wasDerivedFrom", {"prov:generatedEntity": _version(node.ref), "prov:usedEntity": file_id,
                                        "prov:activity": _step(node.ref)})  # fmt: skip
    return {k: v for k, v in doc.items() if v}
