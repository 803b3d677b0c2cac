"""The reference set of the quality classifier: its documents, decontaminated against a crawl by
paragraph, cut into pages.

    read_reference(dir)                               documents (id, language, paragraphs), files read
    contaminated_paragraphs(documents, crawl_texts)   document id -> paragraphs the crawl holds
    reference_pages(documents, left_out, page_words)  the pages positives are drawn from
"""

from __future__ import annotations

import gzip
import hashlib
import json
from collections import defaultdict
from collections.abc import Iterable
from pathlib import Path

from pipelines.fasttext_model import file_sha256

CJK = {"ja", "zh"}
_EDGE = 48  # characters that identify a paragraph by its start or end (about 8 words, 24 CJK characters)


def _units(text: str, language: str) -> int:
    return len(text) // 2 if language in CJK else len(text.split())


def _paragraph_key(paragraph: str) -> bytes:
    return hashlib.blake2b(" ".join(paragraph.split()).encode(), digest_size=8).digest()


def _paragraphs(text: str) -> list[str]:
    return [p for p in (line.strip() for line in text.split("\n")) if p]


def read_reference(reference_dir: Path) -> tuple[list[dict], list[dict]]:
    """The reference documents (id, language, paragraphs) and the files read (name, sha256)."""
    documents, files = [], []
    for path in sorted(Path(reference_dir).glob("*.jsonl.gz")):
        files.append({"path": path.name, "sha256": file_sha256(path)})
        with gzip.open(path, "rt", encoding="utf-8") as f:
            for line in f:
                record = json.loads(line)
                documents.append(
                    {
                        "id": record["id"],
                        "language": record["language"],
                        "paragraphs": _paragraphs(record["text"]),
                    }
                )
    if not files:
        raise ValueError(f"{reference_dir}: no <lang>.jsonl.gz files (QualityModelConfig.reference_dir)")
    return documents, files


def _overlap_keys(paragraph: str) -> set[bytes]:
    """The paragraph (whitespace-normalized), its first and its last ``_EDGE`` characters: a crawl
    line that holds a reference paragraph whole, or with words added at either end, shares a key."""
    text = " ".join(paragraph.split())
    keys = {_paragraph_key(text)}
    if len(text) > _EDGE:
        keys |= {b"<" + _paragraph_key(text[:_EDGE]), b">" + _paragraph_key(text[-_EDGE:])}
    return keys


def contaminated_paragraphs(documents: list[dict], crawl_texts: Iterable[str]) -> dict[str, set[int]]:
    """Reference document id -> the indices of its paragraphs found in any of ``crawl_texts``: the
    same line, or a line that starts or ends as it does (the crawl adds words to what it copies).
    Memory is bounded by the reference set: the crawl is streamed past a table of its keys."""
    owners: dict[bytes, list[tuple[str, int]]] = defaultdict(list)
    for document in documents:
        for index, paragraph in enumerate(document["paragraphs"]):
            for key in _overlap_keys(paragraph):
                owners[key].append((document["id"], index))
    found: dict[str, set[int]] = defaultdict(set)
    for text in crawl_texts:
        for line in _paragraphs(text):
            for key in _overlap_keys(line):
                for document_id, index in owners.get(key, ()):
                    found[document_id].add(index)
    return dict(found)


def reference_pages(documents: list[dict], leave_out: dict[str, set[int]], page_words: int) -> list[dict]:
    """Runs of consecutive paragraphs of about ``page_words`` words (CJK: characters / 2) from every
    document, none holding a paragraph of ``leave_out`` (document id -> paragraph indices), each
    with its document id as ``source``. A page whose text an earlier page has (documents quote each
    other) is left out, so one text cannot fall on both sides of the split."""
    pages, seen = [], set()
    for document in documents:
        language, run, skip = document["language"], [], leave_out.get(document["id"], set())
        for index, paragraph in enumerate(document["paragraphs"]):
            if index in skip:
                run = []  # a page never spans a left-out paragraph
                continue
            run.append(paragraph)
            if sum(_units(p, language) for p in run) >= page_words:
                text, run = "\n".join(run), []
                if (key := _paragraph_key(text)) not in seen:
                    seen.add(key)
                    pages.append({"source": document["id"], "language": language, "text": text})
    return pages
