"""Scoring deduplication against the ground truth of ``sample.crawl`` (tests, benchmark).

Until the project's readers exist, ``snapshot_documents`` reads a generated snapshot the way they
will: JSONL and Parquet text as written, WARC pages through trafilatura; ids ``snap/{file}#{offset}``
and ``sha256`` of the NFC-normalized text.
"""

from __future__ import annotations

import hashlib
import json
import re
import unicodedata
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
