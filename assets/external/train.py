"""The trained_model asset's Pipes child: train over the curriculum, seal the run, report it.

    python -m assets.external.train      (started by assets/training.py through dg.PipesSubprocessClient)

Extras (assets/training.py): ``request``, the fields of model.config.CurriculumRun; ``data_folder``;
``input_version``, the token_shards data version Dagster records as the run's input; ``dagster_config``,
the asset's config as launched (kept in the provenance record); ``plots``, where plot files go.
Each step and evaluation line is a Pipes log line; the sealed version comes back as the
materialization (its id the data version) and the checks as asset check results. A crash or a
signal here fails the step and leaves the Dagster process alone; the run folder stays for a retry to
resume from.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from dagster_pipes import open_dagster_pipes

from assets.external.report import report_checks, value, version_outcomes, version_values
from assets.external.training_report import read_run, training_outcomes, training_values
from model.config import CurriculumRun
from model.staged_training import train_curriculum
from records.assets import TOKEN_SHARDS
from records.layout import DataLayout
from records.models import RECORD, build_record, seal_model

# A fresh single-process run: no rendezvous inherited from the parent (a test's or a launcher's).
DISTRIBUTED_ENV = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")


def main() -> None:
    for name in DISTRIBUTED_ENV:
        os.environ.pop(name, None)
    with open_dagster_pipes() as pipes:
        request = CurriculumRun(**pipes.get_extra("request"))
        layout = DataLayout(pipes.get_extra("data_folder"))
        consumed = pipes.get_extra("input_version")
        started = time.perf_counter()
        summary = train_curriculum(request, log=pipes.log.info)
        pipes.log.info(
            f"trained steps {summary.start_step}..{summary.end_step} in {time.perf_counter() - started:.1f}s; "
            f"run folder {summary.out_dir}"
        )
        out = Path(request.out)
        run_info, steps, evaluations = read_run(out)
        # The pinned versions must be the ones this run consumed: what the trainer read (run.json's
        # upstream) and what Dagster passed (the input's data version) are compared before sealing.
        trained_on = run_info["upstream"][TOKEN_SHARDS]
        if consumed is not None and consumed != trained_on.partition("/")[2]:
            raise ValueError(
                f"token_shards input version {consumed} differs from the folder trained on {trained_on}"
            )
        record = build_record(
            layout,
            out,
            recipe=request.recipe,
            orchestration={
                "orchestrator": "dagster",
                "dagster_run_id": pipes.run_id,
                "input_versions": {TOKEN_SHARDS: consumed},
                "training_config": pipes.get_extra("dagster_config"),
            },
        )
        metadata = training_values(out, steps, evaluations, run_info, Path(pipes.get_extra("plots")))
        manifest, ledger_index = seal_model(layout, out, record)
        folder = layout.datasets / manifest.ref
        pipes.report_asset_materialization(
            metadata={
                **version_values(layout, manifest, folder, RECORD),
                "new_version": value(ledger_index is not None, "bool"),
                "parents": value(list(manifest.parents), "json"),
                "code": value(record["code"], "json"),
                **metadata,
            },
            data_version=manifest.version_id,
        )
        report_checks(
            pipes, {**version_outcomes(folder, layout), **training_outcomes(folder, steps, run_info)}
        )


if __name__ == "__main__":
    main()
