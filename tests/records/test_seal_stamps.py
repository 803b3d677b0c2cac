"""A version is hashed once, at sealing: the step's own check trusts the files this process hashed
and that have not changed since, and re-hashes every other one; a rewrite is caught even when it
keeps the size and puts the modification time back."""

from __future__ import annotations

import os
import time
from pathlib import Path

from records import seal_stamps
from records.manifest import seal, verify_version

SHARD = "shards/00000.parquet"


def _sealed(tmp_path: Path) -> Path:
    staging = tmp_path / "staging"
    (staging / "shards").mkdir(parents=True)
    (staging / SHARD).write_bytes(b"alpha" * 1000)
    (staging / "index.parquet").write_bytes(b"beta")
    time.sleep(2 * seal_stamps.RACY_NS / 1e9)  # written well before sealing, as a step's shards are
    manifest, created = seal(staging, tmp_path / "datasets", asset="raw_documents", snapshot="s")
    assert created
    return tmp_path / "datasets" / manifest.ref


def test_the_check_trusts_what_sealing_hashed_and_re_hashes_the_rest(tmp_path, monkeypatch):
    folder = _sealed(tmp_path)
    assert seal_stamps.unchanged_since_sealing(folder, SHARD)
    # lineage.json was written by seal just before hashing: too recent to trust, so re-hashed.
    assert not seal_stamps.unchanged_since_sealing(folder, "lineage.json")

    hashed = []
    real = verify_version.__globals__["sha256_file"]
    monkeypatch.setitem(
        verify_version.__globals__, "sha256_file", lambda p: hashed.append(Path(p).name) or real(p)
    )
    assert verify_version(folder, since_sealing=True) == []
    assert hashed == ["lineage.json"]  # the shard and the index were hashed once, at sealing
    hashed.clear()
    assert verify_version(folder) == []  # what `apertus audit verify` does: every file
    assert sorted(hashed) == ["00000.parquet", "index.parquet", "lineage.json"]


def test_a_rewrite_with_the_same_size_and_time_is_still_caught(tmp_path):
    folder = _sealed(tmp_path)
    shard = folder / SHARD
    before = shard.stat()
    shard.write_bytes(b"omega" * 1000)  # same size
    os.utime(shard, ns=(before.st_atime_ns, before.st_mtime_ns))  # modification time put back
    assert not seal_stamps.unchanged_since_sealing(folder, SHARD)  # the change time moved
    (problem,) = verify_version(folder, since_sealing=True)
    assert f"{shard}: sha256" in problem and "differs from recorded" in problem


def test_another_process_or_folder_has_no_stamps(tmp_path):
    folder = _sealed(tmp_path)
    copy = tmp_path / "copy"
    os.rename(folder, copy)  # not the folder seal created: nothing is trusted there
    assert not seal_stamps.unchanged_since_sealing(copy, SHARD)
