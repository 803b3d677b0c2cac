"""Scoring deduplication against the ground truth of ``sample.crawl`` and against the independent
near-duplicate set in ``tests/data/neardup`` (tests, benchmarks).

Until the project's readers exist, ``snapshot_documents`` reads a generated snapshot the way they
will: JSONL and Parquet text as written, WARC pages through trafilatura; ids ``snap/{file}#{offset}``
and ``sha256`` of the NFC-normalized text.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import re
import unicodedata
from collections import Counter, defaultdict
from pathlib import Path

import polars as pl
import trafilatura
from datatrove.data import Document
from warcio.archiveiterator import ArchiveIterator

from pipelines import fields, reasons

SNAPSHOT = "snap"
_HTML_LANG = re.compile(rb'<html[^>]*\blang="([^"]+)"')


def make_document(doc_id: str, text: str, language: str | None) -> Document:
    """A document as the readers make it: ``sha256`` of the NFC text, the declared language."""
    sha = hashlib.sha256(unicodedata.normalize("NFC", text).encode("utf-8")).hexdigest()
    return Document(text=text, id=doc_id, metadata={fields.SHA256: sha, fields.LANGUAGE: language})


def snapshot_documents(snapshot: Path) -> list[list[Document]]:
    """One list of documents per file of the snapshot. A WARC copy of a page is an exact duplicate of
    the JSONL/Parquet original only if extraction gives its text back exactly (it mostly does not)."""
    shards = []
    for path in sorted(snapshot.glob("jsonl/*.jsonl.gz")) + sorted(snapshot.glob("parquet/*.parquet")):
        frame = pl.read_ndjson(path) if path.suffix == ".gz" else pl.read_parquet(path)
        rel = path.relative_to(snapshot).as_posix()
        rows = frame.iter_rows(named=True)
        shards.append(
            [make_document(f"{SNAPSHOT}/{rel}#{i}", r["text"], r["language"]) for i, r in enumerate(rows)]
        )
    for path in sorted(snapshot.glob("warc/*.warc.gz")):
        rel, docs = path.relative_to(snapshot).as_posix(), []
        with open(path, "rb") as f:
            records = ArchiveIterator(f)
            for record in records:
                if record.rec_type != "response":
                    continue
                html = record.content_stream().read()
                offset = records.get_record_offset()
                lang = _HTML_LANG.search(html)
                text = (
                    trafilatura.extract(html.decode("utf-8"), include_comments=False, deduplicate=False) or ""
                )
                docs.append(
                    make_document(
                        f"{SNAPSHOT}/{rel}#{offset}", text, lang.group(1).decode() if lang else None
                    )
                )
        shards.append(docs)
    return shards


def truth_pairs(truth: pl.DataFrame) -> dict[str, list[tuple[str, str]]]:
    """kind -> (duplicate doc id, original doc id) for every truth exact and near duplicate."""
    doc_id = {r["source_id"]: f"{SNAPSHOT}/{r['file']}#{r['offset']}" for r in truth.iter_rows(named=True)}
    pairs = {"exact_duplicate": [], "near_duplicate": []}
    for r in truth.filter(pl.col("duplicate_of").is_not_null()).iter_rows(named=True):
        pairs[r["kind"]].append((doc_id[r["source_id"]], doc_id[r["duplicate_of"]]))
    return pairs


def dedup_scores(truth: pl.DataFrame, dropped: dict[str, dict]) -> dict[str, float]:
    """Scores of the excluded rows (doc id -> shard row) against the truth.

    Recall per truth kind: the share of truth pairs of which exactly one document was dropped,
    pointing at the other (``duplicate_of``), whatever the reason: a WARC copy of a page is rarely an
    exact duplicate after HTML extraction, so an exact pair dropped as near counts as found.
    Precision per reason: of the documents dropped for it, the share whose ``duplicate_of`` is their
    truth partner (the two form a truth exact or near pair, in either direction).
    """
    pairs = truth_pairs(truth)
    partners = {frozenset(p) for kind_pairs in pairs.values() for p in kind_pairs}
    duplicate_of = {i: json.loads(r[fields.FILTER_DETAILS])["duplicate_of"] for i, r in dropped.items()}

    def found(a: str, b: str) -> bool:
        drops = [(x, y) for x, y in ((a, b), (b, a)) if x in dropped]
        return len(drops) == 1 and duplicate_of[drops[0][0]] == drops[0][1]

    scores = {}
    for kind in ("exact_duplicate", "near_duplicate"):
        scores[f"{kind}_recall"] = sum(found(*p) for p in pairs[kind]) / max(1, len(pairs[kind]))
    for reason in (reasons.EXACT_DUPLICATE, reasons.NEAR_DUPLICATE):
        drops = [i for i, r in dropped.items() if r[fields.FILTER_REASON] == reason]
        scores[f"{reason}_precision"] = sum(frozenset((i, duplicate_of[i])) in partners for i in drops) / max(
            1, len(drops)
        )
        scores[f"num_{reason}_drops"] = len(drops)
    return scores


# The independent near-duplicate set (tests/data/neardup, built by bench/neardup_build.py): real
# translated documentation, labelled duplicate pairs per variant kind and hard negative pairs.
NEARDUP_SET = Path(__file__).resolve().parents[2] / "tests" / "data" / "neardup"


def neardup_set(folder: Path = NEARDUP_SET) -> tuple[list[Document], dict[str, str], list[dict]]:
    """The set's documents (in file order), family of each id (same family = duplicates), and its
    labelled pairs (a, b, label ``duplicate``/``negative``, kind)."""

    def rows(name: str) -> list[dict]:
        with gzip.open(folder / name, "rt", encoding="utf-8") as f:
            return [json.loads(line) for line in f]

    docs = rows("docs.jsonl.gz")
    families = {d["id"]: d["family"] for d in docs}
    return [make_document(d["id"], d["text"], d["language"]) for d in docs], families, rows("pairs.jsonl.gz")


def cluster_scores(cluster_of: dict[str, object], families: dict[str, str], pairs: list[dict]) -> dict:
    """Scores of a clustering (doc id -> cluster label; an id not in it is a cluster of its own).

    Recall, overall and per kind: the share of labelled duplicate pairs whose two documents share a
    cluster. Precision: of all document pairs that share a cluster (every pair a cluster implies, not
    only labelled ones), the share of the same family. False positives per negative kind: labelled
    negative pairs that share a cluster. Cost grows with the sum of squared cluster sizes.
    """
    label = {i: cluster_of.get(i, ("singleton", i)) for i in families}
    same = {}
    for kind in sorted({p["kind"] for p in pairs}):
        hits = [label[p["a"]] == label[p["b"]] for p in pairs if p["kind"] == kind]
        same[kind] = (sum(hits), len(hits), next(p["label"] for p in pairs if p["kind"] == kind))
    members = defaultdict(list)
    for i, c in label.items():
        members[c].append(families[i])
    predicted = sum(len(m) * (len(m) - 1) // 2 for m in members.values())
    correct = sum(n * (n - 1) // 2 for m in members.values() for n in Counter(m).values())
    duplicates = [v for v in same.values() if v[2] == "duplicate"]
    return {
        "recall": sum(v[0] for v in duplicates) / max(1, sum(v[1] for v in duplicates)),
        "precision": correct / predicted if predicted else 1.0,
        "predicted_pairs": predicted,
        "recall_per_kind": {k: v[0] / max(1, v[1]) for k, v in same.items() if v[2] == "duplicate"},
        "false_positives_per_kind": {k: f"{v[0]}/{v[1]}" for k, v in same.items() if v[2] == "negative"},
    }
