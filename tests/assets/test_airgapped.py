"""The curation graph runs with no network at all: inside a network namespace without interfaces."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest

NO_NETWORK_PROBE = (
    "import socket\n"
    "try:\n"
    "    socket.create_connection(('1.1.1.1', 443), timeout=2)\n"
    "    print('network reachable')\n"
    "except OSError as error:\n"
    "    print('no network:', error)\n"
)


def _unshare_available() -> str | None:
    if shutil.which("unshare") is None:
        return "the unshare command is missing (Debian package util-linux)"
    probe = subprocess.run(["unshare", "-n", "true"], capture_output=True, text=True, check=False)
    if probe.returncode != 0:
        return (
            f"unshare -n is not permitted here ({probe.stderr.strip()}); run as root or allow user namespaces"
        )
    return None


def test_curation_graph_runs_without_network(small_snapshot, tmp_path):
    reason = _unshare_available()
    if reason:
        pytest.skip(reason)
    folder, _ = small_snapshot
    env = {
        **os.environ,
        "DAGSTER_HOME": str(tmp_path / "dagster_home"),
        "APERTUS_DATA": str(tmp_path / "data"),
    }
    (tmp_path / "dagster_home").mkdir()
    probe = subprocess.run(
        ["unshare", "-n", sys.executable, "-c", NO_NETWORK_PROBE], capture_output=True, text=True, check=True
    )
    assert probe.stdout.startswith("no network"), probe.stdout
    cli = [sys.executable, "-m", "apertus.cli"]
    for command in (
        ["ingest", str(folder), "--snapshot", "offline"],
        ["curate", "--snapshot", "offline", "--tasks", "2"],
    ):
        run = subprocess.run(
            ["unshare", "-n", *cli, *command], capture_output=True, text=True, env=env, check=False
        )
        assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    versions = list((tmp_path / "data" / "datasets" / "deduplicated").iterdir())
    assert len(versions) == 1 and (versions[0] / "manifest.json").exists()


@pytest.mark.slow
@pytest.mark.e2e
def test_the_whole_demo_runs_without_network(tmp_path):
    """`apertus demo` (curation, staging, training, audit, fine-tuning, certification, rollback, erasure
    impact, compliance documents, verify) on a 600-record crawl, inside a namespace without network."""
    reason = _unshare_available()
    if reason:
        pytest.skip(reason)
    (tmp_path / "dagster_home").mkdir()
    env = {
        **os.environ,
        "DAGSTER_HOME": str(tmp_path / "dagster_home"),
        "APERTUS_DATA": str(tmp_path / "data"),
    }
    if shutil.which("ip") is None:
        pytest.skip("the ip command is missing (Debian package iproute2): needed to bring up loopback")
    # An air-gapped host still has its loopback interface (the trainer's process group listens on
    # 127.0.0.1); `unshare -n` starts with it down, so it is brought up, and nothing else exists.
    offline = ["unshare", "-n", "sh", "-c", 'ip link set lo up && exec "$0" "$@"']
    probe = subprocess.run([*offline, sys.executable, "-c", NO_NETWORK_PROBE], capture_output=True, text=True)
    assert probe.stdout.startswith("no network"), probe.stdout + probe.stderr
    command = [*offline, sys.executable, "-m", "apertus.cli", "demo", "--documents", "600",
               "--max-steps", "24", "--tasks", "2"]  # fmt: skip
    run = subprocess.run(command, capture_output=True, text=True, env=env, check=False, timeout=1800)
    output = run.stdout + run.stderr
    assert run.returncode == 0, output[-5000:]
    for expected in ("== trained_model", "$ apertus audit contains", "== compliance", "rollback", "OK:"):
        assert expected in output, expected
