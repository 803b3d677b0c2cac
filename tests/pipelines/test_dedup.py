"""Deduplication against hand-made cases and against the ground truth of the generated sample.

Hand-made documents are sequences of synthetic words (a seeded vocabulary), so two documents share
text only where a case puts it there.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from datatrove.data import Document

from pipelines import fields, reasons
from pipelines.dedup import DedupConfig, deduplicate
from pipelines.dedup.evaluation import SNAPSHOT, dedup_scores, make_document, snapshot_documents, truth_pairs
from pipelines.dedup.shingles import normalize, signatures
from pipelines.executor import ExecutorConfig
from pipelines.shards import SHARD_SCHEMA, document_to_row, read_rows

RNG = random.Random(7)
VOCAB = [
    "".join(RNG.choice("abcdefghijklmnopqrstuvwxyzäöü") for _ in range(RNG.randint(3, 9)))
    for _ in range(3000)
]


def words(n: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    return [rng.choice(VOCAB) for _ in range(n)]


def make_doc(doc_id: str, text: str, language: str = "de") -> Document:
    return make_document(doc_id, text, language)


def write_shards(folder: Path, shards: list[list[Document]]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for number, docs in enumerate(shards):
        table = pa.Table.from_pylist([document_to_row(d) for d in docs], schema=SHARD_SCHEMA)
        pq.write_table(table, folder / f"{number:05d}.parquet")
    return folder


def rows_by_id(folder: Path) -> dict[str, dict]:
    return {row["id"]: row for path in sorted(folder.glob("*.parquet")) for row in read_rows(path)}


def run(tmp_path: Path, input_folder: Path, name: str, tasks: int, workers: int, config=None):
    out, excluded, work = tmp_path / name / "out", tmp_path / name / "excluded", tmp_path / name / "work"
    summary = deduplicate(
        str(input_folder), str(out), str(excluded), str(work), config=config or DedupConfig(),
        executor=ExecutorConfig(tasks=tasks, workers=workers, ray_address=None),
    )  # fmt: skip
    return summary, out, excluded


def handmade_shards() -> tuple[list[list[Document]], dict[str, tuple[str, str]]]:
    """Three shards; returns them and the expected drops: id -> (reason, duplicate_of)."""
    base = {f"s/a#{i}": " ".join(words(300, seed=i)) for i in range(8)}
    header = " ".join(words(150, seed=100))  # a long shared boilerplate header
    w1 = base["s/a#1"].split(" ")
    dropped = w1[:100] + w1[115:]  # one edit: 15 of 300 words gone
    boiler = (
        "Cookies akzeptieren | Ablehnen | Einstellungen\n"
        + base["s/a#2"]
        + "\nImpressum | Datenschutz | Kontakt"
    )
    truncated = base["s/a#3"][: int(len(base["s/a#3"]) * 0.9)]
    shards = [
        [make_doc(i, t) for i, t in base.items()],
        [
            make_doc("s/b#0", base["s/a#0"]),  # exact copy, other shard
            make_doc("s/b#1", " ".join(dropped)),
            make_doc("s/b#2", boiler),
            make_doc("s/b#3", header + "\n" + " ".join(words(300, seed=200))),
            make_doc("s/b#4", ""),  # no shingles, one exact copy below
        ],
        [
            make_doc("s/c#0", truncated),
            make_doc("s/c#1", header + "\n" + " ".join(words(300, seed=201))),
            make_doc("s/c#2", base["s/a#0"]),  # a second exact copy
            make_doc("s/c#3", ""),
            make_doc("s/c#4", base["s/a#5"].upper().replace(" ", ", ")),  # same words, other case/punctuation
        ],
    ]
    expected = {
        "s/b#0": (reasons.EXACT_DUPLICATE, "s/a#0"),
        "s/c#2": (reasons.EXACT_DUPLICATE, "s/a#0"),
        "s/b#1": (reasons.NEAR_DUPLICATE, "s/a#1"),
        "s/b#2": (reasons.NEAR_DUPLICATE, "s/a#2"),
        "s/c#0": (reasons.NEAR_DUPLICATE, "s/a#3"),
        "s/c#4": (reasons.NEAR_DUPLICATE, "s/a#5"),
        "s/c#3": (reasons.EXACT_DUPLICATE, "s/b#4"),
    }
    return shards, expected


def test_normalize_matches_datatrove_simplify_text():
    from datatrove.utils.text import simplify_text

    for text in [
        "Ünïcödé Straße, 12.5 % — «quoted» text!",
        "Ça coûte 3,50 €.\nNEUE Zeile\t x",
        "日本語のテキスト、１２３。",
    ]:
        assert normalize(text).split() == simplify_text(text).split()


def test_signatures_estimate_jaccard_and_shingle_cjk_by_characters():
    a = " ".join(words(400, seed=1))
    b = " ".join(a.split(" ")[:360])  # 5-gram Jaccard: 356 shared of 396
    zh = "".join(
        RNG.choice("的一是不了人我在有他这为之大来以个中上们到说国和地也子时道出要于就下得可你年生")
        for _ in range(600)
    )
    zh_edit = zh[:300] + zh[330:]  # 30 characters cut: 5-gram Jaccard 566 / 600
    sig, has = signatures([a, b, a, "", zh, zh_edit], ["de", "de", "zh", "de", "zh", "zh"], DedupConfig())
    assert has.tolist() == [True, True, True, False, True, True]
    assert abs((sig[0] == sig[1]).mean() - 356 / 396) < 0.1
    assert (sig[0] == sig[2]).mean() < 0.1  # character shingles share nothing with word shingles
    assert abs((sig[4] == sig[5]).mean() - 566 / 600) < 0.1


def test_handmade_cases(tmp_path):
    shards, expected = handmade_shards()
    input_folder = write_shards(tmp_path / "input", shards)
    summary, out, excluded = run(tmp_path, input_folder, "r", tasks=2, workers=1)
    kept, dropped = rows_by_id(out), rows_by_id(excluded)
    assert {
        i: (r[fields.FILTER_REASON], json.loads(r[fields.FILTER_DETAILS])["duplicate_of"])
        for i, r in dropped.items()
    } == expected
    assert len(kept) + len(dropped) == sum(map(len, shards))
    # Distinct documents sharing a long header stay apart, as singletons.
    for doc_id in ("s/b#3", "s/c#1"):
        assert (kept[doc_id][fields.MINHASH_CLUSTER_ID], kept[doc_id][fields.MINHASH_CLUSTER_SIZE]) == (
            doc_id,
            1,
        )
    assert kept["s/a#0"][fields.MINHASH_CLUSTER_SIZE] == 3
    assert (
        kept["s/a#1"][fields.MINHASH_CLUSTER_ID] == "s/a#1"
        and kept["s/a#1"][fields.MINHASH_CLUSTER_SIZE] == 2
    )
    details = json.loads(dropped["s/b#1"][fields.FILTER_DETAILS])
    assert (
        details["cluster_id"] == "s/a#1"
        and details["cluster_size"] == 2
        and 0.7 <= details["estimated_jaccard"] < 1
    )
    assert json.loads(dropped["s/b#0"][fields.FILTER_DETAILS])["sha256"] == kept["s/a#0"][fields.SHA256]
    assert summary.removed == {reasons.EXACT_DUPLICATE: 3, reasons.NEAR_DUPLICATE: 4}
    assert summary.num_documents == 18 and summary.num_kept == 11
    assert summary.cluster_size_histogram == {2: 5, 3: 1} and summary.num_clusters == 6


def test_output_independent_of_tasks_and_workers(tmp_path):
    shards, _ = handmade_shards()
    input_folder = write_shards(tmp_path / "input", shards)
    # With 3 tasks, each band's buckets are also split in 3 key ranges.
    results = {
        (tasks, workers): run(
            tmp_path, input_folder, f"t{tasks}w{workers}", tasks, workers, DedupConfig(bucket_splits=tasks)
        )[1:]
        for tasks, workers in ((1, 1), (3, 1), (3, 2))
    }
    # Same tasks, other worker count: byte-identical shards.
    for folder_a, folder_b in zip(results[3, 1], results[3, 2], strict=True):
        files_a, files_b = sorted(folder_a.glob("*.parquet")), sorted(folder_b.glob("*.parquet"))
        assert [f.name for f in files_a] == [f.name for f in files_b]
        assert all(a.read_bytes() == b.read_bytes() for a, b in zip(files_a, files_b, strict=True))
    # Other task count: other files, same documents with the same metadata.
    for folder_a, folder_b in zip(results[1, 1], results[3, 1], strict=True):
        assert rows_by_id(folder_a) == rows_by_id(folder_b)


# ---------------------------------------------------------------- ground truth of the generated sample


@pytest.fixture(scope="module")
def sample_snapshot(tmp_path_factory):
    sample_crawl = pytest.importorskip("sample.crawl")
    snapshot = tmp_path_factory.mktemp("sample") / SNAPSHOT
    truth = pl.read_parquet(sample_crawl.generate_snapshot(snapshot, seed=0, num_documents=2000))
    return snapshot_documents(snapshot), truth


def test_sample_against_ground_truth(tmp_path, sample_snapshot):
    """Scores as ``dedup_scores`` defines them; an exact pair whose texts still agree after reading
    (no WARC copy in it) must be found as an exact duplicate."""
    shards, truth = sample_snapshot
    input_folder = write_shards(tmp_path / "input", shards)
    summary, out, excluded = run(tmp_path, input_folder, "r", tasks=2, workers=1)
    dropped = rows_by_id(excluded)
    scores = dedup_scores(truth, dropped)
    print(f"\ndedup on the 2000-document sample: {scores}; {summary}")
    sha = {d.id: d.metadata[fields.SHA256] for docs in shards for d in docs}
    same_text = [p for p in truth_pairs(truth)["exact_duplicate"] if sha[p[0]] == sha[p[1]]]
    assert same_text and all(
        sum(dropped.get(i, {}).get(fields.FILTER_REASON) == reasons.EXACT_DUPLICATE for i in p) == 1
        for p in same_text
    )
    assert scores["exact_duplicate_recall"] == 1.0
    assert scores["near_duplicate_recall"] >= 0.9
    assert scores["near_duplicate_precision"] >= 0.95 and scores["exact_duplicate_precision"] == 1.0
    assert len(rows_by_id(out)) + len(dropped) == truth.height == summary.num_documents


def test_signature_does_not_depend_on_the_batch():
    config = DedupConfig(n_grams=5, char_n_grams=3)
    texts = ["一二三四五六七八九十", "ein zwei drei vier fünf sechs sieben", "kurz", ""]
    languages = ["zh", "de", "de", "de"]
    together, _ = signatures(texts, languages, config)
    for i, (text, language) in enumerate(zip(texts, languages, strict=True)):
        alone, _ = signatures([text], [language], config)
        assert (alone[0] == together[i]).all()
