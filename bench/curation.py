"""Curation chain overhead: our four steps, through Dagster, against plain datatrove running the same blocks.

    .venv/bin/python bench/curation.py [--num-documents 100000] [--tasks 2] [--workers 2] [--repeat 3]
                                       [--direct] [--json PATH] [--tmp DIR] [--profile DIR]

Input (bench/curation_input.py): ``--num-documents`` documents of about 700 tokens (paragraphs of
one language of the sample's sources, drawn at random; 4 % exact and 4 % near copies of recent
documents, so deduplication has work), 70 % WARC (HTML pages), 15 % JSON lines, 15 % Parquet,
1,000 per file, written file by file (memory does not grow with the count; about 1 ms and 2.4 KB
on disk per document). It prints the real characters and estimated tokens per document and the
bytes on disk.

Both chains run in the same process over the same snapshot folder, with the same tasks and
workers (datatrove ``LocalPipelineExecutor``, forkserver workers), after both chains' modules (and
Dagster with the project's code location) are imported; each run's outputs are deleted after it:

- ours: the curation assets of ``assets/curation.py`` materialized for the snapshot's partition
  with their asset checks, in a real Dagster instance (a fresh ``DAGSTER_HOME`` per run), into a
  fresh data folder whose inbox links to the snapshot, with a signing key as ``apertus init``
  makes it: blocks, document shards, auditor tables, sealing, lookups, ledger entries, catalog,
  the checks and Dagster's metadata. ``--direct``: ``pipelines.steps.curate_snapshot`` instead
  (the same steps without Dagster).
- baseline (bench/curation_base.py): the same blocks as ``pipelines/steps.py`` and
  ``pipelines/dedup/run.py`` build, as plain ``LocalPipelineExecutor`` runs whose outputs between
  steps are datatrove's own ``ParquetWriter``/``ParquetReader``; the dedup cluster stage's rounds
  through ``pipelines.dedup.cluster_stage`` (datatrove runs, no bookkeeping).

Per run (``--repeat`` runs of each chain, in the order ours, base, base, ours, ours, base …): wall
time; documents per second per core (documents entering the chain / wall / ``min(workers, tasks)``);
peak resident memory of the main process, of the largest worker and of all processes together
and the CPU seconds of all processes (sampled every 0.2 s, bench/curation_measure.py: documents per
CPU second, which a loaded machine disturbs far less than wall time); and the share of wall time the main process
spent outside ``LocalPipelineExecutor.run`` (a timer around the real method: every datatrove run of
either chain goes through it), i.e. what orchestration adds. It prints median [min-max] of each,
the ratio base / ours, then per step the best wall times, the seconds our main process spent in
each piece of bookkeeping (timed by wrappers around the real functions) and the per-block worker
times datatrove recorded; and writes everything as JSON (default bench/curation_<N>.json).
``--profile DIR`` adds cProfile's own time per source file, ours against the baseline (use
``--workers 1``: tasks then run in this process).
"""

# ruff: noqa: E402  (the imports after the sys.path fix below)
from __future__ import annotations

import sys
from pathlib import Path

# Run as ``python bench/curation.py``, this folder comes first on sys.path, where a sibling
# script named like a stdlib module (bench/tokenize.py) would shadow it. The project itself is
# importable from the virtualenv (editable install), so the folder is not needed.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]
# The checkout root, for ``bench.*`` (the benchmark's sibling modules).
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import argparse
import cProfile
import functools
import json
import os
import platform
import shutil
import tempfile
import time
from collections import defaultdict
from contextlib import contextmanager
from dataclasses import asdict
from datetime import UTC, datetime

from bench.curation_base import SNAPSHOT, STEPS, baseline_steps, block_times, cpu_seconds, profiled
from bench.curation_input import make_snapshot
from bench.curation_measure import clocked_blocks, lifetime_maxrss_mib, sampled_rss
from bench.timing import commit, summary

OVERHEADS = (
    "build_tables", "seal", "hash_folder", "code_version", "quarantine_stats",
    "lookup", "ledger", "catalog", "state_index",
)  # fmt: skip


# ---------------------------------------------------------------------------- measuring


def by_file(profile) -> dict[str, float]:
    """Own time (tottime) per source file, paths shortened to the package; built-ins by name."""
    import pstats

    totals: dict[str, float] = defaultdict(float)
    for (filename, _line, name), (_cc, _nc, tottime, _ct, _callers) in pstats.Stats(profile).stats.items():
        if filename == "~":
            key = name.replace("<built-in method ", "builtin ").replace("<method ", "method ").rstrip(">")
        else:
            parts = Path(filename).parts
            anchor = next((i for i, p in enumerate(parts) if p in ("site-packages", "main", "lib")), -1)
            key = "/".join(parts[anchor + 1 :]) if anchor >= 0 else filename
        totals[key] += tottime
    return totals


def warm_up() -> None:
    """Import what both chains import, and Dagster with the project's code location (ours), so that
    neither pays it inside its timing."""
    import dagster  # noqa: F401
    import datatrove.executor  # noqa: F401
    import datatrove.pipeline.readers  # noqa: F401
    import datatrove.pipeline.writers  # noqa: F401
    import duckdb  # noqa: F401

    import pipelines.dedup  # noqa: F401
    import pipelines.langid  # noqa: F401
    import pipelines.normalize  # noqa: F401
    import pipelines.pii  # noqa: F401
    import pipelines.quality  # noqa: F401
    import pipelines.readers  # noqa: F401
    import pipelines.steps  # noqa: F401
    from assets.definitions import defs  # noqa: F401


# ---------------------------------------------------------------------------- ours, timed


class Timings:
    """Seconds per (step, name), accumulated by wrappers around the real functions."""

    def __init__(self) -> None:
        self.seconds: dict[tuple[str, str], float] = defaultdict(float)
        self.cpu: dict[str, float] = defaultdict(float)  # per step
        self.results: dict[str, object] = {}  # per step, its StepResult (the last call's)
        self.step = "-"

    def wrap(self, name: str, function, *, is_step: bool = False):
        @functools.wraps(function)
        def timed(*args, **kwargs):
            if is_step:
                self.step = name
            start, start_cpu = time.perf_counter(), cpu_seconds()
            try:
                result = function(*args, **kwargs)
                if is_step:
                    self.results[name] = result
                return result
            finally:
                self.seconds[(self.step, name)] += time.perf_counter() - start
                if is_step:
                    self.cpu[name] += cpu_seconds() - start_cpu

        return timed


@contextmanager
def installed(timings: Timings):
    """Replace the step functions and the bookkeeping they call by timed wrappers; restore after."""
    import pipelines.step_finish as finish  # what every step does after its tasks
    import pipelines.steps as steps
    import records.manifest as manifest

    targets = [(steps, name, name, True) for name in STEPS]
    targets += [
        (finish, "build_tables", "build_tables", False),
        (finish, "seal", "seal", False),
        (manifest, "hash_folder", "hash_folder", False),  # what seal hashes with
        (finish, "code_version", "code_version", False),
        (finish, "_quarantine_stats", "quarantine_stats", False),
        (finish, "build_lookup", "lookup", False),
        (finish, "pin_dataset_version", "ledger", False),
        (finish, "add_version_to_catalog", "catalog", False),
        (finish, "record_version", "state_index", False),
    ]
    originals = [(owner, attr, getattr(owner, attr)) for owner, attr, _, _ in targets]
    try:
        for owner, attr, name, is_step in targets:
            setattr(owner, attr, timings.wrap(name, getattr(owner, attr), is_step=is_step))
        yield
    finally:
        for owner, attr, function in originals:
            setattr(owner, attr, function)


def run_ours(
    input_dir: Path, root: Path, tasks: int, workers: int, profile=None, direct: bool = False
) -> dict:
    """The four curation assets materialized for the snapshot's partition, with their asset checks,
    in a real Dagster instance (a fresh ``DAGSTER_HOME`` under ``root``), into a fresh data folder
    whose inbox links to the shared snapshot; with ``direct``, ``curate_snapshot`` instead (no Dagster)."""
    from pipelines.config import CurationConfig
    from pipelines.executor import ExecutorConfig
    from pipelines.steps import curate_snapshot
    from records.keys import create_identity
    from records.layout import DataLayout

    layout = DataLayout(root / "data")
    layout.inbox.mkdir(parents=True)
    create_identity(root / "data-keys")  # as `apertus init` does: the ledger's signing key, beside the data
    (layout.inbox / SNAPSHOT).symlink_to(input_dir, target_is_directory=True)
    timings = Timings()
    start, start_cpu = time.perf_counter(), cpu_seconds()
    with installed(timings):
        if direct:
            executor = ExecutorConfig(tasks=tasks, workers=workers, ray_address=None)
            profiled(profile, curate_snapshot, layout, SNAPSHOT, CurationConfig(), executor)
            checks = None
        else:
            checks = profiled(profile, materialize, root / "dagster_home", layout, tasks, workers)
    total, total_cpu = time.perf_counter() - start, cpu_seconds() - start_cpu
    results = [timings.results[step] for step in STEPS]
    raw = results[0].manifest.stats
    entering = [raw["kept"]["documents"] + raw.get("quarantine", {}).get("records", 0)]
    entering += [r.kept["documents"] for r in results[:-1]]
    blocks = {}
    for step, result in zip(STEPS, results, strict=True):
        staging = [p for p in (layout.work / "logs").glob(f"{result.manifest.asset}-*")]
        blocks[step] = block_times(staging[0]) if len(staging) == 1 else {}
    return {
        "seconds": {step: timings.seconds[(step, step)] for step in STEPS} | {"total": total},
        "cpu": dict(timings.cpu) | {"total": total_cpu},
        "overheads": {(s, n): v for (s, n), v in timings.seconds.items() if n in OVERHEADS},
        "entering": dict(zip(STEPS, entering, strict=True)),
        "kept": {step: r.kept["documents"] for step, r in zip(STEPS, results, strict=True)},
        "blocks": blocks,
        "checks": checks,
    }


def materialize(home: Path, layout, tasks: int, workers: int) -> dict:
    """The project's curation assets (``assets.curation.CURATION_ASSETS``, asset checks included)
    for partition ``SNAPSHOT``, as ``apertus curate`` launches them minus the quality score: every
    asset of the code location defined, the instance of ``DAGSTER_HOME``. Returns the checks' counts;
    raises if a step or a check failed."""
    import dagster as dg

    from assets.curation import CURATION_ASSETS, snapshots
    from assets.definitions import defs
    from assets.resources import CurationResource

    home.mkdir(parents=True)
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    previous = os.environ.get("DAGSTER_HOME")
    os.environ["DAGSTER_HOME"] = str(home)
    try:
        instance = dg.DagsterInstance.get()
        instance.add_dynamic_partitions(snapshots.name, [SNAPSHOT])
        result = dg.materialize(
            list(defs.assets),
            selection=CURATION_ASSETS,
            instance=instance,
            partition_key=SNAPSHOT,
            resources={
                "curation": CurationResource(data_folder=str(layout.root), tasks=tasks, workers=workers)
            },
            raise_on_error=True,
        )
        evaluations = result.get_asset_check_evaluations()
        failed = [f"{e.asset_key.to_user_string()}:{e.check_name}" for e in evaluations if not e.passed]
        if failed:
            raise RuntimeError(f"asset checks failed: {failed}")
        instance.dispose()
    finally:
        if previous is None:
            os.environ.pop("DAGSTER_HOME", None)
        else:
            os.environ["DAGSTER_HOME"] = previous
    return {"evaluated": len(evaluations), "failed": 0}


# ---------------------------------------------------------------------------- report


def machine() -> str:
    model = "unknown CPU"
    with open("/proc/cpuinfo") as f:
        model = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), model)
    with open("/proc/meminfo") as f:
        kib = next(int(line.split()[1]) for line in f if line.startswith("MemTotal"))
    return f"{model}; {os.cpu_count()} logical cores ({len(os.sched_getaffinity(0))} usable); {kib / 2**20:.1f} GiB RAM"


def versions() -> str:
    from importlib.metadata import version

    return f"{platform.python_implementation()} {platform.python_version()}; datatrove {version('datatrove')}"


def load() -> str:
    return "/".join(f"{x:.2f}" for x in os.getloadavg())


def report(ours: dict, base: dict, cores: int, single_process: bool) -> None:
    print("\nwall time (d/s/c: documents entering the step per second per core; ratio: base / ours)")
    print(
        f"{'step':<20} {'ours s':>8} {'base s':>8} {'ours d/s/c':>11} {'base d/s/c':>11} {'ratio':>6} {'kept ours/base':>16}"
    )
    for step in STEPS + ("total",):
        docs = ours["entering"]["ingest_snapshot" if step == "total" else step]
        o, b = ours["seconds"][step], base["seconds"][step]
        kept = "" if step == "total" else f"{ours['kept'][step]}/{base['kept'][step]}"
        print(
            f"{step:<20} {o:8.2f} {b:8.2f} {docs / o / cores:11.1f} {docs / b / cores:11.1f} {b / o:6.3f} {kept:>16}"
        )
    if single_process:
        print("\nCPU time of every task (workers 1: all in this process; d/s: documents per CPU second)")
        print(f"{'step':<20} {'ours s':>8} {'base s':>8} {'ours d/s':>11} {'base d/s':>11} {'ratio':>6}")
        for step in STEPS + ("total",):
            docs = ours["entering"]["ingest_snapshot" if step == "total" else step]
            o, b = ours["cpu"][step], base["cpu"][step]
            print(f"{step:<20} {o:8.2f} {b:8.2f} {docs / o:11.1f} {docs / b:11.1f} {b / o:6.3f}")
    total = ours["seconds"]["total"]
    print(f"\nour bookkeeping in the main process (seconds; % of our total {total:.2f} s)")
    print(f"{'step':<20} " + " ".join(f"{n:>16}" for n in OVERHEADS))
    sums = defaultdict(float)
    for step in STEPS:
        row = [ours["overheads"].get((step, n), 0.0) for n in OVERHEADS]
        for n, v in zip(OVERHEADS, row, strict=True):
            sums[n] += v
        print(f"{step:<20} " + " ".join(f"{v:16.3f}" for v in row))
    print(f"{'total':<20} " + " ".join(f"{sums[n]:9.3f} ({100 * sums[n] / total:4.1f}%)" for n in OVERHEADS))
    bookkeeping = sum(sums[n] for n in OVERHEADS if n != "hash_folder")  # hash_folder is inside seal
    print(f"all bookkeeping: {bookkeeping:.2f} s = {100 * bookkeeping / total:.1f}% of our wall time; "
          f"hashing (hash_folder): {100 * sums['hash_folder'] / total:.1f}%; "
          f"ours without sealing: {total - sums['seal']:.2f} s")  # fmt: skip
    print("\nworker time per block, summed over tasks (datatrove stats.json; dedup's logs are not kept)")
    for step in STEPS[:3]:
        for side, chain in (("ours", ours), ("base", base)):
            cells = ", ".join(f"{name} {s:.1f}" for name, s in chain["blocks"].get(step, {}).items())
            print(f"  {step:<19} {side}: {cells}")


def print_profiles(profiles: dict, workers: int, top: int = 25) -> None:
    ours, base = by_file(profiles["ours"]), by_file(profiles["base"])
    where = "every task" if workers == 1 else "the main process only (workers > 1)"
    print(f"\ncProfile own time per source file, {where}; the {top} largest differences, ours - base (s)")
    keys = sorted(ours.keys() | base.keys(), key=lambda k: -abs(ours.get(k, 0.0) - base.get(k, 0.0)))
    for key in keys[:top]:
        o, b = ours.get(key, 0.0), base.get(key, 0.0)
        print(f"  {o - b:+8.2f}  ours {o:7.2f}  base {b:7.2f}  {key[:110]}")
    print(f"  total own time: ours {sum(ours.values()):.2f} s, base {sum(base.values()):.2f} s")


def best(runs: list[dict]) -> dict:
    """Each cell's smallest time over the runs (the counts are the same in every run)."""
    merged = dict(runs[0])
    merged["seconds"] = {k: min(r["seconds"][k] for r in runs) for k in runs[0]["seconds"]}
    merged["cpu"] = {k: min(r["cpu"][k] for r in runs) for k in runs[0]["cpu"]}
    if "overheads" in runs[0]:
        merged["overheads"] = {k: min(r["overheads"].get(k, 0.0) for r in runs) for k in runs[0]["overheads"]}
    return merged


def measured(run, clock, cores: int) -> dict:
    """``run()``'s result with its wall time, peak RSS per process (sampled), the main process's
    seconds inside datatrove's executor and the share of wall time outside it, and documents per
    second per core (documents entering the chain / wall / cores)."""
    clock.reset()
    with sampled_rss() as peaks:
        began = time.perf_counter()
        result = run()
        wall = time.perf_counter() - began
    result["wall"] = wall
    result["rss"] = peaks.as_dict()
    result["datatrove_seconds"], result["datatrove_runs"] = clock.seconds, clock.runs
    result["outside_share"] = (wall - clock.seconds) / wall
    return result


def summarize(runs: list[dict], documents: int, cores: int) -> dict:
    """Median, min and max over the repeats of the numbers the issue asks for."""
    return {
        "wall_s": summary([r["wall"] for r in runs], digits=2),
        "docs_per_s_per_core": summary([documents / r["wall"] / cores for r in runs], digits=1),
        "docs_per_cpu_s": summary([documents / r["rss"]["cpu_seconds"] for r in runs], digits=1),
        "outside_datatrove_share": summary([r["outside_share"] for r in runs], digits=4),
        "peak_rss_main_mib": summary([r["rss"]["main_mib"] for r in runs], digits=1),
        "peak_rss_worker_mib": summary([r["rss"]["child_mib"] for r in runs], digits=1),
        "peak_rss_all_processes_mib": summary([r["rss"]["together_mib"] for r in runs], digits=1),
    }


def print_summary(summaries: dict[str, dict], ratio: dict) -> None:
    print("\nper repeat, median [min-max] (d/s/c: documents entering the chain / wall s / cores)")
    names = {
        "wall_s": "wall s",
        "docs_per_s_per_core": "d/s/c",
        "docs_per_cpu_s": "d per CPU s (all procs)",
        "outside_datatrove_share": "outside datatrove",
        "peak_rss_main_mib": "peak RSS main MiB",
        "peak_rss_worker_mib": "peak RSS 1 worker MiB",
        "peak_rss_all_processes_mib": "peak RSS all MiB",
    }
    print(f"{'':<24}" + "".join(f"{side:>30}" for side in summaries))
    for key, label in names.items():
        cells = []
        for values in summaries.values():
            m, lo, hi = values[key]["median"], values[key]["min"], values[key]["max"]
            cells.append(
                f"{100 * m:.2f}% [{100 * lo:.2f}-{100 * hi:.2f}]"
                if key == "outside_datatrove_share"
                else f"{m:g} [{lo:g}-{hi:g}]"
            )
        print(f"{label:<24}" + "".join(f"{c:>30}" for c in cells))
    print(f"wall ratio base / ours (medians): {ratio['median']:.3f}; per pair: {ratio['runs']}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--num-documents", type=int, default=100_000, help="records in the input snapshot")
    parser.add_argument("--tasks", type=int, default=2)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=3, help="runs of each chain (order alternates)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--direct", action="store_true", help="ours: curate_snapshot, not the Dagster assets")
    parser.add_argument("--json", type=Path, help="raw results (default bench/curation_<N>.json)")
    parser.add_argument("--tmp", type=Path, help="folder for the input and the runs (default: the system's)")
    parser.add_argument(
        "--profile", type=Path, metavar="DIR",
        help="cProfile both chains, print own time per source file and write DIR/{ours,base}.prof "
        "(use --workers 1: tasks then run in this process)",
    )  # fmt: skip
    args = parser.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    os.environ.setdefault("DAGSTER_DISABLE_TELEMETRY", "1")
    ours_name = "curate_snapshot (direct)" if args.direct else "Dagster assets + checks"
    print(f"date: {datetime.now(UTC).isoformat(timespec='seconds')}; commit {commit()}")
    print(f"command: {' '.join(sys.argv)}")
    print(f"machine: {machine()}")
    print(f"versions: {versions()}")
    print(f"ours: {ours_name}; tasks {args.tasks}, workers {args.workers}, repeat {args.repeat}; "
          f"load average at start {load()}")  # fmt: skip
    cores = min(args.workers, args.tasks)
    out = {"date": datetime.now(UTC).isoformat(timespec="seconds"), "commit": commit(),
           "command": " ".join(sys.argv), "machine": machine(), "versions": versions(), "ours": ours_name,
           "tasks": args.tasks, "workers": args.workers, "cores": cores, "load_start": load()}  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="bench-curation-", dir=args.tmp) as tmp:
        tmp = Path(tmp)
        began = time.perf_counter()
        stats = make_snapshot(tmp / "input" / SNAPSHOT, args.num_documents, args.seed)
        made = time.perf_counter() - began
        print(f"{stats.line()}; made in {made:.1f} s (seed {args.seed})")
        out["input"] = asdict(stats) | {"tokens_per_document": round(stats.tokens_per_document, 1),
                                        "seconds_to_make": round(made, 1)}  # fmt: skip
        warm_up()
        ours_runs, base_runs = [], []
        profiles = {"ours": cProfile.Profile(), "base": cProfile.Profile()} if args.profile else {}
        with clocked_blocks() as clock:
            for n in range(args.repeat):
                order = ("ours", "base") if n % 2 == 0 else ("base", "ours")
                for side in order:
                    folder = tmp / f"{side}-{n}"
                    if side == "ours":
                        run = functools.partial(run_ours, tmp / "input" / SNAPSHOT, folder, args.tasks,
                                                args.workers, profiles.get(side), args.direct)  # fmt: skip
                    else:
                        run = functools.partial(baseline_steps, tmp / "input" / SNAPSHOT, folder, args.tasks,
                                                args.workers, profiles.get(side))  # fmt: skip
                    result = measured(run, clock, cores)
                    (ours_runs if side == "ours" else base_runs).append(result)
                    shutil.rmtree(folder)  # at a million documents, every run's outputs would fill the disk
                    print(f"run {n + 1} {side}: {result['wall']:.1f} s, outside datatrove "
                          f"{100 * result['outside_share']:.2f}%, peak RSS main {result['rss']['main_mib']:.0f} MiB, "
                          f"worker {result['rss']['child_mib']:.0f} MiB, CPU {result['rss']['cpu_seconds']:.0f} s; load {load()}", flush=True)  # fmt: skip
        documents = ours_runs[0]["entering"]["ingest_snapshot"]
        print(f"documents entering each step: {ours_runs[0]['entering']}")
        print(f"kept after each step, ours: {ours_runs[0]['kept']}; base: {base_runs[0]['kept']}")
        if ours_runs[0]["checks"]:
            print(f"asset checks per run: {ours_runs[0]['checks']['evaluated']} evaluated, none failed")
        summaries = {f"ours ({ours_name})": summarize(ours_runs, documents, cores),
                     "base (plain datatrove)": summarize(base_runs, documents, cores)}  # fmt: skip
        ratio = summary([b["wall"] / o["wall"] for o, b in zip(ours_runs, base_runs, strict=True)], digits=3)
        ratio["median"] = round(summaries["base (plain datatrove)"]["wall_s"]["median"]
                                / summaries[f"ours ({ours_name})"]["wall_s"]["median"], 3)  # fmt: skip
        # The raw numbers first: a failure while printing must not lose an hour of runs.
        out |= {"documents": documents, "summary": summaries, "ratio_base_over_ours": ratio, "load_end": load(),
                "runs": {"ours": [_plain_json(r) for r in ours_runs], "base": [_plain_json(r) for r in base_runs]},
                "lifetime_maxrss": lifetime_maxrss_mib()}  # fmt: skip
        path = args.json or Path(__file__).parent / f"curation_{args.num_documents}.json"
        path.write_text(json.dumps(out, indent=1, default=str) + "\n")
        print_summary(summaries, ratio)
        report(best(ours_runs), best(base_runs), cores, single_process=args.workers == 1)
        if profiles:
            print_profiles(profiles, args.workers)
            args.profile.mkdir(parents=True, exist_ok=True)
            for side, profile in profiles.items():
                profile.dump_stats(args.profile / f"{side}.prof")
    print(f"\npeak RSS over the whole benchmark (getrusage): {out['lifetime_maxrss']}")
    print(f"load average at end {out['load_end']}")
    print(f"raw results: {path}")


def _plain_json(run: dict) -> dict:
    """A run's numbers with JSON keys (the overheads are keyed by (step, name) pairs)."""
    return {
        key: ({f"{s}/{n}": v for (s, n), v in value.items()} if key == "overheads" else value)
        for key, value in run.items()
    }


if __name__ == "__main__":
    main()
