"""Releasing a trained model, as a Dagster asset: certify it, generate its documents, move ``production``.

trained_model -> model_release   (a sealed version: model card, EU AI Act training-content summary,
                                  Annex XI documentation, GDPR Art. 30 record; Markdown and HTML)

The asset is thin: certification and aliases are provenance.certify (ledger events ``model_certified``
and ``alias_moved``), the documents provenance.compliance (every number from the catalog and the
provenance record). The documents are sealed as a ``model_release`` version whose parent is the model,
so ``apertus audit lineage|verify`` cover them; a release of the same model with the same records
reuses the version.
"""

import dagster as dg

from assets.checks import VERSION_CHECKS, check_results, version_outcomes
from assets.curation import CODE_VERSION
from assets.operations import CURATION_RETRY
from assets.resources import CurationResource
from pipelines.steps import StepResult, new_staging, pin_version
from records.assets import MODEL_RELEASE
from records.manifest import MANIFEST, seal
from records.release import MODEL_CARD, markdown_file, read_sources
from records.versions import ledger_records

PRODUCTION = "production"


class ReleaseConfig(dg.Config):
    """alias: the alias moved to the released model (``production``); empty: certify only."""

    alias: str = PRODUCTION


@dg.asset(
    group_name="release",
    code_version=CODE_VERSION,
    check_specs=[
        dg.AssetCheckSpec(name, asset=MODEL_RELEASE) for name in (*VERSION_CHECKS, "alias_points_here")
    ],
    kinds={"markdown", "html"},
    retry_policy=CURATION_RETRY,
)
def model_release(
    context: dg.AssetExecutionContext, config: ReleaseConfig, curation: CurationResource, trained_model: str
):
    """The trained model certified (its files re-hashed against its record and the ledger), its
    compliance documents generated from the records, and the ``production`` alias moved to it."""
    from provenance.certify import aliases, certify, set_alias
    from provenance.compliance import write_documents

    layout = curation.layout()
    by = f"dagster run {context.run_id}"
    certified = certify(layout, trained_model, by=by)
    context.log.info(f"certified {trained_model}: ledger entry {certified.index}")
    moved = None
    if config.alias and aliases(layout).get(config.alias) != trained_model:
        moved = set_alias(layout, config.alias, trained_model, by=by)
        context.log.info(f"alias {config.alias} -> {trained_model}: ledger entry {moved.index}")
    staging = new_staging(layout, MODEL_RELEASE)
    written = write_documents(layout, trained_model, staging)
    manifest, created = seal(
        staging,
        layout.datasets,
        asset=MODEL_RELEASE,
        snapshot=None,
        parents=(trained_model,),
        config={"alias": config.alias},
        code_version=CODE_VERSION,
        stats={"documents": sorted(p.name for p in written)},
    )
    folder = layout.datasets / manifest.ref
    pin_version(layout, manifest, folder, sealed_now=created)  # a retry pins what a failed run sealed
    pinned = ledger_records(layout).get(manifest.ref)
    card = (folder / markdown_file(MODEL_CARD)).read_text(encoding="utf-8")
    anchor = read_sources(folder)["ledger_head"] or {}
    metadata = {
        "dataset_version": dg.MetadataValue.text(manifest.version_id),
        "manifest": dg.MetadataValue.path(str(folder / MANIFEST)),
        "new_version": dg.MetadataValue.bool(created),
        "model_version": dg.MetadataValue.text(trained_model),
        "certification_ledger_index": dg.MetadataValue.int(certified.index),
        "alias": dg.MetadataValue.text(config.alias or ""),
        "documents": dg.MetadataValue.json(sorted(p.name for p in written)),
        "model_card": dg.MetadataValue.md(card),
        # The key and the ledger head the documents were made under (provenance.compliance.ledger_anchor).
        "ledger_key_id": dg.MetadataValue.text(anchor.get("key_id", "")),
        "ledger_head": dg.MetadataValue.json(anchor),
    }
    if pinned is not None:
        metadata["ledger_index"] = dg.MetadataValue.int(pinned.index)
    if moved is not None:
        metadata["alias_ledger_index"] = dg.MetadataValue.int(moved.index)
    yield dg.Output(manifest.ref, data_version=dg.DataVersion(manifest.version_id), metadata=metadata)
    result = StepResult(manifest, created, {}, {}, folder, None)
    target = aliases(layout).get(config.alias) if config.alias else trained_model
    outcomes = {
        **version_outcomes(result, layout),
        "alias_points_here": (target == trained_model, {"alias": config.alias, "target": target or ""}),
    }
    yield from check_results(MODEL_RELEASE, outcomes)


RELEASE_ASSETS = [model_release]
