"""The sample crawl generator: deterministic, and its truth table describes the files it wrote.

The truth is checked against the files themselves (read back with gzip, pyarrow and warcio), against
fastText's language id, and against ftfy, never against the generator's own bookkeeping alone.
"""

import collections
import gzip
import hashlib
import html
import json
import re
import unicodedata
import zlib
from pathlib import Path

import fasttext
import ftfy
import pyarrow.parquet as pq
import pytest
from warcio.archiveiterator import ArchiveIterator

from pipelines import reasons
from sample.bad_inputs import write_bad_inputs
from sample.crawl import KINDS, generate_snapshot

NUM_DOCUMENTS = 600
REPO = Path(__file__).resolve().parents[2]


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def read_snapshot(root: Path) -> dict[tuple[str, int], dict]:
    """(file, offset) -> {"id", "text", "language", "url"} for every record, read with the usual readers."""
    found = {}
    for path in sorted((root / "jsonl").glob("*.jsonl.gz")):
        with gzip.open(path, "rt", encoding="utf-8") as f:
            for line, raw in enumerate(f):
                found[(path.relative_to(root).as_posix(), line)] = json.loads(raw)
    for path in sorted((root / "parquet").glob("*.parquet")):
        for row, record in enumerate(pq.read_table(path).to_pylist()):
            found[(path.relative_to(root).as_posix(), row)] = record
    for path in sorted((root / "warc").glob("*.warc.gz")):
        with path.open("rb") as f:
            iterator = ArchiveIterator(f)
            for record in iterator:
                if record.rec_type != "response":
                    continue
                page = record.content_stream().read().decode("utf-8")
                article = page.split("<article>", 1)[1].split("</article>", 1)[0]
                found[(path.relative_to(root).as_posix(), iterator.get_record_offset())] = {
                    "id": record.rec_headers.get_header("WARC-Record-ID"),
                    "url": record.rec_headers.get_header("WARC-Target-URI"),
                    "language": re.search(r'<html lang="([^"]+)"', page).group(1),
                    "text": "\n\n".join(
                        "\n".join(html.unescape(line) for line in paragraph.split("<br>"))
                        for paragraph in re.findall(r"<p>(.*?)</p>", article, re.S)
                    ),
                }
    return found


@pytest.fixture(scope="module")
def snapshot(tmp_path_factory):
    root = tmp_path_factory.mktemp("crawl") / "snap"
    truth_file = generate_snapshot(root, seed=0, num_documents=NUM_DOCUMENTS)
    truth = pq.read_table(truth_file).to_pylist()
    return root, truth_file, truth, read_snapshot(root)


def file_bytes(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_same_seed_same_bytes_other_seed_other_bytes(snapshot, tmp_path):
    root, truth_file, _, _ = snapshot
    again = generate_snapshot(tmp_path / "snap", seed=0, num_documents=NUM_DOCUMENTS)
    assert file_bytes(tmp_path / "snap") == file_bytes(root)
    assert again.read_bytes() == truth_file.read_bytes()
    other = generate_snapshot(tmp_path / "other", seed=1, num_documents=NUM_DOCUMENTS)
    assert (
        file_bytes(tmp_path / "other")["jsonl/part-00000.jsonl.gz"]
        != file_bytes(root)["jsonl/part-00000.jsonl.gz"]
    )
    assert other.read_bytes() != truth_file.read_bytes()


def test_layout_and_truth_outside_the_snapshot(snapshot):
    root, truth_file, truth, records = snapshot
    assert truth_file == root.parent / "snap.truth.parquet"
    assert not list(root.rglob("*truth*"))
    assert len(truth) == len(records) == NUM_DOCUMENTS
    by_format = collections.Counter(row["format"] for row in truth)
    assert 0.3 < by_format["jsonl"] / NUM_DOCUMENTS < 0.5 and 0.3 < by_format["parquet"] / NUM_DOCUMENTS < 0.5
    assert 0.1 < by_format["warc"] / NUM_DOCUMENTS < 0.3
    assert len({row["source_id"] for row in truth}) == NUM_DOCUMENTS
    assert len({row["url"] for row in truth}) == NUM_DOCUMENTS


def test_every_truth_row_is_the_record_at_its_file_and_offset(snapshot):
    _, _, truth, records = snapshot
    for row in truth:
        record = records[(row["file"], row["offset"])]
        assert record["id"] == row["source_id"]
        assert record["url"] == row["url"]
        assert record["language"] == row["declared_language"]
        assert sha256(record["text"]) == row["text_sha256"]


def test_warc_files_are_warcinfo_then_responses(snapshot):
    root, _, truth, _ = snapshot
    for path in sorted((root / "warc").glob("*.warc.gz")):
        with path.open("rb") as f:
            records = list(ArchiveIterator(f))
        assert records[0].rec_type == "warcinfo" and {r.rec_type for r in records[1:]} == {"response"}
        assert all(r.rec_headers.protocol == "WARC/1.1" for r in records)
    assert sum(r["format"] == "warc" for r in truth) > 0.1 * NUM_DOCUMENTS


def test_kinds_languages_and_scripts(snapshot):
    _, _, truth, records = snapshot
    assert {row["kind"] for row in truth} == set(KINDS)
    assert len({row["true_language"] for row in truth}) >= 12
    scripts = collections.Counter()
    for row in truth:
        if row["kind"] == "clean":
            for ch in records[(row["file"], row["offset"])]["text"][:300]:
                if ch.isalpha():
                    scripts[unicodedata.name(ch, "?").split()[0]] += 1
    assert {"LATIN", "CYRILLIC", "CJK", "GREEK", "HANGUL"} <= {s for s, n in scripts.items() if n > 100}


def test_clean_text_is_in_its_true_language(snapshot):
    _, _, truth, records = snapshot
    model = fasttext.load_model(str(next((REPO / "resources" / "models").glob("lid.176*.ftz"))))
    rows = [r for r in truth if r["kind"] in ("clean", "wrong_language")]
    agree = 0
    for row in rows:
        text = records[(row["file"], row["offset"])]["text"].replace("\n", " ")
        ((_, label),) = model.f.predict(text, 1, 0.0, "strict")
        agree += label == f"__label__{row['true_language']}"
    assert agree / len(rows) > 0.95
    wrong = [r for r in truth if r["kind"] == "wrong_language"]
    assert wrong and all(r["declared_language"] != r["true_language"] for r in wrong)
    assert all(r["declared_language"] == r["true_language"] for r in truth if r["kind"] != "wrong_language")


def full_text(records, row) -> str:
    return records[(row["file"], row["offset"])]["text"]


def five_gram_jaccard(a: str, b: str, language: str) -> float:
    def grams(text: str) -> set:
        tokens = list(text.replace("\n", "")) if language in ("ja", "zh") else text.lower().split()
        return {tuple(tokens[k : k + 5]) for k in range(max(1, len(tokens) - 4))}

    return len(grams(a) & grams(b)) / len(grams(a) | grams(b))


def test_duplicates_point_at_clean_originals(snapshot):
    _, _, truth, records = snapshot
    by_id = {row["source_id"]: row for row in truth}
    methods = collections.Counter()
    for row in truth:
        if row["kind"] != "near_duplicate":
            assert row["near_dup_method"] is None and row["near_dup_jaccard"] is None
        if row["kind"] not in ("exact_duplicate", "near_duplicate"):
            assert row["duplicate_of"] is None
            continue
        original = by_id[row["duplicate_of"]]
        assert original["kind"] == "clean" and original["source_id"] != row["source_id"]
        if row["kind"] == "exact_duplicate":
            assert row["text_sha256"] == original["text_sha256"] and row["url"] != original["url"]
            continue
        methods[row["near_dup_method"]] += 1
        text, source = full_text(records, row), full_text(records, original)
        assert text != source
        if row["near_dup_method"] == "truncation":
            assert source.startswith(text) and 0.8 * len(source) <= len(text) < len(source)
        elif row["near_dup_method"] == "boilerplate":
            assert source in text and len(text) < 1.3 * len(source)
        else:
            assert 0.8 * len(source) <= len(text) < len(source)
        assert row["near_dup_jaccard"] == pytest.approx(
            five_gram_jaccard(text, source, row["true_language"]), abs=1e-4
        )
        assert row["near_dup_jaccard"] > 0.7
    assert set(methods) == {"word_drop", "boilerplate", "truncation"}
    assert (
        collections.Counter(r["duplicate_of"] for r in truth if r["duplicate_of"]).most_common(1)[0][1] == 1
    )


def test_mojibake_is_repaired_by_ftfy_to_the_original(snapshot):
    _, _, truth, records = snapshot
    rows = [r for r in truth if r["kind"] == "mojibake"]
    assert rows and all(r["format"] != "warc" for r in rows)
    for row in rows:
        text = records[(row["file"], row["offset"])]["text"]
        assert text != row["original_text"] and sha256(row["original_text"]) == row["original_text_sha256"]
        assert ftfy.fix_encoding(text) == row["original_text"]


def test_pii_and_spam_are_in_the_text(snapshot):
    _, _, truth, records = snapshot
    for row in truth:
        text = full_text(records, row)
        assert bool(row["pii"]) == (row["kind"] == "pii")
        for item in row["pii"]:
            assert item in text
        if row["spam_method"] == "line":
            assert collections.Counter(text.split("\n")).most_common(1)[0][1] >= 15
        elif row["spam_method"] == "ngram":  # the content's last paragraph, before the site's footer
            paragraphs = [p.split() for p in text.split("\n\n")]
            assert any(len(p) >= 60 and len(set(p)) <= 12 for p in paragraphs)
        if row["kind"] == "symbol_spam":
            symbol_lines = [line for line in text.split("\n") if line and set(line) <= set("#|…★☆🔥. ")]
            assert len(symbol_lines) >= 6
        if row["kind"] in ("clean", "exact_duplicate", "near_duplicate", "wrong_language"):
            assert not re.search(r"[\w.+-]+@\w+\.\w+|\b\d{1,3}(\.\d{1,3}){3}\b", text)
    phones = [p for r in truth for p in r["pii"] if re.fullmatch(r"[+()\d][\d ()-]+", p)]
    assert any(p.startswith("+") for p in phones) and any(not p.startswith("+") for p in phones)
    assert any("@" in p for r in truth for p in r["pii"])


def test_pages_carry_their_sites_boilerplate(snapshot):
    _, _, truth, records = snapshot
    lines_by_host = collections.defaultdict(list)
    for row in truth:
        text = row["original_text"] or full_text(records, row)
        if row["kind"] != "near_duplicate":  # its change may cut or edit its original's lines
            assert set(row["boilerplate"]) <= set(text.split("\n")), row["source_id"]
        if row["duplicate_of"] is None and row["format"] != "warc":
            assert len(row["boilerplate"]) >= 2  # a text dump holds at least the menu and the footer
            lines_by_host[row["url"].split("/")[2]].append(set(row["boilerplate"]))
    assert sum(bool(row["boilerplate"]) for row in truth) >= 0.9 * len(truth)
    # The pages of one site share its template's lines (its menu). A duplicate (whatever its own
    # format) is on its original's site, with its original's lines.
    for host, pages in lines_by_host.items():
        assert set.intersection(*pages), host
    by_id = {row["source_id"]: row for row in truth}
    for row in truth:
        if row["duplicate_of"]:
            assert row["url"].split("/")[2] == by_id[row["duplicate_of"]]["url"].split("/")[2]
            assert row["boilerplate"] == by_id[row["duplicate_of"]]["boilerplate"]


def test_extraction_drops_the_warc_chrome_and_gives_back_the_text(snapshot):
    from pipelines.readers.warc import read_warc

    root, _, truth, _ = snapshot
    rows = {(row["file"], row["offset"]): row for row in truth if row["format"] == "warc"}
    checked = 0
    for path in sorted((root / "warc").glob("*.warc.gz")):
        with path.open("rb") as f:
            for record in read_warc(f, max_document_bytes=10_000_000):
                row = rows[(path.relative_to(root).as_posix(), record.offset)]
                text, page = record.fields["text"], record.raw.decode("utf-8")
                assert sha256(text) == row["text_sha256"], row["source_id"]
                # A duplicate's text is its original's, which may be a text dump holding the menu.
                for chrome in ("nav", "footer", "aside") if row["duplicate_of"] is None else ():
                    visible = re.sub(r"<[^>]+>", "", re.search(f"<{chrome}>(.*?)</{chrome}>", page).group(1))
                    assert html.unescape(visible) not in text, (chrome, row["source_id"])
                checked += 1
    assert checked == len(rows) > 0


@pytest.fixture(scope="module")
def bad_inputs(tmp_path_factory):
    root = tmp_path_factory.mktemp("bad") / "bad"
    truth_file = write_bad_inputs(root, seed=0)
    return root, pq.read_table(truth_file).to_pylist()


def test_bad_inputs_are_what_the_truth_says(bad_inputs):
    root, truth = bad_inputs
    named = {v for k, v in vars(reasons).items() if k.isupper()}
    assert {r["reason"] for r in truth} - {None} <= named
    assert {r["reason"] for r in truth} >= {
        reasons.BAD_JSON, reasons.BAD_UTF8, reasons.TRUNCATED_FILE, reasons.UNREADABLE_FILE,
        reasons.EMPTY_FILE, reasons.NO_TEXT, reasons.NO_TEXT_COLUMN, reasons.DOCUMENT_TOO_LARGE,
    }  # fmt: skip
    listed = {r["file"] for r in truth}
    assert listed == {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()}
    for row in truth:
        path, reason, offset = root / row["file"], row["reason"], row["offset"]
        data = path.read_bytes()
        if row["file"].endswith(".gz") and "warc" not in row["file"]:
            if reason == reasons.TRUNCATED_FILE:
                with pytest.raises(EOFError):
                    gzip.decompress(data)
            data = zlib.decompressobj(wbits=31).decompress(data)
        if reason == reasons.EMPTY_FILE:
            assert data == b""
        elif reason == reasons.NO_TEXT_COLUMN:
            assert "text" not in pq.read_schema(path).names
        elif reason == reasons.UNREADABLE_FILE:
            with pytest.raises(Exception, match="(?i)parquet|magic|footer"):
                pq.read_table(path)
        elif row["format"] == "warc":
            with path.open("rb") as f:
                f.seek(offset)
                if reason is None:
                    record = next(iter(ArchiveIterator(f)))
                    assert record.rec_headers.get_header("WARC-Record-ID") == row["source_id"]
                else:  # warcio yields the cut record without complaint: less payload than announced
                    record = next(iter(ArchiveIterator(f)))
                    assert record.rec_headers.get_header("WARC-Record-ID") == row["source_id"]
                    announced = int(record.http_headers.get_header("Content-Length"))
                    assert len(record.content_stream().read()) < announced
        elif row["format"] == "parquet":
            assert pq.read_table(path).to_pylist()[offset]["id"] == row["source_id"]
        else:
            line = data.split(b"\n")[offset]
            if reason == reasons.BAD_UTF8:
                with pytest.raises(UnicodeDecodeError):
                    line.decode("utf-8")
            elif reason == reasons.BAD_JSON:
                with pytest.raises(json.JSONDecodeError):
                    json.loads(line)
            elif reason == reasons.TRUNCATED_FILE:
                assert not data.endswith(b"\n") or line == b""
            else:
                record = json.loads(line)
                assert record["id"] == row["source_id"]
                if reason is None:
                    assert sha256(record["text"]) == row["text_sha256"]
                elif reason == reasons.NO_TEXT:
                    assert not record.get("text")
                elif reason == reasons.DOCUMENT_TOO_LARGE:
                    assert len(record["text"]) >= 20 * 1024 * 1024
    assert sum(r["reason"] is None for r in truth) >= 30
