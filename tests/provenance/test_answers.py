"""One answer per audit question: the CLI, the catalog's SQL, the erasure impact and the compliance
documents agree, for a model that recorded its per-sequence use and for one that did not (no
sequence_use.parquet: "in the staged data; per-sequence use unknown", exit 3).

Each surface is asked the way its user asks it: the CLI through its entry point (and once as a real
command), SQL through the guarded `apertus audit sql` query, the erasure impact and the compliance
facts through their functions. The expected answers come from the model's own files (which
sequences hold the document, which were marked trained), not from any of the surfaces.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from apertus.cli import main
from apertus.compliance_cli import print_impact
from provenance.audit.contains import IN, contains
from provenance.audit.diff import diff
from provenance.audit.lineage import lineage
from provenance.audit.model_use import (
    STAGED_NOT_TRAINED,
    STAGED_USE_UNKNOWN,
    USE_UNKNOWN_TEXT,
    contains_in_model,
)
from provenance.compliance.facts import gather
from provenance.erasure import impact
from records.catalog import query
from records.layout import DataLayout
from records.requests import record_request
from records.versions import ancestors, load_versions
from tests.provenance.handmade_model import STAGE, build_model

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module", params=[True, False], ids=["use_recorded", "no_sequence_use"])
def world(request, curated, tmp_path_factory, monkeypatch_module):
    """A copy of the curated folder with a hand-made model over its deduplicated version, with or
    without sequence_use.parquet; ``untrained`` is held out (in the model that records use)."""
    source_layout, results, _ = curated
    layout = DataLayout(tmp_path_factory.mktemp("answers") / "data")
    shutil.copytree(source_layout.root, layout.root)
    deduplicated = results[-1].manifest
    kept = pq.read_table(layout.datasets / deduplicated.ref / "index.parquet").to_pylist()
    untrained = kept[len(kept) // 2]
    model = build_model(layout, deduplicated, untrained_doc=untrained["doc_id"], record_use=request.param)
    sequences = pq.read_table(
        layout.datasets / model["token_shards"] / "stages" / STAGE / "sequences.parquet"
    )
    holding = {}
    for row in sequences.to_pylist():
        holding.setdefault(row["sha256"], set()).add(row["sequence"])
    trained = next(d for d in kept if holding.get(d["sha256"], set()) - set(model["held"]))
    monkeypatch_module.setenv("APERTUS_DATA", str(layout.root))
    return layout, model, {"trained": trained, "untrained": untrained}, holding, request.param


@pytest.fixture(scope="module")
def monkeypatch_module():
    with pytest.MonkeyPatch.context() as m:
        yield m


def _expected(world, which: str) -> tuple[str, int, int | None]:
    """(status, sequences holding the document, of those trained on or None), from the model's files."""
    _, model, documents, holding, use_recorded = world
    mine = holding[documents[which]["sha256"]]
    if not use_recorded:
        return STAGED_USE_UNKNOWN, len(mine), None
    trained = len(mine - set(model["held"]))
    return (IN if trained else STAGED_NOT_TRAINED), len(mine), trained


def _cli(capsys, *argv) -> tuple[int, str]:
    capsys.readouterr()
    code = main(list(argv))
    return code, capsys.readouterr().out


def _sql_answer(layout, model_ref: str, sha256: str) -> tuple[str | None, int, int | None]:
    """(status, sequences, sequences trained) of the document in the model by the catalog's view."""
    columns, rows = query(
        layout,
        "SELECT status, sequences, sequences_trained FROM model_training WHERE model_version = ? AND sha256 = ?",
        [model_ref.split("/")[1], sha256],
    )
    statuses = {r[0] for r in rows}
    status = IN if IN in statuses else next(iter(statuses), None)
    trained = [r[2] for r in rows]
    return status, sum(r[1] for r in rows), None if None in trained else sum(trained)


@pytest.mark.parametrize("which", ["trained", "untrained"])
def test_did_the_model_train_on_it_has_one_answer(world, which, capsys):
    layout, model, documents, _, use_recorded = world
    sha = documents[which]["sha256"]
    status, sequences, trained = _expected(world, which)
    if use_recorded and which == "untrained":
        assert status == STAGED_NOT_TRAINED  # the fixture holds it out; otherwise the test asks nothing

    answer = contains_in_model(layout, model["model"], sha256=sha)
    assert answer.status == status
    assert answer.use_known == use_recorded
    [use] = answer.uses
    assert sum(s.sequences for s in use.stages) == sequences
    assert [s.sequences_trained for s in use.stages] == [trained]

    code, out = _cli(capsys, "audit", "contains", "--sha256", sha, "--model", model["model"][:30], "--json")
    assert code == {IN: 0, STAGED_NOT_TRAINED: 1, STAGED_USE_UNKNOWN: 3}[status]
    [cli] = json.loads(out)
    assert cli["status"] == status and cli["sequence_use_recorded"] == use_recorded
    code, out = _cli(capsys, "audit", "contains", "--sha256", sha, "--model", model["model"][:30])
    assert code == {IN: 0, STAGED_NOT_TRAINED: 1, STAGED_USE_UNKNOWN: 3}[status]
    assert (USE_UNKNOWN_TEXT in out) == (status == STAGED_USE_UNKNOWN)

    assert _sql_answer(layout, model["model"], sha) == (status, sequences, trained)

    found = impact(layout, record_request(layout, "sha256", sha))
    [hit] = found.models
    assert (hit.ref, hit.status, hit.contains) == (model["model"], status, status == IN)
    assert [d["sequences_trained"] for d in hit.documents] == [trained]
    assert found.to_dict()["models_use_unknown"] == ([model["model"]] if status == STAGED_USE_UNKNOWN else [])
    printed = []
    print_impact(found, log=printed.append)
    assert (USE_UNKNOWN_TEXT in "\n".join(printed)) == (status == STAGED_USE_UNKNOWN)


def test_the_exit_status_of_a_model_without_use_is_its_own(world):
    """The real command: exit 3 only for a staged document of a model that recorded no use."""
    layout, model, documents, _, use_recorded = world
    done = subprocess.run(
        [sys.executable, "-m", "apertus.cli", "audit", "contains", "--sha256", documents["trained"]["sha256"],
         "--all-models"],
        capture_output=True, text=True, cwd=REPO, timeout=120,
    )  # fmt: skip
    assert done.returncode == (0 if use_recorded else 3), done.stderr
    assert ("STAGED, USE UNKNOWN" in done.stdout) == (not use_recorded)


def test_compliance_documents_state_the_same_use(world):
    """The public summary's per-stage 'sequences trained' is the count, or the CLI's words when the
    model recorded no per-sequence use (never a blank or a zero)."""
    layout, model, _, _, use_recorded = world
    facts = gather(layout, model["model"])
    [stage] = facts.stages
    assert stage["sequences_trained"] == (len(model["trained"]) if use_recorded else USE_UNKNOWN_TEXT)
    _, rows = query(
        layout,
        "SELECT count(DISTINCT sequence) FILTER (WHERE times_trained > 0) FROM training_use WHERE model_version = ?",
        [model["model"].split("/")[1]],
    )
    assert rows == [(len(model["trained"]) if use_recorded else 0,)]


def test_lineage_has_one_answer(world, capsys):
    """The model's lineage: the versions the lineage function walks, the CLI's PROV-JSON entities,
    the catalog's parents (walked in SQL) and the compliance facts' chain are one set."""
    layout, model, _, _, _ = world
    walked, stack = set(), [lineage(layout, model["model"])]
    while stack:
        node = stack.pop()
        if node.ref not in walked:
            walked.add(node.ref)
            stack += node.parents
    code, out = _cli(capsys, "audit", "lineage", model["model"][:30], "--json")
    assert code == 0
    prefix = "apertus:version/"
    entities = {k.removeprefix(prefix) for k in json.loads(out)["entity"] if k.startswith(prefix)}
    _, rows = query(
        layout,
        """WITH RECURSIVE chain(ref) AS (SELECT ?::VARCHAR
            UNION SELECT unnest(v.parents) FROM chain JOIN dataset_versions v
            ON v.asset || '/' || v.dataset_version = chain.ref)
        SELECT ref FROM chain""",
        [model["model"]],
    )
    assert walked == {r for (r,) in rows} == set(gather(layout, model["model"]).chain)
    assert entities == walked


def test_membership_in_a_version_has_one_answer(world, capsys):
    """A document kept in the curated version: the function, the CLI and the catalog's documents view."""
    layout, model, documents, _, _ = world
    sha = documents["untrained"]["sha256"]
    [source] = model["record"]["datasets"]["stages"][0]["dataset_versions"]
    answer = contains(layout, sha256=sha, targets=[source])
    assert answer.status == IN and answer.documents[0].kept_in == [source]
    code, out = _cli(capsys, "audit", "contains", "--sha256", sha, "--version", source, "--json")
    assert code == 0 and json.loads(out)["status"] == IN
    _, rows = query(
        layout,
        "SELECT asset || '/' || dataset_version FROM documents WHERE kept AND sha256 = ?",
        [sha],
    )
    assert source in {r for (r,) in rows}


def test_diff_has_one_answer(world, capsys):
    """Documents removed and added between two versions of the model's chain: the function, the CLI,
    and the catalog's documents view (kept in one, not the other)."""
    layout, model, _, _, _ = world
    chain = ancestors(load_versions(layout), model["model"])
    a = next(r for r in chain if r.startswith("language_identified/"))
    b = next(r for r in chain if r.startswith("deduplicated/"))
    result = diff(layout, a, b, limit=0)
    code, out = _cli(capsys, "audit", "diff", a, b, "--json")
    assert code == 0
    cli = json.loads(out)
    assert (cli["num_added"], cli["num_removed"], cli["removed_by_reason"]) == (
        result.num_added,
        result.num_removed,
        result.removed_by_reason,
    )
    only = """SELECT count(*) FROM (
        SELECT doc_id, sha256 FROM documents WHERE kept AND asset || '/' || dataset_version = ?
        EXCEPT SELECT doc_id, sha256 FROM documents WHERE kept AND asset || '/' || dataset_version = ?)"""
    assert query(layout, only, [a, b])[1] == [(result.num_removed,)]
    assert query(layout, only, [b, a])[1] == [(result.num_added,)]
    assert result.num_removed > 0  # the chain drops documents, so the comparison says something


def test_contains_model_answers_only_from_checked_files(world, capsys):
    """A changed sequence map or use record is exit 2 naming it, never an answer; a use record
    planted beside a model whose manifest lists none does not make its use known."""
    layout, model, documents, _, use_recorded = world
    sha = documents["trained"]["sha256"]
    ask = ("audit", "contains", "--sha256", sha, "--model", model["model"][:30])
    sequences = layout.datasets / model["token_shards"] / "stages" / STAGE / "sequences.parquet"
    use = layout.datasets / model["model"] / "sequence_use.parquet"
    changed = [sequences, use] if use_recorded else [sequences]
    for path in changed:
        original = path.read_bytes()
        table = pq.read_table(path)
        try:
            pq.write_table(table.slice(1), path)  # one row less
            capsys.readouterr()
            assert main(list(ask)) == 2
            err = capsys.readouterr().err
            assert str(path) in err and "sha256 differs" in err
        finally:
            path.write_bytes(original)
    if not use_recorded:
        held = pq.read_table(sequences, columns=["sequence"]).column("sequence").to_pylist()
        pq.write_table(
            pa.table({"stage": [STAGE] * len(held), "sequence": held, "times_trained": [5] * len(held),
                      "held_out": [False] * len(held)}),
            use,
        )  # fmt: skip
        try:
            assert contains_in_model(layout, model["model"], sha256=sha).status == STAGED_USE_UNKNOWN
            assert main(list(ask)) == 3
        finally:
            use.unlink()
