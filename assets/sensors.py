"""Sensors: what starts work without a person at a terminal."""

import dagster as dg

from assets.curation import snapshots
from assets.jobs import curate_job
from provenance.layout import DataLayout


@dg.sensor(
    job=curate_job,
    minimum_interval_seconds=30,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Registers every new folder in the data folder's inbox as a snapshot partition and curates it.",
)
def new_snapshots(context: dg.SensorEvaluationContext) -> dg.SensorResult:
    layout = DataLayout.from_env()
    known = set(context.instance.get_dynamic_partitions(snapshots.name))
    new = [name for name in layout.snapshots() if name not in known]
    if not new:
        return dg.SensorResult(skip_reason=f"no new snapshot folders in {layout.inbox}")
    context.log.info(f"new snapshots in {layout.inbox}: {', '.join(new)}")
    return dg.SensorResult(
        run_requests=[dg.RunRequest(partition_key=name, run_key=f"snapshot:{name}") for name in new],
        dynamic_partitions_requests=[snapshots.build_add_request(new)],
    )
