"""SnapshotReader and quarantine: every record joins back to its input by id and offset, and every bad
record or file is in quarantine with its reason, offset and excerpt, its neighbours kept.

Inputs are built here with gzip, pyarrow and warcio (the truth is what this file wrote), and, for the
generator's inputs, checked against the truth tables of ``sample.crawl``.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import zlib
from pathlib import Path

import fsspec
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from warcio.archiveiterator import ArchiveIterator
from warcio.statusandheaders import StatusAndHeaders
from warcio.warcwriter import WARCWriter

from pipelines import fields, reasons
from pipelines.executor import ExecutorConfig, run_pipeline
from pipelines.readers import QUARANTINE_SCHEMA, SnapshotReader, read_quarantine
from pipelines.shards import DocumentShardWriter, read_rows
from sample.bad_inputs import write_bad_inputs
from sample.crawl import generate_snapshot, sloppy_cp1252

ARTICLE = [
    "Köln liegt am Rhein und ist mit rund einer Million Einwohnern die größte Stadt Nordrhein-Westfalens.",
    "Der Dom wurde über sechs Jahrhunderte gebaut und 1880 vollendet; er zählt zum Weltkulturerbe.",
    "Zu den bekanntesten Festen der Stadt gehört der Karneval, dessen Straßenumzüge jedes Jahr "
    "Hunderttausende Besucher anziehen und der als fünfte Jahreszeit gilt.",
]


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def read(root: Path, quarantine: Path, **kwargs) -> tuple[list, list[dict], SnapshotReader]:
    reader = SnapshotReader(root, "snap", quarantine, **kwargs)
    documents = list(reader.run(rank=0, world_size=1))
    return documents, read_quarantine(quarantine), reader


def record(n: int, **extra) -> dict:
    return {"id": f"rec-{n}", "url": f"https://example.org/{n}", "text": f"document number {n}", **extra}


def jsonl(records: list) -> bytes:
    return b"".join(
        (r if isinstance(r, bytes) else json.dumps(r, ensure_ascii=False).encode()) + b"\n" for r in records
    )


def page(title: str, paragraphs: list[str]) -> bytes:
    body = "\n".join(f"<p>{p}</p>" for p in paragraphs)
    return (
        f'<!DOCTYPE html><html lang="de"><head><meta charset="utf-8"><title>{title}</title></head><body>'
        '<nav><a href="/">Start</a> | <a href="/news">Nachrichten</a> | <a href="/kontakt">Kontakt</a></nav>'
        f"<main><article>{body}</article></main>"
        '<footer><p>© 2025 example.de · <a href="/datenschutz">Datenschutz</a> · Impressum</p></footer>'
        "</body></html>"
    ).encode()


def write_warc(path: Path, pages: list[tuple[str, bytes, str]], *, gzipped: bool = True) -> list[int]:
    """A warcinfo, a request, an image response, then one HTML response per (url, payload, content type);
    returns each page's byte offset."""
    offsets = []
    with path.open("wb") as f:
        writer = WARCWriter(f, gzip=gzipped)
        info = b"software: test\r\n"
        writer.write_record(
            writer.create_warc_record("", "warcinfo", payload=io.BytesIO(info), length=len(info))
        )
        request = StatusAndHeaders("GET / HTTP/1.1", [("Host", "example.de")], is_http_request=True)
        writer.write_record(writer.create_warc_record("https://example.de/", "request", http_headers=request))
        image = StatusAndHeaders("200 OK", [("Content-Type", "image/png")], protocol="HTTP/1.1")
        writer.write_record(
            writer.create_warc_record(
                "https://example.de/a.png", "response", payload=io.BytesIO(b"\x89PNG"), http_headers=image
            )
        )
        for n, (url, payload, content_type) in enumerate(pages):
            headers = StatusAndHeaders("200 OK", [("Content-Type", content_type)], protocol="HTTP/1.1")
            offsets.append(f.tell())
            writer.write_record(
                writer.create_warc_record(
                    url, "response", payload=io.BytesIO(payload), http_headers=headers,
                    warc_headers_dict={"WARC-Record-ID": f"<urn:uuid:00000000-0000-4000-8000-{n:012d}>"},
                )
            )  # fmt: skip
    return offsets


def by_reason(quarantine: list[dict]) -> dict[tuple[str, int | None], str]:
    return {(row["file"], row["offset"]): row["reason"] for row in quarantine}


# ---------------------------------------------------------------------------- good inputs, per format


def test_jsonl_ids_offsets_and_metadata_join_back(tmp_path):
    root = tmp_path / "snap"
    (root / "a").mkdir(parents=True)
    plain = [record(0, language="de", date="2025-01-02"), record(1, language="fr", topic="x")]
    (root / "a/plain.jsonl").write_bytes(jsonl(plain) + b"\n   \n" + jsonl([{"text": "no id nor url"}]))
    (root / "a/zipped.jsonl.gz").write_bytes(gzip.compress(jsonl([record(2), record(3)])))
    (root / "b.json.gz").write_bytes(gzip.compress(jsonl([record(4)])))

    documents, quarantine, _ = read(root, tmp_path / "q")

    assert quarantine == []
    found = {d.id: d for d in documents}
    assert sorted(found) == [
        "snap/a/plain.jsonl#0", "snap/a/plain.jsonl#1", "snap/a/plain.jsonl#4",
        "snap/a/zipped.jsonl.gz#0", "snap/a/zipped.jsonl.gz#1", "snap/b.json.gz#0",
    ]  # fmt: skip
    first = found["snap/a/plain.jsonl#0"]
    assert first.text == "document number 0"
    assert first.metadata == {
        fields.SNAPSHOT: "snap", fields.SOURCE_ID: "rec-0", fields.SOURCE_FILE: "a/plain.jsonl",
        fields.SOURCE_OFFSET: 0, fields.URL: "https://example.org/0", "declared_language": "de",
        "date": "2025-01-02",
    }  # fmt: skip
    assert found["snap/a/plain.jsonl#1"].metadata["topic"] == "x"
    anonymous = found["snap/a/plain.jsonl#4"]  # line 4: after a blank and a whitespace line
    assert anonymous.metadata[fields.SOURCE_ID] is None and anonymous.metadata[fields.URL] is None
    # Offsets are physical line numbers: each id joins back to its line of the file.
    for document in documents:
        path = root / document.metadata[fields.SOURCE_FILE]
        data = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
        line = data.split(b"\n")[document.metadata[fields.SOURCE_OFFSET]]
        assert json.loads(line)["text"] == document.text


def test_fsspec_url(tmp_path):
    fs = fsspec.filesystem("memory")
    with fs.open("/test_readers_snap/a/x.jsonl.gz", "wb") as f:
        f.write(gzip.compress(jsonl([record(0), record(1, text=" ")])))
    try:
        reader = SnapshotReader("memory://test_readers_snap", "snap", "memory://test_readers_q")
        documents = list(reader.run(rank=0, world_size=1))
        assert [d.id for d in documents] == ["snap/a/x.jsonl.gz#0"]
        assert by_reason(read_quarantine("memory://test_readers_q")) == {("a/x.jsonl.gz", 1): reasons.NO_TEXT}
    finally:
        fs.rm("/test_readers_snap", recursive=True)
        fs.rm("/test_readers_q", recursive=True)


def test_custom_keys(tmp_path):
    root = tmp_path / "snap"
    root.mkdir()
    (root / "x.jsonl").write_bytes(
        jsonl([{"doc_id": 7, "content": "hello world", "link": "https://a.b/", "sha256": "x"}])
    )
    [document], quarantine, _ = read(
        root, tmp_path / "q", text_key="content", id_key="doc_id", url_key="link"
    )
    assert quarantine == []
    assert document.text == "hello world"
    assert document.metadata[fields.SOURCE_ID] == "7" and document.metadata[fields.URL] == "https://a.b/"
    assert document.metadata["record_sha256"] == "x"  # a record field never overwrites one of ours
    assert fields.SHA256 not in document.metadata


def test_parquet_rows_across_batches_and_row_groups(tmp_path):
    root = tmp_path / "snap"
    root.mkdir()
    records = [record(n, language="it") for n in range(25)]
    pq.write_table(pa.Table.from_pylist(records), root / "t.parquet", row_group_size=10)
    pq.write_table(pa.Table.from_pylist([{"text": "no id column"}]), root / "u.parquet")

    documents, quarantine, _ = read(root, tmp_path / "q", batch_size=4)

    assert quarantine == []
    assert [d.id for d in documents] == [f"snap/t.parquet#{n}" for n in range(25)] + ["snap/u.parquet#0"]
    for n, document in enumerate(documents[:25]):
        assert document.text == records[n]["text"]
        assert document.metadata[fields.SOURCE_ID] == f"rec-{n}"
        assert document.metadata[fields.URL] == f"https://example.org/{n}"
        assert document.metadata["declared_language"] == "it"
    assert documents[25].metadata[fields.SOURCE_ID] is None


@pytest.mark.parametrize("gzipped", [True, False])
def test_warc_pages_main_text_offsets_and_ids(tmp_path, gzipped):
    root = tmp_path / "snap"
    root.mkdir()
    name = "crawl.warc.gz" if gzipped else "crawl.warc"
    pages = [
        ("https://example.de/koeln", page("Köln", ARTICLE), "text/html; charset=utf-8"),
        ("https://example.de/latin", page("Dom", ARTICLE[1:]).decode().encode("latin-1", "replace"), "text/html; charset=ISO-8859-1"),
        ("https://example.de/robots.txt", b"plain text body\n", "text/plain"),
        ("https://example.de/kurz", page("Kurz", ["Kurz und gut: ein sehr kurzer Artikel."]), "text/html"),
    ]  # fmt: skip
    offsets = write_warc(root / name, pages, gzipped=gzipped)

    documents, quarantine, _ = read(root, tmp_path / "q")

    assert quarantine == []
    assert [d.id for d in documents] == [f"snap/{name}#{offset}" for offset in offsets]
    koeln = documents[0]
    assert koeln.text == "\n\n".join(ARTICLE)  # the article, without navigation or footer
    assert koeln.metadata[fields.URL] == "https://example.de/koeln"
    assert koeln.metadata[fields.SOURCE_ID] == "<urn:uuid:00000000-0000-4000-8000-000000000000>"
    assert koeln.metadata["declared_language"] == "de"
    assert documents[1].text == "\n\n".join(ARTICLE[1:])
    assert documents[2].text == "plain text body\n"
    assert documents[3].text == "Kurz und gut: ein sehr kurzer Artikel."  # short pages are not doubled
    # The offset is where warcio finds the record.
    with (root / name).open("rb") as f:
        for document in documents:
            f.seek(document.metadata[fields.SOURCE_OFFSET])
            warc_record = next(iter(ArchiveIterator(f)))
            assert warc_record.rec_headers.get_header("WARC-Target-URI") == document.metadata[fields.URL]


# ---------------------------------------------------------------------------- bad inputs


def test_warc_mojibake_is_repaired_before_extraction_drops_its_invisible_characters(tmp_path):
    root = tmp_path / "snap"
    root.mkdir()
    original = [
        "Política y economía: qué pasó en Bogotá durante el último año.",
        "Señales claras, 100 % fiables.",
    ]
    garbled = [sloppy_cp1252(p) for p in original]
    assert "\xad" in garbled[0]  # "í" is C3 AD: a soft hyphen once read as Windows-1252
    write_warc(root / "m.warc.gz", [("https://example.es/", page("x", garbled), "text/html; charset=utf-8")])
    [document], quarantine, _ = read(root, tmp_path / "q")
    assert quarantine == [] and document.text == "\n\n".join(original)


def test_truncated_gzip_keeps_lines_before_the_cut(tmp_path):
    root = tmp_path / "snap"
    root.mkdir()
    records = [record(n, text=f"line {n} " + "words " * 200) for n in range(20)]
    data = gzip.compress(jsonl(records))
    cut = data[: len(data) // 2]
    (root / "cut.jsonl.gz").write_bytes(cut)
    readable = zlib.decompressobj(wbits=31).decompress(cut).count(b"\n")
    assert 0 < readable < 20

    documents, quarantine, reader = read(root, tmp_path / "q")

    assert [d.metadata[fields.SOURCE_ID] for d in documents] == [f"rec-{n}" for n in range(readable)]
    [row] = quarantine
    assert (row["file"], row["offset"], row["reason"]) == ("cut.jsonl.gz", readable, reasons.TRUNCATED_FILE)
    assert reader.stats["quarantined_truncated_file"].total == 1


def test_bad_json_and_bad_utf8_lines_are_quarantined_neighbours_kept(tmp_path):
    root = tmp_path / "snap"
    root.mkdir()
    bad_utf8 = json.dumps(record(3)).encode().replace(b"document", b"docu\xff\xfement")
    lines = [
        record(0),
        b'{"id": "x", "text": "unterminated',
        record(2),
        bad_utf8,
        b"[1, 2]",
        record(5),
        b"[" * 100_000,
    ]
    (root / "mixed.jsonl").write_bytes(jsonl(lines))

    documents, quarantine, reader = read(root, tmp_path / "q")

    assert [d.metadata[fields.SOURCE_OFFSET] for d in documents] == [0, 2, 5]
    assert by_reason(quarantine) == {
        ("mixed.jsonl", 1): reasons.BAD_JSON,
        ("mixed.jsonl", 3): reasons.BAD_UTF8,
        ("mixed.jsonl", 4): reasons.BAD_JSON,
        ("mixed.jsonl", 6): reasons.BAD_JSON,  # nested too deep for the parser
    }
    utf8_row = next(r for r in quarantine if r["reason"] == reasons.BAD_UTF8)
    assert "0xff" in utf8_row["detail"]
    assert "docu\ufffd\ufffdment" in utf8_row["excerpt"]  # the excerpt shows where the bad bytes are
    assert utf8_row["raw_bytes"] == len(bad_utf8) + 1
    assert reader.stats["quarantined"].total == 4


def test_records_without_text(tmp_path):
    root = tmp_path / "snap"
    root.mkdir()
    lines = [record(0), {"id": "a"}, {"id": "b", "text": ""}, {"id": "c", "text": " \n\t "}, {"id": "d", "text": None},
             {"id": "e", "text": 42}, record(6)]  # fmt: skip
    (root / "t.jsonl").write_bytes(jsonl(lines))
    pq.write_table(
        pa.Table.from_pylist([record(0), {"id": "p", "url": None, "text": None}]), root / "t.parquet"
    )

    documents, quarantine, _ = read(root, tmp_path / "q")

    assert [d.id for d in documents] == ["snap/t.jsonl#0", "snap/t.jsonl#6", "snap/t.parquet#0"]
    assert by_reason(quarantine) == {("t.jsonl", n): reasons.NO_TEXT for n in range(1, 6)} | {
        ("t.parquet", 1): reasons.NO_TEXT
    }
    assert '"id": "p"' in next(r for r in quarantine if r["file"] == "t.parquet")["excerpt"]


def test_empty_files(tmp_path):
    root = tmp_path / "snap"
    root.mkdir()
    (root / "zero.jsonl").write_bytes(b"")
    (root / "zero.parquet").write_bytes(b"")
    (root / "blank.jsonl").write_bytes(b"\n \n\n")
    (root / "empty.jsonl.gz").write_bytes(gzip.compress(b""))
    pq.write_table(pa.table({"text": pa.array([], pa.string())}), root / "rows0.parquet")
    warc_offsets = write_warc(root / "nopages.warc.gz", [])
    assert warc_offsets == []

    documents, quarantine, _ = read(root, tmp_path / "q")

    assert documents == []
    assert by_reason(quarantine) == {
        (name, None): reasons.EMPTY_FILE
        for name in ("zero.jsonl", "zero.parquet", "blank.jsonl", "empty.jsonl.gz", "rows0.parquet")
    }  # a WARC with no pages is not empty: it holds records that are not documents


def test_documents_too_large_are_quarantined_with_an_excerpt(tmp_path):
    root = tmp_path / "snap"
    root.mkdir()
    limit = 50_000
    huge = "Riesig " * 20_000  # 140 kB
    (root / "big.jsonl.gz").write_bytes(gzip.compress(jsonl([record(0), record(1, text=huge), record(2)])))
    pq.write_table(pa.Table.from_pylist([record(0), record(1, text=huge)]), root / "big.parquet")
    (root / "mb.jsonl").write_bytes(jsonl([record(0, text="ü" * 20_000)]))  # 20k characters, 40 kB
    (root / "mb4.jsonl").write_bytes(jsonl([record(0, text="😀" * 13_000)]))  # 13k characters, 52 kB
    [warc_offset] = write_warc(
        root / "big.warc.gz", [("https://example.de/big", page("Big", [huge]), "text/html")]
    )

    documents, quarantine, _ = read(root, tmp_path / "q", max_document_bytes=limit)

    assert sorted(d.id for d in documents) == sorted(
        ["snap/big.jsonl.gz#0", "snap/big.jsonl.gz#2", "snap/big.parquet#0", "snap/mb.jsonl#0"]
    )
    too_large = [r for r in quarantine if r["reason"] == reasons.DOCUMENT_TOO_LARGE]
    assert {(r["file"], r["offset"]) for r in too_large} == {
        ("big.jsonl.gz", 1), ("big.parquet", 1), ("mb4.jsonl", 0), ("big.warc.gz", warc_offset)
    }  # fmt: skip
    assert len(quarantine) == len(too_large)
    for row in too_large:
        assert row["raw_bytes"] > limit
        assert 0 < len(row["excerpt"]) <= 500
    assert "Riesig Riesig" in next(r for r in too_large if r["file"] == "big.parquet")["excerpt"]


def test_bad_files(tmp_path):
    root = tmp_path / "snap"
    root.mkdir()
    renamed = [{"id": "a", "content": "text under another name"}]
    pq.write_table(pa.Table.from_pylist(renamed), root / "no_text.parquet")
    sink = io.BytesIO()
    pq.write_table(pa.Table.from_pylist([record(n) for n in range(50)]), sink)
    (root / "corrupt.parquet").write_bytes(sink.getvalue()[: len(sink.getvalue()) // 2])
    (root / "notes.csv").write_text("id,text\n1,hello\n")
    (root / "garbage.jsonl.gz").write_bytes(b"this is not gzip at all")
    offsets = write_warc(
        root / "cut.warc.gz",
        [(f"https://example.de/{n}", page(f"T{n}", ARTICLE), "text/html; charset=utf-8") for n in range(3)],
    )
    data = (root / "cut.warc.gz").read_bytes()
    (root / "cut.warc.gz").write_bytes(data[: offsets[-1] + (len(data) - offsets[-1]) // 2])
    no_content = b"<html><body><script>var a = 1;</script><img src='x.png'></body></html>"
    latin = "Stra\xdfe".encode("latin-1")
    write_warc(
        root / "odd.warc.gz",
        [("https://example.de/empty", no_content, "text/html"), ("https://example.de/l", latin, "text/html")],
    )

    documents, quarantine, _ = read(root, tmp_path / "q")

    assert [d.id for d in documents] == [f"snap/cut.warc.gz#{o}" for o in offsets[:-1]]
    odd = [r for r in quarantine if r["file"] == "odd.warc.gz"]
    assert by_reason(quarantine) == {
        ("no_text.parquet", None): reasons.NO_TEXT_COLUMN,
        ("corrupt.parquet", None): reasons.UNREADABLE_FILE,
        ("notes.csv", None): reasons.UNREADABLE_FILE,
        ("garbage.jsonl.gz", 0): reasons.BAD_JSON,  # not gzip by its bytes: read as plain JSONL
        ("cut.warc.gz", offsets[-1]): reasons.TRUNCATED_FILE,
        ("odd.warc.gz", odd[0]["offset"]): reasons.HTML_EXTRACTION_FAILED,
        ("odd.warc.gz", odd[1]["offset"]): reasons.BAD_UTF8,
    }
    rows = {r["file"]: r for r in quarantine}
    assert "content" in rows["no_text.parquet"]["detail"]
    assert ".csv" in rows["notes.csv"]["detail"] and rows["notes.csv"]["excerpt"].startswith("id,text")
    assert rows["notes.csv"]["raw_bytes"] == 16
    assert odd[0]["excerpt"].startswith("<html><body><script>")


def test_quarantine_file_has_the_fixed_schema_and_exists_when_empty(tmp_path):
    root = tmp_path / "snap"
    root.mkdir()
    (root / "ok.jsonl").write_bytes(jsonl([record(0)]))
    read(root, tmp_path / "q")
    table = pq.read_table(tmp_path / "q" / "00000.parquet")
    assert table.schema.equals(QUARANTINE_SCHEMA) and table.num_rows == 0


# ---------------------------------------------------------------------------- the generator's truth


def test_bad_inputs_of_the_generator_match_its_truth(tmp_path):
    root = tmp_path / "bad"
    truth = pq.read_table(write_bad_inputs(root)).to_pylist()

    documents, quarantine, _ = read(root, tmp_path / "q")

    expected_bad = {(r["file"], r["offset"]): r["reason"] for r in truth if r["reason"]}
    assert by_reason(quarantine) == expected_bad
    assert len(quarantine) == len(expected_bad)
    found = {d.id: d for d in documents}
    good = [r for r in truth if not r["reason"]]
    assert len(found) == len(good)
    for row in good:
        document = found[f"snap/{row['file']}#{row['offset']}"]
        assert document.metadata[fields.SOURCE_ID] == row["source_id"]
        assert sha256(document.text) == row["text_sha256"], row


def test_sample_snapshot_reads_completely_and_joins_to_truth(tmp_path):
    root = tmp_path / "crawl"
    truth = pq.read_table(generate_snapshot(root, num_documents=400)).to_pylist()

    documents, quarantine, _ = read(root, tmp_path / "q")

    assert quarantine == []
    found = {(d.metadata[fields.SOURCE_FILE], d.metadata[fields.SOURCE_OFFSET]): d for d in documents}
    assert len(found) == len(documents) == len(truth)
    exact = {"jsonl": 0, "parquet": 0, "warc": 0}
    for row in truth:
        document = found[(row["file"], row["offset"])]
        assert document.id == f"snap/{row['file']}#{row['offset']}"
        assert document.metadata[fields.SOURCE_ID] == row["source_id"]
        assert document.metadata[fields.URL] == row["url"]
        assert document.metadata["declared_language"] == row["declared_language"]
        exact[row["format"]] += sha256(document.text) == row["text_sha256"]
    per_format = {fmt: sum(r["format"] == fmt for r in truth) for fmt in exact}
    assert exact["jsonl"] == per_format["jsonl"] and exact["parquet"] == per_format["parquet"]
    # WARC text is what trafilatura extracts from the page: the article's paragraphs exactly, but
    # for whitespace runs it collapses (some spam pages).
    assert exact["warc"] >= 0.95 * per_format["warc"], (exact, per_format)


# ---------------------------------------------------------------------------- through run_pipeline


def _ingest(root: Path, out: Path, tasks: int) -> tuple[list[dict], list[dict]]:
    pipeline = [SnapshotReader(root, "snap", out / "quarantine"), DocumentShardWriter(str(out / "shards"))]
    run_pipeline(pipeline, logging_dir=out / "logs", config=ExecutorConfig(tasks=tasks, workers=1))
    rows = [row for path in sorted((out / "shards").glob("*.parquet")) for row in read_rows(path)]
    return rows, read_quarantine(out / "quarantine")


def test_two_tasks_and_one_task_read_the_same_documents(tmp_path):
    root = tmp_path / "bad"
    write_bad_inputs(root)
    rows_1, quarantine_1 = _ingest(root, tmp_path / "one", tasks=1)
    rows_2, quarantine_2 = _ingest(root, tmp_path / "two", tasks=2)

    assert len(list((tmp_path / "two" / "shards").glob("*.parquet"))) == 2
    assert len(list((tmp_path / "two" / "quarantine").glob("*.parquet"))) == 2
    as_set = lambda rows: {(r["id"], sha256(r["text"]), r[fields.SOURCE_ID], r[fields.URL]) for r in rows}  # noqa: E731
    assert len(rows_2) == len(rows_1) > 0
    assert as_set(rows_2) == as_set(rows_1)
    assert quarantine_2 == quarantine_1 and len(quarantine_1) == 15
