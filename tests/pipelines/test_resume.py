"""A step that fails after some of its tasks completed resumes from them: the retry runs only the
tasks without a completion marker and seals the same version as a run that never failed; a retry
with other inputs starts from zero and discards the failed attempt."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from pipelines.config import CurationConfig
from pipelines.executor import ExecutorConfig
from pipelines.steps import LANGUAGE_IDENTIFIED, ingest_snapshot, transform_version
from records.layout import REPO_ROOT, DataLayout
from records.manifest import load_manifest

TASKS = 4
FAILING_RANK = 2
EXECUTOR = ExecutorConfig(tasks=TASKS, workers=1, ray_address=None)  # tasks in order 0, 1, 2, 3
CONFIG = {"resume_test": "pass-through"}


class FailOnce:
    """A pass-through block that records each execution of each task (one file per execution) and,
    while ``<folder>/failed`` does not exist, fails task ``rank`` after its first document: by
    killing the process (``kill``: no ``finally``, no ``except`` runs) or by raising."""

    def __init__(self, folder: str, rank: int, *, kill: bool):
        self.folder, self.rank, self.kill = folder, rank, kill

    def __call__(self, data, rank: int = 0, world_size: int = 1):
        folder = Path(self.folder)
        (folder / "executions").mkdir(parents=True, exist_ok=True)
        (folder / "executions" / f"{rank}-{uuid.uuid4().hex}").touch()
        for n, document in enumerate(data):
            if n == 1 and rank == self.rank and not (folder / "failed").exists():
                (folder / "failed").touch()
                if self.kill:
                    os._exit(17)
                raise RuntimeError(f"task {rank} fails once")
            yield document


def executions(folder: Path) -> dict[int, int]:
    counts: dict[int, int] = {}
    for path in (folder / "executions").iterdir():
        rank = int(path.name.split("-")[0])
        counts[rank] = counts.get(rank, 0) + 1
    return dict(sorted(counts.items()))


def run_step(data: str, folder: str, *, kill: bool, config: dict = CONFIG):
    """The step under test: the real step machinery (``transform_version``: staging, tasks, sealing)
    over the raw version, with ``FailOnce`` as its only block."""
    layout = DataLayout(Path(data))
    (raw,) = (load_manifest(p) for p in (layout.datasets / "raw_documents").iterdir())
    return transform_version(
        layout,
        raw,
        asset=LANGUAGE_IDENTIFIED,
        blocks=lambda staging: [FailOnce(folder, FAILING_RANK, kill=kill)],
        config=config,
        executor=EXECUTOR,
    )


@pytest.fixture(scope="module")
def snapshot(tmp_path_factory):
    from sample.crawl import generate_snapshot

    folder = tmp_path_factory.mktemp("resume") / "tiny"
    generate_snapshot(folder, seed=11, num_documents=40)
    return folder


def ingested(snapshot: Path, root: Path) -> DataLayout:
    import shutil

    layout = DataLayout(root)
    shutil.copytree(snapshot, layout.snapshot_dir("tiny"))
    ingest_snapshot(layout, "tiny", CurationConfig(), EXECUTOR)
    return layout


def attempts(layout: DataLayout) -> list[str]:
    root = layout.work / "staging" / "resumable" / "tiny"
    return sorted(p.name for p in root.iterdir() if p.is_dir()) if root.is_dir() else []


def uninterrupted_version(snapshot: Path, root: Path) -> str:
    layout = ingested(snapshot, root / "data")
    (root / "never" / "failed").parent.mkdir(parents=True)
    (root / "never" / "failed").touch()
    return run_step(str(layout.root), str(root / "never"), kill=False).manifest.version_id


@pytest.mark.distributed  # a subprocess killed mid-step
@pytest.mark.slow  # make test-all, not make test
def test_a_step_killed_mid_task_resumes_from_its_completed_tasks(snapshot, tmp_path, capfd):
    layout = ingested(snapshot, tmp_path / "data")
    probe = tmp_path / "probe"
    code = (
        "import sys; from tests.pipelines.test_resume import run_step; "
        "run_step(sys.argv[1], sys.argv[2], kill=True)"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    killed = subprocess.run(
        [sys.executable, "-c", code, str(layout.root), str(probe)], env=env, timeout=300, cwd=REPO_ROOT
    )
    assert killed.returncode == 17  # os._exit in task 2: no cleanup ran
    assert executions(probe) == {0: 1, 1: 1, 2: 1}
    (attempt,) = attempts(layout)
    completions = layout.work / "logs" / attempt / "completions"
    assert sorted(p.name for p in completions.iterdir()) == ["00000", "00001"]

    capfd.readouterr()
    retried = run_step(str(layout.root), str(probe), kill=True)
    assert "resuming: 2 of 4 tasks completed before, skipped" in capfd.readouterr().err
    assert executions(probe) == {0: 1, 1: 1, 2: 2, 3: 1}  # tasks 0 and 1 ran once, in all
    assert retried.created and attempts(layout) == []
    assert retried.manifest.version_id == uninterrupted_version(snapshot, tmp_path / "clean")


def test_a_retry_with_other_inputs_starts_from_zero(snapshot, tmp_path, capfd):
    layout = ingested(snapshot, tmp_path / "data")
    probe = tmp_path / "probe"
    with pytest.raises(RuntimeError, match="fails once"):
        run_step(str(layout.root), str(probe), kill=False)
    assert executions(probe) == {0: 1, 1: 1, 2: 1}
    (failed,) = attempts(layout)
    assert (layout.work / "logs" / failed / "completions" / "00001").exists()

    # Another config: the failed attempt's tasks say nothing about this output, all four run.
    capfd.readouterr()
    other = run_step(str(layout.root), str(probe), kill=False, config={"resume_test": "other"})
    assert "resuming" not in capfd.readouterr().err
    assert executions(probe) == {0: 2, 1: 2, 2: 2, 3: 1}
    assert other.created and attempts(layout) == []  # the failed attempt was discarded
    assert not (layout.work / "logs" / failed).exists()


def test_a_second_claim_on_the_same_inputs_gets_its_own_fresh_folder(tmp_path):
    from records.layout import resumable_staging

    layout = DataLayout(tmp_path / "data")
    inputs = {"parent": "raw_documents@abc", "tasks": 4}
    with (
        resumable_staging(layout, "language_identified", "tiny", inputs) as first,
        resumable_staging(layout, "language_identified", "tiny", inputs) as second,
    ):
        assert first.resume and not second.resume and second.staging != first.staging
    assert second.staging.parent.name.startswith("owner-")  # a plain new_staging folder
