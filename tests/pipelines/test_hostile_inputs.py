"""Inputs a careless or hostile supplier controls (issue 14, findings 8 and 15): compression is read
from the bytes, not the name; links and special files in a snapshot are quarantined, never followed;
a Parquet row group is judged by its footer before it is decoded."""

from __future__ import annotations

import gzip
import json
import os
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from pipelines import reasons
from pipelines.readers import SnapshotReader, read_quarantine
from pipelines.readers.budgets import ByteBudgets


def read(root: Path, quarantine: Path, **kwargs) -> tuple[list, list[dict]]:
    documents = list(SnapshotReader(root, "snap", quarantine, **kwargs).run(rank=0, world_size=1))
    return documents, read_quarantine(quarantine)


def lines(num: int, prefix: str = "doc") -> bytes:
    return b"".join(
        json.dumps({"id": f"{prefix}-{n}", "text": f"{prefix} text {n}"}).encode() + b"\n" for n in range(num)
    )


def test_compression_is_decided_by_magic_bytes_not_the_name(tmp_path):
    root = tmp_path / "snap"
    root.mkdir()
    (root / "plain.jsonl.gz").write_bytes(lines(15, "plain"))  # finding 15: 15 valid records, not gzip
    (root / "gzipped.jsonl").write_bytes(gzip.compress(lines(4, "gz")))
    (root / "zstd.jsonl.zst").write_bytes(pa.compress(lines(3, "zst"), "zstd", asbytes=True))
    documents, quarantine = read(root, tmp_path / "q")
    assert quarantine == []
    texts = sorted(d.text for d in documents)
    assert texts == sorted(
        [f"plain text {n}" for n in range(15)]
        + [f"gz text {n}" for n in range(4)]
        + [f"zst text {n}" for n in range(3)]
    )
    assert {d.id for d in documents if d.text.startswith("plain")} == {
        f"snap/plain.jsonl.gz#{n}" for n in range(15)
    }


def test_symlinks_and_special_files_are_quarantined_never_followed(tmp_path):
    secret = tmp_path / "host" / "private_key.pem"
    secret.parent.mkdir()
    secret.write_text(json.dumps({"text": "SECRET KEY MATERIAL"}) + "\n")
    (tmp_path / "host" / "more.jsonl").write_text(json.dumps({"text": "HOST FILE"}) + "\n")
    root = tmp_path / "snap"
    (root / "sub").mkdir(parents=True)
    (root / "good.jsonl").write_bytes(lines(2))
    (root / "key.jsonl").symlink_to(secret)  # a link to a host file
    (root / "sub" / "hostdir").symlink_to(tmp_path / "host", target_is_directory=True)  # to a folder
    os.mkfifo(root / "pipe.jsonl")  # opening it would block the reader forever
    documents, quarantine = read(root, tmp_path / "q")

    assert sorted(d.text for d in documents) == ["doc text 0", "doc text 1"]
    rows = {r["file"]: r for r in quarantine}
    assert set(rows) == {"key.jsonl", "sub/hostdir", "pipe.jsonl"}
    assert rows["key.jsonl"]["reason"] == rows["sub/hostdir"]["reason"] == reasons.SYMLINK
    assert (
        str(secret) in rows["key.jsonl"]["detail"] and str(tmp_path / "host") in rows["sub/hostdir"]["detail"]
    )
    assert rows["pipe.jsonl"]["reason"] == reasons.NOT_A_REGULAR_FILE
    assert not any("SECRET" in (r["excerpt"] or "") + (r["detail"] or "") for r in quarantine)
    assert not any("HOST FILE" in (r["excerpt"] or "") for r in quarantine)


def test_a_link_to_the_snapshot_folder_itself_is_read(tmp_path):
    real = tmp_path / "real"
    real.mkdir()
    (real / "a.jsonl").write_bytes(lines(3))
    (tmp_path / "inbox").mkdir()
    (tmp_path / "inbox" / "snap").symlink_to(real, target_is_directory=True)  # what `ingest --link` makes
    documents, quarantine = read(tmp_path / "inbox" / "snap", tmp_path / "q")
    assert len(documents) == 3 and quarantine == []


def test_only_the_parquet_row_group_over_the_chunk_budget_is_quarantined(tmp_path):
    root = tmp_path / "snap"
    root.mkdir()
    texts = ["small one", "small two", "x" * 5000, "small four", "small five", "small six"]
    pq.write_table(pa.table({"text": texts}), root / "t.parquet", row_group_size=2, compression="zstd")
    documents, quarantine = read(root, tmp_path / "q", budgets=ByteBudgets(max_column_chunk_bytes=4000))
    assert [d.text for d in documents] == ["small one", "small two", "small five", "small six"]
    assert [d.id for d in documents] == [f"snap/t.parquet#{n}" for n in (0, 1, 4, 5)]
    (row,) = quarantine
    assert (row["offset"], row["reason"]) == (2, reasons.COLUMN_CHUNK_TOO_LARGE)
    assert "rows 2 to 3 (2 rows)" in row["detail"]


def test_the_file_budget_quarantines_the_rest_of_a_plain_file(tmp_path):
    root = tmp_path / "snap"
    root.mkdir()
    data = lines(10)
    (root / "a.jsonl").write_bytes(data)
    line = len(data) // 10
    documents, quarantine = read(root, tmp_path / "q", budgets=ByteBudgets(max_file_bytes=4 * line + 3))
    assert len(documents) == 4
    (row,) = quarantine
    assert (row["offset"], row["reason"]) == (4, reasons.FILE_TOO_LARGE)


def _warc_response(url: str, html: bytes, extra_header: bytes = b"") -> bytes:
    http = b"HTTP/1.1 200 OK\r\nContent-Type: text/html; charset=utf-8\r\n\r\n" + html
    head = b"WARC/1.0\r\nWARC-Type: response\r\nWARC-Target-URI: " + url.encode() + b"\r\n" + extra_header
    head += b"Content-Type: application/http; msgtype=response\r\nContent-Length: " + str(len(http)).encode()
    return head + b"\r\n\r\n" + http + b"\r\n\r\n"


def test_a_gzip_warc_header_line_that_inflates_is_refused_unread(tmp_path):
    root = tmp_path / "snap"
    root.mkdir()
    html = (
        b"<html><body><main><p>"
        + b"Ein ganz gewoehnlicher Absatz mit Text. " * 20
        + b"</p></main></body></html>"
    )
    good = gzip.compress(_warc_response("https://example.org/ok", html))
    bomb = gzip.compress(
        _warc_response("https://example.org/x", html, b"X-Junk: " + b"a" * 30_000_000 + b"\r\n")
    )
    assert len(bomb) < 100_000
    (root / "c.warc.gz").write_bytes(good + bomb)
    documents, quarantine = read(root, tmp_path / "q")
    assert [d.metadata["url"] for d in documents] == ["https://example.org/ok"]
    (row,) = quarantine
    assert row["reason"] == reasons.UNREADABLE_FILE and "header line longer than" in row["detail"]
