"""The one resource the curation assets share: where the data lives and how steps run."""

from __future__ import annotations

import os

import dagster as dg

from pipelines.config import CurationConfig, load_curation_config
from pipelines.executor import RAY_ADDRESS_ENV, ExecutorConfig
from records.layout import DATA_ENV, DataLayout
from records.manifest import Manifest, load_manifest, version_folder


class CurationResource(dg.ConfigurableResource):
    """Data folder, curation config file and executor settings. Every field can be left unset:
    the data folder then comes from ``APERTUS_DATA``, the config from the defaults, Ray from
    ``APERTUS_RAY_ADDRESS``, ``workers`` from the Ray cluster's CPUs or this host's cores
    (docs/scale.md)."""

    data_folder: str | None = None
    config_file: str | None = None
    tasks: int = ExecutorConfig.tasks
    workers: int | None = None
    cpus_per_task: int = ExecutorConfig.cpus_per_task
    ray_address: str | None = None

    def layout(self) -> DataLayout:
        if self.data_folder:
            return DataLayout(os.path.abspath(self.data_folder))
        return DataLayout.from_env()

    def manifest(self, ref: str) -> Manifest:
        """The manifest of the dataset version ``asset/version_id`` that an upstream asset returned."""
        return load_manifest(version_folder(self.layout().datasets, ref))

    def curation_config(self) -> CurationConfig:
        return load_curation_config(self.config_file)

    def executor(self) -> ExecutorConfig:
        return ExecutorConfig(
            tasks=self.tasks,
            workers=self.workers,  # None: follow the Ray cluster's CPUs or the host's cores
            cpus_per_task=self.cpus_per_task,
            ray_address=self.ray_address or os.environ.get(RAY_ADDRESS_ENV) or None,
        )


__all__ = ["DATA_ENV", "CurationResource"]
