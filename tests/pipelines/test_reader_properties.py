"""Property-based: generated hostile files (gzip cut, concatenated or corrupted; Parquet with odd
schemas, huge cells and bad bytes; WARC with broken headers and lengths) never crash or hang the
reader, and every record is either a document or a quarantine row with a reason: where the number
of records is known (an intact file), documents plus quarantined records add up to it."""

from __future__ import annotations

import gzip
import io
import json
import tempfile
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipelines import reasons
from pipelines.readers import SnapshotReader, read_quarantine
from pipelines.readers.budgets import ByteBudgets

KNOWN_REASONS = {v for k, v in vars(reasons).items() if k.isupper() and isinstance(v, str)}
MAX_DOCUMENT_BYTES = 2_000
BUDGETS = ByteBudgets(max_file_bytes=60_000, max_column_chunk_bytes=20_000)
SETTINGS = settings(
    max_examples=40, deadline=10_000, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large]
)

texts = st.one_of(
    st.text(min_size=0, max_size=40),
    st.integers(min_value=1, max_value=5_000).map(lambda n: "w" * n),  # some over MAX_DOCUMENT_BYTES
)
lines = st.one_of(
    texts.map(lambda t: json.dumps({"text": t}).encode()),
    st.binary(max_size=30),  # bad JSON, bad UTF-8
    st.just(b"[1, 2]"),
    st.just(b'{"text": null}'),
)


def read(name: str, data: bytes) -> tuple[list, list[dict]]:
    """Documents and quarantine rows of a snapshot holding one file ``name`` with ``data``."""
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "snap"
        root.mkdir()
        (root / name).write_bytes(data)
        reader = SnapshotReader(
            root, "snap", Path(tmp) / "q", max_document_bytes=MAX_DOCUMENT_BYTES, budgets=BUDGETS
        )
        documents = list(reader.run(rank=0, world_size=1))
        quarantine = read_quarantine(Path(tmp) / "q")
    for row in quarantine:
        assert row["reason"] in KNOWN_REASONS and row["detail"] and row["file"] == name, row
    assert len({d.id for d in documents}) == len(documents)
    assert all(d.text.strip() and len(d.text.encode()) <= MAX_DOCUMENT_BYTES for d in documents)
    return documents, quarantine


def mutate(data: bytes, how: str, cut: float, extra: bytes) -> bytes:
    at = int(len(data) * cut)
    if how == "truncate":
        return data[:at]
    if how == "append":
        return data + extra
    if how == "flip" and data:
        return data[:at] + bytes([data[at % len(data)] ^ 0xFF]) + data[at + 1 :]
    return data  # intact


mutations = st.tuples(
    st.sampled_from(["intact", "truncate", "append", "flip"]),
    st.floats(min_value=0, max_value=1),
    st.one_of(st.binary(max_size=64), st.builds(lambda b: gzip.compress(b), st.binary(max_size=64))),
)


@SETTINGS
@given(
    body=st.lists(lines, max_size=30), compressed=st.booleans(), members=st.integers(1, 3), mutation=mutations
)
def test_jsonl_and_gzip_never_crash_and_account_for_every_line(body, compressed, members, mutation):
    plain = b"".join(line.replace(b"\n", b" ") + b"\n" for line in body)
    data = plain
    if compressed:  # split into several members, a valid multi-member gzip
        step = max(1, len(plain) // members)
        data = b"".join(gzip.compress(plain[i : i + step]) for i in range(0, len(plain), step))
    how, cut, extra = mutation
    data = mutate(data, how, cut, extra)
    documents, quarantine = read("f.jsonl.gz", data)
    if how == "intact" and data:
        # Records are the non-blank lines (offset: line number); past the file budget, one row stands
        # for the rest of the file.
        stop = min([r["offset"] for r in quarantine if r["reason"] == reasons.FILE_TOO_LARGE], default=None)
        numbered = list(enumerate(plain.split(b"\n")[:-1]))
        records = [n for n, line in numbered if line.strip() and (stop is None or n < stop)]
        rejected = [
            r for r in quarantine if r["offset"] is not None and r["reason"] != reasons.FILE_TOO_LARGE
        ]
        if records or stop is not None:
            assert len(documents) + len(rejected) == len(records)
        else:
            assert [r["reason"] for r in quarantine] == [reasons.EMPTY_FILE] and not documents


cells = st.one_of(texts, st.none(), st.binary(max_size=20).map(lambda b: b.decode("latin-1")))


@st.composite
def parquet_files(draw) -> tuple[bytes, int]:
    """A Parquet file with a random schema around (or without) a text column; and its row count."""
    num_rows = draw(st.integers(0, 12))
    kind = draw(st.sampled_from(["string", "binary", "int", "missing", "nested"]))
    columns = {"id": pa.array([f"r{n}" for n in range(num_rows)])}
    if kind == "string":
        columns["text"] = pa.array([draw(cells) for _ in range(num_rows)], pa.string())
    elif kind == "binary":
        columns["text"] = pa.array([draw(st.binary(max_size=30)) for _ in range(num_rows)], pa.binary())
    elif kind == "int":
        columns["text"] = pa.array(list(range(num_rows)), pa.int64())
    elif kind == "nested":
        columns["text"] = pa.array([{"a": draw(texts)} for _ in range(num_rows)])
    if draw(st.booleans()):  # a huge cell that inflates far past the column chunk budget
        columns["blob"] = pa.array(["z" * 50_000 if n == 0 else "" for n in range(num_rows)], pa.string())
    sink = io.BytesIO()
    pq.write_table(pa.table(columns), sink, row_group_size=draw(st.integers(1, 5)), compression="zstd")
    return sink.getvalue(), num_rows


@SETTINGS
@given(file=parquet_files(), mutation=mutations)
def test_parquet_never_crashes_and_accounts_for_every_row(file, mutation):
    data, num_rows = file
    how, cut, extra = mutation
    documents, quarantine = read("t.parquet", mutate(data, how, cut, extra))
    if how == "intact":
        whole_file = [r for r in quarantine if r["offset"] is None]
        if not whole_file:  # rows are documents, rejected one by one, or a row group named by its rows
            covered = 0
            for row in quarantine:
                if row["reason"] == reasons.COLUMN_CHUNK_TOO_LARGE:
                    covered += int(row["detail"].split(" rows)")[0].rsplit("(", 1)[1])
                elif row["reason"] == reasons.FILE_TOO_LARGE:  # "rows from <offset> on are not read"
                    covered += num_rows - row["offset"]
                else:
                    covered += 1
            assert len(documents) + covered == num_rows


def warc_record(url: str, body: bytes, length: int | None, broken_header: bool) -> bytes:
    http = b"HTTP/1.1 200 OK\r\nContent-Type: text/html; charset=utf-8\r\n\r\n" + body
    declared = len(http) if length is None else length
    head = b"WARC/1.0\r\nWARC-Type: response\r\nWARC-Target-URI: " + url.encode() + b"\r\n"
    head += b"Content-Type: application/http; msgtype=response\r\n"
    head += (
        b"Content-Length: x" if broken_header else b"Content-Length: " + str(declared).encode()
    ) + b"\r\n"
    return head + b"\r\n" + http + b"\r\n\r\n"


@SETTINGS
@given(
    records=st.lists(
        st.tuples(
            st.binary(max_size=200),
            st.one_of(st.none(), st.integers(-5, 400)),
            st.booleans(),
        ),
        max_size=6,
    ),
    compressed=st.booleans(),
    mutation=mutations,
)
def test_warc_with_broken_headers_and_lengths_never_crashes(records, compressed, mutation):
    parts = [
        warc_record(
            f"https://example.org/{n}", b"<html><body><p>" + body + b"</p></body></html>", length, broken
        )
        for n, (body, length, broken) in enumerate(records)
    ]
    data = b"".join(gzip.compress(p) for p in parts) if compressed else b"".join(parts)
    how, cut, extra = mutation
    read("c.warc.gz" if compressed else "c.warc", mutate(data, how, cut, extra))


def test_a_file_budget_row_accounts_for_every_row_after_it():
    """Found by the property above: the file budget, reached mid-file, quarantines the rest of the
    file as one row ("rows from <offset> on"); with a column-chunk row before it, every row is still
    accounted for, once."""
    num_rows = 7
    columns = {
        "id": pa.array([f"r{n}" for n in range(num_rows)]),
        "text": pa.array(["x" * 9_500 if n == 5 else "" for n in range(num_rows)], pa.string()),
        "blob": pa.array(["z" * 50_000 if n == 0 else "" for n in range(num_rows)], pa.string()),
    }
    sink = io.BytesIO()
    pq.write_table(pa.table(columns), sink, row_group_size=1, compression="zstd")
    documents, quarantine = read("t.parquet", sink.getvalue())
    by_reason = {r["reason"]: r for r in quarantine}
    assert by_reason[reasons.COLUMN_CHUNK_TOO_LARGE]["offset"] == 0
    rest = by_reason[reasons.FILE_TOO_LARGE]["offset"]  # where the file's bytes ran past the budget
    assert 0 < rest < num_rows - 1  # so the one row stands for more than one row of the file
    assert f"rows from {rest} on are not read" in by_reason[reasons.FILE_TOO_LARGE]["detail"]
    # rows 0 .. rest-1 one quarantine row each (the blob's row group, then empty texts), then the rest
    assert not documents and [r["offset"] for r in quarantine] == list(range(rest + 1))
