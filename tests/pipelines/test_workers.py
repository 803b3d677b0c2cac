"""How many tasks a step runs at once: the Ray cluster's CPUs on Ray, the host's cores locally, and
an explicit ``workers`` always. The Ray tests start a real local Ray with more logical CPUs than this
host has cores, so a default that followed the host would show."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

from pipelines.executor import LOCAL_MAX_WORKERS, ExecutorConfig, run_pipeline

RAY_CPUS = 5  # more than the test host's cores (2) and than LOCAL_MAX_WORKERS


def host_cores() -> int:
    return len(os.sched_getaffinity(0))


def timed_task(out: Path, seconds: float):
    """A pipeline of one callable that records when its task ran (cloudpickled by value for Ray)."""

    def run(data, rank: int = 0, world_size: int = 1):
        start = time.time()
        time.sleep(seconds)
        (out / f"{rank}.json").write_text(json.dumps([start, time.time()]))
        yield from data or ()

    return [run]


def most_at_once(out: Path) -> int:
    spans = [json.loads(p.read_text()) for p in out.glob("*.json")]
    return max(sum(1 for s, e in spans if s <= start < e) for start, _ in spans)


def test_local_default_is_the_host_cores_up_to_the_local_bound():
    chosen = ExecutorConfig(ray_address=None).resolve_workers()
    assert chosen.count == max(1, min(LOCAL_MAX_WORKERS, host_cores()))
    assert f"{host_cores()} cores on this host" in chosen.reason


def test_explicit_workers_win_and_bad_values_are_refused():
    assert ExecutorConfig(workers=7, ray_address=None).resolve_workers().count == 7
    # Explicit wins on Ray too, before any cluster is asked (no Ray started here).
    assert ExecutorConfig(workers=3, ray_address="ray://nowhere:1").resolve_workers().count == 3
    with pytest.raises(ValueError, match="workers"):
        ExecutorConfig(workers=0)
    with pytest.raises(ValueError, match="cpus_per_task"):
        ExecutorConfig(cpus_per_task=0)


def test_local_run_prints_the_workers_it_chose(tmp_path, capfd):
    out = tmp_path / "out"
    out.mkdir()
    run_pipeline(
        timed_task(out, 0), logging_dir=tmp_path / "logs", config=ExecutorConfig(tasks=1, ray_address=None)
    )
    expected = max(1, min(LOCAL_MAX_WORKERS, host_cores()))
    err = capfd.readouterr().err
    assert f"logs: 1 tasks, 1 at once on local ({expected} workers: {host_cores()} cores" in err
    assert (out / "0.json").exists()


@pytest.fixture(scope="module")
def ray_cluster():
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=RAY_CPUS, include_dashboard=False, log_to_driver=False, configure_logging=False)
    try:
        yield ray
    finally:
        ray.shutdown()


@pytest.mark.distributed
def test_ray_default_follows_the_cluster_cpus_not_the_host(ray_cluster):
    assert ray_cluster.cluster_resources()["CPU"] == RAY_CPUS
    chosen = ExecutorConfig(ray_address="local").resolve_workers()
    assert chosen.count == RAY_CPUS != min(LOCAL_MAX_WORKERS, host_cores())
    assert f"the Ray cluster has {RAY_CPUS} CPUs" in chosen.reason
    # Tasks that reserve 2 CPUs each: 5 // 2 of them fit at once.
    assert ExecutorConfig(ray_address="local", cpus_per_task=2).resolve_workers().count == RAY_CPUS // 2
    assert ExecutorConfig(ray_address="local", workers=2).resolve_workers().count == 2


@pytest.mark.distributed
def test_ray_run_uses_the_default_and_an_explicit_value_caps_it(ray_cluster, tmp_path, capfd):
    default_out, one_out = tmp_path / "default", tmp_path / "one"
    default_out.mkdir()
    one_out.mkdir()
    run_pipeline(
        timed_task(default_out, 0),
        logging_dir=tmp_path / "default-logs",
        config=ExecutorConfig(tasks=RAY_CPUS + 1, ray_address="local"),
    )
    err = capfd.readouterr().err
    assert f"{RAY_CPUS + 1} tasks, {RAY_CPUS} at once on ray ({RAY_CPUS} workers: the Ray cluster" in err
    assert len(list(default_out.glob("*.json"))) == RAY_CPUS + 1

    # workers=1 on a 5-CPU cluster: the tasks really run one after another.
    run_pipeline(
        timed_task(one_out, 0.5),
        logging_dir=tmp_path / "one-logs",
        config=ExecutorConfig(tasks=3, workers=1, ray_address="local"),
    )
    assert "3 tasks, 1 at once on ray (1 workers: set explicitly)" in capfd.readouterr().err
    assert len(list(one_out.glob("*.json"))) == 3
    assert most_at_once(one_out) == 1


def test_no_version_records_how_many_tasks_ran_at_once(curated):
    # workers (and cpus_per_task) must stay out of every lineage: they never change the output, so
    # they must never change a version id. tasks, which shapes the shards, is recorded.
    _, results, _ = curated
    for result in results:
        recorded = json.dumps(result.manifest.config)
        assert "workers" not in recorded and "cpus_per_task" not in recorded, result.manifest.ref
    assert results[0].manifest.config["tasks"] == 2
