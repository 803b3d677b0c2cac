"""The retraining schedule: curate what is missing or stale, retrain when the curated data changed.

On every tick (``APERTUS_RETRAIN_CRON``, default Mondays 03:00, in ``APERTUS_RETRAIN_TIMEZONE``,
default UTC) the schedule reads the Dagster instance and the data folder and asks for:

- a curation run (job ``retrain``, partition = snapshot) for every registered snapshot whose
  curation is missing (an asset of the ``curate`` selection never materialized for it) or stale (its
  latest materialization ran under other curation code than the one loaded now, or its raw_documents
  version predates an erasure request recorded in the ledger, e.g. by ``apertus compliance request``);
- one staging + training run (job ``retrain``, no partition) when the curated data differs from what
  the last trained model was trained on: the latest ``quality_scored`` version of each snapshot (its
  Dagster data version is the dataset version id) against the ``quality_scored`` parents of the
  curriculum the last model version names in its manifest. Training waits while any snapshot still
  needs curation or is being curated, so a model is never trained on half-updated data: the next
  tick trains once curation is done;
- nothing otherwise, with a skip reason that says why.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from datetime import UTC, datetime
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import dagster as dg

from assets.curation import CODE_VERSION, snapshots
from assets.jobs import CURATE_JOB_ASSETS, STAGE_ASSETS, retrain_job
from assets.operations import HEAVY_TAGS
from assets.training import trained_model
from assets.versions import CODE_VERSION_TAG, DATA_VERSION_TAG, latest_materialization
from records.assets import CURRICULUM_STAGES, QUALITY_SCORED, RAW_DOCUMENTS, TRAINED_MODEL
from records.layout import DataLayout
from records.manifest import MANIFEST, load_manifest, version_folder

CRON_ENV = "APERTUS_RETRAIN_CRON"
TIMEZONE_ENV = "APERTUS_RETRAIN_TIMEZONE"
DEFAULT_CRON = "0 3 * * 1"  # Mondays 03:00: after a weekend's deliveries, before the working week
DEFAULT_TIMEZONE = "UTC"
IN_PROGRESS = [
    dg.DagsterRunStatus.QUEUED,
    dg.DagsterRunStatus.NOT_STARTED,
    dg.DagsterRunStatus.STARTING,
    dg.DagsterRunStatus.STARTED,
]
# Jobs whose runs rewrite a snapshot's curation, and jobs whose runs stage or train.
CURATING_JOBS = ("curate", "retrain", "erasure")
TRAINING_JOBS = ("stage", "train", "retrain")


@dataclass
class RetrainPlan:
    """What one tick decided: snapshots to curate (with why), whether to retrain (why), and notes."""

    curate: dict[str, str] = field(default_factory=dict)
    retrain: str | None = None
    curated: dict[str, str] = field(default_factory=dict)  # snapshot -> quality_scored ref
    notes: list[str] = field(default_factory=list)


def curation_needed(
    instance: dg.DagsterInstance, snapshot: str, layout: DataLayout | None = None
) -> str | None:
    """Why ``snapshot`` needs curating (an asset never materialized for it, materialized under other
    curation code than ``CODE_VERSION``, or, given the data folder, its raw_documents version made
    before an erasure request recorded since), or None when every curation asset is current."""
    for asset in CURATE_JOB_ASSETS:
        name = asset.key.to_user_string()
        event = latest_materialization(instance, name, snapshot)
        if event is None:
            return f"{name} never materialized"
        code = event.tags.get(CODE_VERSION_TAG)
        if code != CODE_VERSION:
            return f"{name} made by code {code}, now {CODE_VERSION}"
    if layout is not None:
        return _unapplied_requests(layout, latest_materialization(instance, RAW_DOCUMENTS, snapshot))
    return None


def _unapplied_requests(layout: DataLayout, raw_event) -> str | None:
    """Erasure requests in the ledger that the snapshot's raw_documents version did not apply (the
    ids it applied are its config's ``suppression``), as a reason; None when it applied them all."""
    from records.requests import requests

    recorded = {r.request_id for r in requests(layout)}
    if not recorded or DATA_VERSION_TAG not in raw_event.tags:
        return None
    folder = layout.datasets / RAW_DOCUMENTS / raw_event.tags[DATA_VERSION_TAG]
    if not (folder / MANIFEST).exists():
        return None
    missing = recorded - set(load_manifest(folder).config.get("suppression", []))
    return f"{len(missing)} erasure request(s) recorded since its curation" if missing else None


def trained_on(instance: dg.DagsterInstance, layout: DataLayout) -> tuple[str | None, set[str] | None]:
    """The last trained model's version ref and the ``quality_scored`` versions its curriculum drew
    from, read from the model's and the curriculum's manifests; (None, None) when no model was
    trained, (ref, None) when its version folder is not in this data folder."""
    event = latest_materialization(instance, TRAINED_MODEL)
    if event is None or DATA_VERSION_TAG not in event.tags:
        return None, None
    ref = f"{TRAINED_MODEL}/{event.tags[DATA_VERSION_TAG]}"
    folder = version_folder(layout.datasets, ref)
    if not (folder / MANIFEST).exists():
        return ref, None
    model = load_manifest(folder)
    curricula = [p for p in model.parents if p.startswith(f"{CURRICULUM_STAGES}/")]
    if len(curricula) != 1:
        raise ValueError(
            f"{folder / MANIFEST}: parents name {len(curricula)} {CURRICULUM_STAGES} versions, expected 1"
        )
    stages = load_manifest(version_folder(layout.datasets, curricula[0]))
    return ref, {p for p in stages.parents if p.startswith(f"{QUALITY_SCORED}/")}


def _busy(instance: dg.DagsterInstance) -> tuple[set[str], bool]:
    """Snapshots being curated now, and whether a staging or training run is under way."""
    partitions, training = set(), False
    for record in instance.get_run_records(dg.RunsFilter(statuses=IN_PROGRESS)):
        run = record.dagster_run
        partition = run.tags.get("dagster/partition")
        if partition and run.job_name in CURATING_JOBS:
            partitions.add(partition)
        elif not partition and run.job_name in TRAINING_JOBS:
            training = True
    return partitions, training


def _short(refs) -> str:
    return ", ".join(sorted(ref.split("/")[0] + "/" + ref.split("/")[1][:8] for ref in refs)) or "none"


def plan_retraining(instance: dg.DagsterInstance, layout: DataLayout) -> RetrainPlan:
    """Decide what a tick requests (see the module docstring); reads, never writes."""
    plan = RetrainPlan()
    names = instance.get_dynamic_partitions(snapshots.name)
    if not names:
        plan.notes.append("no snapshots registered (the new_snapshots sensor registers inbox folders)")
        return plan
    curating, training = _busy(instance)
    for name in names:
        if name in curating:
            continue
        reason = curation_needed(instance, name, layout)
        if reason:
            plan.curate[name] = reason
    if curating or plan.curate:
        waiting = sorted(curating | set(plan.curate))
        plan.notes.append(f"retraining waits for the curation of {', '.join(waiting)}")
        return plan
    plan.curated = {
        name: f"{QUALITY_SCORED}/{latest_materialization(instance, QUALITY_SCORED, name).tags[DATA_VERSION_TAG]}"
        for name in names
    }
    current = set(plan.curated.values())
    model, consumed = trained_on(instance, layout)
    if model is None:
        plan.retrain = f"no model trained yet; {len(current)} curated snapshot versions"
    elif consumed is None:
        plan.retrain = f"{model}: no version folder in {layout.datasets}, so its training data is unknown"
    elif consumed != current:
        plan.retrain = (
            f"curated data changed since {model}: new {_short(current - consumed)}, "
            f"no longer current {_short(consumed - current)}"
        )
    else:
        plan.notes.append(
            f"{model} was trained on the current curated versions of all {len(names)} snapshots "
            f"({_short(current)})"
        )
    if plan.retrain and training:
        plan.notes.append(f"retraining is due ({plan.retrain}) but a staging or training run is under way")
        plan.retrain = None
    return plan


def _evaluate(context: dg.ScheduleEvaluationContext):
    layout = DataLayout.from_env()
    plan = plan_retraining(context.instance, layout)
    tick = (context.scheduled_execution_time or datetime.now(UTC)).isoformat()
    requests = [
        dg.RunRequest(
            run_key=f"{tick}:curate:{name}",
            partition_key=name,
            asset_selection=[asset.key for asset in CURATE_JOB_ASSETS],
            tags={"apertus/retrain": "curate", "apertus/reason": reason[:200]},
        )
        for name, reason in sorted(plan.curate.items())
    ]
    for name, reason in sorted(plan.curate.items()):
        context.log.info(f"curate {name}: {reason}")
    if plan.retrain:
        context.log.info(f"stage and train: {plan.retrain}")
        digest = hashlib.sha256("\n".join(sorted(plan.curated.values())).encode()).hexdigest()
        requests.append(
            dg.RunRequest(
                run_key=f"{tick}:stage+train",
                asset_selection=[asset.key for asset in (*STAGE_ASSETS, trained_model)],
                tags={
                    **HEAVY_TAGS,
                    "apertus/retrain": "stage+train",
                    "apertus/reason": plan.retrain[:200],
                    "apertus/curated_versions_sha256": digest,
                },
            )
        )
    for note in plan.notes:
        context.log.info(note)
    return requests or dg.SkipReason("; ".join(plan.notes) or "nothing to curate or train")


def build_retrain_schedule(cron: str | None = None, timezone: str | None = None) -> dg.ScheduleDefinition:
    """The ``retraining`` schedule at ``cron`` in ``timezone`` (default: the ``APERTUS_RETRAIN_CRON`` and
    ``APERTUS_RETRAIN_TIMEZONE`` environment variables, else Mondays 03:00 UTC)."""
    cron = cron or os.environ.get(CRON_ENV) or DEFAULT_CRON
    timezone = timezone or os.environ.get(TIMEZONE_ENV) or DEFAULT_TIMEZONE
    try:
        ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(
            f"{TIMEZONE_ENV}={timezone!r}: not an IANA time zone name (e.g. UTC, Europe/Zurich)"
        ) from exc
    try:
        return dg.schedule(
            cron,
            name="retraining",
            execution_timezone=timezone,
            job=retrain_job,
            default_status=dg.DefaultScheduleStatus.RUNNING,
            description=(
                "Curates every snapshot whose curation is missing or stale, and stages and trains when "
                "the curated data changed since the last trained model; skips, saying why, otherwise."
            ),
        )(_evaluate)
    except dg.DagsterInvalidDefinitionError as exc:
        raise ValueError(f"{CRON_ENV}={cron!r}: not a cron expression ({exc})") from exc


retraining = build_retrain_schedule()
