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
    worker, the forkserver), and this process plus all its descendants together."""

    main: int = 0
    child: int = 0
    together: int = 0
    children_seen: set[int] = field(default_factory=set)

    def as_dict(self) -> dict:
        return {
            "main_mib": round(self.main / 2**20, 1),
            "child_mib": round(self.child / 2**20, 1),
            "together_mib": round(self.together / 2**20, 1),
            "child_processes": len(self.children_seen),
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

    def sample() -> None:
        while True:
            main = me.memory_info().rss
            total, largest = main, 0
            for child in me.children(recursive=True):
                try:
                    rss = child.memory_info().rss
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
