"""A real ``dagster dev`` (webserver and daemon) on 127.0.0.1 for browser tests, and its GraphQL API."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from records.layout import REPO_ROOT

STOP_GRACE_S = 30  # dagster dev takes a few seconds to stop its webserver, daemon and code server


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def new_dagster_home(folder: Path) -> Path:
    """A fresh instance folder with the checkout's ``dagster.yaml`` (SQLite, telemetry off)."""
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copy(REPO_ROOT / "dagster_home" / "dagster.yaml", folder / "dagster.yaml")
    return folder


class DagsterDev:
    """``dagster dev -w workspace.yaml`` in its own process group, logging to ``log_path``.

    The group matters: ``dagster dev`` starts a webserver, a daemon and code servers, and only a
    signal to the whole group stops all of them."""

    def __init__(self, *, dagster_home: Path, data_folder: Path, log_path: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        env = {
            **os.environ,
            "DAGSTER_HOME": str(dagster_home),
            "APERTUS_DATA": str(data_folder),
            "DAGSTER_DISABLE_TELEMETRY": "1",
            "RAY_USAGE_STATS_ENABLED": "0",
            "DO_NOT_TRACK": "1",
        }
        env.pop("APERTUS_RAY_ADDRESS", None)  # the test runs the steps in-process, not on a cluster
        log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = open(log_path, "w")  # noqa: SIM115 (closed in stop())
        dagster = Path(sys.executable).with_name("dagster")
        command = [str(dagster)] if dagster.exists() else [sys.executable, "-m", "dagster"]
        self.process = subprocess.Popen(
            [*command, "dev", "-w", "workspace.yaml", "-h", "127.0.0.1", "-p", str(self.port)],
            cwd=REPO_ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def log_tail(self, num_chars: int = 3000) -> str:
        return self.log_path.read_text(errors="replace")[-num_chars:]

    def wait_ready(self, timeout_s: float = 180) -> None:
        """Return once the webserver answers and the code location has loaded; raise with the log if not."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"dagster dev exited with {self.process.returncode}:\n{self.log_tail()}")
            try:
                entries = self.graphql(LOCATIONS_QUERY)["workspaceOrError"]["locationEntries"]
                if entries and all(e["locationOrLoadError"] for e in entries):
                    errors = [
                        e["locationOrLoadError"].get("message")
                        for e in entries
                        if e["locationOrLoadError"]["__typename"] == "PythonError"
                    ]
                    if errors:
                        raise RuntimeError(f"the code location failed to load: {errors}")
                    return
            except (urllib.error.URLError, ConnectionError, TimeoutError, KeyError, TypeError):
                pass
            time.sleep(1)
        raise TimeoutError(f"dagster dev on {self.url} not ready after {timeout_s:.0f} s:\n{self.log_tail()}")

    def graphql(self, query: str, variables: dict | None = None) -> dict:
        """The ``data`` of a GraphQL query to the webserver; raise on GraphQL errors."""
        request = urllib.request.Request(
            f"{self.url}/graphql",
            data=json.dumps({"query": query, "variables": variables or {}}).encode(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            body = json.load(response)
        if body.get("errors"):
            raise RuntimeError(f"GraphQL errors: {body['errors']}")
        return body["data"]

    def runs(self) -> list[dict]:
        """The instance's runs, newest first: id, status, tags."""
        return self.graphql(RUNS_QUERY)["runsOrError"]["results"]

    def run_failure(self, run_id: str) -> str:
        """The error messages a failed run logged, for a test's failure message."""
        events = self.graphql(RUN_EVENTS_QUERY, {"runId": run_id})["logsForRun"].get("events", [])
        return "\n".join(e["message"] for e in events if e.get("level") == "ERROR")[-3000:]

    def stop(self) -> None:
        """Stop every process of the group: SIGTERM, then SIGKILL after a grace period."""
        with contextlib.suppress(ProcessLookupError, subprocess.TimeoutExpired):
            os.killpg(self.process.pid, signal.SIGTERM)
            self.process.wait(timeout=STOP_GRACE_S)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)  # stragglers: code servers, step workers
        self.process.wait(timeout=STOP_GRACE_S)
        self._log.close()


LOCATIONS_QUERY = """
{ workspaceOrError { ... on Workspace { locationEntries { name
    locationOrLoadError { __typename ... on PythonError { message } } } } } }
"""

RUNS_QUERY = """
{ runsOrError(limit: 20) { ... on Runs { results { runId status tags { key value } } } } }
"""

RUN_EVENTS_QUERY = """
query RunEvents($runId: ID!) { logsForRun(runId: $runId, limit: 2000) {
  ... on EventConnection { events { ... on MessageEvent { message level } } } } }
"""
