"""Benchmark: does a retraining-schedule tick, and a step's catalog update, stay flat as the history grows?

At --snapshots N (default 10, 100, 1000) builds a synthetic history in the real formats, in a
temporary data folder with its own key folder and a real (SQLite) Dagster instance: per snapshot the
six curation versions (raw_documents … quality_scored; each sealed by ``records.manifest.seal`` with
a 20-row ``index.parquet``, pinned by a ``dataset_version_created`` entry, and reported to the
instance as a run's materialization with its data and code version) plus --filler ledger entries
(creation entries of versions without a snapshot); --requests erasure requests recorded first and
applied by every raw_documents version; then one trained model over every snapshot's quality_scored
version, the catalog built whole and the state index built by a first read. Then times, --repeats
times, alternating:

- a tick: ``plan_retraining`` (the state index) against ``plan_retraining_from_event_log`` (one
  event-log query per asset per snapshot and a ledger parse per snapshot; only up to
  --old-tick-max snapshots: it grows as snapshots x ledger entries);
- a step's catalog update, for a new version sealed and pinned on top of the history (outside the
  timing): ``add_version_to_catalog`` against ``refresh_catalog`` (the call finish_step made
  before), and the step's state-index update ``record_version``.

Prints JSON: per size, each path's median and spread (min, max) in ms, and the growth of each
median from the smallest to the largest size. ``build_history`` and ``time_size`` are importable
(bench/scale.py). Usage: python bench/retrain_scale.py [--snapshots 10 100 1000] [--repeats 3]
[--filler 200] [--requests 2] [--old-tick-max 100] [--out FILE]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("DAGSTER_DISABLE_TELEMETRY", "1")

import dagster as dg  # noqa: E402
import pyarrow as pa  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402
from dagster._core.definitions.data_version import CODE_VERSION_TAG, DATA_VERSION_TAG  # noqa: E402

from assets.curation import CODE_VERSION  # noqa: E402
from assets.schedules import plan_retraining, plan_retraining_from_event_log  # noqa: E402
from bench.timing import commit, elapsed_ms, summary  # noqa: E402
from records.assets import (  # noqa: E402
    CURRICULUM_STAGES,
    DEDUPLICATED,
    LANGUAGE_IDENTIFIED,
    QUALITY_CLASSIFIER,
    QUALITY_FILTERED,
    QUALITY_SCORED,
    RAW_DOCUMENTS,
    TOKEN_SHARDS,
    TOKENIZER,
    TRAINED_MODEL,
)
from records.catalog import add_version_to_catalog, refresh_catalog  # noqa: E402
from records.documents import INDEX  # noqa: E402
from records.keys import KEYS_ENV, create_identity  # noqa: E402
from records.layout import DataLayout  # noqa: E402
from records.ledger import DATASET_VERSION_CREATED, MODEL_TRAINED, Ledger  # noqa: E402
from records.manifest import Manifest, seal  # noqa: E402
from records.pins import dataset_payload  # noqa: E402
from records.requests import record_request  # noqa: E402
from records.retrain_state import read_state, record_version  # noqa: E402

CURATION = (
    RAW_DOCUMENTS,
    LANGUAGE_IDENTIFIED,
    QUALITY_FILTERED,
    DEDUPLICATED,
    QUALITY_CLASSIFIER,
    QUALITY_SCORED,
)
ROWS = 20  # index rows per version: the catalog's rows are real, their number is not the point


def _seal(layout: DataLayout, asset: str, key: str, snapshot=None, parents=(), config=None) -> Manifest:
    staging = layout.work / f"bench-{hashlib.sha256(f'{asset}{key}'.encode()).hexdigest()[:16]}"
    staging.mkdir(parents=True)
    urls = [f"https://{key}.example/{asset}/{n}" for n in range(ROWS)]
    table = {
        "doc_id": [f"{key}-{n}" for n in range(ROWS)],
        "url": urls,
        "sha256": [hashlib.sha256(u.encode()).hexdigest() for u in urls],
    }
    pq.write_table(pa.table(table), staging / INDEX)
    manifest, _ = seal(
        staging, layout.datasets, asset=asset, snapshot=snapshot, parents=tuple(parents),
        config=config or {}, code_version=CODE_VERSION,
    )  # fmt: skip
    return manifest


def _report(instance: dg.DagsterInstance, manifest: Manifest, partition: str | None = None) -> None:
    tags = {DATA_VERSION_TAG: manifest.version_id, CODE_VERSION_TAG: CODE_VERSION}
    event = dg.AssetMaterialization(manifest.asset, partition=partition, tags=tags)
    instance.report_runless_asset_event(event)


def _filler(start: int, count: int) -> list[tuple[str, dict]]:
    out = []
    for n in range(start, start + count):
        digest = hashlib.sha256(str(n).encode()).hexdigest()
        out.append((DATASET_VERSION_CREATED, {"dataset_version": f"{TOKENIZER}/{digest}", "snapshot": None,
                    "parents": [], "code_version": "filler", "manifest_sha256": digest}))  # fmt: skip
    return out


def build_history(
    layout: DataLayout, instance: dg.DagsterInstance, snapshots: int, filler: int, requests: int
) -> dict:
    """A synthetic history of ``snapshots`` snapshots in ``layout`` and ``instance`` (see the module
    docstring); returns how long each part took, in seconds."""
    took, start = {}, time.perf_counter()
    applied = [
        record_request(
            layout, "url", f"https://erase.example/{n}", requested_at="2026-12-01T00:00:00Z"
        ).request_id
        for n in range(requests)
    ]
    names = [f"crawl-{n:04d}" for n in range(snapshots)]
    instance.add_dynamic_partitions("snapshots", names)
    ledger, scored, counter = Ledger(layout.ledger), [], 0
    for name in names:
        parents, events = (), []
        for asset in CURATION:
            config = {"suppression": applied} if asset == RAW_DOCUMENTS and applied else None
            manifest = _seal(layout, asset, name, snapshot=name, parents=parents, config=config)
            parents = (manifest.ref,)
            events.append((DATASET_VERSION_CREATED, dataset_payload(layout, manifest, None)))
            _report(instance, manifest, name)
        scored.append(manifest)
        ledger.append_many(events + _filler(counter, filler))  # one batch, one signed head per snapshot
        counter += filler
    took["versions_s"] = time.perf_counter() - start
    start = time.perf_counter()
    stages = _seal(layout, CURRICULUM_STAGES, "stages", parents=[m.ref for m in scored])
    tokenizer = _seal(layout, TOKENIZER, "bpe")
    shards = _seal(layout, TOKEN_SHARDS, "tokens", parents=[stages.ref, tokenizer.ref])
    model = _seal(layout, TRAINED_MODEL, "weights", parents=[shards.ref, tokenizer.ref, stages.ref])
    ledger.append_many(
        [(DATASET_VERSION_CREATED, dataset_payload(layout, m, None)) for m in (stages, tokenizer, shards)]
        + [(MODEL_TRAINED, {"model_version": model.ref, "kind": "pretrain", "parents": list(model.parents)})]
    )
    for manifest in (stages, tokenizer, shards, model):
        _report(instance, manifest)
    took["model_s"] = time.perf_counter() - start
    start = time.perf_counter()
    refresh_catalog(layout)
    took["catalog_s"] = time.perf_counter() - start
    start = time.perf_counter()
    assert read_state(layout, names).rebuilt == "missing"  # built from the ledger, once
    took["state_index_s"] = time.perf_counter() - start
    took["ledger_entries"] = ledger.size()
    return {k: round(v, 1) if k.endswith("_s") else v for k, v in took.items()}


def _ms(fn) -> float:
    return elapsed_ms(fn)


def _summary(times: list[float]) -> dict:
    return summary(times, "_ms", 2)


def _step(layout: DataLayout, key: str, catalog) -> float:
    """Seal and pin a new version on top of the history (untimed), then time what a step does next:
    ``catalog(ref)``, or the state index's ``record_version`` when ``catalog`` is None. Its snapshot
    is registered nowhere, so no tick reads it."""
    step = _seal(layout, QUALITY_SCORED, key, snapshot="bench-step")
    Ledger(layout.ledger).append(DATASET_VERSION_CREATED, dataset_payload(layout, step, None))
    if catalog is None:
        add_version_to_catalog(layout, step.ref)
        return _ms(lambda: record_version(layout, step))
    return _ms(lambda: catalog(step.ref))


def time_size(
    base: Path, snapshots: int, repeats: int, filler: int, requests: int, old_tick_max: int
) -> dict:
    """Build a history of ``snapshots`` under ``base`` and time the tick and a step's catalog update."""
    layout = DataLayout(base / f"data-{snapshots}")
    (base / f"dagster-{snapshots}").mkdir()
    os.environ["APERTUS_DATA"] = str(layout.root)
    with dg.instance_for_test(temp_dir=str(base / f"dagster-{snapshots}")) as instance:
        built = build_history(layout, instance, snapshots, filler, requests)
        new_tick, old_tick, add, refresh, state = [], [], [], [], []
        expected = plan_retraining(instance, layout)
        assert not expected.curate and not expected.retrain, expected  # every snapshot is checked to the end
        for n in range(repeats):  # alternating, so drifting load hits both paths alike
            new_tick.append(_ms(lambda: plan_retraining(instance, layout)))
            if snapshots <= old_tick_max:
                start = time.perf_counter()
                plan = plan_retraining_from_event_log(instance, layout)
                old_tick.append((time.perf_counter() - start) * 1000)
                assert plan == expected
            add.append(_step(layout, f"step-{n}", lambda ref: add_version_to_catalog(layout, ref)))
            state.append(_step(layout, f"state-{n}", None))
            refresh.append(_step(layout, f"step-old-{n}", lambda ref: refresh_catalog(layout)))
    result = {"snapshots": snapshots, "versions": snapshots * len(CURATION) + 4, "built": built,
              "tick_state_index": _summary(new_tick),
              "tick_event_log_and_ledger": _summary(old_tick) if old_tick else "not run (above --old-tick-max)",
              "catalog_add_version": _summary(add), "catalog_refresh_old": _summary(refresh),
              "state_index_record_version": _summary(state)}  # fmt: skip
    shutil.rmtree(layout.root, ignore_errors=True)
    return result


def _commit() -> str:
    return commit()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--snapshots", type=int, nargs="+", default=[10, 100, 1000])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--filler", type=int, default=200, help="ledger entries per snapshot besides its 6 pins"
    )
    parser.add_argument("--requests", type=int, default=2)
    parser.add_argument("--old-tick-max", type=int, default=100)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    base = Path(tempfile.mkdtemp(prefix="apertus-retrain-scale-"))
    os.environ[KEYS_ENV] = str(base / "keys")
    create_identity(base / "keys")
    report: dict = {"commit": _commit(), "cpus": os.cpu_count(), "load_average_start": os.getloadavg(),
                    "repeats": args.repeats, "filler_entries_per_snapshot": args.filler,
                    "requests": args.requests, "sizes": []}  # fmt: skip
    try:
        for size in args.snapshots:
            report["sizes"].append(
                time_size(base, size, args.repeats, args.filler, args.requests, args.old_tick_max)
            )
            print(json.dumps(report["sizes"][-1]), file=sys.stderr, flush=True)
    finally:
        shutil.rmtree(base, ignore_errors=True)
    first, last = report["sizes"][0], report["sizes"][-1]
    report["growth_smallest_to_largest"] = {
        k: round(last[k]["median_ms"] / first[k]["median_ms"], 2)
        for k in (
            "tick_state_index",
            "catalog_add_version",
            "catalog_refresh_old",
            "state_index_record_version",
        )
    }
    report["load_average_end"] = os.getloadavg()
    text = json.dumps(report, indent=1)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
