"""Registering and curating source snapshots through Dagster, as the UI would.

A snapshot is a folder in the data folder's inbox and a partition of the ``snapshots`` dynamic
partitions definition. Curating it materializes the curation assets for that partition in the
Dagster instance of ``DAGSTER_HOME``, so the runs, versions and metadata show in the UI.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

from records.assets import CURRICULUM_STAGES, TRAINED_MODEL
from records.layout import REPO_ROOT, DataLayout, validate_snapshot_name


def dagster_instance():
    """The Dagster instance of ``DAGSTER_HOME`` (default: the checkout's ``dagster_home/``)."""
    import dagster as dg

    os.environ.setdefault("DAGSTER_HOME", str(REPO_ROOT / "dagster_home"))
    return dg.DagsterInstance.get()


def register(snapshot: str) -> None:
    """Add ``snapshot`` as a partition of the curation assets (a no-op when it exists)."""
    from assets.curation import snapshots

    validate_snapshot_name(snapshot)
    instance = dagster_instance()
    if not instance.has_dynamic_partition(snapshots.name, snapshot):
        instance.add_dynamic_partitions(snapshots.name, [snapshot])


def _symlinks_under(folder: Path) -> list[Path]:
    """Every symbolic link inside ``folder`` (not followed), sorted."""
    links = []
    for parent, dirs, files in os.walk(folder):
        links += [Path(parent, name) for name in dirs + files if Path(parent, name).is_symlink()]
    return sorted(links)


def ingest(path: str | Path, snapshot: str, *, link: bool = False) -> Path:
    """Copy the folder at ``path`` into the inbox as ``snapshot`` and register it; with ``link``, make
    the inbox entry a symbolic link to the folder's resolved real path instead.

    Symbolic links inside the folder are never followed: a copy keeps them as links, and the reader
    quarantines each one (reason ``symlink``, naming link and target) instead of reading its target.
    """
    validate_snapshot_name(snapshot)
    source = Path(path).resolve()
    if not source.is_dir():
        raise ValueError(f"{path}: not a folder of shards")
    layout = DataLayout.from_env()
    target = layout.snapshot_dir(snapshot)
    if target.exists():
        raise ValueError(
            f"{target}: snapshot {snapshot!r} exists already; snapshots are immutable, pick a new name"
        )
    target.parent.mkdir(parents=True, exist_ok=True)
    if link:
        target.symlink_to(source, target_is_directory=True)
    else:
        shutil.copytree(source, target, symlinks=True)
    for found in _symlinks_under(source):
        print(
            f"warning: {found} is a symbolic link to {os.readlink(found)}: not followed, it will be quarantined"
        )
    register(snapshot)
    print(f"snapshot {snapshot!r} registered: {target}")
    return target


def _materialize(
    selection: list,
    command: str,
    *,
    partition_key: str | None = None,
    op_config: dict | None = None,
    raise_on_error: bool = True,
    **resource_fields,
):
    """Materialize ``selection`` in the instance, as a launch from the UI would, with every asset
    of the code location defined so upstream versions load from the instance."""
    import dagster as dg

    from assets.definitions import defs
    from assets.resources import CurationResource
    from assets.run_claims import COMMAND_TAG, check_pools_before_launch, process_tags

    # A field left None keeps the resource's default (tasks: pipelines.executor.ExecutorConfig's).
    fields = {name: value for name, value in resource_fields.items() if value is not None}
    resource = CurationResource(data_folder=str(DataLayout.from_env().root), **fields)
    instance = dagster_instance()
    # Claims left by killed runs would make this run wait forever (docs/operations.md).
    check_pools_before_launch(instance, lambda line: print(line, file=sys.stderr, flush=True))
    return dg.materialize(
        list(defs.assets),
        selection=selection,
        instance=instance,
        partition_key=partition_key,
        resources={"curation": resource},
        raise_on_error=raise_on_error,
        tags={COMMAND_TAG: command, **process_tags()},
        # The run's full event log is in the instance (and the UI); the terminal gets progress.
        run_config={
            "ops": {name: {"config": config} for name, config in (op_config or {}).items()},
            "loggers": {"console": {"config": {"log_level": "INFO"}}},
        },
    )


def curate(
    snapshot: str, *, config_file: str | None = None, tasks: int | None = None, raise_on_error: bool = True
):
    """Materialize the curation assets and the quality score for ``snapshot``; return Dagster's result."""
    from assets.jobs import CURATE_JOB_ASSETS
    from pipelines.remote_inbox import snapshot_source

    layout = DataLayout.from_env()
    validate_snapshot_name(snapshot)  # before anything is registered or read
    snapshot_source(
        layout, snapshot
    )  # the local inbox or the remote one (APERTUS_INBOX_URL), else ValueError
    register(snapshot)
    return _materialize(
        CURATE_JOB_ASSETS,
        "curate",
        partition_key=snapshot,
        raise_on_error=raise_on_error,
        config_file=config_file,
        tasks=tasks,
    )


def stage(*, curriculum: str | None = None, tasks: int | None = None, raise_on_error: bool = True):
    """Materialize ``curriculum_stages``, ``tokenizer`` and ``token_shards`` from every curated snapshot."""
    from assets.training_data import DEFAULT_CURRICULUM, curriculum_stages, token_shards, tokenizer

    path = str(Path(curriculum).resolve()) if curriculum else str(DEFAULT_CURRICULUM)
    return _materialize(
        [curriculum_stages, tokenizer, token_shards],
        "stage",
        op_config={CURRICULUM_STAGES: {"curriculum_path": path}},
        raise_on_error=raise_on_error,
        tasks=tasks,
    )


def train(*, max_steps: int | None = None, raise_on_error: bool = True):
    """Materialize ``trained_model`` from the latest ``token_shards`` (training runs in a subprocess)."""
    from assets.training import trained_model

    config = {} if max_steps is None else {"max_steps": max_steps}
    return _materialize(
        [trained_model], "train", op_config={TRAINED_MODEL: config}, raise_on_error=raise_on_error
    )
