"""What the benchmarks share: a timer, the median/min/max summary of repeats, and the commit a run
measured (with ``(dirty)`` when the tree had uncommitted changes)."""

from __future__ import annotations

import statistics
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def elapsed_ms(fn: Callable[[], object]) -> float:
    """Milliseconds one call of ``fn`` took (wall clock)."""
    start = time.perf_counter()
    fn()
    return (time.perf_counter() - start) * 1000


def summary(values: list[float], suffix: str = "", digits: int = 3) -> dict:
    """``{"median", "min", "max", "runs"}`` of repeated measures, each key ending in ``suffix``
    (``"_ms"`` where the JSON names its unit) but ``runs``."""
    return {
        f"median{suffix}": round(statistics.median(values), digits),
        f"min{suffix}": round(min(values), digits),
        f"max{suffix}": round(max(values), digits),
        "runs": [round(v, digits) for v in values],
    }


def commit() -> str:
    """The short commit of this checkout, with `` (dirty)`` when it has uncommitted changes."""
    head = subprocess.run(
        ["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True, text=True
    )
    dirty = subprocess.run(["git", "-C", str(REPO), "status", "--porcelain"], capture_output=True, text=True)
    return head.stdout.strip() + (" (dirty)" if dirty.stdout.strip() else "")
