"""Training and fine-tuning run outside the Dagster process, through Dagster Pipes.

``run_external`` starts a Pipes child (assets/external/) with ``dg.PipesSubprocessClient``: the run's
typed config travels as Pipes extras, the child's log lines, its materialization (metadata, the
version id as data version) and its asset check results come back as Pipes messages, never as
parsed stdout. The subprocess keeps what it gave before Pipes: the Dagster process never holds the
model, a crash in training fails the step and nothing else, and a stopped step (SIGINT/SIGTERM,
apertus/stopping.py) forwards SIGINT to the child and waits for it briefly before unwinding.
"""

from __future__ import annotations

import sys

import dagster as dg

from records.layout import REPO_ROOT

# How long a stopped step waits for the child to exit after forwarding SIGINT. Below the CLI's
# abandon deadline (apertus/stopping.py, 10 s), so the step unwinds (frees its slot, fails the run)
# before the CLI gives up on it.
TERMINATION_SECONDS = 5


class ProcessConfig(dg.Config):
    """threads: OMP_NUM_THREADS of the training process (Dagster's own process is not affected)."""

    threads: int = 2


def run_external(
    context: dg.AssetExecutionContext, module: str, extras: dict, threads: int, asset: str
) -> tuple[dg.Output, list[dg.AssetCheckResult]]:
    """Run ``python -m module`` as the Pipes child of this step with ``extras``; return the asset's
    output (the reported version's ref ``asset/<data version>`` as its value, with the reported
    metadata) and the reported check results. dg.Failure when the child reported no materialization;
    a child that failed fails the step with its exception."""
    client = dg.PipesSubprocessClient(
        cwd=str(REPO_ROOT),
        env={"OMP_NUM_THREADS": str(threads), "PYTHONUNBUFFERED": "1"},
        termination_timeout_seconds=TERMINATION_SECONDS,
    )
    context.log.info(f"running {module} (OMP_NUM_THREADS={threads}) through Dagster Pipes")
    results = client.run(context=context, command=[sys.executable, "-m", module], extras=extras).get_results(
        implicit_materializations=False
    )
    materialized = [r for r in results if isinstance(r, dg.MaterializeResult)]
    checks = [r for r in results if isinstance(r, dg.AssetCheckResult)]
    if len(materialized) != 1 or materialized[0].data_version is None:
        raise dg.Failure(
            f"{module} reported {len(materialized)} materializations; expected one with a data version"
        )
    (result,) = materialized
    checks += list(result.check_results or ())
    output = dg.Output(
        f"{asset}/{result.data_version.value}", data_version=result.data_version, metadata=result.metadata
    )
    return output, checks
