"""Runs a datatrove pipeline in-process or on Ray: the one place that chooses.

Every curation step hands its list of blocks to ``run_pipeline``. With ``APERTUS_RAY_ADDRESS`` set
(or ``ExecutorConfig.ray_address``) the tasks go to that Ray cluster through datatrove's
``RayPipelineExecutor``; otherwise they run locally, in worker processes when ``workers > 1``.
Either way the same tasks read the same files, so both paths write the same bytes.
"""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from datatrove.executor import LocalPipelineExecutor, RayPipelineExecutor
from datatrove.pipeline.base import PipelineStep
from datatrove.utils.logging import logger

RAY_ADDRESS_ENV = "APERTUS_RAY_ADDRESS"
LOG_LEVEL_ENV = "APERTUS_LOG_LEVEL"  # what datatrove prints on the terminal; its log files keep DEBUG
_LOG_FORMAT = "{time:YYYY-MM-DD HH:mm:ss.SSS} | {level: <8} | {name}:{function}:{line} - {message}"


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


class _QuietTaskLogs:
    """Runs each task (in whatever process or Ray worker it lands) with ``_quiet_datatrove``."""

    def _run_for_rank(self, rank: int, local_rank: int = 0, node_rank: int = -1):
        with _quiet_datatrove():
            return super()._run_for_rank(rank, local_rank, node_rank)


class LocalExecutor(_QuietTaskLogs, LocalPipelineExecutor):
    pass


class RayExecutor(_QuietTaskLogs, RayPipelineExecutor):
    pass


def _default_workers() -> int:
    return max(1, min(4, os.cpu_count() or 1))


@dataclass(frozen=True)
class ExecutorConfig:
    """Where and how wide a step runs. ``tasks`` fixes how the input is split (and so the output
    files); ``workers`` only how many tasks run at once, which never changes the output."""

    tasks: int = 4
    workers: int = field(default_factory=_default_workers)
    ray_address: str | None = field(default_factory=lambda: os.environ.get(RAY_ADDRESS_ENV) or None)

    @property
    def backend(self) -> str:
        return "ray" if self.ray_address else "local"


def run_pipeline(
    pipeline: list[PipelineStep | Callable],
    *,
    logging_dir: str | Path,
    config: ExecutorConfig,
    tasks: int | None = None,
) -> None:
    """Run ``pipeline`` over ``tasks`` (default ``config.tasks``) tasks and return when all finished.

    Raises ``RuntimeError`` naming the failed tasks if any task failed.
    """
    num_tasks = tasks or config.tasks
    workers = min(config.workers, num_tasks)
    if config.ray_address:
        import ray

        if not ray.is_initialized():
            address = None if config.ray_address == "local" else config.ray_address
            ray.init(address=address, include_dashboard=False, log_to_driver=False)
        executor = RayExecutor(
            pipeline,
            tasks=num_tasks,
            workers=workers,
            logging_dir=str(logging_dir),
            skip_completed=False,
            cpus_per_task=1,
            mem_per_cpu_gb=1,
        )
    else:
        executor = LocalExecutor(
            pipeline, tasks=num_tasks, workers=workers, logging_dir=str(logging_dir), skip_completed=False
        )
    with _quiet_datatrove():
        executor.run()
    incomplete = executor.get_incomplete_ranks(range(num_tasks), skip_completed=True)
    if incomplete:
        raise RuntimeError(
            f"{len(incomplete)} of {num_tasks} tasks failed: ranks {incomplete}; logs in {logging_dir}"
        )
