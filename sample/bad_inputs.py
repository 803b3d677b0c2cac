"""A snapshot folder of broken input among good records, with the truth of what a reader must do.

Every case of the curation issue's list: a truncated gzip, invalid JSON lines, invalid UTF-8,
records without text, empty files, a 20 MB document, a Parquet file without a text column, a
corrupt Parquet file and a truncated WARC record. The good records around them must survive.
"""

from __future__ import annotations

import io
import json
import random
import uuid
import zlib
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from pipelines import reasons
from sample.crawl import (
    RECORD_SCHEMA,
    SOURCES_DIR,
    cut_pages,
    gzip_bytes,
    jsonl_bytes,
    load_sources,
    sha256,
    truth_path,
    write_jsonl_gz,
    write_parquet,
    write_table,
    write_warc,
)

BAD_TRUTH_SCHEMA = pa.schema([
    ("file", pa.string()), ("format", pa.string()), ("offset", pa.int64()), ("source_id", pa.string()),
    ("reason", pa.string()), ("text_sha256", pa.string()), ("detail", pa.string()),
])  # fmt: skip
TOO_LARGE_CHARS = 20 * 1024 * 1024


def write_bad_inputs(out_dir: Path, *, seed: int = 0) -> Path:
    """Write a snapshot folder of broken inputs among good records; return its truth table
    (``out_dir.parent / f"{out_dir.name}.truth.parquet"``). A truth row with ``reason`` null is a
    good record that must survive reading; any other row names the record (``offset``: line, row or
    WARC byte offset) or the whole file (``offset`` null) and the ``pipelines.reasons`` string a
    reader must give it."""
    rng = random.Random(seed)
    pool = cut_pages(load_sources(SOURCES_DIR), rng)
    good = [
        {"id": f"bad-inputs-{n:04d}", "url": f"https://www.example{n % 7}.org/page/{n}.html", "text": page.text,
         "language": page.true_language, "date": "2025-06-01T12:00:00Z"}
        for n, page in enumerate(rng.sample(pool, 60))
    ]  # fmt: skip
    out_dir = Path(out_dir)
    for fmt in ("jsonl", "parquet", "warc"):
        (out_dir / fmt).mkdir(parents=True, exist_ok=True)
    rows = []

    def keep(file: str, offset: int, record: dict) -> None:
        rows.append({"file": file, "format": file.split("/")[0], "offset": offset, "source_id": record["id"],
                     "reason": None, "text_sha256": sha256(record["text"]), "detail": None})  # fmt: skip

    def bad(file: str, offset: int | None, reason: str, detail: str, source_id: str | None = None) -> None:
        rows.append({"file": file, "format": file.split("/")[0], "offset": offset, "source_id": source_id,
                     "reason": reason, "text_sha256": None, "detail": detail})  # fmt: skip

    # A gzip cut short: the lines that decompress completely before the cut are readable.
    records, name = good[0:10], "jsonl/truncated.jsonl.gz"
    data = gzip_bytes(jsonl_bytes(records))
    cut = data[: len(data) * 3 // 5]
    readable = zlib.decompressobj(wbits=31).decompress(cut).count(b"\n")
    (out_dir / name).write_bytes(cut)
    for line, record in enumerate(records[:readable]):
        keep(name, line, record)
    bad(name, readable, reasons.TRUNCATED_FILE, f"gzip stream ends after {len(cut)} of {len(data)} bytes")

    name, lines = "jsonl/invalid_json.jsonl", []
    broken = {2: '{"id": "broken-1", "text": "an unterminated string', 5: "this line is not JSON at all",
              8: '{"id": "broken-3", "text": "trailing comma",}'}  # fmt: skip
    for line, record in enumerate(good[10:20]):
        if line in broken:
            lines.append(broken[line])
            bad(name, line, reasons.BAD_JSON, "invalid JSON")
        else:
            lines.append(json.dumps(record, ensure_ascii=False))
            keep(name, line, record)
    (out_dir / name).write_text("\n".join(lines) + "\n", encoding="utf-8")

    name, blobs = "jsonl/bad_utf8.jsonl", []
    for line, record in enumerate(good[20:28]):
        blob = json.dumps(record, ensure_ascii=False).encode("utf-8")
        if line in (1, 4):
            blob = blob.replace(b'"text": "', b'"text": "\xff\xfe\xc3\x28 ', 1)
            bad(name, line, reasons.BAD_UTF8, "bytes ff fe c3 28 in the text", record["id"])
        else:
            keep(name, line, record)
        blobs.append(blob)
    (out_dir / name).write_bytes(b"\n".join(blobs) + b"\n")

    name, records = "jsonl/no_text.jsonl", good[28:34]
    variants = {1: "missing", 3: "empty", 4: "null"}
    written = []
    for line, record in enumerate(records):
        if line in variants:
            record = dict(record)
            if variants[line] == "missing":
                del record["text"]
            else:
                record["text"] = "" if variants[line] == "empty" else None
            bad(name, line, reasons.NO_TEXT, f"text field {variants[line]}", record["id"])
        else:
            keep(name, line, record)
        written.append(record)
    (out_dir / name).write_bytes(jsonl_bytes(written))

    (out_dir / "jsonl/empty.jsonl").write_bytes(b"")
    bad("jsonl/empty.jsonl", None, reasons.EMPTY_FILE, "0 bytes")
    (out_dir / "jsonl/empty.jsonl.gz").write_bytes(gzip_bytes(b""))
    bad("jsonl/empty.jsonl.gz", None, reasons.EMPTY_FILE, "a valid gzip stream of 0 bytes")

    name, records = "jsonl/large.jsonl.gz", [dict(r) for r in good[34:40]]
    base = records[2]["text"] + "\n\n"
    records[2]["text"] = (base * (TOO_LARGE_CHARS // len(base) + 1))[:TOO_LARGE_CHARS]
    for line, record in enumerate(records):
        if line == 2:
            bad(name, line, reasons.DOCUMENT_TOO_LARGE, f"{TOO_LARGE_CHARS} characters", record["id"])
        else:
            keep(name, line, record)
    write_jsonl_gz(out_dir / name, records)

    name, records = "parquet/good.parquet", good[40:46]
    for row, record in zip(write_parquet(out_dir / name, records), records, strict=True):
        keep(name, row, record)
    renamed = [{("content" if k == "text" else k): v for k, v in r.items()} for r in good[46:50]]
    pq.write_table(pa.Table.from_pylist(renamed), out_dir / "parquet/no_text_column.parquet")
    bad(
        "parquet/no_text_column.parquet",
        None,
        reasons.NO_TEXT_COLUMN,
        "columns id, url, content, language, date",
    )
    sink = io.BytesIO()
    pq.write_table(pa.Table.from_pylist(good[50:54], schema=RECORD_SCHEMA), sink)
    (out_dir / "parquet/corrupt.parquet").write_bytes(sink.getvalue()[: len(sink.getvalue()) // 2])
    bad("parquet/corrupt.parquet", None, reasons.UNREADABLE_FILE, "cut in half: no footer")

    # A WARC whose last record is cut inside its gzip member.
    name = "warc/truncated.warc.gz"
    records = [
        dict(r, id=f"<urn:uuid:{uuid.UUID(int=rng.getrandbits(128), version=4)}>") for r in good[54:60]
    ]
    offsets = write_warc(out_dir / name, records)
    data = (out_dir / name).read_bytes()
    (out_dir / name).write_bytes(data[: offsets[-1] + (len(data) - offsets[-1]) // 2])
    for offset, record in zip(offsets[:-1], records[:-1], strict=True):
        keep(name, offset, record)
    bad(
        name, offsets[-1], reasons.TRUNCATED_FILE, "last record cut inside its gzip member", records[-1]["id"]
    )

    return write_table(truth_path(out_dir), rows, BAD_TRUTH_SCHEMA)


def write_gzip_of_large_lines(path: Path, *, num_lines: int = 100, line_bytes: int = 9_000_000) -> int:
    """A small gzip that inflates to ``num_lines`` JSON lines of about ``line_bytes`` each (each under
    the default per-record cap): issue 14's 877 KB file that peaked at 3.4 GB. One compressed member
    repeated (a valid multi-member gzip), so writing it costs one line. Returns its size in bytes."""
    line = json.dumps({"text": "a" * (line_bytes - 12)}).encode() + b"\n"
    member = zlib.compressobj(9, zlib.DEFLATED, 31)
    member = member.compress(line) + member.flush()
    path.write_bytes(member * num_lines)
    return path.stat().st_size


def write_parquet_of_one_large_cell(path: Path, *, cell_bytes: int = 400_000_000) -> int:
    """A small Parquet file (zstd) of two rows, one of whose ``text`` cells is ``cell_bytes`` long:
    issue 14's 13 KB file that peaked at 2.7 GB. Returns its size in bytes."""
    table = pa.table({"id": ["big", "small"], "text": ["b" * cell_bytes, "a small document"]})
    pq.write_table(table, path, compression="zstd")
    del table
    return path.stat().st_size
