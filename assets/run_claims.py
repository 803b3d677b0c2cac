"""Concurrency claims of runs that are gone: found, released, or named with the command that frees them.

A step of the pools ``apertus_cpu`` and ``apertus_train`` (assets/operations.py) holds a slot in the
instance's event log storage from the moment it is assigned one until its run frees it. A run whose
process was killed (``kill -9``, the machine lost power) frees nothing: without run monitoring (a
workstation) its slot stays held and every later step of the pool waits for it forever.

Runs launched by the ``apertus`` CLI carry their process in the tag ``apertus/process`` (host, pid,
start time; ``records.layout.ProcessId``), so a later command can tell a live holder from a dead
one. ``release_stale_claims`` frees the claims of runs that are finished, deleted, or whose process
on this host is gone (and marks a run still ``STARTED`` failed); a holder it cannot judge (launched
from the UI or the daemon, or on another host) is named with the command that frees it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import dagster as dg

from assets.operations import CPU_POOL, TRAIN_POOL
from records.layout import ProcessId

PROCESS_TAG = "apertus/process"
COMMAND_TAG = "apertus/command"
POOLS = (CPU_POOL, TRAIN_POOL)


def release_command(run_id: str) -> str:
    """The command an operator runs to free a run's claims once they know its process is gone."""
    return f"apertus claims --release {run_id}"


@dataclass(frozen=True)
class Holder:
    """A run holding (``claimed``) or waiting for (``pending``) slots of a pool, and whether it lives."""

    run_id: str
    pools: tuple[str, ...]
    status: str  # the run's status in the instance ("DELETED" when the run is gone)
    alive: bool | None  # None: this host cannot tell (not launched by the CLI, or on another host)
    launched_by: str  # "apertus curate (pid 123 on host)", or "the UI or the daemon"

    def describe(self) -> str:
        return f"run {self.run_id} ({self.launched_by}, {self.status}) in pool {', '.join(self.pools)}"


class StaleClaimError(ValueError):
    """A run that this host cannot judge holds a slot the command needs."""


def process_tags() -> dict[str, str]:
    """The tag a CLI launch carries so that later commands can tell whether its process lives."""
    return {PROCESS_TAG: str(ProcessId.current())}


def pool_holders(instance: dg.DagsterInstance, pools=POOLS, *, claimed_only: bool = False) -> list[Holder]:
    """Every run holding or waiting for a slot in ``pools``, with its liveness.

    Cost: one query per pool and one run lookup per holding run (a handful).
    """
    by_run: dict[str, list[str]] = {}
    for pool in pools:
        info = instance.event_log_storage.get_concurrency_info(pool)
        run_ids = {slot.run_id for slot in info.claimed_slots}
        if not claimed_only:
            run_ids |= {step.run_id for step in info.pending_steps}
        for run_id in sorted(run_ids):
            by_run.setdefault(run_id, []).append(pool)
    return [_holder(instance, run_id, tuple(pools)) for run_id, pools in by_run.items()]


def _holder(instance: dg.DagsterInstance, run_id: str, pools: tuple[str, ...]) -> Holder:
    run = instance.get_run_by_id(run_id)
    if run is None:
        return Holder(run_id, pools, "DELETED", False, "a deleted run")
    status = run.status.value
    owner = ProcessId.parse(run.tags.get(PROCESS_TAG, ""))
    if owner is None:
        launched_by = "launched from the UI or the daemon"
        alive = None
    else:
        launched_by = f"apertus {run.tags.get(COMMAND_TAG, '?')}, pid {owner.pid} on {owner.host}"
        alive = owner.alive()
    if run.is_finished:
        alive = False  # whatever its process does now, this run is over
    return Holder(run_id, pools, status, alive, launched_by)


def release_run(instance: dg.DagsterInstance, run_id: str, reason: str) -> None:
    """Free every slot and pending claim of ``run_id``; a run not yet finished is marked failed first
    (its process is gone: nothing else will ever say so)."""
    run = instance.get_run_by_id(run_id)
    if run is not None and not run.is_finished:
        instance.report_run_failed(run, message=f"Marked failed by apertus: {reason}")
    instance.event_log_storage.free_concurrency_slots_for_run(run_id)


def release_stale_claims(
    instance: dg.DagsterInstance, log: Callable[[str], None], *, own_run_id: str | None = None
) -> list[Holder]:
    """Release the claims of every dead holder in the pools; return the live and unknown holders.

    Cost: ``pool_holders`` plus one release per dead holder.
    """
    remaining = []
    for holder in pool_holders(instance):
        if holder.run_id == own_run_id:
            continue
        if holder.alive is False:
            release_run(instance, holder.run_id, f"its process is gone ({holder.launched_by})")
            log(f"apertus: freed the claims of {holder.describe()}: its process is gone")
        else:
            remaining.append(holder)
    return remaining


def fail_dead_runs(instance: dg.DagsterInstance, log: Callable[[str], None]) -> list[str]:
    """Mark failed every run still ``STARTED`` whose CLI process on this host is gone (it holds no
    slot, else ``release_stale_claims`` did it): the UI would show it running for ever.

    Cost: one query for the started runs (at most ``limit``) and a ``/proc`` read for each.
    """
    failed = []
    for run in instance.get_runs(filters=dg.RunsFilter(statuses=[dg.DagsterRunStatus.STARTED]), limit=1000):
        owner = ProcessId.parse(run.tags.get(PROCESS_TAG, ""))
        if owner is not None and owner.alive() is False:
            release_run(instance, run.run_id, f"its process is gone (pid {owner.pid} on {owner.host})")
            log(f"apertus: marked run {run.run_id} failed: its process (pid {owner.pid}) is gone")
            failed.append(run.run_id)
    return failed


def unknown_holder_message(holder: Holder) -> str:
    return (
        f"{holder.describe()} holds a slot this command needs, and this host cannot tell whether its "
        f"process still runs. Wait for it to finish (see it in the UI), or, if its process is gone, "
        f"free its slots with `{release_command(holder.run_id)}`"
    )


def check_pools_before_launch(instance: dg.DagsterInstance, log: Callable[[str], None]) -> list[Holder]:
    """Before a CLI launch: release dead holders' claims and mark the CLI's dead runs failed; stop
    (``StaleClaimError``) on a holder this host cannot judge; return the live holders (the launch
    will wait for them, saying so)."""
    remaining = release_stale_claims(instance, log)
    fail_dead_runs(instance, log)
    unknown = [h for h in remaining if h.alive is None]
    if unknown:
        raise StaleClaimError("; ".join(unknown_holder_message(h) for h in unknown))
    for holder in remaining:
        log(f"apertus: waiting for {holder.describe()} to free its slot")
    return remaining


def current_run_id(instance: dg.DagsterInstance) -> str | None:
    """The run this process has launched and not finished (the CLI runs one at a time)."""
    runs = instance.get_runs(
        filters=dg.RunsFilter(tags=process_tags(), statuses=[dg.DagsterRunStatus.STARTED]), limit=1
    )
    return runs[0].run_id if runs else None


def waiting_report(instance: dg.DagsterInstance, run_id: str, log: Callable[[str], None]) -> None:
    """While ``run_id`` waits for a slot: free the claims of holders that died meanwhile, and say who
    holds the slot. Cost: ``pool_holders``, twice when the run waits."""
    pools = [
        pool
        for pool in POOLS
        if any(
            step.run_id == run_id and step.assigned_timestamp is None
            for step in instance.event_log_storage.get_concurrency_info(pool).pending_steps
        )
    ]
    if not pools:
        return
    holders = [h for h in release_stale_claims(instance, log, own_run_id=run_id) if set(h.pools) & set(pools)]
    claimed = {h.run_id for h in pool_holders(instance, pools, claimed_only=True)}
    for holder in holders:
        if holder.run_id not in claimed:
            continue
        if holder.alive is None:
            log(f"apertus: waiting for a slot: {unknown_holder_message(holder)}")
        else:
            log(f"apertus: waiting for a slot in {', '.join(pools)}: held by {holder.describe()}")


def release_own_runs(instance: dg.DagsterInstance, reason: str) -> list[str]:
    """After this process stopped on a signal: mark its unfinished runs failed and free every claim
    they still hold (Dagster frees them as it unwinds; this makes sure). Returns their run ids."""
    released = []
    holding = {holder.run_id for holder in pool_holders(instance)}
    for run in instance.get_runs(filters=dg.RunsFilter(tags=process_tags())):
        if not run.is_finished or run.run_id in holding:
            release_run(instance, run.run_id, reason)
            released.append(run.run_id)
    return released


def take_signal_from_dagster() -> bool:
    """Whether Dagster's in-process execution holds SIGINT/SIGTERM without acting on it: it recorded
    the signal between steps, or its main thread waits (for a slot, or before a step's retry),
    where nothing checks for one (apertus/stopping.py). When so, Dagster's record is cleared: the
    caller raises the stop itself, and Dagster must not raise it again while it unwinds."""
    import sys
    import threading

    # Dagster has no public API for the interrupt its in-process execution captured; this private
    # one is the only reader (pinned dagster version, requirements.lock; tests/assets/test_run_claims.py).
    from dagster._utils.interrupts import pop_captured_interrupt

    if pop_captured_interrupt():
        return True
    frame = sys._current_frames().get(threading.main_thread().ident)
    while frame is not None:
        if frame.f_code.co_name == "sleep_til_ready":
            return True
        frame = frame.f_back
    return False
