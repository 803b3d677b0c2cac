"""The scale path: the same steps on a real local Ray cluster write the same dataset versions."""

from __future__ import annotations

import shutil

import pytest

from pipelines.config import CurationConfig
from pipelines.executor import ExecutorConfig
from pipelines.steps import curate_snapshot
from records.layout import DataLayout


# make test-all: test_ray_cluster.py asserts the same on a two-node cluster (a superset); make test
# keeps the Ray executor through test_workers.py's runs on a local Ray.
@pytest.mark.slow
@pytest.mark.distributed
def test_ray_and_local_runs_give_the_same_versions(small_snapshot, tmp_path):
    ray = pytest.importorskip("ray")
    folder, _ = small_snapshot
    config = CurationConfig()
    versions = {}
    for backend, executor in [
        ("local", ExecutorConfig(tasks=2, workers=1, ray_address=None)),
        ("ray", ExecutorConfig(tasks=2, workers=2, ray_address="local")),
    ]:
        layout = DataLayout(tmp_path / backend)
        shutil.copytree(folder, layout.snapshot_dir("small"))
        if backend == "ray":
            ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
        try:
            results = curate_snapshot(layout, "small", config, executor)
        finally:
            if backend == "ray":
                ray.shutdown()
        versions[backend] = [r.manifest.ref for r in results]
    assert versions["ray"] == versions["local"]
