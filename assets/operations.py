"""How the assets behave in operation: retries, concurrency pools and automation conditions.

One place for the policies the asset decorators name (``retry_policy=``, ``pool=``,
``automation_condition=``) and the run tags the jobs carry, so that an operator reads the whole
operating model here and docs/operations.md explains it.

Two layers of retry, for two kinds of failure:
- a step that raised (a network file system that hiccuped, a Ray worker that was lost, a training
  process that died) is retried inside its run by the asset's ``RetryPolicy``, after an
  exponentially growing, jittered delay; training resumes from its last checkpoint, because a
  retried step keeps its run id and so its run folder;
- a run whose worker process died (killed for memory, host rebooted) is relaunched by the daemon's
  run retries (``dagster/max_retries``), from the failed step. Dagster is told not to relaunch runs
  for step failures (``dagster/retry_on_asset_or_op_failure: false``): the step retry policy has
  already spent its attempts on those, and a deterministic failure would only fail again.
"""

import dagster as dg

# Curation and staging read and write the data folder (often a network file system) and may fan
# out over Ray: a lost mount or worker is back within a minute or two. Delays: up to 10 s, 30 s,
# 70 s (exponential backoff, full jitter so that parallel runs do not retry in lockstep).
CURATION_RETRY = dg.RetryPolicy(
    max_retries=3, delay=10, backoff=dg.Backoff.EXPONENTIAL, jitter=dg.Jitter.FULL
)
# Training restarts from its last checkpoint; a failure that outlives two attempts (up to 1 min,
# then 3 min later) is not transient. Each attempt costs a process start and a checkpoint load.
TRAINING_RETRY = dg.RetryPolicy(
    max_retries=2, delay=60, backoff=dg.Backoff.EXPONENTIAL, jitter=dg.Jitter.FULL
)

# Concurrency pools (limits in dagster_home/dagster.yaml and deploy/dagster.production.yaml): every
# curation and staging step uses all the cores it is given (datatrove tasks, tokenizer training),
# and training uses the whole machine; two of either at once only oversubscribe the node.
CPU_POOL = "apertus_cpu"
TRAIN_POOL = "apertus_train"

# Run-level retries, as tags on every job (deploy/dagster.production.yaml enables run retries with
# the same numbers; these tags make each job's intent explicit and override the instance default).
RUN_RETRY_TAGS = {"dagster/max_retries": "2", "dagster/retry_on_asset_or_op_failure": "false"}
# A relaunched training run starts from scratch (a new run folder): once is enough.
TRAIN_RUN_RETRY_TAGS = {**RUN_RETRY_TAGS, "dagster/max_retries": "1"}
# The production queue runs one run tagged heavy at a time (tokenizer training, model training).
HEAVY_TAGS = {"apertus/heavy": "true"}

_DEPS_VERSION_CHANGED = dg.AutomationCondition.any_deps_match(
    # A dependency's data version (our content hash) changed, outside a run that also rebuilt this
    # asset; or the dependency is requested on this same tick (so a chain updates in one go).
    (dg.AutomationCondition.data_version_changed() & ~dg.AutomationCondition.executed_with_root_target())
    | dg.AutomationCondition.will_be_requested()
).with_label("any_deps_version_changed")

_READY = (
    ~dg.AutomationCondition.any_deps_missing()
    & ~dg.AutomationCondition.any_deps_in_progress()
    & ~dg.AutomationCondition.in_progress()
)

# Per-snapshot curation steps below raw_documents: rebuilt when an upstream version of the same
# snapshot changes, and not when an upstream was only re-materialized to the same version (a re-run
# under unchanged code and data). New partitions are not requested here: the inbox sensor curates a
# new snapshot in one run, and raw_documents (the root) has no condition at all.
CURATION_AUTOMATION = (_DEPS_VERSION_CHANGED.since_last_handled() & _READY).with_label(
    "upstream version changed"
)

# The unpartitioned staging assets (curriculum, tokenizer, token shards) read every snapshot: the
# same rule, and only once no snapshot is missing or being curated. Like eager(), a staging asset
# that is missing (never built) is built as soon as its inputs exist.
STAGING_AUTOMATION = (
    (dg.AutomationCondition.newly_missing() | _DEPS_VERSION_CHANGED).since_last_handled() & _READY
).with_label("upstream version changed, or missing")

# trained_model has no automation condition: training is the expensive step and follows the
# retraining schedule (assets/schedules.py), which trains only when the curated data changed.
