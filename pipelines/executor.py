"""Runs a datatrove pipeline in-process or on Ray: the one place that chooses.

Every curation step hands its list of blocks to ``run_pipeline``. With ``APERTUS_RAY_ADDRESS`` set
(or ``ExecutorConfig.ray_address``) the tasks go to that Ray cluster through datatrove's
``RayPipelineExecutor``; otherwise they run locally, in worker processes when ``workers > 1``.
Either way the same tasks read the same files, so both paths write the same bytes.

``workers`` (how many tasks run at once) follows where the tasks run unless it is set: the Ray
cluster's CPUs, or the cores of this host (docs/scale.md, "Parallelism"). With ``resume`` a run
skips the tasks a failed earlier run completed (docs/scale.md, "Resuming a failed step").
"""

from __future__ import annotations

import functools
import importlib
import json
import os
import socket
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from datatrove.executor import LocalPipelineExecutor, RayPipelineExecutor
from datatrove.executor.base import ExecutorJSONEncoder
from datatrove.pipeline.base import PipelineStep
from datatrove.utils.logging import logger

RAY_ADDRESS_ENV = "APERTUS_RAY_ADDRESS"
TASK_PLACE = "ran on host {host} pid {pid} ray node {node}"  # in every task's log, first
LOG_LEVEL_ENV = "APERTUS_LOG_LEVEL"  # what datatrove prints on the terminal; its log files keep DEBUG
_LOG_FORMAT = "{time:YYYY-MM-DD HH:mm:ss.SSS} | {level: <8} | {name}:{function}:{line} - {message}"


def _cache_loguru_lib_dirs() -> None:
    """Make loguru compute the interpreter's library folders once per process, not at every
    ``logger.add``: it walks every sysconfig install scheme each time (about 9 ms here), and a task
    adds three sinks, so a curation of four steps spent 13% of its time there (measured with
    cProfile on 200 documents). The folders depend on ``sys.path`` only, which tasks do not change."""
    try:
        from loguru._better_exceptions import ExceptionFormatter
    except ImportError:  # another loguru layout: it pays its own way
        return
    found = ExceptionFormatter.__dict__.get("_get_lib_dirs")
    if isinstance(found, staticmethod) and not hasattr(found.__func__, "cache_info"):
        ExceptionFormatter._get_lib_dirs = staticmethod(functools.cache(found.__func__))


_cache_loguru_lib_dirs()


def _terminal_level() -> str:
    return os.environ.get(LOG_LEVEL_ENV, "WARNING").upper()


def _terminal_logger() -> None:
    logger.remove()
    logger.add(sys.stderr, level=_terminal_level(), format=_LOG_FORMAT, colorize=False)


def _add_task_logger(logging_dir, rank: int, local_rank: int = 0, node_rank: int = -1):
    # datatrove's own version hard-codes INFO on the terminal: every task would print its whole
    # pipeline and statistics there. The task's log file keeps everything, at DEBUG.
    logger.remove()
    logfile = logging_dir.open(f"logs/task_{rank:05d}.log", "w")
    logger.add(sys.stderr, level=_terminal_level() if local_rank == 0 else "ERROR", format=_LOG_FORMAT)
    logger.add(logfile, level="DEBUG", format=_LOG_FORMAT, colorize=False)
    # Where the task ran, so a step's spread over a cluster can be read back from its logs.
    place = TASK_PLACE.format(host=socket.gethostname(), pid=os.getpid(), node=ray_node_id() or "-")
    logger.info(f"task {rank} {place}")
    return logfile


def _close_task_logger(logfile) -> None:
    logger.complete()
    _terminal_logger()
    logfile.close()


@contextmanager
def _quiet_datatrove() -> Iterator[None]:
    """Swap datatrove's task loggers for ours in this process, for the duration of a run."""
    modules = [importlib.import_module(m) for m in ("datatrove.executor.base", "datatrove.executor.ray")]
    saved = [(m, m.add_task_logger, m.close_task_logger) for m in modules]
    for module in modules:
        module.add_task_logger, module.close_task_logger = _add_task_logger, _close_task_logger
    _terminal_logger()
    try:
        yield
    finally:
        for module, add, close in saved:
            module.add_task_logger, module.close_task_logger = add, close


def ray_node_id() -> str | None:
    """The id of the Ray node this process runs on; None outside a Ray worker."""
    ray = sys.modules.get("ray")  # a Ray worker has imported it; importing it here would cost 1 s a task
    return ray.get_runtime_context().get_node_id() if ray is not None and ray.is_initialized() else None


class _QuietTaskLogs:
    """Runs each task (in whatever process or Ray worker it lands) with ``_quiet_datatrove``, and
    writes datatrove's ``executor.json`` (the run's description, beside the task logs) compact."""

    def _run_for_rank(self, rank: int, local_rank: int = 0, node_rank: int = -1):
        with _quiet_datatrove():
            return super()._run_for_rank(rank, local_rank, node_rank)

    def save_executor_as_json(self, indent: int | None = None):
        # datatrove indents it, which makes json use its pure-Python encoder: 0.15 s a step for the
        # quality step's 0.5 MB (its per-language settings), 3% of a small curation (cProfile).
        # The same content in one line goes through the C encoder.
        text = json.dumps(self, cls=ExecutorJSONEncoder, indent=indent)
        with self.logging_dir.open("executor.json", "w") as f:
            f.write(text)


class LocalExecutor(_QuietTaskLogs, LocalPipelineExecutor):
    pass


class RayExecutor(_QuietTaskLogs, RayPipelineExecutor):
    pass


# Locally, at most this many worker processes by default: each holds its own models (fastText's
# 130 MB language model) and shard buffers, the instance runs one curation step at a time on a host
# that also serves Dagster, and the default 4 tasks per step use no more. A larger host sets
# ``workers`` (and ``tasks``) explicitly; a Ray cluster is sized by its own CPUs.
LOCAL_MAX_WORKERS = 4


@dataclass(frozen=True)
class Workers:
    """How many tasks a step runs at once, and why (printed at step start)."""

    count: int
    reason: str


def _host_cores() -> int:
    # The cores this process may run on (a container's or taskset's share), not the machine's.
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def local_workers() -> Workers:
    """The local default: this host's cores, at most ``LOCAL_MAX_WORKERS``."""
    cores = _host_cores()
    count = max(1, min(LOCAL_MAX_WORKERS, cores))
    return Workers(count, f"{cores} cores on this host, at most {LOCAL_MAX_WORKERS} by default")


def ray_workers(cpus_per_task: int) -> Workers:
    """The Ray default: the connected cluster's CPUs divided by the CPUs each task asks for.

    The cluster's total, not what is free this instant: ``workers`` only caps how many tasks the
    step keeps submitted, and Ray queues a task until its CPUs are free, so the total never
    oversubscribes a node, while a step that started while another held the cluster would keep the
    momentary free count (perhaps 1) for its whole run. Call after ``ray.init``; costs one query.
    """
    import ray

    total = ray.cluster_resources().get("CPU", 0)
    free = ray.available_resources().get("CPU", 0)
    count = max(1, int(total // cpus_per_task))
    return Workers(
        count,
        f"the Ray cluster has {total:g} CPUs ({free:g} free now), {cpus_per_task} per task",
    )


@dataclass(frozen=True)
class ExecutorConfig:
    """Where and how wide a step runs. ``tasks`` fixes how the input is split (and so the output
    files, and it is recorded in each version's lineage); ``workers`` only how many tasks run at
    once, which never changes the output and is recorded nowhere. ``workers=None`` follows where the
    tasks run (``resolve_workers``); a number always wins."""

    tasks: int = 4
    workers: int | None = None
    ray_address: str | None = field(default_factory=lambda: os.environ.get(RAY_ADDRESS_ENV) or None)
    cpus_per_task: int = 1  # what each Ray task reserves; the local path runs one process per task

    def __post_init__(self) -> None:
        if self.workers is not None and self.workers < 1:
            raise ValueError(
                f"ExecutorConfig.workers: {self.workers}; set at least 1, or None to follow the CPUs"
            )
        if self.cpus_per_task < 1:
            raise ValueError(f"ExecutorConfig.cpus_per_task: {self.cpus_per_task}; set at least 1")

    @property
    def backend(self) -> str:
        return "ray" if self.ray_address else "local"

    def resolve_workers(self) -> Workers:
        """``workers`` if set, else Ray's CPUs per task on Ray (connected by now), else the host's
        cores (``local_workers``)."""
        if self.workers is not None:
            return Workers(self.workers, "set explicitly")
        return ray_workers(self.cpus_per_task) if self.ray_address else local_workers()


def connect_ray(address: str) -> None:
    """Connect this process to the Ray cluster at ``address`` (``local``: start one here), once."""
    import ray

    if not ray.is_initialized():
        ray.init(
            address=None if address == "local" else address, include_dashboard=False, log_to_driver=False
        )


def completed_ranks(logging_dir: str | Path, num_tasks: int) -> list[int]:
    """The ranks below ``num_tasks`` with a completion marker in ``logging_dir``. Cost: one listing."""
    folder = Path(logging_dir) / "completions"
    names = {p.name for p in folder.iterdir()} if folder.is_dir() else set()
    return [rank for rank in range(num_tasks) if f"{rank:05d}" in names]


def run_pipeline(
    pipeline: list[PipelineStep | Callable],
    *,
    logging_dir: str | Path,
    config: ExecutorConfig,
    tasks: int | None = None,
    resume: bool = False,
) -> None:
    """Run ``pipeline`` over ``tasks`` (default ``config.tasks``) tasks and return when all finished.

    ``resume``: skip the tasks that ``logging_dir`` holds a completion marker for (datatrove's
    ``completions/<rank>``, written when a task finished), because a failed earlier run with the same
    inputs, config, code and task count wrote their output into the same folder
    (``records.layout.resumable_staging`` decides when that holds). Without it every task runs.

    At most ``config.resolve_workers()`` tasks (and never more than there are) run at once; the
    number and its reason are printed on stderr, which the step's Dagster log keeps. Raises ``RuntimeError`` naming the failed tasks if any task failed.
    """
    num_tasks = tasks or config.tasks
    if config.ray_address:
        connect_ray(config.ray_address)
    chosen = config.resolve_workers()
    workers = min(chosen.count, num_tasks)
    done = completed_ranks(logging_dir, num_tasks) if resume else []
    resuming = f"; resuming: {len(done)} of {num_tasks} tasks completed before, skipped" if done else ""
    print(
        f"apertus: {Path(logging_dir).name}: {num_tasks} tasks, {workers} at once on {config.backend}"
        f" ({chosen.count} workers: {chosen.reason}){resuming}",
        file=sys.stderr,
        flush=True,
    )
    if config.ray_address:
        executor = RayExecutor(
            pipeline,
            tasks=num_tasks,
            workers=workers,
            logging_dir=str(logging_dir),
            skip_completed=resume,
            cpus_per_task=config.cpus_per_task,
            mem_per_cpu_gb=1,
        )
    else:
        executor = LocalExecutor(
            pipeline, tasks=num_tasks, workers=workers, logging_dir=str(logging_dir), skip_completed=resume
        )
    with _quiet_datatrove():
        executor.run()
    incomplete = executor.get_incomplete_ranks(range(num_tasks), skip_completed=True)
    if incomplete:
        raise RuntimeError(
            f"{len(incomplete)} of {num_tasks} tasks failed: ranks {incomplete}; logs in {logging_dir}"
        )
