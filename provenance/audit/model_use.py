"""Did model M train on document D? The one answer, for the CLI, the erasure impact, the compliance
documents and the demo (the catalog's ``model_training`` view gives the same, tests/provenance/test_answers.py).

A model version's parents name the token_shards version it was trained from, whose curriculum_stages
version names the curated versions the curriculum drew on (its sources). The document's trail through
those sources and their ancestors is the ordinary membership answer (provenance.audit.contains); if it
is kept there, the curriculum's stage files say how many copies each stage took, each stage's
sequences.parquet which sequences hold its tokens, and the model's sequence_use.parquet (model.usage)
how many times training drew each of those sequences and which were held out for evaluation. Every
one of those files is read only as its version's manifest lists it and checked against the recorded
sha256 first (records.verified): a changed file is an error naming it, never an answer.

"In the model" means: at least one sequence holding part of the document was trained on. A document
kept by curation but selected for no stage is NOT IN (not_staged); one staged only in held-out
sequences, or in sequences the run never reached, is NOT IN (staged_not_trained), with those numbers.
A model whose manifest lists no sequence_use.parquet (a run that did not record it) cannot say which
staged sequences it drew: a staged document is then "in the staged data; per-sequence use unknown"
(staged_use_unknown), never IN and never NOT IN.
"""

from __future__ import annotations

from contextlib import nullcontext
from dataclasses import asdict, dataclass, field
from pathlib import Path

from provenance.audit.contains import IN, Membership, contains
from records.assets import CURRICULUM_STAGES, MODEL_ASSETS, TOKEN_SHARDS, TRAINED_MODEL
from records.curriculum import STAGES
from records.documents import INDEX as DOCUMENT_INDEX
from records.indexed_versions import IndexedVersions
from records.layout import DataLayout
from records.manifest import Manifest
from records.models import SEQUENCE_USE
from records.token_shards import INDEX as SHARDS_INDEX
from records.token_shards import SEQUENCES
from records.verified import is_listed, verified_json, verified_parquet
from records.versions import load_versions, resolve

NOT_STAGED, STAGED_NOT_TRAINED = "not_staged", "staged_not_trained"
STAGED_USE_UNKNOWN = "staged_use_unknown"
USE_UNKNOWN_TEXT = "in the staged data; per-sequence use unknown"


@dataclass(frozen=True)
class StageUse:
    """One document in one curriculum stage of a model's training data. The three use counts are
    None when the model recorded no per-sequence use."""

    stage: str
    folder: str  # the stage's folder in the token shards (stages/<folder>), as in the catalog
    copies: int  # the curriculum's multiplicity of the document in this stage
    sequences: int  # sequences holding some of its tokens
    sequences_trained: int | None  # of those, trained on at least once
    times_trained: int | None  # training draws of those sequences, summed
    held_out_sequences: int | None  # of those, kept aside for evaluation


@dataclass(frozen=True)
class DocumentUse:
    doc_id: str
    sha256: str
    stages: list[StageUse] = field(default_factory=list)

    @property
    def trained(self) -> bool:
        return any(s.times_trained for s in self.stages)


def training_status(uses: list[DocumentUse], use_known: bool) -> str:
    """The verdict over documents kept in a model's sources: IN if one was trained on; else
    STAGED_USE_UNKNOWN if one is staged and the model recorded no per-sequence use; else
    STAGED_NOT_TRAINED if one is staged; else NOT_STAGED."""
    if not any(u.stages for u in uses):
        return NOT_STAGED
    if not use_known:
        return STAGED_USE_UNKNOWN
    return IN if any(u.trained for u in uses) else STAGED_NOT_TRAINED


@dataclass(frozen=True)
class TrainingUse:
    """The staged documents matching a question in one model's training data, stage by stage."""

    model: str  # the trained_model version at the root of the model's training
    token_shards: str
    use_known: bool  # whether the model's manifest lists sequence_use.parquet
    documents: list[DocumentUse]

    @property
    def status(self) -> str:
        return training_status(self.documents, self.use_known)


@dataclass(frozen=True)
class ModelMembership:
    """The answer for one model: the data trail (``membership``) and the training use per document."""

    model: str
    token_shards: str
    membership: Membership
    uses: list[DocumentUse]
    use_known: bool = True

    @property
    def status(self) -> str:
        """The data answer's status when the document is not kept in the model's sources (dropped,
        not seen); else the training verdict (training_status)."""
        if self.membership.status != IN:
            return self.membership.status
        return training_status(self.uses, self.use_known)

    def to_dict(self) -> dict:
        return {
            "model": self.model,
            "status": self.status,
            TOKEN_SHARDS: self.token_shards,
            "sequence_use_recorded": self.use_known,
            "uses": [asdict(u) for u in self.uses],
            "membership": self.membership.to_dict(),
        }


def model_refs(
    layout: DataLayout, names: list[str] | None, versions: IndexedVersions | None = None
) -> list[str]:
    """The named model versions (``trained_model/<id prefix>``), or every model when None. Reads
    the audit index's list of versions (records.indexed_versions), not every manifest; ``versions``:
    an open one to reuse (opening it lists every asset folder and reads every segment's names)."""
    with nullcontext(versions) if versions is not None else IndexedVersions(layout) as versions:
        if names is None:
            return sorted(r for r in versions if r.partition("/")[0] in MODEL_ASSETS)
        refs = [resolve(versions, n) for n in names]
    for ref in refs:
        if ref.partition("/")[0] not in MODEL_ASSETS:
            raise ValueError(f"{ref}: not a model version (model assets: {', '.join(MODEL_ASSETS)})")
    return refs


def training_data(
    layout: DataLayout, model: str, versions: dict[str, Manifest] | None = None
) -> tuple[str, str, str, list[str]]:
    """The trained_model version at the root of ``model``'s training (a fine-tuned model's pretraining
    data is its base model's), its token_shards and curriculum_stages versions, and the curated
    versions the curriculum drew on."""
    versions = versions if versions is not None else load_versions(layout)
    current = model
    while versions[current].asset != TRAINED_MODEL:
        bases = [p for p in versions[current].parents if p in versions and versions[p].asset in MODEL_ASSETS]
        if not bases:
            raise ValueError(f"{model}: no trained_model among its ancestors")
        current = bases[0]
    shards = _one(versions, current, TOKEN_SHARDS)
    stages = _one(versions, shards, CURRICULUM_STAGES)
    return current, shards, stages, list(versions[stages].parents)


def _one(versions: dict, ref: str, asset: str) -> str:
    found = [p for p in versions[ref].parents if p.startswith(f"{asset}/")]
    if len(found) != 1 or found[0] not in versions:
        raise ValueError(
            f"{ref}: its manifest names {len(found)} {asset} version(s) present here, expected one"
        )
    return found[0]


def contains_in_model(
    layout: DataLayout,
    model: str,
    *,
    url: str | None = None,
    sha256: str | None = None,
    text: str | None = None,
    versions: IndexedVersions | None = None,
) -> ModelMembership:
    """Answer whether the document(s) named by exactly one of url, sha256, text were trained on by
    ``model`` (a resolved model ref, see model_refs). Cost: the membership answer, plus, when a
    document is kept, O(bytes of the model's sequence maps, stage files and sequence use), each
    file hashed once against its manifest. The manifests read are those of the model's chain
    (records.indexed_versions loads them on first use), not every version's. ``versions``: an open
    IndexedVersions to reuse, as in ``model_refs``."""
    with nullcontext(versions) if versions is not None else IndexedVersions(layout) as versions:
        _, shards, _, sources = training_data(layout, model, versions)
        membership = contains(layout, url=url, sha256=sha256, text=text, targets=sources, versions=versions)
        kept = [d for d in membership.documents if d.status == IN]
        use = training_use(layout, model, "sha256", sorted({d.sha256 for d in kept}), versions)
    staged = {(u.doc_id, u.sha256): u.stages for u in use.documents}
    uses = [DocumentUse(d.doc_id, d.sha256, staged.get((d.doc_id, d.sha256), [])) for d in kept]
    return ModelMembership(model, shards, membership, uses, use.use_known)


def training_use(
    layout: DataLayout,
    model: str,
    column: str,
    values: list[str],
    versions: dict[str, Manifest] | None = None,
) -> TrainingUse:
    """Every staged document of ``model``'s training data whose ``column`` ("sha256" or "doc_id") is
    one of ``values``, per stage: its copies, the sequences holding it and, when the model recorded
    its per-sequence use, how many were trained on, how often, and how many held out.

    The one reader of a model's training use: the token shards' index.json and sequence maps, the
    curriculum's stage files and the model's sequence_use.parquet, each read only as listed in its
    version's manifest and checked against the recorded sha256 (ValueError naming a file that
    differs). Cost: O(bytes of those files), independent of the number of values.
    """
    assert column in ("sha256", "doc_id"), column
    versions = versions if versions is not None else load_versions(layout)
    trained, shards, stages, _ = training_data(layout, model, versions)
    use_known = is_listed(versions[trained], SEQUENCE_USE)
    if not values:  # before pyarrow's import: `contains --model` for a document not kept starts fast
        return TrainingUse(trained, shards, use_known, [])
    import pyarrow as pa
    import pyarrow.compute as pc

    folder = {ref: layout.datasets / ref for ref in (trained, shards, stages)}
    index = verified_json(folder[shards], versions[shards], SHARDS_INDEX)
    use = verified_parquet(folder[trained], versions[trained], SEQUENCE_USE) if use_known else None
    wanted = pa.array(sorted(set(values)), pa.string())
    found: dict[tuple[str, str], list[StageUse]] = {}
    for stage in sorted(index["stages"], key=lambda s: s["stage_index"]):
        name = Path(stage["path"]).name
        sequences = verified_parquet(
            folder[shards],
            versions[shards],
            f"{stage['path']}/{SEQUENCES}",
            ["sequence", "doc_id", "sha256"],
        )
        sequences = sequences.filter(pc.is_in(sequences[column], value_set=wanted))
        if not sequences.num_rows:
            continue
        picked = verified_parquet(
            folder[stages], versions[stages], f"{STAGES}/{name}.parquet", ["doc_id", "sha256", "multiplicity"]
        )
        picked = picked.filter(pc.is_in(picked[column], value_set=wanted))
        copies = {(r["doc_id"], r["sha256"]): r["multiplicity"] for r in picked.to_pylist()}
        trained_times: dict[int, int] = {}
        held: set[int] = set()
        if use is not None:  # only the rows of the sequences that hold a wanted document
            holding_wanted = pa.array(
                sorted(set(sequences["sequence"].to_pylist())), use.schema.field("sequence").type
            )
            mine = use.filter(
                pc.and_(pc.equal(use["stage"], name), pc.is_in(use["sequence"], value_set=holding_wanted))
            ).to_pylist()
            trained_times = {r["sequence"]: r["times_trained"] for r in mine}
            held = {r["sequence"] for r in mine if r["held_out"]}
        holding: dict[tuple[str, str], set[int]] = {}
        for row in sequences.to_pylist():
            holding.setdefault((row["doc_id"], row["sha256"]), set()).add(row["sequence"])
        for key, numbers in holding.items():
            counts = (
                (
                    sum(1 for s in numbers if trained_times.get(s, 0) > 0),
                    sum(trained_times.get(s, 0) for s in numbers),
                    len(numbers & held),
                )
                if use is not None
                else (None, None, None)
            )
            found.setdefault(key, []).append(
                StageUse(stage["stage"], name, copies.get(key, 0), len(numbers), *counts)
            )
    documents = [DocumentUse(d, h, found[(d, h)]) for d, h in sorted(found)]
    return TrainingUse(trained, shards, use_known, documents)


def trained_document(layout: DataLayout, model: str) -> tuple[str, str]:
    """(doc_id, url) of a document in the first sequence ``model`` trained on (for examples: the demo's
    membership question and erasure request). Reads the model's sequence use, the stage's sequence
    map and the source's index as their manifests list them, hash-checked (records.verified)."""
    import pyarrow.compute as pc

    versions = load_versions(layout)
    trained, shards, _, _ = training_data(layout, model, versions)
    if not is_listed(versions[trained], SEQUENCE_USE):
        raise ValueError(f"{trained}: its manifest lists no {SEQUENCE_USE}; per-sequence use unknown")
    use = verified_parquet(layout.datasets / trained, versions[trained], SEQUENCE_USE)
    use = use.filter(pc.greater(use["times_trained"], 0))
    if not use.num_rows:
        raise ValueError(f"{trained}: its {SEQUENCE_USE} records no sequence trained on")
    stage, sequence = use["stage"][0].as_py(), use["sequence"][0].as_py()
    rows = verified_parquet(
        layout.datasets / shards, versions[shards], f"{STAGES}/{stage}/{SEQUENCES}",
        ["sequence", "doc_id", "source_version"],
    )  # fmt: skip
    row = rows.filter(pc.equal(rows["sequence"], sequence)).slice(0, 1).to_pylist()[0]
    source = row["source_version"]
    index = verified_parquet(layout.datasets / source, versions[source], DOCUMENT_INDEX, ["doc_id", "url"])
    match = index.filter(pc.equal(index["doc_id"], row["doc_id"]))
    if not match.num_rows:
        raise ValueError(f"{row['doc_id']}: in {model}'s sequences but not in {source}")
    return row["doc_id"], match["url"][0].as_py()
