"""Curation chain overhead: our four steps against plain datatrove running the same blocks.

    .venv/bin/python bench/curation.py [--num-documents 100000] [--tasks 2] [--workers 2] [--repeat 1]
                                       [--profile DIR]   (with --workers 1)

Input: ``sample.crawl.generate_snapshot`` writes at most ~6400 documents (its page pool),
so a larger snapshot is ``copies`` generated pages (``ceil(N / 6000)`` copies of ``ceil(N / copies)``
pages): the generated files, then per extra copy a rewrite of every JSONL and Parquet file with
new ids and URLs in which each page keeps the first half of its paragraphs and takes the second
half from a random page of the same declared language (so copies are not near-duplicates of one
another and deduplication still sees a web-like mix), and a verbatim copy of every WARC file
(whose pages are thus exact duplicates: about 20 % of each extra copy, which dedup removes).

Both chains run in the same process, one after the other, over the same snapshot folder, with
the same tasks and workers (datatrove ``LocalPipelineExecutor``, forkserver workers), after both
chains' modules are imported:

- ours: ``pipelines.steps.curate_snapshot`` into a fresh data folder: blocks, document shards
  (Parquet), auditor tables, sealing (hashing every file), ledger entry and catalog refresh.
- baseline: the same blocks as ``pipelines/steps.py`` and ``pipelines/dedup/run.py`` build, as
  plain ``LocalPipelineExecutor`` runs whose outputs between steps (kept and excluded documents)
  are datatrove's own ``ParquetWriter``/``ParquetReader`` with their defaults (snappy), metadata
  as one JSON string per row (``JsonlWriter`` needs ``orjson``, not installed); no tables,
  sealing, ledger or catalog.

It prints, per step, both wall times, documents per second per core (documents entering the step
/ seconds / ``min(workers, tasks)``) and the ratio baseline / ours; with ``--workers 1`` (every task
then runs in this process) the same for CPU time, which other users of a shared machine disturb
far less than wall time. Then the seconds our main process spent in ``build_tables``, ``seal``
(of which hashing, ``hash_folder``), ``code_version``, the ledger and the catalog, timed by
wrappers installed around the real functions; and the per-block worker times datatrove recorded
(its ``stats.json``; first run) for both chains. ``--profile DIR`` adds cProfile's own time per
source file, ours against the baseline, and writes ``DIR/ours.prof`` and ``DIR/base.prof``.
With ``--repeat`` > 1 the order alternates and the best (smallest) time of each cell is shown.
"""

# ruff: noqa: E402  (the imports after the sys.path fix below)
from __future__ import annotations

import sys
from pathlib import Path

# Run as ``python bench/curation.py``, this folder comes first on sys.path, where a sibling
# script named like a stdlib module (bench/tokenize.py) would shadow it. The project itself is
# importable from the virtualenv (editable install), so the folder is not needed.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

import argparse
import cProfile
import functools
import gzip
import json
import math
import os
import platform
import random
import shutil
import tempfile
import time
from collections import defaultdict
from contextlib import contextmanager
from datetime import UTC, datetime

import pyarrow.parquet as pq

STEPS = ("ingest_snapshot", "identify_languages", "filter_quality", "deduplicate_version")
OVERHEADS = ("build_tables", "seal", "hash_folder", "code_version", "quarantine_stats", "ledger", "catalog")
SNAPSHOT = "bench"
MAX_GENERATED = 6000  # pages per generated copy; the sample's pool holds ~5700 distinct pages


# ---------------------------------------------------------------------------- measuring


def cpu_seconds() -> float:
    """CPU time of this process and its reaped children: every task's when ``workers`` is 1 (tasks
    then run in this process); with a worker pool, the workers' time is not in it."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def profiled(profile, function, *args):
    """``function(*args)``, under ``profile`` (a ``cProfile.Profile``) when one is given."""
    return function(*args) if profile is None else profile.runcall(function, *args)


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
    """Import what both chains import, so that neither pays it inside its timing."""
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


# ---------------------------------------------------------------------------- input


def make_snapshot(folder: Path, num_documents: int, seed: int) -> tuple[int, int]:
    """Write a snapshot of about ``num_documents`` records into ``folder``; return (copies, pages each)."""
    from sample.crawl import generate_snapshot

    copies = max(1, math.ceil(num_documents / MAX_GENERATED))
    per_copy = math.ceil(num_documents / copies)
    generate_snapshot(folder, seed=seed, num_documents=per_copy)
    for copy in range(1, copies):
        _write_copy(folder, copy, random.Random(seed * 1000 + copy))
    return copies, per_copy


def _read_jsonl_gz(path: Path) -> list[dict]:
    with gzip.open(path, "rt", encoding="utf-8") as f:
        return [json.loads(line) for line in f]


def _write_copy(folder: Path, copy: int, rng: random.Random) -> None:
    from sample.crawl import write_jsonl_gz, write_parquet

    jsonl = sorted((folder / "jsonl").glob("part-*.jsonl.gz"))
    parquet = sorted((folder / "parquet").glob("part-*.parquet"))
    files = [(p, _read_jsonl_gz(p)) for p in jsonl]
    files += [(p, pq.read_table(p).to_pylist()) for p in parquet]
    by_language = defaultdict(list)
    for _, records in files:
        for record in records:
            by_language[record["language"]].append(record["text"])
    for path, records in files:
        mixed = []
        for record in records:
            own = record["text"].split("\n\n")
            other = rng.choice(by_language[record["language"]]).split("\n\n")
            text = "\n\n".join(own[: max(1, len(own) // 2)] + other[len(other) // 2 :])
            mixed.append(
                {
                    **record,
                    "id": f"{record['id']}-c{copy:02d}",
                    "url": f"{record['url']}?c={copy}",
                    "text": text,
                }
            )
        write = write_jsonl_gz if path.name.endswith(".jsonl.gz") else write_parquet
        write(path.with_name(f"c{copy:02d}-{path.name}"), mixed)
    for path in sorted((folder / "warc").glob("part-*.warc.gz")):
        shutil.copyfile(path, path.with_name(f"c{copy:02d}-{path.name}"))


# ---------------------------------------------------------------------------- ours, timed


class Timings:
    """Seconds per (step, name), accumulated by wrappers around the real functions."""

    def __init__(self) -> None:
        self.seconds: dict[tuple[str, str], float] = defaultdict(float)
        self.cpu: dict[str, float] = defaultdict(float)  # per step
        self.step = "-"

    def wrap(self, name: str, function, *, is_step: bool = False):
        @functools.wraps(function)
        def timed(*args, **kwargs):
            if is_step:
                self.step = name
            start, start_cpu = time.perf_counter(), cpu_seconds()
            try:
                return function(*args, **kwargs)
            finally:
                self.seconds[(self.step, name)] += time.perf_counter() - start
                if is_step:
                    self.cpu[name] += cpu_seconds() - start_cpu

        return timed


@contextmanager
def installed(timings: Timings):
    """Replace the step functions and the bookkeeping they call by timed wrappers; restore after."""
    import pipelines.steps as steps
    import records.manifest as manifest
    from records.ledger import Ledger

    targets = [(steps, name, name, True) for name in STEPS]
    targets += [
        (steps, "build_tables", "build_tables", False),
        (steps, "seal", "seal", False),
        (manifest, "hash_folder", "hash_folder", False),  # what seal hashes with
        (steps, "code_version", "code_version", False),
        (steps, "_quarantine_stats", "quarantine_stats", False),
        (steps, "refresh_catalog", "catalog", False),
        (Ledger, "append", "ledger", False),
    ]
    originals = [(owner, attr, getattr(owner, attr)) for owner, attr, _, _ in targets]
    try:
        for owner, attr, name, is_step in targets:
            setattr(owner, attr, timings.wrap(name, getattr(owner, attr), is_step=is_step))
        yield
    finally:
        for owner, attr, function in originals:
            setattr(owner, attr, function)


def run_ours(input_dir: Path, root: Path, tasks: int, workers: int, profile=None) -> dict:
    """curate_snapshot into a fresh data folder whose inbox links to the shared snapshot."""
    from pipelines.config import CurationConfig
    from pipelines.executor import ExecutorConfig
    from pipelines.steps import curate_snapshot
    from records.layout import DataLayout

    layout = DataLayout(root)
    layout.inbox.mkdir(parents=True)
    (layout.inbox / SNAPSHOT).symlink_to(input_dir, target_is_directory=True)
    timings = Timings()
    start, start_cpu = time.perf_counter(), cpu_seconds()
    with installed(timings):
        results = profiled(
            profile, curate_snapshot,
            layout, SNAPSHOT, CurationConfig(), ExecutorConfig(tasks=tasks, workers=workers, ray_address=None),
        )  # fmt: skip
    total, total_cpu = time.perf_counter() - start, cpu_seconds() - start_cpu
    raw = results[0].manifest.stats
    entering = [raw["kept"]["documents"] + raw.get("quarantine", {}).get("records", 0)]
    entering += [r.kept["documents"] for r in results[:-1]]
    blocks = {}
    for step, result in zip(STEPS, results, strict=True):
        staging = [p for p in (layout.work / "logs").glob(f"{result.manifest.asset}-*")]
        blocks[step] = _block_times(staging[0]) if len(staging) == 1 else {}
    return {
        "seconds": {step: timings.seconds[(step, step)] for step in STEPS} | {"total": total},
        "cpu": dict(timings.cpu) | {"total": total_cpu},
        "overheads": {(s, n): v for (s, n), v in timings.seconds.items() if n in OVERHEADS},
        "entering": dict(zip(STEPS, entering, strict=True)),
        "kept": {step: r.kept["documents"] for step, r in zip(STEPS, results, strict=True)},
        "blocks": blocks,
    }


# ---------------------------------------------------------------------------- baseline


def _plain(blocks: list, logs: Path, tasks: int, workers: int) -> None:
    from datatrove.executor import LocalPipelineExecutor

    executor = LocalPipelineExecutor(
        blocks, tasks=tasks, workers=min(workers, tasks), logging_dir=str(logs), skip_completed=False
    )
    executor.run()
    failed = executor.get_incomplete_ranks(range(tasks), skip_completed=True)
    if failed:
        raise RuntimeError(f"baseline: tasks {failed} failed; logs in {logs}")


def _json_metadata(_writer, document) -> dict:
    # Metadata varies per document (filter details, record fields): one JSON string per row keeps
    # the Parquet schema fixed; datatrove's readers parse a string ``metadata`` back into a dict.
    return {
        "text": document.text,
        "id": document.id,
        "metadata": json.dumps(document.metadata, ensure_ascii=False, default=str),
    }


def _writer(folder: Path, name: str = "${rank}.parquet"):
    from datatrove.pipeline.writers import ParquetWriter

    return ParquetWriter(str(folder), output_filename=name, adapter=_json_metadata)


def _reader(folder: Path):
    from datatrove.pipeline.readers import ParquetReader

    return ParquetReader(str(folder), glob_pattern="*.parquet", recursive=False)


def baseline_steps(input_dir: Path, out: Path, tasks: int, workers: int, profile=None) -> dict:
    """The blocks of each step, as plain datatrove runs; returns wall seconds per step."""
    from pipelines.config import CurationConfig
    from pipelines.dedup.clusters import ClusterDecisions
    from pipelines.dedup.filter import DedupFilter
    from pipelines.dedup.minhash import BandBuckets, MinhashSignatures
    from pipelines.langid import LanguageIdentifier, LanguageSelector
    from pipelines.normalize import Normalizer
    from pipelines.pii import PIIRedactor
    from pipelines.quality import quality_blocks
    from pipelines.readers import SnapshotReader

    config = CurationConfig()
    logs = out / "logs"
    raw, lang, quality, dedup, work = (out / n for n in ("raw", "lang", "quality", "dedup", "dedup-work"))

    def ingest():
        reader = SnapshotReader(
            str(input_dir), SNAPSHOT, str(raw / "quarantine"), max_document_bytes=config.max_document_bytes
        )
        _plain([reader, Normalizer(), _writer(raw / "shards")], logs / "ingest", tasks, workers)

    def languages():
        selector = LanguageSelector(
            config.language, exclusion_writer=_writer(lang / "excluded", "language-${rank}.parquet")
        )
        blocks = [
            _reader(raw / "shards"),
            LanguageIdentifier(config.language),
            selector,
            _writer(lang / "shards"),
        ]
        _plain(blocks, logs / "langid", tasks, workers)

    def filter_quality():
        excluded = lambda name: _writer(quality / "excluded", f"{name}-${{rank}}.parquet")  # noqa: E731
        blocks = [_reader(lang / "shards"), *quality_blocks(config.quality, excluded), PIIRedactor()]
        _plain(blocks + [_writer(quality / "shards")], logs / "quality", tasks, workers)

    def deduplicate():  # pipelines.dedup.run.deduplicate's four runs, datatrove I/O
        _plain(
            [_reader(quality / "shards"), MinhashSignatures(str(work), config.dedup)],
            logs / "sig",
            tasks,
            workers,
        )
        buckets = BandBuckets(str(work), config.dedup)
        _plain([buckets], logs / "buckets", buckets.num_tasks(), workers)
        _plain([ClusterDecisions(str(work), config.dedup)], logs / "clusters", 1, workers)
        dedup_filter = DedupFilter(str(work), exclusion_writer=_writer(dedup / "excluded"))
        _plain(
            [_reader(quality / "shards"), dedup_filter, _writer(dedup / "shards")],
            logs / "filter",
            tasks,
            workers,
        )

    seconds, cpu = {}, {}
    start, start_cpu = time.perf_counter(), cpu_seconds()
    for step, function in zip(STEPS, (ingest, languages, filter_quality, deduplicate), strict=True):
        began, began_cpu = time.perf_counter(), cpu_seconds()
        profiled(profile, function)
        seconds[step], cpu[step] = time.perf_counter() - began, cpu_seconds() - began_cpu
    seconds["total"], cpu["total"] = time.perf_counter() - start, cpu_seconds() - start_cpu
    kept = {
        step: _count_rows(folder / "shards")
        for step, folder in zip(STEPS, (raw, lang, quality, dedup), strict=True)
    }
    blocks = {
        step: _block_times(logs / name)
        for step, name in zip(STEPS[:3], ("ingest", "langid", "quality"), strict=True)
    }
    return {"seconds": seconds, "cpu": cpu, "kept": kept, "blocks": blocks}


def _count_rows(folder: Path) -> int:
    return sum(pq.read_metadata(p).num_rows for p in folder.glob("*.parquet"))


def _block_times(logs: Path) -> dict[str, float]:
    """Per block, seconds summed over tasks, from datatrove's merged ``stats.json``."""
    path = logs / "stats.json"
    if not path.exists():
        return {}
    times = {}
    for block in json.loads(path.read_text()):
        stats = block["time_stats"]  # datatrove writes a bare number when it has nothing else to say
        times[block["name"]] = stats.get("total", 0.0) if isinstance(stats, dict) else float(stats)
    return times


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--num-documents", type=int, default=100_000, help="records in the input snapshot")
    parser.add_argument("--tasks", type=int, default=2)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=1, help="runs of each chain (order alternates)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--profile", type=Path, metavar="DIR",
        help="cProfile both chains, print own time per source file and write DIR/{ours,base}.prof "
        "(use --workers 1: tasks then run in this process)",
    )  # fmt: skip
    args = parser.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    print(f"date: {datetime.now(UTC).isoformat(timespec='seconds')}")
    print(f"machine: {machine()}")
    print(f"versions: {versions()}")
    print(f"tasks {args.tasks}, workers {args.workers}, repeat {args.repeat}; load average at start {load()}")
    cores = min(args.workers, args.tasks)
    with tempfile.TemporaryDirectory(prefix="bench-curation-") as tmp:
        tmp = Path(tmp)
        began = time.perf_counter()
        copies, per_copy = make_snapshot(tmp / "input" / SNAPSHOT, args.num_documents, args.seed)
        print(f"input: {copies} copies x {per_copy} generated pages (seed {args.seed}), "
              f"made in {time.perf_counter() - began:.1f} s")  # fmt: skip
        warm_up()
        ours_runs, base_runs = [], []
        profiles = {"ours": cProfile.Profile(), "base": cProfile.Profile()} if args.profile else {}
        for n in range(args.repeat):
            order = ("ours", "base") if n % 2 == 0 else ("base", "ours")
            for side in order:
                if side == "ours":
                    ours_runs.append(
                        run_ours(
                            tmp / "input" / SNAPSHOT,
                            tmp / f"ours-{n}",
                            args.tasks,
                            args.workers,
                            profiles.get(side),
                        )
                    )
                else:
                    base_runs.append(
                        baseline_steps(
                            tmp / "input" / SNAPSHOT,
                            tmp / f"base-{n}",
                            args.tasks,
                            args.workers,
                            profiles.get(side),
                        )
                    )
                print(
                    f"run {n + 1} {side}: {(ours_runs if side == 'ours' else base_runs)[-1]['seconds']['total']:.1f} s, load {load()}"
                )
        print(f"documents entering each step: {ours_runs[0]['entering']}")
        report(best(ours_runs), best(base_runs), cores, single_process=args.workers == 1)
        if profiles:
            print_profiles(profiles, args.workers)
            args.profile.mkdir(parents=True, exist_ok=True)
            for side, profile in profiles.items():
                profile.dump_stats(args.profile / f"{side}.prof")
    print(f"\nload average at end {load()}")


if __name__ == "__main__":
    main()
