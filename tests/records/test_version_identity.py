"""A version's identity: its files and its sealed lineage, by the rule docs/data-model.md states.

The expected ids are computed here with hashlib from the documented leaf format, not by the code
under test, and the golden literal guards the rule against later changes.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from records.catalog import query, refresh_catalog
from records.layout import DataLayout
from records.manifest import MANIFEST_FORMAT, load_manifest, manifest_of, read_manifest, seal, verify_version

FILES = {"shards/00000.parquet": b"alpha", "tokenizer.json": b"gamma", "notes/empty.txt": b""}
LINEAGE = dict(snapshot="2026-01", parents=("raw_documents/abc",), code_version="c0de",
               config={"languages": {"fr", "de"}, "name": "Zürich", "threshold": 0.5})  # fmt: skip
# The lineage.json those arguments must give, spelled out by hand in the canonical form.
LINEAGE_BYTES = (
    '{"asset":"language_identified","code_version":"c0de",'
    '"config":{"languages":["de","fr"],"name":"Zürich","threshold":0.5},'
    '"encoding":"apertus.canonical-json/1","format":"apertus.lineage/1",'
    '"parents":["raw_documents/abc"],"snapshot":"2026-01"}\n'
).encode()
GOLDEN_ID = "9a57385ce7af9ef3e83d16fb88f031c4dd56184acb9f9107f9af9e7ee0f9c33b"


def _root(leaves: list[bytes]) -> bytes:
    """RFC 6962 MTH, written out: SHA-256(0x00||d) leaves, SHA-256(0x01||l||r) nodes, split at the
    largest power of two below n."""
    if len(leaves) == 1:
        return hashlib.sha256(b"\x00" + leaves[0]).digest()
    k = 1 << ((len(leaves) - 1).bit_length() - 1)
    return hashlib.sha256(b"\x01" + _root(leaves[:k]) + _root(leaves[k:])).digest()


def _id_by_hand(files: dict[str, bytes]) -> str:
    return _root([f"{p}\0{hashlib.sha256(d).hexdigest()}".encode() for p, d in sorted(files.items())]).hex()


def _staging(root: Path, name: str, files: dict[str, bytes]) -> Path:
    folder = root / "staging" / name
    for rel, data in files.items():
        (folder / rel).parent.mkdir(parents=True, exist_ok=True)
        (folder / rel).write_bytes(data)
    return folder


def test_the_id_is_the_merkle_root_over_the_files_and_the_sealed_lineage(tmp_path):
    manifest, created = seal(
        _staging(tmp_path, "a", FILES), tmp_path / "datasets", asset="language_identified", **LINEAGE
    )
    folder = tmp_path / "datasets" / "language_identified" / manifest.version_id
    assert created and (folder / "lineage.json").read_bytes() == LINEAGE_BYTES
    assert manifest.version_id == _id_by_hand({**FILES, "lineage.json": LINEAGE_BYTES}) == GOLDEN_ID
    assert manifest.format == MANIFEST_FORMAT == "apertus.dataset-version/2"
    assert verify_version(folder) == []
    assert "created_at" not in json.loads(LINEAGE_BYTES)  # the manifest's timestamp stays out of the id


def test_equal_inputs_and_code_give_the_same_version(tmp_path):
    first, _ = seal(
        _staging(tmp_path, "a", FILES), tmp_path / "datasets", asset="language_identified", **LINEAGE
    )
    again, created = seal(
        _staging(tmp_path, "b", FILES), tmp_path / "datasets", asset="language_identified", **LINEAGE
    )
    assert not created and again.version_id == first.version_id == GOLDEN_ID


@pytest.mark.parametrize(
    "change",
    [{"snapshot": "2026-02"}, {"parents": ("raw_documents/abd",)}, {"code_version": "c0df"},
     {"config": {**LINEAGE["config"], "threshold": 0.6}}, {"asset": "quality_filtered"}],
)  # fmt: skip
def test_the_same_bytes_with_another_lineage_are_another_version(tmp_path, change):
    datasets = tmp_path / "datasets"
    first, _ = seal(_staging(tmp_path, "a", FILES), datasets, asset="language_identified", **LINEAGE)
    args = {"asset": "language_identified", **LINEAGE, **change}
    other, created = seal(_staging(tmp_path, "b", FILES), datasets, **args)
    assert created and other.version_id != first.version_id
    # Each keeps its own lineage: nothing of the second is lost to the first's manifest.
    loaded = load_manifest(datasets / other.ref)
    assert (loaded.asset, loaded.snapshot, loaded.parents, loaded.code_version) == (
        args["asset"],
        args["snapshot"],
        args["parents"],
        args["code_version"],
    )
    assert loaded.config["threshold"] == args["config"]["threshold"]
    assert verify_version(datasets / first.ref) == []
    assert verify_version(datasets / other.ref) == []


def test_two_snapshots_with_empty_output_never_share_a_version(tmp_path):
    """Older code gave both the first one's version (and manifest): the second's lineage was lost."""
    datasets = tmp_path / "datasets"
    empty = {"shards/00000.parquet": b"", "notes.txt": b""}
    versions = [
        seal(
            _staging(tmp_path, s, empty), datasets, asset="quality_filtered", snapshot=s, parents=(f"p/{s}",)
        )[0]
        for s in ("2026-01", "2026-02")
    ]
    assert len({v.version_id for v in versions}) == 2
    assert [load_manifest(datasets / v.ref).snapshot for v in versions] == ["2026-01", "2026-02"]


def test_verify_names_a_lineage_that_disagrees_with_the_manifest_or_was_rewritten(tmp_path):
    manifest, _ = seal(
        _staging(tmp_path, "a", FILES), tmp_path / "datasets", asset="language_identified", **LINEAGE
    )
    folder = tmp_path / "datasets" / manifest.ref
    raw = json.loads((folder / "manifest.json").read_text())
    (folder / "manifest.json").write_text(json.dumps({**raw, "snapshot": "forged"}))
    assert verify_version(folder) == [f"{folder / 'lineage.json'}: snapshot differs from the manifest's copy"]
    assert load_manifest(folder).snapshot == "2026-01"  # lineage.json, inside the id, is what readers get
    (folder / "manifest.json").write_text(json.dumps(raw))
    (folder / "lineage.json").write_bytes(LINEAGE_BYTES.replace(b"2026-01", b"2026-09"))
    problems = verify_version(folder)
    assert any("lineage.json: sha256" in p for p in problems)
    assert any("snapshot differs" in p for p in problems)
    assert load_manifest(folder).snapshot == "2026-01"  # a rewritten lineage.json is never read
    with pytest.raises(ValueError, match="lineage.json: missing, or its sha256 differs"):
        manifest_of(read_manifest(folder), folder, strict=True)
    (folder / "lineage.json").unlink()
    assert any("lineage.json: missing" in p for p in verify_version(folder))


def _old_version(datasets: Path, asset: str, snapshot: str) -> tuple[Path, str]:
    """A version as code before manifest format 2 sealed it: no lineage.json, an indented manifest,
    and its id the Merkle root over its files alone."""
    version_id = _id_by_hand(FILES)
    folder = datasets / asset / version_id
    for rel, data in FILES.items():
        (folder / rel).parent.mkdir(parents=True, exist_ok=True)
        (folder / rel).write_bytes(data)
    manifest = {
        "asset": asset, "code_version": "old", "config": {"languages": ["de"]}, "created_at": "2026-01-01T00:00:00Z",
        "files": [{"bytes": len(d), "num_documents": None, "num_tokens": None, "path": p,
                   "sha256": hashlib.sha256(d).hexdigest()} for p, d in sorted(FILES.items())],
        "format": "apertus.dataset-version/1", "parents": ["raw_documents/old"], "snapshot": snapshot,
        "stats": {}, "version_id": version_id,
    }  # fmt: skip
    (folder / "manifest.json").write_text(
        json.dumps(manifest, indent=2, sort_keys=True) + "\n", encoding="utf-8"
    )
    return folder, version_id


def test_a_version_sealed_by_older_code_loads_verifies_and_is_catalogued(tmp_path):
    layout = DataLayout(tmp_path / "data")
    folder, version_id = _old_version(layout.datasets, "language_identified", "2025-12")
    assert verify_version(folder) == []
    manifest = load_manifest(folder)
    assert (manifest.snapshot, manifest.parents, manifest.config) == (
        "2025-12",
        ("raw_documents/old",),
        {"languages": ["de"]},
    )
    refresh_catalog(layout)
    _, rows = query(layout, "SELECT dataset_version, snapshot, parents FROM dataset_versions")
    assert rows == [(version_id, "2025-12", ["raw_documents/old"])]
    # Re-sealing those bytes today gives a new version of format 2 beside it: the old one is untouched.
    new, created = seal(
        _staging(tmp_path, "n", FILES), layout.datasets, asset="language_identified", snapshot="2025-12"
    )
    assert created and new.version_id != version_id and verify_version(folder) == []
    # An old folder that holds a file named lineage.json treats it as an ordinary file.
    (folder / "lineage.json").write_bytes(b"{}")
    assert any("lineage.json: not recorded" in p for p in verify_version(folder))


def test_the_catalog_takes_lineage_only_from_a_lineage_json_that_verifies(tmp_path):
    layout = DataLayout(tmp_path / "data")
    manifest, _ = seal(
        _staging(tmp_path, "a", FILES), layout.datasets, asset="language_identified", **LINEAGE
    )
    refresh_catalog(layout)
    _, rows = query(layout, "SELECT snapshot, parents, code_version FROM dataset_versions")
    assert rows == [("2026-01", ["raw_documents/abc"], "c0de")]
    (layout.datasets / manifest.ref / "lineage.json").write_bytes(
        LINEAGE_BYTES.replace(b"2026-01", b"2026-09")
    )
    layout.catalog.unlink()
    with pytest.raises(ValueError, match="lineage.json: missing, or its sha256 differs"):
        refresh_catalog(layout)
