"""Deduplication resumes from a failed run's completed tasks: the task stages skip what their
completion markers name, the cluster stage runs again, and the output equals an uninterrupted run's."""

from __future__ import annotations

import shutil

from pipelines.dedup import DedupConfig, deduplicate
from pipelines.executor import ExecutorConfig
from tests.pipelines.test_dedup import handmade_shards, rows_by_id, write_shards

TASKS = 3
EXECUTOR = ExecutorConfig(tasks=TASKS, workers=1, ray_address=None)


def test_a_resumed_run_skips_completed_tasks_and_gives_the_same_output(tmp_path, capfd):
    shards, expected = handmade_shards()
    source = write_shards(tmp_path / "in", shards)
    out, excluded, work = tmp_path / "out", tmp_path / "excluded", tmp_path / "work"

    def run(resume: bool):
        return deduplicate(
            str(source), str(out), str(excluded), str(work), config=DedupConfig(), executor=EXECUTOR,
            resume=resume,
        )  # fmt: skip

    first = run(resume=False)
    kept, dropped = rows_by_id(out), rows_by_id(excluded)
    assert {doc_id: row["filter_reason"] for doc_id, row in dropped.items()} == {
        doc_id: reason for doc_id, (reason, _) in expected.items()
    }
    # A run that died in the filter's last task: no completion marker, its output half written.
    (work / "logs" / "filter" / "completions" / f"{TASKS - 1:05d}").unlink()
    (out / f"{TASKS - 1:05d}.parquet").write_bytes(b"torn")

    capfd.readouterr()
    resumed = run(resume=True)
    stages = {
        line.split(": ")[1]: line
        for line in capfd.readouterr().err.splitlines()
        if line.startswith("apertus: ")
    }
    assert f"resuming: {TASKS} of {TASKS} tasks completed" in stages["signatures"]
    assert "resuming" in stages["buckets"]
    assert f"resuming: {TASKS - 1} of {TASKS} tasks completed" in stages["filter"]
    assert "resuming" not in stages["clusters"]  # rewrites the decisions whole, every time
    assert resumed == first
    assert rows_by_id(out) == kept and rows_by_id(excluded) == dropped

    # Without resume every stage runs from zero, whatever the folder holds.
    shutil.rmtree(out)
    capfd.readouterr()
    assert run(resume=False) == first
    assert "resuming" not in capfd.readouterr().err
    assert rows_by_id(out) == kept
