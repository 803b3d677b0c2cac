"""Jobs: named selections of assets that the UI, schedules and sensors launch."""

import dagster as dg

from assets.curation import CURATION_ASSETS, snapshots

curate_job = dg.define_asset_job(
    "curate",
    selection=dg.AssetSelection.assets(*CURATION_ASSETS),
    partitions_def=snapshots,
    description="Curate one source snapshot: read, identify languages, filter, deduplicate.",
)
