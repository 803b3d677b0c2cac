"""The curation assets: one per step, partitioned by source snapshot.

Each asset runs one function of ``pipelines.steps`` and returns the ``asset/version_id`` of the
dataset version it sealed; that id's hash is also the asset's Dagster data version, so an
unchanged input under unchanged code shows as the same version, not as a new one.
"""

import warnings
from pathlib import Path

import dagster as dg

from assets.checks import check_specs, version_outcomes, version_output
from assets.metadata import step_metadata
from assets.operations import CPU_POOL, CURATION_AUTOMATION, CURATION_RETRY
from assets.resources import CurationResource
from pipelines import steps

# Output(data_version=...) is how our content hashes become Dagster's data versions; Dagster
# marks the parameter beta. The warning says nothing an operator can act on.
warnings.filterwarnings("ignore", category=dg.BetaWarning)

snapshots = dg.DynamicPartitionsDefinition(name="snapshots")
CODE_VERSION = steps.code_version()

_EXTRA_CHECKS = {
    steps.RAW_DOCUMENTS: ("not_empty", "erasure_requests_suppressed"),
    steps.LANGUAGE_IDENTIFIED: ("not_empty", "every_document_has_language"),
    steps.QUALITY_FILTERED: ("not_empty",),
    steps.DEDUPLICATED: ("not_empty", "dedup_rate_within_bounds"),
}
MAX_DEDUP_RATE = 0.5  # more than half a snapshot removed as duplicates means something upstream broke
# A kept document that an applied erasure request names is a leak: the run must fail (and `apertus
# curate` exit non-zero) before anything downstream reads the version.
BLOCKING_CHECKS = ("erasure_requests_suppressed",)


def _check_specs(asset: str) -> list[dg.AssetCheckSpec]:
    return check_specs(asset, *_EXTRA_CHECKS[asset], blocking=BLOCKING_CHECKS)


def _outcomes(asset: str, result: steps.StepResult, layout) -> dict:
    kept, removed = result.kept["documents"], result.excluded["documents"]
    outcomes = version_outcomes(result, layout)
    outcomes["not_empty"] = (kept > 0, {"documents_kept": kept})
    if "every_document_has_language" in _EXTRA_CHECKS[asset]:
        unknown = result.kept["by_language"].get("unknown", {}).get("documents", 0)
        outcomes["every_document_has_language"] = (unknown == 0, {"documents_without_language": unknown})
    if "erasure_requests_suppressed" in _EXTRA_CHECKS[asset]:
        from pipelines.suppression import suppression_outcome
        from records.request_index import load_index

        outcomes["erasure_requests_suppressed"] = suppression_outcome(
            result.folder, result.manifest.config, load_index(layout)
        )
    if "dedup_rate_within_bounds" in _EXTRA_CHECKS[asset]:
        rate = removed / max(1, kept + removed)
        outcomes["dedup_rate_within_bounds"] = (
            rate <= MAX_DEDUP_RATE,
            {"dedup_rate": rate, "max": MAX_DEDUP_RATE},
        )
    return outcomes


def _outputs(
    context: dg.AssetExecutionContext, asset: str, result: steps.StepResult, curation: CurationResource
):
    layout = curation.layout()
    verb = "created" if result.created else "reused"
    context.log.info(
        f"{asset} {verb} version {result.manifest.short_id}: {result.kept['documents']:,} kept, "
        f"{result.excluded['documents']:,} removed"
    )
    metadata = step_metadata(result, Path(context.instance.storage_directory()) / "plots")
    yield from version_output(result, metadata, _outcomes(asset, result, layout))


@dg.asset(
    partitions_def=snapshots,
    group_name="curation",
    code_version=CODE_VERSION,
    check_specs=_check_specs(steps.RAW_DOCUMENTS),
    kinds={"parquet"},
    retry_policy=CURATION_RETRY,
    pool=CPU_POOL,
)
def raw_documents(context: dg.AssetExecutionContext, curation: CurationResource):
    """Every record of one source snapshot (JSONL, Parquet, WARC), normalized (NFC, FTFY), with a
    stable id that joins back to its file and line or offset. Unreadable records are quarantined
    with their reason, never dropped silently."""
    result = steps.ingest_snapshot(
        curation.layout(), context.partition_key, curation.curation_config(), curation.executor()
    )
    yield from _outputs(context, steps.RAW_DOCUMENTS, result, curation)


@dg.asset(
    partitions_def=snapshots,
    group_name="curation",
    code_version=CODE_VERSION,
    check_specs=_check_specs(steps.LANGUAGE_IDENTIFIED),
    kinds={"parquet"},
    retry_policy=CURATION_RETRY,
    pool=CPU_POOL,
    automation_condition=CURATION_AUTOMATION,
)
def language_identified(context: dg.AssetExecutionContext, curation: CurationResource, raw_documents: str):
    """Documents labelled with language, score and script by fastText lid.176; those outside the
    selected languages or under the score threshold are removed, with the numbers."""
    result = steps.identify_languages(
        curation.layout(), curation.manifest(raw_documents), curation.curation_config(), curation.executor()
    )
    yield from _outputs(context, steps.LANGUAGE_IDENTIFIED, result, curation)


@dg.asset(
    partitions_def=snapshots,
    group_name="curation",
    code_version=CODE_VERSION,
    check_specs=_check_specs(steps.QUALITY_FILTERED),
    kinds={"parquet"},
    retry_policy=CURATION_RETRY,
    pool=CPU_POOL,
    automation_condition=CURATION_AUTOMATION,
)
def quality_filtered(context: dg.AssetExecutionContext, curation: CurationResource, language_identified: str):
    """Documents that pass the Gopher, C4 and FineWeb quality rules with per-language settings,
    with emails, IP addresses and phone numbers redacted."""
    result = steps.filter_quality(
        curation.layout(),
        curation.manifest(language_identified),
        curation.curation_config(),
        curation.executor(),
    )
    yield from _outputs(context, steps.QUALITY_FILTERED, result, curation)


@dg.asset(
    partitions_def=snapshots,
    group_name="curation",
    code_version=CODE_VERSION,
    check_specs=_check_specs(steps.DEDUPLICATED),
    kinds={"parquet"},
    retry_policy=CURATION_RETRY,
    pool=CPU_POOL,
    automation_condition=CURATION_AUTOMATION,
)
def deduplicated(context: dg.AssetExecutionContext, curation: CurationResource, quality_filtered: str):
    """One document per exact-duplicate group and per MinHash near-duplicate cluster; every kept
    document records its cluster id and size, every removed one the document it duplicates. In the
    default ``global`` dedup scope a page already kept by a snapshot registered earlier is removed
    too, naming that document and its version: partitions are deduplicated in registration order
    (the ledger order of their first raw_documents version), and one whose earlier snapshots are not
    deduplicated yet fails, naming them. Its lineage records the cross-snapshot index version."""
    result = steps.deduplicate_version(
        curation.layout(),
        curation.manifest(quality_filtered),
        curation.curation_config(),
        curation.executor(),
    )
    yield from _outputs(context, steps.DEDUPLICATED, result, curation)


CURATION_ASSETS = [raw_documents, language_identified, quality_filtered, deduplicated]
