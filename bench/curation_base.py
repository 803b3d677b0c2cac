"""The curation benchmark's baseline: the blocks of our four steps as plain datatrove runs
(``LocalPipelineExecutor``), with datatrove's own Parquet writer and reader between the steps and no
bookkeeping (no tables, sealing, ledger, catalog, Dagster); and what both chains share to time
themselves."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pyarrow.parquet as pq

STEPS = ("ingest_snapshot", "identify_languages", "filter_quality", "deduplicate_version")
SNAPSHOT = "bench"


def cpu_seconds() -> float:
    """CPU time of this process and its reaped children: every task's when ``workers`` is 1 (tasks
    then run in this process); with a worker pool, the workers' time is not in it."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def profiled(profile, function, *args):
    """``function(*args)``, under ``profile`` (a ``cProfile.Profile``) when one is given."""
    return function(*args) if profile is None else profile.runcall(function, *args)


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
    from pipelines.dedup.cluster_stage import cluster_decisions, cluster_tasks
    from pipelines.dedup.filter import DedupFilter
    from pipelines.dedup.minhash import BandBuckets, MinhashSignatures
    from pipelines.executor import ExecutorConfig
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
        buckets = BandBuckets(str(work), config.dedup, max_tasks=tasks)
        _plain([buckets], logs / "buckets", buckets.num_tasks(), workers)
        # The cluster stage's rounds are several datatrove runs whose number depends on the data;
        # they run through the same function as ours (LocalPipelineExecutor runs, no bookkeeping).
        executor = ExecutorConfig(tasks=tasks, workers=workers, ray_address=None)
        cluster_decisions(
            str(work), config.dedup, executor, logs / "clusters", cluster_tasks(str(work), tasks)
        )
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
        step: block_times(logs / name)
        for step, name in zip(STEPS[:3], ("ingest", "langid", "quality"), strict=True)
    }
    return {"seconds": seconds, "cpu": cpu, "kept": kept, "blocks": blocks}


def _count_rows(folder: Path) -> int:
    return sum(pq.read_metadata(p).num_rows for p in folder.glob("*.parquet"))


def block_times(logs: Path) -> dict[str, float]:
    """Per block, seconds summed over tasks, from datatrove's merged ``stats.json``."""
    path = logs / "stats.json"
    if not path.exists():
        return {}
    times = {}
    for block in json.loads(path.read_text()):
        stats = block["time_stats"]  # datatrove writes a bare number when it has nothing else to say
        times[block["name"]] = stats.get("total", 0.0) if isinstance(stats, dict) else float(stats)
    return times
