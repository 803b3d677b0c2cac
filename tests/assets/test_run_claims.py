"""Finding 12: `apertus curate` killed with SIGKILL, then run again; SIGTERM stops it mid-run.

Real processes (the CLI in subprocesses), a real Dagster instance configured by the checkout's
dagster_home/dagster.yaml (pool `apertus_cpu`, one slot) in a temporary DAGSTER_HOME, and a small
generated snapshot.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import dagster as dg
import psutil
import pytest

from assets.operations import CPU_POOL
from assets.run_claims import (
    COMMAND_TAG,
    PROCESS_TAG,
    check_pools_before_launch,
    pool_holders,
    release_stale_claims,
    waiting_report,
)
from records.layout import REPO_ROOT, ProcessId

SNAPSHOT = "s1"


@pytest.fixture
def cli_env(tmp_path):
    """Environment for the CLI: a temporary instance and data folder holding one ingested snapshot."""
    from sample.crawl import generate_snapshot

    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(REPO_ROOT / "dagster_home" / "dagster.yaml", home / "dagster.yaml")
    env = {
        **os.environ,
        "DAGSTER_HOME": str(home),
        "APERTUS_DATA": str(tmp_path / "data"),
        "PYTHONPATH": str(REPO_ROOT),
    }
    generate_snapshot(tmp_path / "crawl", seed=11, num_documents=120)
    _cli(env, "ingest", str(tmp_path / "crawl"), "--snapshot", SNAPSHOT).check_returncode()
    return env


def _cli(env, *args, **kwargs):
    return subprocess.run(
        [sys.executable, "-m", "apertus.cli", *args], env=env, capture_output=True, text=True, **kwargs
    )


def _start_curate(env, log: Path) -> subprocess.Popen:
    command = [sys.executable, "-m", "apertus.cli", "curate", "--snapshot", SNAPSHOT, "--tasks", "1"]
    return subprocess.Popen(command, env=env, stdout=log.open("w"), stderr=subprocess.STDOUT)


def _wait_for_slot_holder(
    instance, process: subprocess.Popen, log: Path, timeout: float, other_than=()
) -> str:
    """The id of the run (other than ``other_than``) holding the apertus_cpu slot: ``process`` is in a step."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert process.poll() is None, (
            f"curate exited early ({process.returncode}):\n{log.read_text()[-3000:]}"
        )
        for slot in instance.event_log_storage.get_concurrency_info(CPU_POOL).claimed_slots:
            if slot.run_id not in other_than:
                return slot.run_id
        time.sleep(0.5)
    raise AssertionError(
        f"curate never got the {CPU_POOL} slot in {timeout:.0f} s:\n{log.read_text()[-3000:]}"
    )


def _kill_then_stop(env, tmp_path: Path, instance) -> tuple[str, str]:
    """`apertus curate` killed with SIGKILL in a step; a second one gets the slot (the first one's
    claim released) and is stopped with SIGTERM in a step. Returns both run ids."""
    first = _start_curate(env, tmp_path / "first.log")
    try:
        killed_run = _wait_for_slot_holder(instance, first, tmp_path / "first.log", timeout=120)
    finally:
        # datatrove's manager process would outlive the SIGKILL (nothing shuts it down): end it too.
        children = psutil.Process(first.pid).children(recursive=True)
        first.kill()  # SIGKILL: no finally, no event; its slot stays claimed in the instance
        first.wait()
        for child in children:
            child.kill()
        psutil.wait_procs(children, timeout=10)
    assert {h.run_id for h in pool_holders(instance)} == {killed_run}

    second = _start_curate(env, tmp_path / "second.log")
    try:
        run_id = _wait_for_slot_holder(
            instance, second, tmp_path / "second.log", timeout=120, other_than=(killed_run,)
        )
        second.send_signal(signal.SIGTERM)
        stopped_at = time.monotonic()
        returncode = second.wait(timeout=30)
        seconds_to_stop = time.monotonic() - stopped_at
    finally:
        second.kill()
        second.wait()
    output = (tmp_path / "second.log").read_text()
    assert f"freed the claims of run {killed_run}" in output
    assert returncode == 128 + signal.SIGTERM, output[-3000:]
    assert seconds_to_stop < 15, seconds_to_stop
    print(f"stopped {seconds_to_stop:.1f} s after SIGTERM")
    assert "stopped by SIGTERM" in output
    return killed_run, run_id


def test_a_killed_curate_does_not_block_the_next_and_sigterm_stops_it(cli_env, tmp_path):
    with dg.DagsterInstance.from_config(cli_env["DAGSTER_HOME"]) as instance:
        killed_run, stopped_run = _kill_then_stop(cli_env, tmp_path, instance)
        # Both runs are over in the instance, and nothing holds a slot: the next launch runs at once.
        assert instance.get_run_by_id(killed_run).status == dg.DagsterRunStatus.FAILURE
        assert instance.get_run_by_id(stopped_run).status == dg.DagsterRunStatus.FAILURE
        assert pool_holders(instance) == []


@pytest.mark.slow
def test_after_a_kill_and_a_stop_curate_runs_to_the_end(cli_env, tmp_path):
    """The whole story: killed, stopped, then run again to success, with no staging folder left."""
    with dg.DagsterInstance.from_config(cli_env["DAGSTER_HOME"]) as instance:
        _kill_then_stop(cli_env, tmp_path, instance)
        finished = _cli(cli_env, "curate", "--snapshot", SNAPSHOT, "--tasks", "1", timeout=600)
        assert finished.returncode == 0, finished.stderr[-3000:]
        assert pool_holders(instance) == []
        staging = Path(cli_env["APERTUS_DATA"]) / "work" / "staging"
        assert list(staging.glob("*/*")) == []  # the killed and stopped steps' folders are gone


def test_a_holder_this_host_cannot_judge_is_named_with_the_command_that_frees_it(cli_env):
    """A run launched elsewhere (no process tag) holding the slot: curate stops at once, naming the run
    and `apertus claims --release`; that command frees it."""
    with dg.DagsterInstance.from_config(cli_env["DAGSTER_HOME"]) as instance:
        run = instance.create_run_for_job(
            dg.GraphDefinition("ui_run").to_job(), status=dg.DagsterRunStatus.STARTED
        )
        instance.event_log_storage.initialize_concurrency_limit_to_default(CPU_POOL)
        assert instance.event_log_storage.claim_concurrency_slot(CPU_POOL, run.run_id, "step").is_claimed
        assert release_stale_claims(instance, print)[0].alive is None  # not judged dead: kept

        refused = _cli(cli_env, "curate", "--snapshot", SNAPSHOT, timeout=120)
        assert refused.returncode == 2, refused.stderr[-2000:]
        assert run.run_id in refused.stderr and f"apertus claims --release {run.run_id}" in refused.stderr

        listed = _cli(cli_env, "claims", timeout=120)
        assert run.run_id in listed.stdout and "unknown" in listed.stdout
        released = _cli(cli_env, "claims", "--release", run.run_id, timeout=120)
        assert released.returncode == 0, released.stderr
        assert pool_holders(instance) == []
        assert instance.get_run_by_id(run.run_id).status == dg.DagsterRunStatus.FAILURE


@pytest.fixture
def checkout_instance(tmp_path):
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(REPO_ROOT / "dagster_home" / "dagster.yaml", home / "dagster.yaml")
    with dg.DagsterInstance.from_config(str(home)) as instance:
        instance.event_log_storage.initialize_concurrency_limit_to_default(CPU_POOL)
        yield instance


def _cli_run(instance, owner: ProcessId | None, *, claim: bool = True) -> str:
    """A STARTED run as `apertus curate` in process ``owner`` would leave it, holding the slot."""
    tags = {PROCESS_TAG: str(owner), COMMAND_TAG: "curate"} if owner else {}
    job = dg.GraphDefinition("curate").to_job()
    run = instance.create_run_for_job(job, status=dg.DagsterRunStatus.STARTED, tags=tags)
    if claim:
        assert instance.event_log_storage.claim_concurrency_slot(
            CPU_POOL, run.run_id, "raw_documents"
        ).is_claimed
    return run.run_id


def _gone_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def test_live_holders_are_waited_for_and_dead_ones_released_without_a_slot_too(checkout_instance):
    instance = checkout_instance
    here = ProcessId.current()
    live = _cli_run(instance, here)
    dead_without_slot = _cli_run(instance, ProcessId(here.host, _gone_pid(), 0), claim=False)
    lines = []
    remaining = check_pools_before_launch(instance, lines.append)
    assert [h.run_id for h in remaining] == [live] and remaining[0].alive is True
    assert instance.get_run_by_id(live).status == dg.DagsterRunStatus.STARTED
    assert instance.get_run_by_id(dead_without_slot).status == dg.DagsterRunStatus.FAILURE
    assert any(f"waiting for run {live}" in line for line in lines)

    # A run of ours waiting for the slot is told who holds it; once the holder's process is gone
    # (here: its tag names a dead one), the next report frees the slot.
    waiting = instance.create_run_for_job(
        dg.GraphDefinition("curate").to_job(), status=dg.DagsterRunStatus.STARTED
    )
    assert not instance.event_log_storage.claim_concurrency_slot(
        CPU_POOL, waiting.run_id, "raw_documents"
    ).is_claimed
    lines.clear()
    waiting_report(instance, waiting.run_id, lines.append)
    assert any(f"held by run {live}" in line for line in lines), lines
    instance.add_run_tags(live, {PROCESS_TAG: str(ProcessId(here.host, _gone_pid(), 0))})
    waiting_report(instance, waiting.run_id, lines.append)
    assert any(f"freed the claims of run {live}" in line for line in lines), lines
    assert instance.get_run_by_id(live).status == dg.DagsterRunStatus.FAILURE
    assert {
        slot.run_id for slot in instance.event_log_storage.get_concurrency_info(CPU_POOL).claimed_slots
    } <= {waiting.run_id}


def test_sigint_stops_a_run_waiting_for_a_slot_in_process(checkout_instance):
    """Dagster only records a signal while a step waits for a slot; `stoppable` raises it (exit 130).
    A watchdog frees the slot after 60 s so that, should the signal be ignored, the test ends."""
    import threading

    from apertus.stopping import stoppable
    from assets.run_claims import take_signal_from_dagster

    instance = checkout_instance
    holder = _cli_run(instance, ProcessId.current())  # alive: a slot rightly held

    @dg.asset(pool=CPU_POOL)
    def blocked() -> int:
        return 1

    def interrupt() -> None:
        time.sleep(3)
        os.kill(os.getpid(), signal.SIGINT)
        if not finished.wait(60):
            instance.event_log_storage.free_concurrency_slots_for_run(holder)

    finished = threading.Event()
    threading.Thread(target=interrupt, daemon=True).start()
    started = time.monotonic()
    with stoppable(take_signal_from_dagster) as stop:
        try:
            result = dg.materialize([blocked], instance=instance, tags={PROCESS_TAG: "test"})
        except KeyboardInterrupt as stopped:
            result = stopped
    finished.set()
    assert isinstance(result, KeyboardInterrupt), "the run ignored SIGINT and ran once the slot was freed"
    assert stop.signo == signal.SIGINT and stop.exit_code == 130
    assert time.monotonic() - started < 15
    (run,) = instance.get_runs(filters=dg.RunsFilter(tags={PROCESS_TAG: "test"}))
    assert run.status == dg.DagsterRunStatus.FAILURE
    assert {h.run_id for h in pool_holders(instance)} == {holder}  # its pending claim is gone
