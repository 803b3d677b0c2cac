"""Was a document in a model? Its fate through the model's data versions, then its use in training.

A model version's parents name the token_shards version it was trained from, whose curriculum_stages
version names the curated versions the curriculum drew on (its sources). The document's trail through
those sources and their ancestors is the ordinary membership answer (provenance.audit.contains); if it
is kept there, the curriculum's stage files say how many copies each stage took, each stage's
sequences.parquet which sequences hold its tokens, and the model's sequence_use.parquet (model.usage)
how many times training drew each of those sequences and which were held out for evaluation.

"In the model" means: at least one sequence holding part of the document was trained on. A document
kept by curation but selected for no stage is NOT IN (not_staged); one staged only in held-out
sequences, or in sequences the run never reached, is NOT IN (staged_not_trained), with those numbers.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

from provenance.audit.contains import IN, DocumentFate, Membership, contains
from records.assets import CURRICULUM_STAGES, MODEL_ASSETS, TOKEN_SHARDS, TRAINED_MODEL
from records.curriculum import STAGES
from records.documents import INDEX
from records.layout import DataLayout
from records.models import SEQUENCE_USE
from records.token_shards import read_index, sequences_file
from records.versions import load_versions, resolve

NOT_STAGED, STAGED_NOT_TRAINED = "not_staged", "staged_not_trained"


@dataclass(frozen=True)
class StageUse:
    """One document in one curriculum stage of a model's training data."""

    stage: str
    copies: int  # the curriculum's multiplicity of the document in this stage
    sequences: int  # sequences holding some of its tokens
    sequences_trained: int  # of those, trained on at least once
    times_trained: int  # training draws of those sequences, summed
    held_out_sequences: int  # of those, kept aside for evaluation


@dataclass(frozen=True)
class DocumentUse:
    doc_id: str
    sha256: str
    stages: list[StageUse] = field(default_factory=list)

    @property
    def trained(self) -> bool:
        return any(s.times_trained for s in self.stages)


@dataclass(frozen=True)
class ModelMembership:
    """The answer for one model: the data trail (``membership``) and the training use per document."""

    model: str
    token_shards: str
    membership: Membership
    uses: list[DocumentUse]

    @property
    def status(self) -> str:
        """IN if any matching document was trained on; else the data answer's status, or NOT IN (staged)."""
        if any(u.trained for u in self.uses):
            return IN
        if self.membership.status != IN:
            return self.membership.status
        return STAGED_NOT_TRAINED if any(u.stages for u in self.uses) else NOT_STAGED

    def to_dict(self) -> dict:
        return {
            "model": self.model,
            "status": self.status,
            TOKEN_SHARDS: self.token_shards,
            "uses": [asdict(u) for u in self.uses],
            "membership": self.membership.to_dict(),
        }


def model_refs(layout: DataLayout, names: list[str] | None) -> list[str]:
    """The named model versions (``trained_model/<id prefix>``), or every model when None."""
    versions = load_versions(layout)
    if names is None:
        return sorted(r for r, m in versions.items() if m.asset in MODEL_ASSETS)
    refs = [resolve(versions, n) for n in names]
    for ref in refs:
        if versions[ref].asset not in MODEL_ASSETS:
            raise ValueError(f"{ref}: not a model version (model assets: {', '.join(MODEL_ASSETS)})")
    return refs


def training_data(layout: DataLayout, model: str) -> tuple[str, str, str, list[str]]:
    """The trained_model version at the root of ``model``'s training (a fine-tuned model's pretraining
    data is its base model's), its token_shards and curriculum_stages versions, and the curated
    versions the curriculum drew on."""
    versions = load_versions(layout)
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
) -> ModelMembership:
    """Answer whether the document(s) named by exactly one of url, sha256, text were trained on by
    ``model`` (a resolved model ref, see model_refs)."""
    trained, shards, stages, sources = training_data(layout, model)
    membership = contains(layout, url=url, sha256=sha256, text=text, targets=sources)
    kept = [d for d in membership.documents if d.status == IN]
    folders = (layout.datasets / trained, layout.datasets / shards, layout.datasets / stages)
    uses = _uses(*folders, kept)
    return ModelMembership(model, shards, membership, uses)


def _uses(
    model_folder: Path, shards_folder: Path, stages_folder: Path, kept: list[DocumentFate]
) -> list[DocumentUse]:
    if not kept:
        return []

    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    index = read_index(shards_folder)
    hashes = sorted({d.sha256 for d in kept})
    use_path = model_folder / SEQUENCE_USE
    if not use_path.exists():
        raise ValueError(f"{use_path}: missing; the model's record of which sequences it trained on")
    use = pq.read_table(use_path)
    by_doc: dict[str, list[StageUse]] = {h: [] for h in hashes}
    for stage in sorted(index["stages"], key=lambda s: s["stage_index"]):
        folder_name = Path(stage["path"]).name
        picked = pq.read_table(
            stages_folder / STAGES / f"{folder_name}.parquet",
            columns=["sha256", "multiplicity"],
            filters=[("sha256", "in", hashes)],
        )
        copies = dict(zip(picked["sha256"].to_pylist(), picked["multiplicity"].to_pylist(), strict=True))
        sequences = pq.read_table(
            sequences_file(shards_folder / stage["path"]),
            columns=["sequence", "sha256"],
            filters=[("sha256", "in", hashes)],
        )
        stage_use = use.filter(pc.equal(use["stage"], folder_name))
        trained = dict(
            zip(stage_use["sequence"].to_pylist(), stage_use["times_trained"].to_pylist(), strict=True)
        )
        held = {
            s
            for s, h in zip(stage_use["sequence"].to_pylist(), stage_use["held_out"].to_pylist(), strict=True)
            if h
        }
        for h in hashes:
            mine = set(sequences.filter(pc.equal(sequences["sha256"], h))["sequence"].to_pylist())
            if mine:
                by_doc[h].append(
                    StageUse(
                        stage=stage["stage"],
                        copies=copies.get(h, 0),
                        sequences=len(mine),
                        sequences_trained=sum(1 for s in mine if trained.get(s, 0) > 0),
                        times_trained=sum(trained.get(s, 0) for s in mine),
                        held_out_sequences=len(mine & held),
                    )
                )
    return [DocumentUse(d.doc_id, d.sha256, by_doc[d.sha256]) for d in kept]


def trained_document(layout: DataLayout, model: str) -> tuple[str, str]:
    """(doc_id, url) of a document in the first sequence ``model`` trained on (for examples: the demo's
    membership question and erasure request)."""
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    trained, shards, _, _ = training_data(layout, model)
    use = pq.read_table(layout.datasets / trained / SEQUENCE_USE)
    use = use.filter(pc.greater(use["times_trained"], 0))
    if not use.num_rows:
        raise ValueError(f"{trained}: its {SEQUENCE_USE} records no sequence trained on")
    stage, sequence = use["stage"][0].as_py(), use["sequence"][0].as_py()
    rows = pq.read_table(
        sequences_file(layout.datasets / shards / STAGES / stage),
        columns=["sequence", "doc_id", "source_version"],
    )
    row = rows.filter(pc.equal(rows["sequence"], sequence)).slice(0, 1).to_pylist()[0]
    index = pq.read_table(layout.datasets / row["source_version"] / INDEX, columns=["doc_id", "url"])
    match = index.filter(pc.equal(index["doc_id"], row["doc_id"]))
    if not match.num_rows:
        raise ValueError(f"{row['doc_id']}: in {model}'s sequences but not in {row['source_version']}")
    return row["doc_id"], match["url"][0].as_py()
