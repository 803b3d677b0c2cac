"""Snapshots are read where they are: a snapshot delivered to an S3 bucket (a real S3-compatible
server, moto's, started here on a free local port) is registered by the sensor and ingested straight
from ``s3://``, with credentials and endpoint from the environment, never copied to local disk, and
gives the same version id as the same files ingested from the local inbox."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from pipelines.config import CurationConfig
from pipelines.executor import ExecutorConfig
from pipelines.steps import ingest_snapshot
from records.layout import REPO_ROOT, DataLayout

BUCKET = "apertus-inbox"
SNAPSHOT = "crawl-s3"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def s3_server(monkeypatch):
    """A moto S3 server on 127.0.0.1 and the environment that points boto at it (the same
    variables an operator sets for a real bucket); yields an s3fs filesystem for the test's uploads."""
    server_module = pytest.importorskip("moto.server")
    s3fs = pytest.importorskip("s3fs")
    port = free_port()
    server = server_module.ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    for name, value in {
        "AWS_ACCESS_KEY_ID": "apertus-test",
        "AWS_SECRET_ACCESS_KEY": "apertus-test-secret",
        "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_EC2_METADATA_DISABLED": "true",
    }.items():
        monkeypatch.setenv(name, value)
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_CONFIG_FILE", "AWS_SHARED_CREDENTIALS_FILE"):
        monkeypatch.delenv(name, raising=False)
    s3fs.S3FileSystem.clear_instance_cache()  # an instance made before would keep its old endpoint
    try:
        fs = s3fs.S3FileSystem()
        fs.mkdir(BUCKET)
        yield fs
    finally:
        s3fs.S3FileSystem.clear_instance_cache()
        server.stop()


@pytest.mark.distributed  # a server in a thread and two ingests: about 15 s
@pytest.mark.slow  # make test-all, not make test
def test_a_snapshot_in_s3_is_ingested_in_place_with_the_local_version_id(s3_server, tmp_path, monkeypatch):
    import dagster as dg

    from assets.definitions import defs
    from assets.sensors import new_snapshots
    from sample.crawl import generate_snapshot

    files = tmp_path / "delivery"
    generate_snapshot(files, seed=3, num_documents=60)  # JSONL (gzip), Parquet and WARC shards
    uploads = sorted(p for p in files.rglob("*") if p.is_file())
    assert {p.parent.name for p in uploads} == {"jsonl", "parquet", "warc"}
    for path in uploads:
        s3_server.put(str(path), f"{BUCKET}/inbox/{SNAPSHOT}/{path.relative_to(files).as_posix()}")
    executor = ExecutorConfig(tasks=2, workers=2, ray_address=None)  # two worker processes read S3

    local = DataLayout(tmp_path / "local")
    shutil.copytree(files, local.snapshot_dir(SNAPSHOT))
    expected = ingest_snapshot(local, SNAPSHOT, CurationConfig(), executor)

    remote = DataLayout(tmp_path / "remote")
    monkeypatch.setenv("APERTUS_DATA", str(remote.root))
    monkeypatch.setenv("APERTUS_INBOX_URL", f"s3://{BUCKET}/inbox")
    with dg.instance_for_test() as instance:
        result = new_snapshots(dg.build_sensor_context(instance=instance, definitions=defs))
        assert [r.partition_key for r in result.run_requests] == [SNAPSHOT]
    # In a fresh process, as the Dagster step runs: the local executor's workers come from a fork
    # server started once per process, so they have the environment of that start (in this test
    # session, one from before the credentials were set), never a later setenv.
    code = (
        "import json, sys; from pipelines.config import CurationConfig; "
        "from pipelines.executor import ExecutorConfig; from pipelines.steps import ingest_snapshot; "
        "from records.layout import DataLayout; "
        "r = ingest_snapshot(DataLayout(sys.argv[1]), sys.argv[2], CurationConfig(), "
        "ExecutorConfig(tasks=2, workers=2, ray_address=None)); "
        "print(json.dumps({'id': r.manifest.version_id, 'kept': r.kept, 'config': r.manifest.config}))"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    done = subprocess.run(
        [sys.executable, "-c", code, str(remote.root), SNAPSHOT],
        env=env, cwd=REPO_ROOT, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    got = json.loads(done.stdout.strip().splitlines()[-1])

    assert got["id"] == expected.manifest.version_id
    assert got["kept"] == expected.kept and got["kept"]["documents"] > 0
    assert got["config"] == expected.manifest.config  # no trace of where it was read from
    assert not remote.inbox.exists()
    # Nothing of the snapshot was written to local disk: no file of the data folder has a shard's bytes.
    sizes = {p.stat().st_size for p in uploads}
    local_files = [p for p in remote.root.rglob("*") if p.is_file() and p.stat().st_size in sizes]
    assert not [p for p in local_files if any(p.read_bytes() == u.read_bytes() for u in uploads)]


def test_an_unknown_snapshot_names_both_places(tmp_path, monkeypatch):
    from pipelines.remote_inbox import snapshot_source

    (tmp_path / "drop").mkdir()
    monkeypatch.setenv("APERTUS_INBOX_URL", f"file://{tmp_path / 'drop'}")
    with pytest.raises(ValueError, match=r"inbox/nowhere nor file://.*drop/nowhere: no such snapshot"):
        snapshot_source(DataLayout(tmp_path / "data"), "nowhere")
    monkeypatch.delenv("APERTUS_INBOX_URL")
    with pytest.raises(ValueError, match=r"inbox/nowhere: no such snapshot folder"):
        snapshot_source(DataLayout(tmp_path / "data"), "nowhere")
    assert Path(tmp_path / "drop").is_dir()
