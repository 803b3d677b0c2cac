"""The inbox sensor: a new snapshot folder becomes a partition and a curation run, once."""

from __future__ import annotations

import dagster as dg

from assets.definitions import defs
from assets.sensors import new_snapshots


def test_new_folder_is_registered_and_requested_once(tmp_path, monkeypatch):
    monkeypatch.setenv("APERTUS_DATA", str(tmp_path / "data"))
    (tmp_path / "data" / "inbox" / "crawl-2026-11").mkdir(parents=True)
    with dg.instance_for_test() as instance:
        context = dg.build_sensor_context(instance=instance, definitions=defs)
        result = new_snapshots(context)
        assert [r.partition_key for r in result.run_requests] == ["crawl-2026-11"]
        assert result.run_requests[0].job_name in (None, "curate")
        (request,) = result.dynamic_partitions_requests
        assert list(request.partition_keys) == ["crawl-2026-11"]
        instance.add_dynamic_partitions("snapshots", list(request.partition_keys))

        again = new_snapshots(dg.build_sensor_context(instance=instance, definitions=defs))
        assert not again.run_requests and again.skip_reason
