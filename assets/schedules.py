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
from records.manifest import MANIFEST, load_manifest
from records.retrain_state import RetrainState
from records.retrain_tick import Registered, Rules, TickRecord, stale_reason

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
# Once: Dagster builds an asset's key on each access (about 35 us), 6 per snapshot per tick otherwise.
CURATE_ASSET_NAMES = tuple(asset.key.to_user_string() for asset in CURATE_JOB_ASSETS)
RULES = Rules(CURATE_ASSET_NAMES, CODE_VERSION)
# Names the instance's identity for the tick record (records.retrain_tick), in its key-value store.
INSTANCE_KEY = "apertus/retrain_tick/instance"


@dataclass
class RetrainPlan:
    """What one tick decided: snapshots to curate (with why), whether to retrain (why), and notes."""

    curate: dict[str, str] = field(default_factory=dict)
    retrain: str | None = None
    curated: dict[str, str] = field(default_factory=dict)  # snapshot -> quality_scored ref, when retraining
    notes: list[str] = field(default_factory=list)
    # Snapshot records the tick read (records.retrain_tick): how tests and bench/ see what it cost.
    records_read: int = field(default=0, compare=False)


def curation_needed(state: RetrainState, snapshot: str) -> str | None:
    """Why ``snapshot`` needs curating, from the state index: an asset of the ``curate`` selection
    with no version for it, a version made by other curation code than ``CODE_VERSION``, or a
    raw_documents version made before erasure requests recorded since; None when all is current
    (records.retrain_tick.stale_reason, the rule the tick's record applies)."""
    held = state.snapshots.get(snapshot)
    if held is None:
        return stale_reason({}, 0, state.num_requests, RULES)
    return stale_reason(held.assets, held.applied_requests, state.num_requests, RULES)


def trained_on(layout: DataLayout, model: str | None) -> tuple[str | None, set[str] | None]:
    """The model version ``model`` and the ``quality_scored`` versions its curriculum drew from,
    read from the model's and the curriculum's manifests (two files, whatever the history);
    (None, None) when no model was trained, (ref, None) when its folder is not in this data folder."""
    if model is None:
        return None, None
    folder = layout.datasets / model
    if not (folder / MANIFEST).exists():
        return model, None
    curricula = [p for p in load_manifest(folder).parents if p.startswith(f"{CURRICULUM_STAGES}/")]
    if len(curricula) != 1:
        raise ValueError(
            f"{folder / MANIFEST}: parents name {len(curricula)} {CURRICULUM_STAGES} versions, expected 1"
        )
    stages = load_manifest(layout.datasets / curricula[0])
    return model, {p for p in stages.parents if p.startswith(f"{QUALITY_SCORED}/")}


def _busy(instance: dg.DagsterInstance) -> tuple[set[str], bool]:
    """Snapshots being curated now, and whether a staging or training run is under way (one query
    for the runs in progress)."""
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
    """Decide what a tick requests (see the module docstring); writes nothing but the state index's
    catch-up and the tick's own record (records.retrain_tick). Cost: the runs in progress (one
    query), the snapshots registered since the last tick (one query from its cursor, one count), and
    the state index's updates since the last tick: O(changed snapshots), not O(snapshots), and no
    ledger entry, materialization or manifest read, except (O(snapshots), once each) when the
    curation code, the erasure requests or the model changed, when the record must be rebuilt, and
    when a retraining is due (the run request names every snapshot's version)."""
    with TickRecord.open(layout) as tick:
        registered = _registered(instance, tick)
        tick.catch_up(layout, registered, RULES, lambda model: trained_on(layout, model))
        plan = RetrainPlan()
        if tick.rebuilt:
            plan.notes.append(f"the retraining state index was rebuilt from the ledger ({tick.rebuilt})")
        curating, training = _busy(instance) if registered.count else (set(), False)

        def compare():
            model = tick.model()
            if model is not None and tick.model_is_current():
                return model, set(), None
            return model, tick.consumed() if tick.meta("consumed_known") else None, tick.current()

        plan = _decide(plan, registered.count, curating, training, tick.needs().items(), compare, layout)
        plan.records_read = tick.records_read
        return plan


def _registered(instance: dg.DagsterInstance, tick: TickRecord) -> Registered:
    """The snapshots registered since the tick record's cursor (every one when it holds none for
    this instance, or when registrations were deleted: the count does not add up). Cost: one
    key-value read, one count and the registrations since the cursor; O(snapshots) when listing all."""
    values = instance.run_storage.get_cursor_values({INSTANCE_KEY})
    identity = values.get(INSTANCE_KEY)
    if identity is None:
        identity = os.urandom(8).hex()
        instance.run_storage.set_cursor_values({INSTANCE_KEY: identity})
    cursor, count = tick.seen(identity)
    total = _count(instance)
    if cursor is not None and total is not None:
        page = instance.get_paginated_dynamic_partitions(snapshots.name, _ALL, ascending=True, cursor=cursor)
        added = list(page.results)
        if count + len(added) == total:
            return Registered(identity, page.cursor, added, False, total)
    page = instance.get_paginated_dynamic_partitions(snapshots.name, _ALL, ascending=True)
    return Registered(identity, page.cursor, list(page.results), True, len(page.results))


_ALL = 2**62  # a page larger than any partition list: one query


def _count(instance: dg.DagsterInstance) -> int | None:
    """How many snapshots are registered, counted in the instance's database (one COUNT, nothing
    per snapshot in Python); None for a storage that is not SQL (then the tick lists them all)."""
    import sqlalchemy as db
    from dagster._core.storage.event_log.schema import DynamicPartitionsTable
    from dagster._core.storage.event_log.sql_event_log import SqlEventLogStorage

    storage = instance.event_log_storage
    if not isinstance(storage, SqlEventLogStorage):
        return None
    table = DynamicPartitionsTable
    query = db.select(db.func.count()).select_from(table).where(table.c.partitions_def_name == snapshots.name)
    with storage.index_connection() as conn:
        return int(conn.execute(query).scalar())


def _decide(plan, count, curating, training, pending, compare, layout) -> RetrainPlan:
    """The decision, whatever reads the facts: ``count`` snapshots registered, ``pending`` the
    (snapshot, why) of those that need curating, ``compare()`` the last model's ref (None: none), the
    quality_scored refs it was trained on (None: unknown) and every registered snapshot's current
    quality_scored ref (None: exactly the model's, so nothing to list)."""
    if not count:
        plan.notes.append("no snapshots registered (the new_snapshots sensor registers inbox folders)")
        return plan
    for name, reason in pending:
        if name not in curating:
            plan.curate[name] = reason
    if curating or plan.curate:
        waiting = sorted(curating | set(plan.curate))
        plan.notes.append(f"retraining waits for the curation of {', '.join(waiting)}")
        return plan
    model, consumed, curated = compare()
    current = set(curated.values()) if curated is not None else consumed
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
        # The count, not the versions: a skip message that lists every snapshot's version grows with them.
        plan.notes.append(f"{model} was trained on the current curated versions of all {count} snapshots")
    if plan.retrain:
        plan.curated = curated  # the run request's digest of what it will train on
    if plan.retrain and training:
        plan.notes.append(f"retraining is due ({plan.retrain}) but a staging or training run is under way")
        plan.retrain = None
    return plan


def plan_retraining_from_event_log(instance: dg.DagsterInstance, layout: DataLayout) -> RetrainPlan:
    """The reference ``plan_retraining`` (the path before the state index), for tests and bench/:
    the same decision from Dagster's latest materializations, the ledger's requests and the
    manifests. Cost: O(snapshots x (curation assets + ledger entries)): one event-log query per
    asset per snapshot and a parse of the whole ledger per snapshot; never called by a tick."""
    from records.request_index import load_index, unapplied_requests

    names = instance.get_dynamic_partitions(snapshots.name)
    curating, training = _busy(instance) if names else (set(), False)

    def needed(name: str) -> str | None:
        for key in CURATE_ASSET_NAMES:
            event = latest_materialization(instance, key, name)
            if event is None:
                return f"{key} never materialized"
            code = event.tags.get(CODE_VERSION_TAG)
            if code != CODE_VERSION:
                return f"{key} made by code {code}, now {CODE_VERSION}"
        raw = latest_materialization(instance, RAW_DOCUMENTS, name)
        index = load_index(layout)
        folder = layout.datasets / RAW_DOCUMENTS / raw.tags.get(DATA_VERSION_TAG, "")
        if not index.requests or DATA_VERSION_TAG not in raw.tags or not (folder / MANIFEST).exists():
            return None
        missing = unapplied_requests(index, load_manifest(folder).config)
        return f"{len(missing)} erasure request(s) recorded since its curation" if missing else None

    def compare():
        current = {
            name: f"{QUALITY_SCORED}/{latest_materialization(instance, QUALITY_SCORED, name).tags[DATA_VERSION_TAG]}"
            for name in names
        }
        event = latest_materialization(instance, TRAINED_MODEL)
        if event is None or DATA_VERSION_TAG not in event.tags:
            return None, None, current
        model, consumed = trained_on(layout, f"{TRAINED_MODEL}/{event.tags[DATA_VERSION_TAG]}")
        return model, consumed, current

    pending = [(name, why) for name in names if name not in curating for why in [needed(name)] if why]
    return _decide(RetrainPlan(), len(names), curating, training, pending, compare, layout)


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
