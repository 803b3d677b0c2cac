"""Asset checks every dataset-version asset runs after it materializes, and how to report them."""

from collections.abc import Collection

import dagster as dg

from pipelines.steps import StepResult
from records.layout import DataLayout
from records.ledger import Ledger
from records.manifest import verify_version

VERSION_CHECKS = ("version_verifies", "ledger_verifies")

# What a check yields: (passed, metadata shown beside the result in the UI).
Outcome = tuple[bool, dict]


def check_specs(asset: str, *extra: str, blocking: Collection[str] = ()) -> list[dg.AssetCheckSpec]:
    """The version checks plus ``extra`` asset-specific ones, declared on the asset. A check named in
    ``blocking`` that fails fails the step, so the run fails and nothing downstream of it runs."""
    return [
        dg.AssetCheckSpec(name, asset=asset, blocking=name in blocking) for name in (*VERSION_CHECKS, *extra)
    ]


def version_outcomes(result: StepResult, layout: DataLayout) -> dict[str, Outcome]:
    """The files still hash to their manifest, and the ledger (which pinned them) verifies."""
    problems = verify_version(result.folder)
    ledger_problems = Ledger(layout.ledger).verify()
    return {
        "version_verifies": (not problems, {"problems": problems[:20]}),
        "ledger_verifies": (not ledger_problems, {"problems": ledger_problems[:20]}),
    }


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
