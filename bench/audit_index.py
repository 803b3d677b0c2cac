"""Benchmark of cold `apertus audit contains --url / --sha256` at 10, 100 and 1,000 snapshots
(issue 16): the audit index (records.audit_index) against the old path that reads every manifest
and every lookup in scope.

``build_history`` writes a synthetic history in the real formats with the real writers, quickly
(no pipeline run): per snapshot a chain of five versions of documents (raw_documents ->
language_identified -> quality_filtered -> deduplicated -> quality_scored, whose second parent is
the snapshot's quality_classifier version: six versions per snapshot), each with index.parquet and
exclusions.parquet in the pipeline's columns (pipelines.tables), sealed with records.manifest.seal,
its lookup built with records.lookup_build.build_lookup and pinned with records.pins (so the
audit index grows as in production, one version per pin); every MODEL_EVERY snapshots a
curriculum_stages version drawing on those snapshots' chain ends, its token_shards and a
trained_model (pinned with ``model_trained``). bench/scale.py may import ``build_history`` and
``time_commands``.

Each command is a fresh process (interpreter start and imports included; the OS page cache is warm,
the machine's caches are not dropped); the commands of one scale run round-robin, ``repeats`` times
after one untimed run, and each reports median, min and max milliseconds. The floors are timed the
same way: ``python -c pass`` and the imports of the contains path.

Usage: python bench/audit_index.py [--snapshots 10 100 1000] [--repeats 3] [--old-limit 1000]
       [--keep DIR] [--out bench/audit_index.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402
import pyarrow as pa  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402

from pipelines.tables import EXCLUSION_COLUMNS, INDEX_COLUMNS  # noqa: E402
from records.assets import (  # noqa: E402
    CURRICULUM_STAGES,
    DEDUPLICATED,
    LANGUAGE_IDENTIFIED,
    QUALITY_CLASSIFIER,
    QUALITY_FILTERED,
    QUALITY_SCORED,
    RAW_DOCUMENTS,
    TOKEN_SHARDS,
    TRAINED_MODEL,
)
from records.documents import EXCLUSIONS, INDEX  # noqa: E402
from records.layout import DataLayout  # noqa: E402
from records.ledger.format import MODEL_TRAINED  # noqa: E402
from records.lookup import file_root  # noqa: E402
from records.lookup_build import build_lookup  # noqa: E402
from records.manifest import seal  # noqa: E402
from records.pins import ensure_pinned, pin_dataset_version  # noqa: E402

STEPS = (RAW_DOCUMENTS, LANGUAGE_IDENTIFIED, QUALITY_FILTERED, DEDUPLICATED, QUALITY_SCORED)
DROP_EVERY = 7  # step k drops the documents i with i % DROP_EVERY == k (k >= 1): a few per step
MODEL_EVERY = 10  # snapshots per model chain
SAMPLES = "samples.json"


def _table(snapshot: str, n: int, k: int, columns: tuple[str, ...], kept: bool) -> pa.Table:
    """The documents of step k's index (kept) or exclusions (dropped), in the pipeline's columns."""
    i = np.arange(n)
    alive = np.ones(n, bool)
    for step in range(1, k):
        alive &= i % DROP_EVERY != step
    dropped = (i % DROP_EVERY == k) & (k >= 1)
    chosen = i[alive & ~dropped] if kept else i[alive & dropped]
    values = {
        "doc_id": [f"{snapshot}/part-0.jsonl.gz#{j}" for j in chosen],
        "snapshot": [snapshot] * len(chosen),
        "url": [f"https://site{j % 97}.example/{snapshot}/{j}.html" for j in chosen],
        "sha256": [_sha(snapshot, j) for j in chosen],
        "shard": ["shards/00000.parquet"] * len(chosen),
        "row": list(range(len(chosen))),
        "step": [STEPS[k]] * len(chosen),
        "reason": ["synthetic_drop"] * len(chosen),
        "details": ['{"rule":"synthetic"}'] * len(chosen),
    }
    types = {"source_offset": pa.int64(), "language_score": pa.float64(), "quality_score": pa.float64(),
             "quality_percentile": pa.float64(), "minhash_cluster_size": pa.int64(), "num_chars": pa.int32(),
             "num_tokens_est": pa.int64(), "row": pa.int64()}  # fmt: skip
    arrays = {}
    for c in columns:
        kind = types.get(c, pa.string())
        arrays[c] = pa.array(values[c], kind) if c in values else pa.nulls(len(chosen), kind)
    return pa.table(arrays)


def _sha(snapshot: str, j: int) -> str:
    import hashlib

    return hashlib.sha256(f"{snapshot}:{j}".encode()).hexdigest()


def _seal(
    layout: DataLayout,
    asset: str,
    snapshot: str | None,
    parents: tuple[str, ...],
    files: dict,
    config: dict | None = None,
    code_version: str = "",
) -> object:
    staging = layout.work / f"staging-{asset}-{snapshot}-{len(parents)}-{time.monotonic_ns()}"
    staging.mkdir(parents=True)
    stats = {}
    for name, content in files.items():
        if isinstance(content, pa.Table):
            pq.write_table(content, staging / name, compression="zstd")
            side = "kept" if name == INDEX else "excluded"
            stats[side] = {"documents": content.num_rows}
        else:
            (staging / name).write_text(content)
    manifest, _ = seal(staging, layout.datasets, asset=asset, snapshot=snapshot, parents=parents,
                       config={"synthetic": True, **(config or {})}, stats=stats, code_version=code_version)  # fmt: skip
    return manifest


def snapshot_versions(
    layout: DataLayout, snapshot: str, documents: int, raw_config: dict | None = None, code_version: str = ""
) -> list:
    """One snapshot's six versions (classifier first, then the chain), sealed, looked up and pinned as
    a step does, ``raw_config`` added to raw_documents' config; return their manifests."""
    parents: tuple[str, ...] = ()
    classifier = _seal(
        layout, QUALITY_CLASSIFIER, snapshot, (), {"classifier.json": '{"synthetic": 1}'}, None, code_version
    )
    pin_dataset_version(layout, classifier)
    made = [classifier]
    for k, asset in enumerate(STEPS):
        files = {
            INDEX: _table(snapshot, documents, k, INDEX_COLUMNS, True),
            EXCLUSIONS: _table(snapshot, documents, k, EXCLUSION_COLUMNS, False),
        }
        step_parents = (*parents, classifier.ref) if asset == QUALITY_SCORED else parents
        config = raw_config if asset == RAW_DOCUMENTS else None
        manifest = _seal(layout, asset, snapshot, step_parents, files, config, code_version)
        root = file_root(build_lookup(layout, manifest, layout.datasets / manifest.ref))
        pin_dataset_version(layout, manifest, lookup_root=root)
        parents = (manifest.ref,)
        made.append(manifest)
    return made


def add_snapshot(layout: DataLayout, snapshot: str, documents: int) -> str:
    """One snapshot's six versions (``snapshot_versions``); return its chain end."""
    return snapshot_versions(layout, snapshot, documents)[-1].ref


def add_model(layout: DataLayout, sources: list[str], name: str) -> str:
    """curriculum_stages over ``sources``, its token_shards, and a trained_model; return the model ref."""
    stages = _seal(layout, CURRICULUM_STAGES, None, tuple(sources), {"stages.json": f'{{"m": "{name}"}}'})
    pin_dataset_version(layout, stages)
    shards = _seal(layout, TOKEN_SHARDS, None, (stages.ref,), {"shards.json": f'{{"m": "{name}"}}'})
    pin_dataset_version(layout, shards)
    # Its curriculum is a direct parent too, as a trained model's is (the retraining tick reads it there).
    parents = (shards.ref, stages.ref)
    model = _seal(layout, TRAINED_MODEL, None, parents, {"model.json": f'{{"m": "{name}"}}'})
    ensure_pinned(layout, model.ref, MODEL_TRAINED, {"model_version": model.ref, "parents": list(parents)},
                  sealed_now=True)  # fmt: skip
    return model.ref


def build_history(
    root: Path,
    snapshots: int,
    documents: int = 100,
    start: int = 0,
    add_snapshot=add_snapshot,
    add_model=add_model,
    progress=None,
) -> dict:
    """Grow the data folder at ``root`` to ``snapshots`` snapshots (keeping those it has, adding from
    ``start`` or its count, whichever is larger); return the sample questions (root/samples.json).
    bench/scale.py passes its own ``add_snapshot(layout, name, documents) -> chain end`` and
    ``add_model(layout, sources, name) -> model ref`` (which call these and write more records), and
    ``progress(done)``, called after each snapshot."""
    layout = DataLayout(root)
    samples = json.loads((root / SAMPLES).read_text()) if (root / SAMPLES).exists() else {"ends": []}
    for s in range(max(start, len(samples["ends"])), snapshots):  # a kept folder grows, never re-adds
        samples["ends"].append(add_snapshot(layout, f"crawl-{s:04d}", documents))
        if (s + 1) % MODEL_EVERY == 0:
            samples["model"] = add_model(layout, samples["ends"][-MODEL_EVERY:], f"m{s}")
        if progress is not None:
            progress(s + 1)
    middle = f"crawl-{(snapshots - MODEL_EVERY + MODEL_EVERY // 2):04d}"
    samples["kept"] = {"url": f"https://site5.example/{middle}/5.html", "sha256": _sha(middle, 5)}
    samples["dropped"] = {"url": f"https://site3.example/{middle}/3.html", "sha256": _sha(middle, 3)}
    samples["snapshots"] = snapshots
    shutil.rmtree(layout.work, ignore_errors=True)
    (root / SAMPLES).write_text(json.dumps(samples))
    return samples


def time_commands(commands: dict[str, tuple[list[str], int]], env: dict, repeats: int) -> dict[str, dict]:
    """Per command: median, min and max wall milliseconds of fresh runs, and the median CPU
    milliseconds (user + system of the process, from getrusage: far less sensitive to other jobs
    on a shared machine than wall time); one untimed round first, then ``repeats`` rounds
    round-robin; a wrong exit status stops it."""
    import resource

    times: dict[str, list[float]] = {name: [] for name in commands}
    cpu: dict[str, list[float]] = {name: [] for name in commands}
    for round_ in range(repeats + 1):
        for name, (command, expect) in commands.items():
            before = resource.getrusage(resource.RUSAGE_CHILDREN)
            start = time.perf_counter()
            result = subprocess.run(command, env=env, capture_output=True, text=True)
            wall = time.perf_counter() - start
            after = resource.getrusage(resource.RUSAGE_CHILDREN)
            if round_:
                times[name].append(round(wall * 1000, 1))
                used = after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime
                cpu[name].append(round(used * 1000, 1))
            if result.returncode != expect:
                raise SystemExit(
                    f"{name}: exit {result.returncode}, expected {expect}\n{result.stderr[-2000:]}"
                )
    return {
        name: {"median": statistics.median(t), "min": min(t), "max": max(t), "runs": t,
               "cpu_median": statistics.median(cpu[name]), "cpu_runs": cpu[name]}
        for name, t in times.items()
    }  # fmt: skip


OLD = """import sys, json
from records.layout import DataLayout
from provenance.audit.contains import IN, contains
key, value, model = sys.argv[1], sys.argv[2], sys.argv[3]
layout = DataLayout.from_env()
targets = None
if model:  # what contains_in_model did before the index: every manifest, then the model's sources
    from provenance.audit.model_use import training_data
    from records.versions import load_versions
    targets = training_data(layout, model, load_versions(layout))[3]
result = contains(layout, **{key: value}, targets=targets, use_index=False)
print(json.dumps(result.to_dict()))
sys.exit(0 if result.status == IN else 1)
"""


def scale_commands(samples: dict, old: bool) -> dict[str, tuple[list[str], int]]:
    py = sys.executable
    apertus = str(Path(py).parent / "apertus")
    commands = {}
    for key in ("url", "sha256"):
        value = samples["kept"][key]
        commands[f"index.default.{key}"] = ([apertus, "audit", "contains", f"--{key}", value, "--json"], 0)
        # The model's sources are the last MODEL_EVERY chain ends; the sample is dropped in one of them.
        dropped = samples["dropped"][key]
        model = ["--model", samples["model"], "--json"]
        commands[f"index.model.{key}"] = ([apertus, "audit", "contains", f"--{key}", dropped, *model], 1)
        if old:
            commands[f"old.default.{key}"] = ([py, "-c", OLD, key, value, ""], 0)
            commands[f"old.model.{key}"] = ([py, "-c", OLD, key, dropped, samples["model"]], 1)
    return commands


def floor_commands() -> dict[str, tuple[list[str], int]]:
    """The floors of a cold ``contains``: an interpreter start, and the contains path's imports."""
    py = sys.executable
    return {
        "python_start": ([py, "-c", "pass"], 0),
        "imports_contains_path": (
            [py, "-c", "import apertus.cli, apertus.audit, provenance.audit.contains, "
             "provenance.audit.render, records.indexed_versions"], 0),
    }  # fmt: skip


def _report(scale: int, result: dict) -> str:
    """One scale's results as printed: wall median [min, max] and CPU median, in milliseconds."""
    load = " ".join(f"{x:.2f}" for x in result["load_average_start"])
    lines = [f"snapshots {scale}: {result['versions']} versions, built in {result['build_s']} s, "
             f"load average at start {load}",
             f"  {'command':<24} {'wall median':>11} {'[min, max]':>18} {'cpu median':>10}"]  # fmt: skip
    for name, t in result["ms"].items():
        spread = f"[{t['min']:.0f}, {t['max']:.0f}]"
        lines.append(f"  {name:<24} {t['median']:>11.1f} {spread:>18} {t['cpu_median']:>10.1f}")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--snapshots", type=int, nargs="+", default=[10, 100, 1000])
    parser.add_argument("--documents", type=int, default=100, help="documents per snapshot")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--old-limit", type=int, default=1000, help="time the old path up to this many snapshots"
    )
    parser.add_argument("--keep", type=Path, help="build the history here (grown scale by scale) and keep it")
    parser.add_argument("--out", type=Path, help="write the report (JSON) to this file")
    args = parser.parse_args()
    root = args.keep or Path(tempfile.mkdtemp(prefix="apertus-audit-index-bench-"))
    data = root / "data"
    from records.keys import KEYS_ENV, create_identity

    keys = root / "keys"
    if not keys.exists():
        create_identity(keys)
    os.environ[KEYS_ENV] = str(keys)
    env = {**os.environ, "APERTUS_DATA": str(data), "PYTHONPATH": str(REPO)}
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    report: dict = {
        "machine": f"{platform.processor() or platform.machine()}; {os.cpu_count()} cores; {platform.python_version()}",
        "documents_per_snapshot": args.documents,
        "repeats": args.repeats,
        "scales": {},
    }
    floors = floor_commands()
    done = 0
    try:
        for scale in sorted(args.snapshots):
            t = time.perf_counter()
            samples = build_history(data, scale, args.documents, start=done)
            built_s = time.perf_counter() - t
            done = scale
            versions = sum(1 for _ in data.glob("datasets/*/*/manifest.json"))
            commands = {**floors, **scale_commands(samples, scale <= args.old_limit)}
            load = os.getloadavg()
            timed = time_commands(commands, env, args.repeats)
            report["scales"][scale] = {"versions": versions, "build_s": round(built_s, 1),
                                       "load_average_start": load, "load_average_end": os.getloadavg(),
                                       "ms": timed}  # fmt: skip
            print(_report(scale, report["scales"][scale]), flush=True)
    finally:
        if args.out:
            args.out.write_text(json.dumps(report, indent=1) + "\n")
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
