"""The production instance example (``deploy/dagster.production.yaml``) is a valid Dagster instance config.

No Postgres server is needed: the file is checked against Dagster's own instance schema, and
every configurable class it names (queue, launcher, storage, compute logs) is imported and built
from its config, as Dagster does when the instance loads.
"""

from __future__ import annotations

import shutil

import pytest
import yaml

from records.layout import REPO_ROOT

PRODUCTION = REPO_ROOT / "deploy" / "dagster.production.yaml"
PG_ENV = {
    "DAGSTER_PG_HOST": "db.internal",
    "DAGSTER_PG_USER": "dagster",
    "DAGSTER_PG_PASSWORD": "secret",
    "DAGSTER_PG_DB": "apertus",
}


@pytest.fixture
def validated(tmp_path, monkeypatch):
    """The file's config as Dagster validates it, with the Postgres variables set."""
    from dagster._core.instance.config import dagster_instance_config

    for name, value in PG_ENV.items():
        monkeypatch.setenv(name, value)
    shutil.copy(PRODUCTION, tmp_path / "dagster.yaml")
    config, custom_class = dagster_instance_config(str(tmp_path))
    assert custom_class is None
    return config


def test_production_config_matches_dagster_instance_schema(validated):
    from dagster._config import process_config
    from dagster._core.storage.config import pg_config

    # Resolved as dagster-postgres resolves it when the instance starts.
    resolved = process_config(pg_config(), validated["storage"]["postgres"])
    assert resolved.success, resolved.errors
    postgres = resolved.value["postgres_db"]
    assert (postgres["hostname"], postgres["username"], postgres["db_name"]) == (
        "db.internal",
        "dagster",
        "apertus",
    ), "the Postgres connection must come from DAGSTER_PG_* environment variables"
    assert validated["run_retries"] == {
        "enabled": True,
        "max_retries": 2,
        "retry_on_asset_or_op_failure": False,
    }
    assert validated["run_monitoring"]["enabled"] is True, "retries of dead runs need run monitoring"
    assert validated["telemetry"] == {"enabled": False}


def test_production_config_classes_build_from_their_config(validated):
    from dagster._core.run_coordinator import QueuedRunCoordinator
    from dagster._core.storage.local_compute_log_manager import LocalComputeLogManager
    from dagster._serdes.config_class import ConfigurableClassData

    built = {}
    for key in ("run_coordinator", "run_launcher", "local_artifact_storage", "compute_logs"):
        entry = validated[key]
        data = ConfigurableClassData(
            entry["module"], entry["class"], yaml.safe_dump(entry.get("config") or {})
        )
        built[key] = data.rehydrate(as_type=object)
    queue = built["run_coordinator"]
    assert isinstance(queue, QueuedRunCoordinator)
    # The run limits live under `concurrency: runs` (1.13 rejects them in the coordinator's config
    # once `concurrency: pools` is set); merged as the instance merges them.
    from dagster._core.instance.config import ConcurrencyConfig

    effective = ConcurrencyConfig.from_concurrency_settings(
        validated["concurrency"], queue.get_run_queue_config()
    )
    limits = {limit["key"]: limit for limit in effective.run_queue_config.tag_concurrency_limits}
    assert limits["dagster/partition"] == {
        "key": "dagster/partition",
        "value": {"applyLimitPerUniqueValue": True},
        "limit": 1,
    }
    assert effective.run_queue_config.max_concurrent_runs == 4
    assert effective.pool_config.default_pool_limit == 1
    assert isinstance(built["compute_logs"], LocalComputeLogManager)
    assert built["local_artifact_storage"].base_dir == "/var/lib/apertus/dagster"


def test_production_config_rejects_what_dagster_rejects(tmp_path, monkeypatch):
    """The schema check is real: a misspelt key in the same file fails validation."""
    from dagster._core.errors import DagsterInvalidConfigError
    from dagster._core.instance.config import dagster_instance_config

    for name, value in PG_ENV.items():
        monkeypatch.setenv(name, value)
    config = yaml.safe_load(PRODUCTION.read_text())
    config["run_retries"]["max_retry"] = config["run_retries"].pop("max_retries")
    (tmp_path / "dagster.yaml").write_text(yaml.safe_dump(config))
    with pytest.raises(DagsterInvalidConfigError, match="max_retry"):
        dagster_instance_config(str(tmp_path))
