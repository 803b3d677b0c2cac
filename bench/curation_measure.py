"""What the curation benchmark measures besides wall time: peak memory per process and the time the
main process spends inside datatrove's executor (``LocalPipelineExecutor.run``), so that the rest,
the share outside datatrove blocks, is what our orchestration (Dagster, bookkeeping) adds."""

from __future__ import annotations

import functools
import resource
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field

import psutil

SAMPLE_SECONDS = 0.2


@dataclass
class Peaks:
    """Largest resident set sizes seen, in bytes: this process, any one child process (a datatrove
    worker, the forkserver), and this process plus all its descendants together; and the CPU
    seconds (user + system) all of them used during the block: per process, its last sample minus
    its first (0 for a process born during the block), so a process loses at most its last
    ``interval`` of CPU time."""

    main: int = 0
    child: int = 0
    together: int = 0
    children_seen: set[int] = field(default_factory=set)
    cpu_first: dict[int, float] = field(default_factory=dict)
    cpu_last: dict[int, float] = field(default_factory=dict)

    @property
    def cpu_seconds(self) -> float:
        return sum(last - self.cpu_first.get(pid, 0.0) for pid, last in self.cpu_last.items())

    def as_dict(self) -> dict:
        return {
            "main_mib": round(self.main / 2**20, 1),
            "child_mib": round(self.child / 2**20, 1),
            "together_mib": round(self.together / 2**20, 1),
            "child_processes": len(self.children_seen),
            "cpu_seconds": round(self.cpu_seconds, 2),
        }


@contextmanager
def sampled_rss(interval: float = SAMPLE_SECONDS):
    """Yield a ``Peaks`` that a thread fills every ``interval`` seconds until the block ends, by
    reading /proc through psutil: a peak shorter than the interval can be missed (a worker's whole
    life is seconds to minutes here, so its plateau is seen). Cost: one /proc read per process per
    sample."""
    me = psutil.Process()
    peaks = Peaks()
    stop = threading.Event()

    def cpu(process: psutil.Process) -> float:
        times = process.cpu_times()  # its own threads; its children are sampled themselves
        return times.user + times.system

    # Processes alive before the block (this one, a forkserver kept from an earlier run) count
    # from here; one born during the block counts from 0.
    peaks.cpu_first[me.pid] = cpu(me)
    for child in me.children(recursive=True):
        try:
            peaks.cpu_first[child.pid] = cpu(child)
        except psutil.Error:
            continue

    def sample() -> None:
        while True:
            main = me.memory_info().rss
            peaks.cpu_last[me.pid] = cpu(me)
            total, largest = main, 0
            for child in me.children(recursive=True):
                try:
                    rss = child.memory_info().rss
                    peaks.cpu_last[child.pid] = cpu(child)
                except psutil.Error:  # it ended between the listing and the read
                    continue
                peaks.children_seen.add(child.pid)
                total += rss
                largest = max(largest, rss)
            peaks.main, peaks.child = max(peaks.main, main), max(peaks.child, largest)
            peaks.together = max(peaks.together, total)
            if stop.wait(interval):
                return

    thread = threading.Thread(target=sample, name="rss-sampler", daemon=True)
    thread.start()
    try:
        yield peaks
    finally:
        stop.set()
        thread.join()
        peaks.cpu_last[me.pid] = cpu(me)


def lifetime_maxrss_mib() -> dict:
    """getrusage's peaks since start: this process, and the largest of its reaped children (Linux
    reports KiB). Lifetime values: they cover every repeat so far, not one run."""
    return {
        "self_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "children_mib": round(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024, 1),
    }


class BlockClock:
    """Seconds the main process spent inside ``LocalPipelineExecutor.run`` (every datatrove run of
    both chains: ours goes through ``pipelines.executor.LocalExecutor``, a subclass that does not
    override ``run``), and how many runs."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self.runs = 0

    def reset(self) -> None:
        self.seconds, self.runs = 0.0, 0


@contextmanager
def clocked_blocks():
    """Yield a ``BlockClock`` while ``LocalPipelineExecutor.run`` is wrapped by a timer; restore after."""
    from datatrove.executor.local import LocalPipelineExecutor

    clock = BlockClock()
    original = LocalPipelineExecutor.run

    @functools.wraps(original)
    def run(self, *args, **kwargs):
        start = time.perf_counter()
        try:
            return original(self, *args, **kwargs)
        finally:
            clock.seconds += time.perf_counter() - start
            clock.runs += 1

    LocalPipelineExecutor.run = run
    try:
        yield clock
    finally:
        LocalPipelineExecutor.run = original
