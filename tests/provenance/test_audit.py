"""`apertus audit` contains / lineage / diff / verify on the curated snapshot, checked against its tables.

Read-only questions run on the shared `curated` data folder; anything that writes (lookup files)
or tampers runs on a copy in tmp_path.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import unicodedata

import pyarrow.parquet as pq
import pytest

from apertus.cli import main
from provenance.audit.contains import contains
from provenance.audit.diff import diff
from provenance.audit.lineage import lineage
from provenance.audit.prov import to_prov
from provenance.audit.render import lineage_tree
from provenance.audit.verify import verify
from records.layout import DATA_ENV, DataLayout
from records.lookup import lookup_path
from records.lookup_build import build_missing_lookups
from records.lookup_file import LookupFile
from records.versions import load_versions


def _audit(monkeypatch, capsys, layout: DataLayout, *args: str) -> tuple[int, str]:
    monkeypatch.setenv(DATA_ENV, str(layout.root))
    code = main(["audit", *args])
    return code, capsys.readouterr().out


def _rows(folder, name):
    return pq.read_table(folder / name).to_pylist()


@pytest.fixture
def data_copy(curated, tmp_path):
    layout, results, _ = curated
    shutil.copytree(
        layout.root, tmp_path / "data", ignore=shutil.ignore_patterns("work", "*.lock", ".catalog.lock")
    )
    copy = DataLayout(tmp_path / "data")
    return copy, [copy.datasets / r.manifest.ref for r in results]


def test_kept_document_is_in(curated, monkeypatch, capsys):
    layout, results, _ = curated
    dedup = results[3]
    kept = next(r for r in _rows(dedup.folder, "index.parquet") if (r["minhash_cluster_size"] or 0) > 1)
    code, out = _audit(monkeypatch, capsys, layout, "contains", "--url", kept["url"], "--json")
    answer = json.loads(out)
    assert code == 0 and answer["status"] == "in"
    (doc,) = [d for d in answer["documents"] if d["doc_id"] == kept["doc_id"]]
    assert doc["kept_in"] == [dedup.manifest.ref]
    assert [s["version"] for s in doc["trail"]] == [r.manifest.ref for r in results]
    assert doc["trail"][-1]["minhash_cluster_size"] == kept["minhash_cluster_size"]
    code, out = _audit(monkeypatch, capsys, layout, "contains", "--sha256", kept["sha256"])
    assert code == 0 and out.startswith("IN:") and kept["doc_id"] in out


def test_near_duplicate_names_its_cluster(curated, monkeypatch, capsys):
    layout, results, _ = curated
    dedup = results[3]
    dropped = next(r for r in _rows(dedup.folder, "exclusions.parquet") if r["reason"] == "near_duplicate")
    details = json.loads(dropped["details"])
    code, out = _audit(monkeypatch, capsys, layout, "contains", "--url", dropped["url"], "--json")
    assert code == 1
    (doc,) = json.loads(out)["documents"]
    assert doc["status"] == "dropped" and doc["kept_in"] == []
    assert doc["dropped_at"]["version"] == dedup.manifest.ref
    assert doc["dropped_at"]["details"]["cluster_id"] == details["cluster_id"]
    assert doc["dropped_at"]["details"]["cluster_size"] == details["cluster_size"] >= 2
    kept_ids = {r["doc_id"] for r in _rows(dedup.folder, "index.parquet")}
    assert details["cluster_id"] in kept_ids  # the cluster is named by the document that was kept
    # Kept in the three earlier versions, then dropped: the trail says so, and the text names the cluster.
    assert [s["kept"] for s in doc["trail"]] == [True, True, True, False]
    code, out = _audit(monkeypatch, capsys, layout, "contains", "--url", dropped["url"])
    assert code == 1 and "near_duplicate" in out and details["cluster_id"] in out
    assert f"cluster_size={details['cluster_size']}" in out


def test_quality_drop_names_rule_and_numbers(curated, monkeypatch, capsys):
    layout, results, _ = curated
    quality = results[2]
    dropped = next(r for r in _rows(quality.folder, "exclusions.parquet") if r["reason"].startswith("gopher"))
    details = json.loads(dropped["details"])
    code, out = _audit(monkeypatch, capsys, layout, "contains", "--sha256", dropped["sha256"], "--json")
    assert code == 1
    doc = next(d for d in json.loads(out)["documents"] if d["doc_id"] == dropped["doc_id"])
    assert doc["dropped_at"]["version"] == quality.manifest.ref
    assert doc["dropped_at"]["reason"] == dropped["reason"]
    assert {"rule", "value", "threshold"} <= set(doc["dropped_at"]["details"])
    assert [s["version"] for s in doc["trail"]] == [r.manifest.ref for r in results[:3]]
    code, out = _audit(monkeypatch, capsys, layout, "contains", "--sha256", dropped["sha256"])
    assert f"rule={details['rule']}" in out and f"value={details['value']}" in out
    assert f"threshold={details['threshold']}" in out


def test_never_seen_is_not_in(curated, monkeypatch, capsys):
    layout, _, _ = curated
    for args in (
        ["--url", "https://never.example/page"],
        ["--sha256", "0" * 64],
        ["--text", "qzxv never written"],
    ):
        code, out = _audit(monkeypatch, capsys, layout, "contains", *args, "--json")
        assert code == 1, args
        assert json.loads(out) | {"query": None} == {"status": "not_seen", "query": None,
                                                     "targets": json.loads(out)["targets"], "documents": []}  # fmt: skip
    code, _ = _audit(monkeypatch, capsys, layout, "contains", "--sha256", "not-a-hash")
    assert code == 2
    code, _ = _audit(monkeypatch, capsys, layout, "contains", "--url", "x", "--version", "deduplicated/ffff")
    assert code == 2


def test_text_snippet_is_normalized_and_found(curated):
    layout, results, _ = curated
    dedup = results[3]
    rows = pq.read_table(dedup.folder / "shards").to_pylist()
    doc = next(r for r in rows if "é" in r["text"])
    start = doc["text"].index("é")
    snippet = doc["text"][max(0, start - 20) : start + 20]
    # Decomposed, as a user may paste it: NFC normalization makes it match.
    answer = contains(layout, text=unicodedata.normalize("NFD", snippet))
    assert answer.status == "in"
    assert doc["id"] in {d.doc_id for d in answer.documents}
    # A version before deduplication as the target: the same document is in it too.
    answer = contains(layout, text=snippet, targets=[results[1].manifest.ref[:30]])
    assert answer.targets == [results[1].manifest.ref] and answer.status == "in"


def test_lookup_files_give_the_same_answers_as_a_scan(curated, data_copy):
    layout, results, _ = curated
    copy, folders = data_copy
    near = next(r for r in _rows(folders[3], "exclusions.parquet") if r["reason"] == "near_duplicate")
    quality = next(r for r in _rows(folders[2], "exclusions.parquet"))
    kept = _rows(folders[3], "index.parquet")[0]
    queries = [
        {"url": near["url"]},
        {"sha256": quality["sha256"]},
        {"url": kept["url"]},
        {"sha256": "1" * 64},
    ]
    shutil.rmtree(copy.lookup)  # steps build lookups when they seal; answer by scanning first
    before = [contains(copy, **q).to_dict() for q in queries]
    assert sorted(build_missing_lookups(copy, load_versions(copy))) == sorted(r.manifest.ref for r in results)
    assert [contains(copy, **q).to_dict() for q in queries] == before
    # With lookup files, --url and --sha256 need neither DuckDB nor pyarrow.
    script = (
        "import sys; from apertus.cli import main; "
        f"code = main(['audit', 'contains', '--url', {near['url']!r}]); "
        "print(code, sorted(m for m in ('duckdb', 'pyarrow') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         env={"APERTUS_DATA": str(copy.root)}, check=True).stdout  # fmt: skip
    assert out.strip().splitlines()[-1] == "1 []"
    assert verify(copy).problems == []
    # A lookup file that lies about a row is caught by verify.
    path = lookup_path(copy, results[3].manifest.ref)
    with LookupFile(path) as lookup:
        at = lookup.sections["sha256"][0]  # the first row's digest (docs/audit.md, lookup files)
    data = bytearray(path.read_bytes())
    data[at] ^= 0x01
    path.write_bytes(bytes(data))
    problems = verify(copy).problems
    assert len(problems) == 1 and problems[0].startswith(
        f"{path}: bytes 0..16384 differ from their pinned hash"
    )


def test_verify_passes_on_intact_records(curated, monkeypatch, capsys):
    layout, results, _ = curated
    code, out = _audit(monkeypatch, capsys, layout, "verify", "--json")
    report = json.loads(out)
    assert code == 0 and report["ok"] and report["problems"] == []
    assert sorted(report["versions"]) == sorted(r.manifest.ref for r in results)
    assert report["num_files"] == sum(len(r.manifest.files) for r in results)


def _flip(path, offset: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x01
    path.write_bytes(bytes(data))


def test_one_byte_in_a_shard_fails_verify_naming_it(data_copy, monkeypatch, capsys):
    copy, folders = data_copy
    shard = sorted((folders[2] / "shards").glob("*.parquet"))[0]
    _flip(shard, shard.stat().st_size // 2)
    code, out = _audit(monkeypatch, capsys, copy, "verify", "--json")
    problems = json.loads(out)["problems"]
    assert code == 1
    assert len(problems) == 1 and problems[0].startswith(f"{shard}: sha256")
    # Checking only the first version of the chain does not look at the third.
    code, _ = _audit(monkeypatch, capsys, copy, "verify", f"raw_documents/{folders[0].name[:10]}")
    assert code == 0


def test_one_byte_in_a_manifest_fails_verify_naming_it(data_copy, monkeypatch, capsys):
    copy, folders = data_copy
    manifest = folders[1] / "manifest.json"
    text = manifest.read_bytes()
    _flip(manifest, text.index(b'"created_at":"') + len(b'"created_at":"') + 3)  # still valid JSON
    code, out = _audit(monkeypatch, capsys, copy, "verify")
    assert code == 1
    problems = out.splitlines()[:-1]
    assert len(problems) == 1
    assert problems[0].startswith(f"{manifest}: sha256") and "entries.jsonl line 2 (entry 1)" in problems[0]
    # A byte that breaks the JSON is named too, not an error.
    manifest.write_bytes(text.replace(b"{", b"[", 1))
    code, out = _audit(monkeypatch, capsys, copy, "verify")
    assert code == 1 and out.startswith(f"{manifest}: not a readable manifest")


def test_one_byte_in_a_ledger_entry_fails_verify_naming_it(data_copy, monkeypatch, capsys):
    copy, folders = data_copy
    entries = copy.ledger / "entries.jsonl"
    lines = entries.read_bytes().splitlines(keepends=True)
    offset = sum(len(line) for line in lines[:2]) + lines[2].index(b'"manifest_sha256":"') + 25
    _flip(entries, offset)
    code, out = _audit(monkeypatch, capsys, copy, "verify", "--json")
    problems = json.loads(out)["problems"]
    assert code == 1
    assert problems and all("entries.jsonl" in p or "manifest.json" in p for p in problems)
    assert any(p.startswith(str(copy.ledger)) and "entries.jsonl line 3" in p for p in problems)
    # The entry no longer matches its version's manifest.
    assert any(p.startswith(str(folders[2] / "manifest.json")) for p in problems)


def test_forged_tree_head_is_rejected(data_copy, monkeypatch, capsys):
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from records.signing import Checkpoint, parse_head

    copy, _ = data_copy
    heads = copy.ledger / "tree_heads.jsonl"
    lines = heads.read_text().splitlines()
    real = parse_head(lines[-1])
    forged = Checkpoint.sign(Ed25519PrivateKey.generate(), real.origin, real.tree_size, "ab" * 32)
    heads.write_text("\n".join(lines[:-1] + [forged.to_json()]) + "\n")
    (copy.ledger / "latest_tree_head.json").write_text(forged.to_json() + "\n")
    code, out = _audit(monkeypatch, capsys, copy, "verify", "--json")
    problems = json.loads(out)["problems"]
    assert code == 1
    assert any(f"tree_heads.jsonl line {len(lines)}: signature does not verify" in p for p in problems)
    assert sum("inclusion proof does not verify" in p for p in problems) == real.tree_size


def test_lineage_reaches_the_snapshot_files(curated, monkeypatch, capsys, tmp_path):
    layout, results, _ = curated
    dedup = results[3].manifest
    code, out = _audit(monkeypatch, capsys, layout, "lineage", f"deduplicated/{dedup.version_id[:8]}")
    assert code == 0
    for result in results:
        assert result.manifest.version_id in out and f"ledger entry {result.ledger_index}" in out
        assert result.manifest.code_version in out
    snapshot = layout.snapshot_dir("small")
    files = sorted(p for p in snapshot.rglob("*") if p.is_file())
    from records.hashing import sha256_file

    for path in files:
        assert (
            f"{path.relative_to(layout.root).as_posix()}  {path.stat().st_size} bytes  sha256 {sha256_file(path)}"
            in out
        )
    assert lineage_tree(lineage(layout, dedup.ref)) == out.rstrip("\n")
    prov_file = tmp_path / "lineage.prov.json"
    code, _ = _audit(monkeypatch, capsys, layout, "lineage", dedup.ref, "--prov", str(prov_file))
    prov = json.loads(prov_file.read_text())
    versions = {f"apertus:version/{r.manifest.ref}" for r in results}
    assert versions <= set(prov["entity"]) and len(prov["activity"]) == 4
    derived = {(r["prov:generatedEntity"], r["prov:usedEntity"]) for r in prov["wasDerivedFrom"].values()}
    for child, parent in zip(results[1:], results[:-1], strict=True):
        assert (f"apertus:version/{child.manifest.ref}", f"apertus:version/{parent.manifest.ref}") in derived
    sources = {e for e, body in prov["entity"].items() if body["prov:type"] == "apertus:SourceFile"}
    assert len(sources) == len(files)
    assert to_prov(lineage(layout, dedup.ref)) == prov


def test_diff_counts_equal_the_dedup_exclusions(curated, monkeypatch, capsys):
    layout, results, _ = curated
    quality, dedup = results[2], results[3]
    result = diff(layout, quality.manifest.ref, dedup.manifest.ref, limit=2)
    excluded = _rows(dedup.folder, "exclusions.parquet")
    expected: dict[str, int] = {}
    for row in excluded:
        expected[row["reason"]] = expected.get(row["reason"], 0) + 1
    assert result.num_added == 0 and result.num_removed == len(excluded)
    assert result.removed_by_reason == expected == dedup.excluded["by_reason"]
    assert all(len(result.examples[r]) == min(2, n) for r, n in expected.items())
    code, out = _audit(
        monkeypatch, capsys, layout, "diff", dedup.manifest.ref, quality.manifest.ref, "--json"
    )
    reverse = json.loads(out)
    assert code == 0 and reverse["num_added"] == len(excluded) and reverse["num_removed"] == 0


def test_contains_starts_without_heavy_imports(curated):
    layout, _, _ = curated
    # And none of the standard modules the records layer uses only to write (shutil pulls in bz2
    # and lzma, uuid pulls in platform): a cold `contains` is mostly interpreter start and imports.
    heavy = ["dagster", "torch", "ray", "datatrove", "polars", "shutil", "subprocess", "uuid", "socket"]
    script = (
        "import sys; from apertus.cli import main; "
        "code = main(['audit', 'contains', '--url', 'https://never.example/x']); "
        f"print(code, sorted(m for m in {heavy!r} if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        env={"APERTUS_DATA": str(layout.root)},
        check=True,
    ).stdout
    assert out.strip().splitlines()[-1] == "1 []"


def _audit_parsers(parser) -> dict:
    """``apertus audit``'s parser and each of its commands' parsers, by name."""
    (commands,) = parser._subparsers._group_actions
    audit = commands.choices["audit"]
    (audit_commands,) = audit._subparsers._group_actions
    return {"audit": audit, **audit_commands.choices}


def test_a_cold_audit_builds_only_the_audit_commands_and_parses_the_same():
    from apertus.cli import build_parser

    full, alone = build_parser(), build_parser("audit")
    assert (
        set(full._subparsers._group_actions[0].choices)
        > {"audit"}
        == set(alone._subparsers._group_actions[0].choices)
    )
    full_parsers, alone_parsers = _audit_parsers(full), _audit_parsers(alone)
    assert full_parsers.keys() == alone_parsers.keys()
    for name, parser in full_parsers.items():
        assert parser.format_help() == alone_parsers[name].format_help(), name
    for argv in (
        ["audit", "contains", "--sha256", "ab" * 32, "--model", "trained_model/x", "--json"],
        ["audit", "contains", "--url", "https://a.example/", "--all-versions"],
        ["audit", "lineage", "quality_scored/abc", "--json"],
        ["audit", "sql", "select 1", "--format", "csv"],
    ):
        assert vars(full.parse_args(argv)) == vars(alone.parse_args(argv)), argv
