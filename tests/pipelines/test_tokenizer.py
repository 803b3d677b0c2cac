"""The tokenizer: exact round trips in every language of the bundled sample, balanced and seeded
training samples, fertility counted independently, and a deterministic, versioned step."""

from __future__ import annotations

import gzip
import json
import shutil
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from pipelines.tokenizer import (
    END_OF_TEXT,
    PAD,
    TokenizerConfig,
    encode_texts,
    fertility,
    load_tokenizer,
    select_sample,
    train_on_texts,
    train_tokenizer,
)
from records.layout import DataLayout
from records.manifest import verify_version

SOURCES = Path(__file__).resolve().parents[2] / "sample" / "sources"
ROUND_TRIP_DOCS = 3  # per language, never trained on
TRAINING_DOCS = 6


def _sample_texts() -> dict[str, list[str]]:
    out = {}
    for path in sorted(SOURCES.glob("*.jsonl.gz")):
        with gzip.open(path, "rt", encoding="utf-8") as f:
            out[path.name.split(".")[0]] = [json.loads(next(f))["text"] for _ in range(12)]
    return out


@pytest.fixture(scope="module")
def sample_texts():
    return _sample_texts()


@pytest.fixture(scope="module")
def sample_tokenizer(sample_texts):
    training = [
        t for texts in sample_texts.values() for t in texts[ROUND_TRIP_DOCS : ROUND_TRIP_DOCS + TRAINING_DOCS]
    ]
    return train_on_texts(training, TokenizerConfig(vocab_size=4096))


def test_every_language_of_the_sample_round_trips_exactly(sample_texts, sample_tokenizer):
    assert len(sample_texts) == 21  # the README's table: 21 languages, 6 scripts
    for language, texts in sample_texts.items():
        held_out = texts[:ROUND_TRIP_DOCS]
        ids = encode_texts(sample_tokenizer, held_out)
        assert sample_tokenizer.decode_batch(ids, skip_special_tokens=False) == held_out, language
        assert all(0 < len(i) < len(t.encode("utf-8")) for i, t in zip(ids, held_out, strict=True)), language


EDGE_CASES = [
    "",
    " ",
    "\n\n\t \r\n",
    "emoji 😀👩🏽‍💻🇨🇭 and a ZWJ family 👨‍👩‍👧",
    "controls \x00\x01\x07\x1b\x7f\u200b\u200e\ufeff end",
    "decomposed e\u0301 vs composed \u00e9, Tiếng Việt có dấu, Ελληνικά, Русский, Українська",
    "한국어 문장, 日本語の文、中文句子。",
    "العربية עברית हिन्दी ไทย",
    "numbers 1234567 3.14159 0x1F",
    "a" * 5000,
    "lone surrogate-free but private use \ue000 and noncharacter \ufdd0 and U+10FFFF \U0010ffff",
    f"text that spells {END_OF_TEXT} and {PAD} must stay text",
]


@pytest.mark.parametrize("text", EDGE_CASES)
def test_edge_cases_round_trip_and_never_forge_special_tokens(sample_tokenizer, text):
    (ids,) = encode_texts(sample_tokenizer, [text])
    assert sample_tokenizer.decode(ids, skip_special_tokens=False) == text
    assert 0 not in ids and 1 not in ids


def test_special_tokens_are_ids_zero_and_one(sample_tokenizer):
    assert sample_tokenizer.token_to_id(END_OF_TEXT) == 0
    assert sample_tokenizer.token_to_id(PAD) == 1
    assert sample_tokenizer.get_vocab_size() == 4096


def test_fertility_matches_independent_counts(sample_texts, sample_tokenizer):
    texts = {"el": sample_texts["el"][:2], "zh": sample_texts["zh"][:2]}
    stats = fertility(sample_tokenizer, texts)
    for language, group in texts.items():
        tokens = sum(len(sample_tokenizer.encode(t, add_special_tokens=False).ids) for t in group)
        chars = sum(len(t) for t in group)
        assert stats[language]["tokens"] == tokens
        assert stats[language]["tokens_per_character"] == round(tokens / chars, 6)
        assert stats[language]["words"] == sum(len(t.split()) for t in group)
        assert stats[language]["round_trip_exact"]


def _rows(language: str, n: int, chars: int) -> list[dict]:
    return [{"doc_id": f"{language}#{i}", "sha256": f"h{language}{i}", "language": language, "num_chars": chars}
            for i in range(n)]  # fmt: skip


def test_sample_is_language_balanced_disjoint_and_seeded():
    rows = _rows("aa", 10, 100) + _rows("bb", 2, 1000) + _rows("cc", 1, 50) + _rows("dd", 80, 10)
    config = TokenizerConfig(max_chars_per_language=300, held_out_fraction=0.1, seed=3)
    training, held_out = select_sample(rows, config)
    count = lambda rs, lang: sum(r["language"] == lang for r in rs)  # noqa: E731
    # aa: 1 held out, then whole documents until 300 characters; bb: 1 held out, one (over-long)
    # document whole; cc: a single document is never held out; dd: 10 % of 80 documents would be
    # 8, but 3 already hold 10 % of the 300-character budget; then 30 documents of 10 characters.
    languages = ("aa", "bb", "cc", "dd")
    assert [count(training, lang) for lang in languages] == [3, 1, 1, 30]
    assert [count(held_out, lang) for lang in languages] == [1, 1, 0, 3]
    assert not {r["doc_id"] for r in training} & {r["doc_id"] for r in held_out}
    assert [r["language"] for r in training] == sorted(r["language"] for r in training)
    assert select_sample(list(reversed(rows)), config) == (training, held_out)  # input order is irrelevant
    others = [
        select_sample(rows, TokenizerConfig(max_chars_per_language=300, seed=s))[0] for s in range(4, 8)
    ]
    assert any(o != training for o in others)


@pytest.fixture(scope="module")
def tokenizer_layout(curated, tmp_path_factory):
    layout, results, _ = curated
    copy = DataLayout(tmp_path_factory.mktemp("tok") / "data")
    shutil.copytree(layout.root, copy.root)
    return copy, results[-1].manifest


def test_train_tokenizer_seals_a_deterministic_version(tokenizer_layout):
    layout, deduplicated = tokenizer_layout
    config = TokenizerConfig(max_chars_per_language=20_000, seed=1)
    first = train_tokenizer(layout, deduplicated, config=config)
    assert first.created and verify_version(first.folder) == []
    assert first.manifest.parents == (deduplicated.ref,)
    again = train_tokenizer(layout, deduplicated, config=config)
    assert again.manifest.version_id == first.manifest.version_id and not again.created

    index = pq.read_table(layout.datasets / deduplicated.ref / "index.parquet").to_pylist()
    by_id = {r["doc_id"]: r for r in index}
    sample = json.loads((first.folder / "training_sample.json").read_text())
    for entry in sample["training"] + sample["held_out"]:
        assert by_id[entry["doc_id"]]["sha256"] == entry["sha256"]
    languages = {r["language"] for r in index}
    assert set(sample["training_by_language"]) == languages
    longest = max(r["num_chars"] for r in index)
    assert all(v["characters"] < 20_000 + longest for v in sample["training_by_language"].values())

    stats = json.loads((first.folder / "fertility.json").read_text())["languages"]
    assert set(stats) == languages
    assert all(s["round_trip_exact"] and 0 < s["tokens_per_character"] < 1.5 for s in stats.values())
    tokenizer = load_tokenizer(first.folder)
    assert tokenizer.get_vocab_size() == config.vocab_size

    other = train_tokenizer(
        layout, deduplicated, config=TokenizerConfig(max_chars_per_language=20_000, seed=2)
    )
    assert other.manifest.version_id != first.manifest.version_id
