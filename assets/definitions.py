"""The Dagster code location: assets, jobs and resources (``workspace.yaml`` loads this module)."""

from __future__ import annotations

import dagster as dg

from assets.curation import CURATION_ASSETS, snapshots
from assets.resources import CurationResource

curate_job = dg.define_asset_job(
    "curate",
    selection=dg.AssetSelection.assets(*CURATION_ASSETS),
    partitions_def=snapshots,
    description="Curate one source snapshot: read, identify languages, filter, deduplicate.",
)

defs = dg.Definitions(
    assets=CURATION_ASSETS,
    jobs=[curate_job],
    resources={"curation": CurationResource()},
)
