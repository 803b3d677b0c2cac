"""What the Dagster instance recorded about an asset's versions, read through Dagster's public API.

Dagster writes a materialization's data version and code version as the system tags below (the
names are Dagster's documented tags; the constants that hold them in Dagster are private).
"""

from __future__ import annotations

import dagster as dg

DATA_VERSION_TAG = "dagster/data_version"
CODE_VERSION_TAG = "dagster/code_version"


def latest_materialization(
    instance: dg.DagsterInstance, asset: str, partition: str | None = None
) -> dg.AssetMaterialization | None:
    """The latest materialization of ``asset`` (of ``partition``, when given), or None.

    Cost: one indexed event-log query."""
    records = instance.fetch_materializations(
        dg.AssetRecordsFilter(
            asset_key=dg.AssetKey(asset), asset_partitions=None if partition is None else [partition]
        ),
        limit=1,
    ).records
    return records[0].asset_materialization if records else None


def latest_data_version(instance: dg.DagsterInstance, asset: str) -> str | None:
    """The data version of ``asset``'s latest materialization: the version a run that reads the asset
    now consumes (Dagster records the same value as the run's input data version). None when the
    asset was never materialized or its materialization carries no data version."""
    event = latest_materialization(instance, asset)
    return None if event is None else event.tags.get(DATA_VERSION_TAG)
