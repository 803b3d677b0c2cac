"""Run a snapshot folder through the reader and the shard writer under an address-space limit, in a
process of its own: ``python -m tests.pipelines.budget_probe HEADROOM_BYTES SNAPSHOT_DIR WORK_DIR [BUDGETS_JSON]``.

The limit (RLIMIT_AS) is the address space mapped once the libraries are imported and Arrow's memory
pool is started (about 1.4 GB, most of it mimalloc's reservation, barely resident), plus
``HEADROOM_BYTES``. Prints one JSON line: the documents written (their text lengths), the quarantine
rows, the baseline and the peak resident memory."""

from __future__ import annotations

import json
import os
import resource
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq


def main() -> None:
    headroom, snapshot_dir, work = int(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3])
    budgets = json.loads(sys.argv[4]) if len(sys.argv) > 4 else {}
    from pipelines.readers import SnapshotReader, read_quarantine
    from pipelines.readers.budgets import ByteBudgets
    from pipelines.shards import DocumentShardWriter

    pa.array(["start the memory pool"]).to_pylist()
    baseline = _mapped_bytes()
    resource.setrlimit(resource.RLIMIT_AS, (baseline + headroom, baseline + headroom))
    reader = SnapshotReader(snapshot_dir, "hostile", work / "quarantine", budgets=ByteBudgets(**budgets))
    writer = DocumentShardWriter(work / "shards")
    for _ in writer.run(reader.run()):
        pass
    writer.close()  # datatrove closes in run(); a second close is a no-op
    # VmHWM, not ru_maxrss: Linux carries ru_maxrss across fork and exec, so a child of a large pytest
    # process would report the parent's resident size; VmHWM belongs to this process's own memory map.
    peak = _status_bytes("VmHWM")  # before reading the output back
    documents = []  # text length of each document written, a row group at a time
    for shard in sorted((work / "shards").glob("*.parquet")):
        for batch in pq.ParquetFile(shard).iter_batches(batch_size=1, columns=["text"]):
            documents += pc.binary_length(batch.column(0)).to_pylist()
    quarantine = [
        {k: r[k] for k in ("file", "offset", "reason", "detail")}
        for r in read_quarantine(work / "quarantine")
    ]
    print(
        json.dumps(
            {"documents": documents, "quarantine": quarantine, "baseline": baseline, "peak_rss": peak}
        ),
        flush=True,
    )
    # The answer is out; skip the interpreter's teardown, where a library's thread pool, torn down
    # under the address-space limit, aborts now and then ("terminate called without an active
    # exception", after the line above): that says nothing about the budgets.
    os._exit(0)


def _status_bytes(field: str) -> int:
    """A size field of /proc/self/status (VmSize, VmHWM, ...), in bytes."""
    status = Path("/proc/self/status").read_text()
    return int(status.split(f"{field}:")[1].split()[0]) * 1024


def _mapped_bytes() -> int:
    """This process's address space now (VmSize), in bytes."""
    return _status_bytes("VmSize")


if __name__ == "__main__":
    main()
