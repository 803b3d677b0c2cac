"""Curation on a real multi-node Ray cluster: a head node and a second node started with ``ray start``
on this host (each its own processes, CPUs and temporary folder, as on two machines), the steps
pointed at it by ``APERTUS_RAY_ADDRESS``. Tasks run on both nodes, and the versions are the ones
the in-process run seals."""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from pipelines.config import CurationConfig
from pipelines.executor import RAY_ADDRESS_ENV, TASK_PLACE, ExecutorConfig
from pipelines.steps import curate_snapshot
from records.layout import REPO_ROOT, DataLayout

TASKS = 4
CPUS_PER_NODE = 2  # 4 tasks at once need both nodes
START_TIMEOUT_S = 120


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def node_ports() -> list[str]:
    # Two nodes on one host: every port a node opens must differ between them (and from other
    # clusters on the host), so none is left to its fixed default.
    return [
        f"--{name}={free_port()}"
        for name in (
            "node-manager-port",
            "object-manager-port",
            "dashboard-agent-listen-port",
            "dashboard-agent-grpc-port",
            "runtime-env-agent-port",
            "metrics-export-port",
        )
    ]


def start_node(args: list[str], log: Path) -> subprocess.Popen:
    """``ray start ... --block`` in its own process group: the test ends exactly the processes it
    started (the node's GCS, raylet and workers), never another cluster on the host (no ``ray stop``).
    The environment (``os.environ``: the cluster's token, set by the fixture) reaches the node's
    workers, as on a real node."""
    ray_cli = Path(sys.executable).with_name("ray")
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "RAY_USAGE_STATS_ENABLED": "0"}
    return subprocess.Popen(
        [str(ray_cli), "start", "--block", "--disable-usage-stats",
         "--node-ip-address=127.0.0.1", f"--num-cpus={CPUS_PER_NODE}",
         f"--object-store-memory={100 * 1024 * 1024}", *node_ports(), *args],
        env=env, stdout=log.open("w"), stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip


def stop_node(process: subprocess.Popen) -> None:
    # SIGTERM first (the node drains, up to 30 s, then ends its processes); a test node need not drain.
    for sig, wait in ((signal.SIGTERM, 5), (signal.SIGKILL, 10)):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            return
        try:
            process.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue


def wait_for_port(port: int, process: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"ray start exited with {process.returncode}:\n{log.read_text()[-3000:]}")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(1)
    pytest.fail(
        f"the Ray head did not listen on {port} within {START_TIMEOUT_S} s:\n{log.read_text()[-3000:]}"
    )


@pytest.fixture
def ray_cluster(tmp_path, monkeypatch):
    """A two-node Ray cluster on this host, with token authentication (a token of its own, in the
    environment of both nodes and of the driver: ``os.environ``); yields its address."""
    pytest.importorskip("ray")
    monkeypatch.setenv("RAY_AUTH_MODE", "token")
    monkeypatch.setenv("RAY_AUTH_TOKEN", secrets.token_hex(32))
    port = free_port()
    # Short temporary folders: Ray's socket paths must fit in 107 bytes.
    temp = [Path(tempfile.mkdtemp(prefix="apray", dir="/tmp")) for _ in range(2)]
    logs = [tmp_path / "head.log", tmp_path / "worker.log"]
    nodes = []
    try:
        head = ["--head", "--include-dashboard=false", f"--port={port}", f"--temp-dir={temp[0]}"]
        nodes.append(start_node([*head, f"--ray-client-server-port={free_port()}"], logs[0]))
        wait_for_port(port, nodes[0], logs[0])
        address = f"127.0.0.1:{port}"
        nodes.append(start_node([f"--address={address}", f"--temp-dir={temp[1]}"], logs[1]))
        yield address
    finally:
        for node in reversed(nodes):
            stop_node(node)
        for folder in temp:
            shutil.rmtree(folder, ignore_errors=True)


def drive(address: str, data: str, out: str) -> None:
    """The Dagster host's part, in its own process (as there: Ray's settings are read when it is
    first imported): wait for both nodes, curate with ``APERTUS_RAY_ADDRESS`` set, and write the
    version refs and the cluster's node ids to ``out``."""
    import json

    import ray

    ray.init(address=address, include_dashboard=False, log_to_driver=False, configure_logging=False)
    deadline = time.monotonic() + START_TIMEOUT_S
    while len(alive := [n["NodeID"] for n in ray.nodes() if n["Alive"]]) < 2:
        assert time.monotonic() < deadline, "the second node did not join"
        time.sleep(1)
    assert ray.cluster_resources()["CPU"] == 2 * CPUS_PER_NODE
    os.environ[RAY_ADDRESS_ENV] = address
    executor = ExecutorConfig(tasks=TASKS)  # the address from the environment, workers from Ray
    assert executor.ray_address == address
    results = curate_snapshot(DataLayout(Path(data)), "small", CurationConfig(), executor)
    Path(out).write_text(json.dumps({"versions": [r.manifest.ref for r in results], "nodes": alive}))


def task_nodes(layout: DataLayout) -> dict[str, set[str]]:
    """Per step's log folder, the Ray node ids its tasks' logs name (executor.TASK_PLACE)."""
    marker = TASK_PLACE.split("{node}")[0].split("}")[-1]  # " ray node "
    found: dict[str, set[str]] = {}
    for log in (layout.work / "logs").glob("*/logs/task_*.log"):
        for line in log.read_text().splitlines():
            if marker in line:
                found.setdefault(log.parents[1].name, set()).add(line.rsplit(marker, 1)[1].strip())
    return found


@pytest.mark.distributed
@pytest.mark.slow  # make test-all, not make test
def test_curation_on_a_two_node_ray_cluster_uses_both_nodes_and_gives_the_local_versions(
    ray_cluster, tmp_path
):
    import json

    from sample.crawl import generate_snapshot

    snapshot = tmp_path / "snapshot"
    generate_snapshot(snapshot, seed=13, num_documents=120)
    layouts = {backend: DataLayout(tmp_path / backend) for backend in ("local", "ray")}
    for layout in layouts.values():
        shutil.copytree(snapshot, layout.snapshot_dir("small"))
    local = curate_snapshot(
        layouts["local"], "small", CurationConfig(), ExecutorConfig(tasks=TASKS, workers=1, ray_address=None)
    )
    out = tmp_path / "ray.json"
    code = "import sys; from tests.pipelines.test_ray_cluster import drive; drive(*sys.argv[1:])"
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    driver = subprocess.run(
        [sys.executable, "-c", code, ray_cluster, str(layouts["ray"].root), str(out)],
        env=env, cwd=REPO_ROOT, timeout=900, capture_output=True, text=True,
    )  # fmt: skip
    assert driver.returncode == 0, driver.stderr[-4000:]
    ray_run = json.loads(out.read_text())
    assert ray_run["versions"] == [r.manifest.ref for r in local]

    spread = task_nodes(layouts["ray"])
    assert len(spread) >= 3  # ingest, language identification, quality filtering
    assert set().union(*spread.values()) == set(ray_run["nodes"]), spread  # tasks ran on both nodes
    assert set().union(*task_nodes(layouts["local"]).values()) == {"-"}  # no Ray there
