"""Asset checks every dataset-version asset runs after it materializes, and how to report them."""

from collections.abc import Collection

import dagster as dg

from assets.external import report
from assets.external.report import Outcome
from pipelines.steps import StepResult
from records.layout import DataLayout

VERSION_CHECKS = ("version_verifies", "ledger_verifies")


def check_specs(asset: str, *extra: str, blocking: Collection[str] = ()) -> list[dg.AssetCheckSpec]:
    """The version checks plus ``extra`` asset-specific ones, declared on the asset. A check named in
    ``blocking`` that fails fails the step, so the run fails and nothing downstream of it runs."""
    return [
        dg.AssetCheckSpec(name, asset=asset, blocking=name in blocking) for name in (*VERSION_CHECKS, *extra)
    ]


def version_outcomes(result: StepResult, layout: DataLayout) -> dict[str, Outcome]:
    """The files still hash to their manifest, and the ledger (which pinned them) verifies."""
    return report.version_outcomes(result.folder, layout)


def check_results(asset: str, outcomes: dict[str, Outcome]) -> list[dg.AssetCheckResult]:
    return [
        dg.AssetCheckResult(asset_key=asset, check_name=name, passed=bool(passed), metadata=metadata)
        for name, (passed, metadata) in outcomes.items()
    ]


def version_output(result: StepResult, metadata: dict, outcomes: dict[str, Outcome]):
    """Yield a dataset-version asset's output (its data version is the content hash) and its checks."""
    yield dg.Output(
        result.manifest.ref, data_version=dg.DataVersion(result.manifest.version_id), metadata=metadata
    )
    yield from check_results(result.manifest.asset, outcomes)
