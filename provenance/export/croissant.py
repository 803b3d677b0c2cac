"""A dataset version as Croissant 1.0 metadata (JSON-LD, http://mlcommons.org/croissant/1.0).

``distribution``: every file of the version as a ``cr:FileObject`` with its ``sha256`` and size, and
each folder of Parquet files that share one schema (``shards/``, ``excluded/``, ...) as a
``cr:FileSet``. ``recordSet``: one per Parquet table (a FileSet or a single file), its fields read
from the files' own Parquet schema, so the description matches the bytes. ``contentUrl`` and
``includes`` are relative to the data folder: a loader resolves them when the file is saved at the
data folder's root.

What the records can state honestly fills the rest: the version's identifier, creation time and
parents (``isBasedOn``), its languages, and the Croissant RAI properties ``rai:dataCollection``,
``rai:dataCollectionRawData``, ``rai:dataPreprocessingProtocol`` (every step of the lineage with its
counts and removals by reason) and ``rai:personalSensitiveInformation`` (which steps, if any, were
configured for PII). No license is asserted: the documents keep their publishers' terms. ``version``
is left out: a content address is not the semantic version Croissant asks for.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import PurePosixPath

import pyarrow as pa
import pyarrow.parquet as pq

from provenance.export.records import Scope, Version

CONFORMS_TO = "http://mlcommons.org/croissant/1.0"
CONTEXT = {  # Appendix 1 of the Croissant 1.0 specification, plus our prefix
    "@language": "en",
    "@vocab": "https://schema.org/",
    "sc": "https://schema.org/",
    "cr": "http://mlcommons.org/croissant/",
    "rai": "http://mlcommons.org/croissant/RAI/",
    "dct": "http://purl.org/dc/terms/",
    "citeAs": "cr:citeAs",
    "column": "cr:column",
    "conformsTo": "dct:conformsTo",
    "data": {"@id": "cr:data", "@type": "@json"},
    "dataType": {"@id": "cr:dataType", "@type": "@vocab"},
    "examples": {"@id": "cr:examples", "@type": "@json"},
    "extract": "cr:extract",
    "field": "cr:field",
    "fileProperty": "cr:fileProperty",
    "fileObject": "cr:fileObject",
    "fileSet": "cr:fileSet",
    "format": "cr:format",
    "includes": "cr:includes",
    "isLiveDataset": "cr:isLiveDataset",
    "jsonPath": "cr:jsonPath",
    "key": "cr:key",
    "md5": "cr:md5",
    "parentField": "cr:parentField",
    "path": "cr:path",
    "recordSet": "cr:recordSet",
    "references": "cr:references",
    "regex": "cr:regex",
    "repeated": "cr:repeated",
    "replace": "cr:replace",
    "separator": "cr:separator",
    "source": "cr:source",
    "subField": "cr:subField",
    "transform": "cr:transform",
    "apertus": "urn:apertus:",
}
ENCODINGS = {
    ".parquet": "application/x-parquet",
    ".json": "application/json",
    ".jsonl": "application/jsonlines",
    ".txt": "text/plain",
    ".md": "text/markdown",
}
DESCRIPTIONS = {  # what the pipeline's tables hold (docs/data-model.md)
    "shards": "kept documents, full text and metadata, one row per document",
    "excluded": "documents this step dropped, full text, with filter_reason and filter_details",
    "index": "document index: one row per kept document (id, URL, sha256, language, scores, shard, row)",
    "exclusions": "every document this step dropped, with its reason and the numbers behind it",
    "quarantine": "input records that could not be read as documents, with the reason",
}


def to_croissant(scope: Scope) -> dict:
    """Croissant 1.0 JSON-LD of ``scope``'s subject, a dataset version (not a model)."""
    version = scope.subject
    m = version.manifest
    if version.is_model:
        data = ", ".join(m.parents)
        raise ValueError(
            f"{version.ref} is a model version; Croissant describes datasets: export one of its "
            f"dataset versions instead ({data})"
        )
    distribution, record_sets = _resources(version)
    urn = f"urn:apertus:version/{version.ref}"
    document = {
        "@context": CONTEXT,
        "@type": "sc:Dataset",
        "@id": urn,
        "conformsTo": CONFORMS_TO,
        "name": f"{m.asset}-{m.version_id[:12]}",
        "description": (
            f"Dataset version {version.ref} of the Apertus pipeline: {len(m.files)} files, "
            f"{_counts(m.stats)}. The version id is the RFC 6962 Merkle root of its files' (path, sha256)."
        ),
        "url": urn,
        "identifier": [urn, f"apertus:manifest-sha256:{version.manifest_sha256}"],
        "creator": {
            "@type": "sc:Organization",
            "name": "apertus-pipeline",
            "description": "the curation pipeline that sealed this version; the operating organization is not recorded",
        },
        "license": {
            "@type": "sc:CreativeWork",
            "name": "NOASSERTION",
            "description": "no license is asserted for the collection; each document keeps its publisher's terms",
        },
        "dateCreated": m.created_at,
        "datePublished": m.created_at,
        "isBasedOn": [f"urn:apertus:version/{p}" for p in m.parents],
        "apertus:manifestSha256": version.manifest_sha256,
        "apertus:ledgerIndex": version.ledger.index,
        "apertus:ledgerLeafHash": version.ledger_leaf_hash,
        "distribution": distribution,
        "recordSet": record_sets,
        **_rai(scope),
    }
    languages = sorted(m.stats.get("kept", {}).get("by_language", {}))
    if languages:
        document["inLanguage"] = languages
    return document


def _counts(stats: dict) -> str:
    kept, excluded = stats.get("kept", {}), stats.get("excluded", {})
    text = f"{kept.get('documents', 0)} documents kept, {excluded.get('documents', 0)} removed"
    reasons = ", ".join(f"{r} {n}" for r, n in sorted(excluded.get("by_reason", {}).items()))
    return f"{text} ({reasons})" if reasons else text


def _resources(version: Version) -> tuple[list[dict], list[dict]]:
    base = f"datasets/{version.ref}"
    distribution = [
        {
            "@type": "cr:FileObject",
            "@id": f.path,
            "name": f.path,
            "contentUrl": f"{base}/{f.path}",
            "contentSize": f"{f.bytes} B",
            "encodingFormat": ENCODINGS.get(PurePosixPath(f.path).suffix, "application/octet-stream"),
            "sha256": f.sha256,
        }
        for f in version.manifest.files
    ]
    by_folder: dict[str, list[str]] = defaultdict(list)
    for f in version.manifest.files:
        if f.path.endswith(".parquet"):
            by_folder[str(PurePosixPath(f.path).parent)].append(f.path)
    record_sets = []
    for folder, paths in sorted(by_folder.items()):
        schemas = {path: pq.read_schema(version.folder / path) for path in paths}
        if len(paths) > 1 and all(s.equals(schemas[paths[0]]) for s in schemas.values()):
            set_id, pattern = folder.replace("/", "-"), f"{folder}/*.parquet"
            distribution.append(
                {
                    "@type": "cr:FileSet",
                    "@id": pattern,
                    "name": pattern,
                    "encodingFormat": ENCODINGS[".parquet"],
                    "includes": f"{base}/{folder}/*.parquet",
                }
            )
            record_sets.append(_record_set(set_id, "fileSet", pattern, schemas[paths[0]], version, folder))
            continue
        for path in paths:
            set_id = path.removesuffix(".parquet").replace("/", "-")
            record_sets.append(_record_set(set_id, "fileObject", path, schemas[path], version, path))
    return distribution, record_sets


def _record_set(set_id: str, kind: str, source: str, schema: pa.Schema, version: Version, path: str) -> dict:
    name = PurePosixPath(path).name.removesuffix(".parquet")
    return {
        "@type": "cr:RecordSet",
        "@id": set_id,
        "name": set_id,
        "description": DESCRIPTIONS.get(name, f"the Parquet table {path}"),
        "field": [
            {
                "@type": "cr:Field",
                "@id": f"{set_id}/{column.name}",
                "name": column.name,
                **_data_type(column.type, version, path, column.name),
                "source": {kind: {"@id": source}, "extract": {"column": column.name}},
            }
            for column in schema
        ],
    }


def _data_type(arrow: pa.DataType, version: Version, path: str, column: str) -> dict:
    if pa.types.is_list(arrow) or pa.types.is_large_list(arrow):
        return {**_data_type(arrow.value_type, version, path, column), "repeated": True}
    if pa.types.is_string(arrow) or pa.types.is_large_string(arrow):
        return {"dataType": "sc:Text"}
    if pa.types.is_integer(arrow):
        return {"dataType": "sc:Integer"}
    if pa.types.is_floating(arrow):
        return {"dataType": "sc:Float"}
    if pa.types.is_boolean(arrow):
        return {"dataType": "sc:Boolean"}
    if pa.types.is_timestamp(arrow) or pa.types.is_date(arrow):
        return {"dataType": "sc:Date"}
    raise ValueError(
        f"{version.folder / path}: column {column!r} has type {arrow}, which has no Croissant data type"
    )


def _rai(scope: Scope) -> dict:
    chain = list(scope.versions.values())
    roots = [v for v in chain if not v.manifest.parents]
    snapshots = sorted({v.manifest.snapshot for v in roots if v.manifest.snapshot})
    rai: dict = {}
    if snapshots:
        rai["rai:dataCollection"] = (
            f"Documents read from the source snapshot(s) {', '.join(snapshots)} as delivered to the data "
            f"folder's inbox, by {', '.join(v.ref for v in roots)}; then processed by the steps listed in "
            f"rai:dataPreprocessingProtocol. `apertus audit lineage {scope.target}` lists every source file "
            "with its sha256."
        )
        rai["rai:dataCollectionRawData"] = [f"inbox/{s}/" for s in snapshots]
    rai["rai:dataPreprocessingProtocol"] = [
        f"{v.ref} ({v.manifest.asset}, code version {v.manifest.code_version or 'not recorded'}): "
        f"{_counts(v.manifest.stats)}; full config in datasets/{v.ref}/manifest.json "
        f"(sha256 {v.manifest_sha256}, ledger entry {v.ledger.index})"
        for v in chain
    ]
    pii = [v.ref for v in chain if _mentions(v.manifest.config, "pii")]
    rai["rai:personalSensitiveInformation"] = (
        f"PII handling is configured in: {', '.join(pii)} (see their manifests' config)."
        if pii
        else "No step of this version's lineage is configured to detect or redact personal data; the documents' "
        "text is kept as read from the source and may contain it."
    )
    return rai


def _mentions(config, word: str) -> bool:
    if isinstance(config, dict):
        return any(word in str(k).lower() or _mentions(v, word) for k, v in config.items())
    if isinstance(config, list):
        return any(_mentions(v, word) for v in config)
    return False
