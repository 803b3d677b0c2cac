"""Runs a datatrove pipeline in-process or on Ray: the one place that chooses.

Every curation step hands its list of blocks to ``run_pipeline``. With ``APERTUS_RAY_ADDRESS`` set
(or ``ExecutorConfig.ray_address``) the tasks go to that Ray cluster through datatrove's
``RayPipelineExecutor``; otherwise they run locally, in worker processes when ``workers > 1``.
Either way the same tasks read the same files, so both paths write the same bytes.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from datatrove.pipeline.base import PipelineStep

RAY_ADDRESS_ENV = "APERTUS_RAY_ADDRESS"


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
        from datatrove.executor import RayPipelineExecutor

        if not ray.is_initialized():
            address = None if config.ray_address == "local" else config.ray_address
            ray.init(address=address, include_dashboard=False, log_to_driver=False)
        executor = RayPipelineExecutor(
            pipeline,
            tasks=num_tasks,
            workers=workers,
            logging_dir=str(logging_dir),
            skip_completed=False,
            cpus_per_task=1,
            mem_per_cpu_gb=1,
        )
    else:
        from datatrove.executor import LocalPipelineExecutor

        executor = LocalPipelineExecutor(
            pipeline, tasks=num_tasks, workers=workers, logging_dir=str(logging_dir), skip_completed=False
        )
    executor.run()
    incomplete = executor.get_incomplete_ranks(range(num_tasks), skip_completed=True)
    if incomplete:
        raise RuntimeError(f"{len(incomplete)} of {num_tasks} tasks failed: ranks {incomplete}; logs in {logging_dir}")
