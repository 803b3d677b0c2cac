"""Normalizer: mojibake repaired to the exact original, correct text left alone, idempotent, and the
sha256 set from the normalized text. The generator's truth (``original_text_sha256``) is the reference."""

from __future__ import annotations

import hashlib

import pyarrow.parquet as pq
import pytest
from datatrove.data import Document

from pipelines import fields
from pipelines.normalize import Normalizer, normalize_text
from pipelines.readers import SnapshotReader
from sample.crawl import generate_snapshot, sloppy_cp1252


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def normalize(texts: list[str]) -> tuple[list[Document], Normalizer]:
    step = Normalizer()
    documents = [Document(text=t, id=str(i), metadata={}) for i, t in enumerate(texts)]
    return list(step.run(iter(documents), rank=0, world_size=1)), step


@pytest.mark.parametrize(
    ("broken", "fixed"),
    [
        ("KÃ¶ln", "Köln"),
        ("Ã¼ber die StraÃŸe nach MÃ¼nchen", "über die Straße nach München"),
        ("naÃ¯ve cafÃ© â€” â€œquotedâ€\x9d", "naïve café — “quoted”"),
        ("ÐŸÑ€Ð¸Ð²ÐµÑ‚, Ð¼Ð¸Ñ€", "Привет, мир"),
        ("Ä\x8desky", "česky"),  # 0x8D is undefined in Windows-1252: read as Latin-1
        ("æ—¥æœ¬èªž", "日本語"),
    ],
)
def test_mojibake_is_repaired(broken, fixed):
    assert normalize_text(broken) == fixed
    # and as the generator makes it
    assert normalize_text(sloppy_cp1252(fixed)) == fixed


@pytest.mark.parametrize(
    "text",
    [
        "“Curly quotes” stay, as do ligatures: ﬁne",
        "全角の句読点，そのまま。ＡＢＣ",
        "Entities stay literal: &amp; &lt;b&gt;",
        "Ünïcödé that is already right: Köln, Łódź, İstanbul, Ελληνικά",
        "é composed, ﬀ and 한국어",
    ],
)
def test_correct_text_is_left_alone(text):
    assert normalize_text(text) == text


def test_nfc_line_endings_and_trailing_whitespace():
    assert normalize_text("Cafe\u0301\r\nzweite Zeile \t\rdritte\u2028vierte  \n\n\n") == (
        "Café\nzweite Zeile\ndritte\nvierte"
    )
    assert normalize_text("  indented stays\n\n\npara") == "  indented stays\n\n\npara"


def test_normalizer_sets_sha256_counts_repairs_and_is_idempotent():
    texts = ["KÃ¶ln am Rhein", "already fine", "trailing   \r\n"]
    documents, step = normalize(texts)
    assert [d.text for d in documents] == ["Köln am Rhein", "already fine", "trailing"]
    for document in documents:
        assert document.metadata[fields.SHA256] == sha256(document.text)
    assert step.stats["repaired"].total == 2  # mojibake, and \r\n
    assert step.stats["whitespace_stripped"].total == 1
    again, step_again = normalize([d.text for d in documents])
    assert [d.text for d in again] == [d.text for d in documents]
    assert "repaired" not in step_again.stats.stats and "whitespace_stripped" not in step_again.stats.stats


def test_generator_mojibake_is_restored_to_the_original(tmp_path):
    root = tmp_path / "crawl"
    truth = {
        (r["file"], r["offset"]): r
        for r in pq.read_table(generate_snapshot(root, num_documents=1500)).to_pylist()
    }
    reader = SnapshotReader(root, "snap", tmp_path / "q")
    step = Normalizer()
    documents = list(step.run(reader.run(rank=0, world_size=1), rank=0, world_size=1))

    mojibake = {"restored": 0, "total": 0}
    others = {"unchanged": 0, "total": 0}
    for document in documents:
        row = truth[(document.metadata[fields.SOURCE_FILE], document.metadata[fields.SOURCE_OFFSET])]
        if row["kind"] == "mojibake":
            mojibake["total"] += 1
            mojibake["restored"] += document.metadata[fields.SHA256] == row["original_text_sha256"]
        else:
            others["total"] += 1
            others["unchanged"] += document.metadata[fields.SHA256] == row["text_sha256"]
        assert normalize_text(document.text) == document.text
    assert mojibake["total"] >= 30
    assert mojibake["restored"] >= 0.95 * mojibake["total"], mojibake
    assert others["unchanged"] >= 0.99 * others["total"], others
    print(f"mojibake restored: {mojibake}; other documents unchanged: {others}")
