"""Test helper: the generator's ground truth joined with each record's text as written."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pyarrow.parquet as pq


def snapshot_records(root: Path, truth_path: Path) -> list[dict]:
    """The truth rows of the snapshot's JSONL and Parquet records, each with its text as written
    (WARC pages are left out: their text exists only after HTML extraction)."""
    texts = {}
    for path in sorted(root.glob("jsonl/*.jsonl.gz")):
        with gzip.open(path, "rt", encoding="utf-8") as f:
            for line, raw in enumerate(f):
                texts[(path.relative_to(root).as_posix(), line)] = json.loads(raw)["text"]
    for path in sorted(root.glob("parquet/*.parquet")):
        for row, text in enumerate(pq.read_table(path, columns=["text"]).column("text").to_pylist()):
            texts[(path.relative_to(root).as_posix(), row)] = text
    rows = pq.read_table(truth_path).to_pylist()
    return [{**r, "text": texts[(r["file"], r["offset"])]} for r in rows if r["format"] != "warc"]
