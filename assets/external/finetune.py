"""The finetuned_model asset's Pipes child: fine-tune the released model on the examples, seal, report.

    python -m assets.external.finetune   (started by assets/finetuning.py through dg.PipesSubprocessClient)

Extras (assets/finetuning.py): ``base``, the model version to fine-tune; ``examples``, the JSONL file;
``config``, overrides of model.finetune.FinetuneConfig's fields (its defaults stay there);
``data_folder``. model.finetune.finetune_and_seal does the work (as for ``apertus finetune``); the
sealed version comes back as the materialization (its id the data version) and the checks as asset
check results, the run's lines as Pipes log lines.
"""

from __future__ import annotations

import dataclasses

from dagster_pipes import open_dagster_pipes

from assets.external.report import report_checks, value, version_outcomes, version_values
from model.finetune import FinetuneConfig, finetune_and_seal
from records.layout import DataLayout
from records.manifest import version_folder
from records.models import RECORD, load_record


def main() -> None:
    with open_dagster_pipes() as pipes:
        layout = DataLayout(pipes.get_extra("data_folder"))
        base = pipes.get_extra("base")
        cfg = dataclasses.replace(FinetuneConfig(), **pipes.get_extra("config"))
        pipes.log.info(f"fine-tuning {base} on {pipes.get_extra('examples')}")
        manifest, _ = finetune_and_seal(
            layout,
            version_folder(layout.datasets, base),
            pipes.get_extra("examples"),
            cfg,
            log=pipes.log.info,
        )
        folder = layout.datasets / manifest.ref
        record = load_record(folder)
        gates = record.get("gates", {})
        pipes.report_asset_materialization(
            metadata={
                **version_values(layout, manifest, folder, RECORD),
                "base_model": value(base, "text"),
                "examples": value(record.get("examples", {}), "json"),
                "gates": value(gates, "json"),
                "certifiable": value(bool(record.get("certifiable")), "bool"),
                "metrics": value(record.get("metrics", {}), "json"),
            },
            data_version=manifest.version_id,
        )
        report_checks(
            pipes,
            {
                **version_outcomes(folder, layout),
                "gates_pass": (bool(record.get("certifiable")), {"gates": gates}),
            },
        )


if __name__ == "__main__":
    main()
