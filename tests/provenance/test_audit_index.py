"""The audit index (records.audit_index, issue 16): `contains --url/--sha256` and `lineage` answer from
one sealed global index exactly what they answer from every manifest and lookup; a changed byte of
the index is an error naming it; a new version extends the index it finds; a rebuilt index says what
the incremental one says; a data folder without an index (made before it) answers the same."""

from __future__ import annotations

import json
import shutil

import pyarrow.parquet as pq
import pytest

from apertus.cli import main
from pipelines.config import CurationConfig
from pipelines.executor import ExecutorConfig
from pipelines.steps import ingest_snapshot
from provenance.audit.contains import contains
from provenance.audit.lineage import lineage
from provenance.audit.model_use import model_refs, training_data
from provenance.audit.prov import to_prov
from provenance.audit.render import lineage_tree
from records.audit_index import STATE_SEGMENTS, index_folder, read_state, state_path
from records.audit_index_build import index_content
from records.indexed_versions import IndexedVersions
from records.layout import DATA_ENV, DataLayout
from records.ledger import Ledger
from records.versions import load_versions

SNAPSHOTS = ("first", "second", "third")


def _same_answers(layout: DataLayout, questions: list[dict], targets: list[list[str] | None]) -> int:
    """Assert the index and the manifests answer each question alike; return how many were asked."""
    asked = 0
    for question in questions:
        for target in targets:
            new = contains(layout, **question, targets=target).to_dict()
            old = contains(layout, **question, targets=target, use_index=False).to_dict()
            assert new == old, (question, target)
            asked += 1
    return asked


def _same_lineage(layout: DataLayout) -> None:
    for ref in load_versions(layout):
        new, old = lineage(layout, ref), lineage(layout, ref, use_index=False)
        assert lineage_tree(new) == lineage_tree(old) and to_prov(new) == to_prov(old), ref


def test_answers_equal_the_manifests_on_the_audited_folder(audited_folder):
    layout = DataLayout(audited_folder.root)
    with IndexedVersions(layout) as versions:  # every version was indexed when it was pinned
        assert versions._unindexed == [] and len(versions) == len(load_versions(layout))
    first = audited_folder.document_versions[min(audited_folder.document_versions)]
    sample = pq.read_table(layout.datasets / first / "index.parquet", columns=["url", "sha256"]).slice(0, 8)
    documents = [audited_folder.kept, audited_folder.dropped, audited_folder.unseen]
    questions = [{"url": d.url} for d in documents] + [{"sha256": d.sha256} for d in documents]
    questions += [{"url": r["url"]} for r in sample.to_pylist()] + [{"sha256": sample["sha256"][0].as_py()}]
    sources = training_data(layout, audited_folder.model)[3]
    targets = [None, sources, *[[ref] for ref in audited_folder.document_versions.values()]]
    assert _same_answers(layout, questions, targets) == len(questions) * len(targets)
    assert contains(layout, url=audited_folder.kept.url).status == "in"
    old = sorted(
        r for r, m in load_versions(layout).items() if m.asset in ("trained_model", "finetuned_model")
    )
    assert model_refs(layout, None) == old
    _same_lineage(layout)


@pytest.fixture(scope="module")
def history(tmp_path_factory):
    """A data folder of three pinned snapshots, with copies of its data folder after each."""
    from sample.crawl import generate_snapshot

    root = tmp_path_factory.mktemp("history")
    layout = DataLayout(root / "data")
    copies = []
    for seed, name in enumerate(SNAPSHOTS):
        generate_snapshot(root / "snapshots" / name, seed=seed + 11, num_documents=30)
        shutil.copytree(root / "snapshots" / name, layout.snapshot_dir(name))
        ingest_snapshot(layout, name, CurationConfig(), ExecutorConfig(tasks=1, workers=1))
        copies.append(root / f"after-{name}")
        shutil.copytree(layout.root, copies[-1], ignore=shutil.ignore_patterns("work"))
    return copies


def _copy(source, tmp_path, monkeypatch) -> DataLayout:
    layout = DataLayout(tmp_path / "data")
    shutil.copytree(source, layout.root)
    monkeypatch.setenv(DATA_ENV, str(layout.root))
    return layout


def _questions(layout: DataLayout) -> list[dict]:
    out = []
    for ref in sorted(load_versions(layout)):
        row = pq.read_table(layout.datasets / ref / "index.parquet", columns=["url", "sha256"]).to_pylist()[0]
        out += [{"url": row["url"]}, {"sha256": row["sha256"]}]
    return out + [{"url": "https://nowhere.example/never"}]


def test_a_new_version_extends_the_index_it_finds(history, tmp_path, monkeypatch):
    before = _copy(history[1], tmp_path / "before", monkeypatch)
    after = DataLayout(history[2])
    old = index_content(before)["versions"]
    new = index_content(after)["versions"]
    assert len(old) == 2 and len(new) == 3 and {r: new[r] for r in old} == old
    # Segments merge like a binary counter: 1, 2, then 2 + 1.
    assert [s["versions"] for s in read_state(after).segments] == [2, 1]
    (added,) = set(new) - set(old)
    row = pq.read_table(after.datasets / added / "index.parquet").to_pylist()[0]
    with IndexedVersions(after) as versions:
        assert versions._unindexed == [] and added in versions.holding(sha256=row["sha256"])
    assert _same_answers(after, _questions(after), [None]) == 7
    _same_lineage(after)


def test_a_rebuilt_index_says_what_the_incremental_one_says(history, tmp_path, monkeypatch):
    layout = _copy(history[2], tmp_path, monkeypatch)
    incremental, segments = index_content(layout), read_state(layout).segments
    size = Ledger(layout.ledger).size()
    assert main(["audit", "index", "--audit"]) == 0
    # The same segments byte for byte (same roots), only pinned by another entry.
    assert index_content(layout) == incremental and read_state(layout).segments == segments
    entry = Ledger(layout.ledger).entry(size)
    assert entry.event_type == "audit_index_rebuilt" and read_state(layout).where == f"ledger entry {size}"
    assert _same_answers(layout, _questions(layout), [None]) == 7


def test_a_folder_made_before_the_index_answers_the_same_then_is_indexed(history, tmp_path, monkeypatch):
    layout = _copy(history[2], tmp_path, monkeypatch)
    shutil.rmtree(index_folder(layout))
    with IndexedVersions(layout) as versions:
        assert len(versions._unindexed) == 3  # read from their manifests, as before
    assert _same_answers(layout, _questions(layout), [None]) == 7
    _same_lineage(layout)
    assert main(["audit", "index", "--audit"]) == 0
    with IndexedVersions(layout) as versions:
        assert versions._unindexed == []


def _flip(path, offset: int) -> None:
    blob = bytearray(path.read_bytes())
    blob[offset] ^= 0x01
    path.write_bytes(bytes(blob))


@pytest.mark.parametrize("where", ["names", "sha256", "state"])
def test_a_changed_byte_of_the_index_exits_2_naming_it(history, tmp_path, monkeypatch, capsys, where):
    layout = _copy(history[2], tmp_path, monkeypatch)
    sha = _questions(layout)[1]["sha256"]
    assert main(["audit", "contains", "--sha256", sha]) == 0
    capsys.readouterr()
    state = read_state(layout)
    if where == "state":
        path = state_path(layout)
        saved = json.loads(path.read_text())
        saved[STATE_SEGMENTS][0]["versions"] += 1
        path.write_text(json.dumps(saved))
    else:
        from records.audit_index import Segment

        path = index_folder(layout) / state.segments[0]["file"]
        with Segment(path) as segment:
            start, length = segment.sections[where]
        _flip(path, start + length - 3)
    code = main(["audit", "contains", "--sha256", sha])
    captured = capsys.readouterr()
    assert code == 2 and captured.out == ""
    assert str(path) in captured.err and ("piece" in captured.err or "pinned in ledger entry" in captured.err)
    assert main(["audit", "lineage", sorted(load_versions(layout))[0]]) == 2
