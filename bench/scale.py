"""Benchmark: does every per-step cost stay flat from 10 to 1,000 snapshots (issue 16, acceptance)?

One synthetic history per size, in the real formats, written by the real writers and grown in place
(10 -> 100 -> 1,000: a size reuses the smaller one's folder): per snapshot

- one ledger batch (``Ledger.append_many``, one signed head) of 100 ``erasure_requested`` entries
  (70 URL, 19 sha256, 10 domain, 1 regex: bench/request_index.py's mix) and 894 filler entries;
- the request key index brought up to date (``records.request_keys_build.refresh_keys``) and its request set
  recorded in the raw version's config, as ingest does;
- six versions sealed (``records.manifest.seal``), looked up (``build_lookup``) and pinned
  (``records.pins``: one entry each, the audit index updated at each pin), made by the current
  curation code (bench/audit_index.py's ``snapshot_versions``);
- each reported to a real Dagster instance (SQLite, in ``<keep>/dagster``) as a materialization of
  its snapshot's partition, with data and code version tags;
- every 10 snapshots a curriculum, token shards and a trained model over those snapshots.

So about 1,000 ledger entries, 6 versions and 100 requests per snapshot. After each size's snapshots:
the snapshots registered as the instance's dynamic partitions, the catalog brought up to date
(``refresh_catalog``), a model trained on every snapshot's current version, the retraining state
index caught up and every snapshot checked clear of the requests recorded (``record_checked``, as
the erasure sensor notes), one tick (its record, records.retrain_tick, brought up to date), and one
ledger check (so the next check starts from a held head).

Then at each size, --repeats rounds, the in-process measures alternating within a round:

- ``pin_version``: a step's ledger write after sealing (its lookup built, the audit index updated,
  its one creation entry appended: ``pipelines.steps.pin_version``); ``ledger_append``: one entry
  appended by a fresh ``Ledger`` (the ledger part alone);
- ``asset_checks``: the version checks every dataset-version step runs
  (``assets.external.report.version_outcomes``: the version's files re-hashed and the incremental
  ``ledger_verifies``, from the last head it verified);
- ``catalog_update``: ``add_version_to_catalog``; ``state_update``: ``record_version``;
- ``tick``: ``assets.schedules.plan_retraining`` on the instance, after the step's version (one
  changed snapshot in the state index); ``tick_steady``: a second tick, nothing changed since (both
  with a model trained on every snapshot's current version, added after each size's snapshots, so
  the decision is the same at every size; the snapshot records each read are in the decision line);
- ``suppression_start``: the request key index brought up to date (``refresh_keys``) and the filter
  built, and its first document, where the worker opens the key segments and compiles the patterns
  (what ingest does once per step: O(new requests + log n), the pattern set compiled once per process
  and patterns file); ``suppression_per_doc``: ``SuppressionFilter.filter`` per document
  over --docs documents (bench/request_index.py's documents: 2.5% named by a request);

and the cold ``apertus audit contains --url/--sha256`` processes, default scope and ``--model``,
timed by bench/audit_index.py's ``time_commands`` (one untimed round, then --repeats round-robin),
beside their floors (``floor.*``: ``python -c pass`` and the contains path's imports).
The step's version is sealed outside the timing (snapshot ``bench-step``, registered nowhere, so no
tick reads it). Medians with min and max; one table per size, then the ratios largest/smallest size
against the goals; raw results to --out (bench/scale.json).

Usage: python bench/scale.py [--sizes 10 100 1000] [--repeats 3] [--docs 20000] [--keep DIR]
       [--out bench/scale.json]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
os.environ.setdefault("DAGSTER_DISABLE_TELEMETRY", "1")

import dagster as dg  # noqa: E402
from dagster._core.definitions.data_version import CODE_VERSION_TAG, DATA_VERSION_TAG  # noqa: E402

from bench import audit_index, request_index  # noqa: E402
from bench.timing import commit, summary  # noqa: E402
from records.keys import KEYS_ENV, create_identity  # noqa: E402
from records.layout import DataLayout  # noqa: E402

GOALS = "each flat within 2x; contains under 200 ms cold at 1,000 snapshots; a tick under 5 s"
FLAT = 2.0
CONTAINS_MS = 200.0
TICK_MS = 5000.0
STEP_SNAPSHOT = "bench-step"


class History:
    """The data folder, key folder and Dagster instance of one kept history (``root``)."""

    def __init__(self, root: Path, documents: int):
        self.root, self.documents = root, documents
        self.layout = DataLayout(root / "data")
        keys = root / "keys"
        if not keys.exists():
            create_identity(keys)
        os.environ[KEYS_ENV] = str(keys)
        os.environ["APERTUS_DATA"] = str(self.layout.root)
        home = root / "dagster"
        home.mkdir(parents=True, exist_ok=True)
        (home / "dagster.yaml").touch()  # the default storage (SQLite under home), said so
        os.environ["DAGSTER_HOME"] = str(home)
        self.instance = dg.DagsterInstance.get()
        self.filler = 0

    def report(self, ref: str, partition: str | None = None) -> None:
        """A materialization of ``ref``'s asset with its data and code version, as a run reports it."""
        from assets.curation import CODE_VERSION

        asset, version_id = ref.split("/")
        tags = {DATA_VERSION_TAG: version_id, CODE_VERSION_TAG: CODE_VERSION}
        self.instance.report_runless_asset_event(
            dg.AssetMaterialization(asset, partition=partition, tags=tags)
        )

    def add_snapshot(self, layout: DataLayout, name: str, documents: int) -> str:
        from assets.curation import CODE_VERSION
        from records.ledger import Ledger
        from records.request_index import REQUEST_SET_KEY
        from records.request_keys_build import refresh_keys

        number = int(name.split("-")[1])
        events = request_index._events(number)  # 100 requests, then filler creation entries
        Ledger(layout.ledger).append_many(events[: request_index.PER_SNAPSHOT - 6])  # ~1,000 with the pins
        request_set = refresh_keys(layout).request_set()  # as ingest_snapshot
        made = audit_index.snapshot_versions(
            layout, name, documents, {REQUEST_SET_KEY: request_set}, code_version=CODE_VERSION
        )
        for manifest in made:
            self.report(manifest.ref, name)
        return made[-1].ref

    def add_model(self, layout: DataLayout, sources: list[str], name: str) -> str:
        from records.manifest import load_manifest

        model = audit_index.add_model(layout, sources, name)
        shards, stages = load_manifest(layout.datasets / model).parents
        for ref in (stages, shards, model):
            self.report(ref)
        return model

    def grow(self, snapshots: int) -> tuple[dict, dict]:
        """Grow to ``snapshots`` snapshots and bring the derived records up to date; return the
        audit samples and how long each part took (seconds)."""
        from assets.schedules import plan_retraining
        from records.catalog import refresh_catalog
        from records.ledger import Ledger
        from records.request_index import load_index
        from records.retrain_state import read_state, record_checked

        took, start = {}, time.perf_counter()
        first = len(self.instance.get_dynamic_partitions("snapshots"))

        def progress(done: int) -> None:
            if done % 10 == 0 or done == snapshots:
                rate = (done - first) / (time.perf_counter() - start)
                print(
                    f"  built {done}/{snapshots} snapshots ({rate:.2f} snapshots/s)",
                    file=sys.stderr,
                    flush=True,
                )

        samples = audit_index.build_history(
            self.layout.root, snapshots, self.documents, add_snapshot=self.add_snapshot,
            add_model=self.add_model, progress=progress,
        )  # fmt: skip
        names = [f"crawl-{s:04d}" for s in range(snapshots)]
        self.instance.add_dynamic_partitions("snapshots", names[first:])
        # A model trained on every snapshot's current version: the tick is timed in the steady state
        # at every size (otherwise a retraining is due at some sizes and not at others, and a due
        # retraining names every snapshot's version).
        self.add_model(self.layout, samples["ends"], f"all-{snapshots}")
        took["snapshots_s"] = time.perf_counter() - start
        for name, fn in (
            ("catalog_s", lambda: refresh_catalog(self.layout)),
            ("request_index_s", lambda: load_index(self.layout)),
            ("state_index_s", lambda: self._checked(names, read_state, record_checked)),
            ("tick_record_s", lambda: plan_retraining(self.instance, self.layout)),
            ("ledger_check_s", lambda: Ledger(self.layout.ledger).verify_since_checked()),
        ):
            start = time.perf_counter()
            fn()
            took[name] = time.perf_counter() - start
            print(f"  {name[:-2]} brought up to date in {took[name]:.1f} s", file=sys.stderr, flush=True)
        took["ledger_entries"] = Ledger(self.layout.ledger).size()
        return samples, {k: round(v, 1) if k.endswith("_s") else v for k, v in took.items()}

    def _checked(self, names, read_state, record_checked) -> None:
        """The state index caught up, and every snapshot checked clear of every recorded request."""
        from records.assets import RAW_DOCUMENTS

        state = read_state(self.layout, names)
        record_checked(
            self.layout,
            {n: (s.assets[RAW_DOCUMENTS][0], state.num_requests) for n, s in state.snapshots.items()},
        )


def _timed(fn, *args):
    """(milliseconds ``fn(*args)`` took, what it returned)."""
    start = time.perf_counter()
    out = fn(*args)
    return (time.perf_counter() - start) * 1000, out


def _summary(values: list[float]) -> dict:
    return summary(values)


def _suppression_start(layout: DataLayout, first):
    """What ingest does once per step: the request key index brought up to date and the filter
    built; its worker opens the key segments and compiles the patterns on its first document, so
    that is part of the start."""
    from pipelines.suppression import SuppressionFilter
    from records.request_keys_build import refresh_keys

    block = SuppressionFilter(stored=refresh_keys(layout))
    block.filter(first)
    return block


def _round(history: History, key: str, documents: list) -> tuple[dict[str, float], object, int, dict]:
    """One round of the in-process measures on a new step version ``key``: (milliseconds per
    measure, nanoseconds per document for suppression; the tick's plan; documents dropped; the
    snapshot records each tick read)."""
    from assets.external.report import version_outcomes
    from assets.schedules import plan_retraining
    from pipelines.steps import pin_version
    from records.assets import QUALITY_SCORED
    from records.catalog import add_version_to_catalog
    from records.documents import EXCLUSIONS, INDEX
    from records.ledger import DATASET_VERSION_CREATED, Ledger
    from records.retrain_state import record_version

    layout, out, read = history.layout, {}, {}
    files = {
        INDEX: audit_index._table(key, history.documents, 1, audit_index.INDEX_COLUMNS, True),
        EXCLUSIONS: audit_index._table(key, history.documents, 1, audit_index.EXCLUSION_COLUMNS, False),
    }
    step = audit_index._seal(layout, QUALITY_SCORED, STEP_SNAPSHOT, (), files)  # untimed: the step's work
    folder = layout.datasets / step.ref
    out["pin_version"], _ = _timed(pin_version, layout, step, folder)
    payload = {"dataset_version": f"{QUALITY_SCORED}/{key}", "snapshot": STEP_SNAPSHOT}
    out["ledger_append"], _ = _timed(lambda: Ledger(layout.ledger).append(DATASET_VERSION_CREATED, payload))
    out["asset_checks"], outcomes = _timed(version_outcomes, folder, layout)
    assert all(passed for passed, _ in outcomes.values()), outcomes
    out["catalog_update"], _ = _timed(add_version_to_catalog, layout, step.ref)
    out["state_update"], _ = _timed(record_version, layout, step)
    out["tick"], plan = _timed(plan_retraining, history.instance, layout)  # after the step's version
    out["tick_steady"], steady = _timed(plan_retraining, history.instance, layout)  # nothing changed
    assert steady == plan, (steady, plan)
    read["tick"], read["tick_steady"] = plan.records_read, steady.records_read
    out["suppression_start"], block = _timed(_suppression_start, layout, documents[0])
    per_doc, dropped = _timed(lambda: sum(block.filter(d) is not True for d in documents))
    out["suppression_per_doc"] = per_doc * 1e6 / len(documents)  # ns
    return out, plan, dropped, read


def time_steps(history: History, repeats: int, docs: int) -> tuple[dict, dict]:
    """The in-process per-step measures (see the module docstring), ``repeats`` rounds, alternating
    within each; returns their summaries (milliseconds; nanoseconds for ``suppression_per_doc``)
    and the tick's last decision."""
    from records.request_index import load_index

    documents = request_index._documents(docs, list(load_index(history.layout).requests))
    times: dict[str, list[float]] = {}
    for n in range(repeats):
        key = f"{STEP_SNAPSHOT}-{time.time_ns()}-{n}"
        out, plan, dropped, read = _round(history, key, documents)
        for name, value in out.items():
            times.setdefault(name, []).append(value)
        records_read = read  # the same every round: one changed snapshot, then none
    # The retrain reason names every snapshot the model lacks: its first words say enough.
    retrain = plan.retrain if plan.retrain is None or len(plan.retrain) < 120 else plan.retrain[:120] + " …"
    decision = {"curate": len(plan.curate), "retrain": retrain, "dropped": dropped, "documents": docs,
                "records_read": records_read}  # fmt: skip
    return {k: _summary(v) for k, v in times.items()}, decision


def time_contains(history: History, samples: dict, repeats: int) -> dict:
    env = {**os.environ, "APERTUS_DATA": str(history.layout.root), "PYTHONPATH": str(REPO)}
    env.pop("PYTHONDONTWRITEBYTECODE", None)  # as a user's processes: imports from cached bytecode
    commands = {**audit_index.floor_commands(), **audit_index.scale_commands(samples, old=False)}
    timed = audit_index.time_commands(commands, env, repeats)
    # The floors (interpreter start, the contains path's imports) say how much of a cold process
    # no index can remove; they are not per-step costs, so no goal applies to them.
    return {(f"contains.{k.split('.', 1)[1]}" if k.startswith("index.") else f"floor.{k}"): v
            for k, v in timed.items()}  # fmt: skip


UNITS = {"suppression_per_doc": "ns"}


def table(size: int, result: dict) -> str:
    load = " ".join(f"{x:.2f}" for x in result["load_start"])
    lines = [f"snapshots {size}: {result['versions']} versions, {result['built']['ledger_entries']} ledger "
             f"entries, {result['requests']} requests; built {result['built']}; load at start {load}",
             f"  {'measure':<28} {'median':>10} {'[min, max]':>22} unit"]  # fmt: skip
    for name, t in result["measures"].items():
        spread = f"[{t['min']:.1f}, {t['max']:.1f}]"
        lines.append(f"  {name:<28} {t['median']:>10.1f} {spread:>22} {UNITS.get(name, 'ms')}")
    lines.append(f"  tick decision: {result['tick_decision']}")
    return "\n".join(lines)


def verdicts(results: dict) -> tuple[str, dict]:
    """The ratios largest/smallest size of every median, against the goals."""
    sizes = sorted(results, key=int)
    low, high = results[sizes[0]]["measures"], results[sizes[-1]]["measures"]
    out, lines = {}, [f"ratios {sizes[-1]}/{sizes[0]} snapshots; goals: {GOALS}",
                      f"  {'measure':<28} {'ratio':>7} {'at ' + sizes[-1]:>12}  verdict"]  # fmt: skip
    for name in low:
        if name.startswith("floor."):
            continue
        ratio = high[name]["median"] / low[name]["median"]
        notes = ["flat" if ratio <= FLAT else f"GROWS {ratio:.1f}x (goal {FLAT:.0f}x)"]
        if name.startswith("contains."):
            under = high[name]["median"] < CONTAINS_MS
            notes.append(f"{'under' if under else 'OVER'} {CONTAINS_MS:.0f} ms")
        if name.startswith("tick"):
            notes.append(f"{'under' if high[name]['median'] < TICK_MS else 'OVER'} 5 s")
        if name == "suppression_start":  # the first round compiles the patterns: O(patterns), per process
            first = high[name]["runs"][0] / low[name]["runs"][0]
            notes.append(f"first round {high[name]['runs'][0]:.1f} ms, {first:.1f}x")
        out[name] = {"ratio": round(ratio, 2), "verdict": "; ".join(notes)}
        lines.append(f"  {name:<28} {ratio:>7.2f} {high[name]['median']:>12.1f}  {'; '.join(notes)}")
    return "\n".join(lines), out


def measure(history: History, size: int, repeats: int, docs: int) -> dict:
    """Grow ``history`` to ``size`` snapshots and time every per-step cost there."""
    print(f"building {size} snapshots in {history.root}", file=sys.stderr, flush=True)
    samples, built = history.grow(size)
    load = os.getloadavg()
    measures, decision = time_steps(history, repeats, docs)
    measures.update(time_contains(history, samples, repeats))
    versions = sum(1 for _ in history.layout.datasets.glob("*/*/manifest.json"))
    requests = size * request_index.REQUESTS_PER_SNAPSHOT
    return {"versions": versions, "requests": requests, "built": built, "load_start": load,
            "load_end": os.getloadavg(), "measures": measures, "tick_decision": decision}  # fmt: skip


def _commit() -> str:
    return commit()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10, 100, 1000])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--docs", type=int, default=20000, help="documents for suppression per document")
    parser.add_argument("--documents", type=int, default=100, help="documents per version")
    parser.add_argument("--keep", type=Path, help="build (and grow) the history here and keep it")
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "scale.json")
    args = parser.parse_args()
    root = args.keep or Path(tempfile.mkdtemp(prefix="apertus-scale-"))
    report = {"commit": _commit(), "cpus": os.cpu_count(), "repeats": args.repeats, "docs": args.docs,
              "documents_per_version": args.documents, "sizes": {}}  # fmt: skip
    try:
        history = History(root, args.documents)
        for size in sorted(args.sizes):
            report["sizes"][str(size)] = measure(history, size, args.repeats, args.docs)
            print(table(size, report["sizes"][str(size)]), flush=True)
            args.out.write_text(json.dumps(report, indent=1) + "\n")
        if len(report["sizes"]) > 1:
            text, report["ratios"] = verdicts(report["sizes"])
            print(text, flush=True)
        args.out.write_text(json.dumps(report, indent=1) + "\n")
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
