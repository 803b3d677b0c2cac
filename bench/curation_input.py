"""The curation benchmark's input: a crawl snapshot of documents of realistic size, mostly WARC.

Each document is about ``TARGET_WORDS`` words (~700 tokens at 1.3 tokens per whitespace word;
CJK text counts half its characters as words, ``sample.crawl.units``): paragraphs of one language
of the sample's sources (``sample/sources``, 21 languages, 670 to 1,600 paragraphs each), drawn at
random without repetition inside the document. Two documents of one language share about
``13 * 13 / 1200`` paragraphs on average, so they are neither exact nor near duplicates of each
other, except the deliberate ones: ``EXACT_SHARE`` of the documents repeat an earlier document's
text exactly and ``NEAR_SHARE`` are near-duplicates of one (``sample.crawl.near_duplicate``: word
drops, added boilerplate lines, truncated tails), under new ids and URLs.

Formats: ``FORMAT_SHARES`` of the documents (70 % WARC, as the sample's ``write_warc`` writes them:
an HTML page per response record, which the reader extracts), 15 % gzipped JSON lines, 15 %
Parquet; ``DOCS_PER_FILE`` documents per file, written one file at a time, so memory does not grow
with the number of documents (only the short ring of recent texts that copies are drawn from).
Deterministic for a seed.
"""

from __future__ import annotations

import random
import uuid
from collections import deque
from dataclasses import dataclass
from pathlib import Path

TARGET_WORDS = 510  # x 1.3 tokens per word: ~700 tokens (a document stops at the paragraph that reaches it)
EXACT_SHARE = 0.04
NEAR_SHARE = 0.04
FORMAT_SHARES = (("warc", 0.70), ("jsonl", 0.15), ("parquet", 0.15))
DOCS_PER_FILE = 1000
RECENT = 2000  # documents remembered for copies: copies land in the same or a nearby file
TOKENS_PER_WORD = 1.3


@dataclass(frozen=True)
class InputStats:
    documents: int
    files: int
    bytes_on_disk: int
    words: int
    characters: int
    exact_copies: int
    near_copies: int

    @property
    def tokens_per_document(self) -> float:
        """Estimated: whitespace words (CJK: characters / 2) x 1.3."""
        return self.words * TOKENS_PER_WORD / max(1, self.documents)

    def line(self) -> str:
        return (
            f"input: {self.documents:,} documents in {self.files} files, {self.bytes_on_disk / 1e6:,.1f} MB on disk "
            f"({self.bytes_on_disk / max(1, self.documents):,.0f} bytes/document); "
            f"{self.characters / max(1, self.documents):,.0f} characters and ~{self.tokens_per_document:,.0f} "
            f"tokens per document (whitespace words, CJK characters / 2, x {TOKENS_PER_WORD}); "
            f"{self.exact_copies:,} exact and {self.near_copies:,} near copies"
        )


def _paragraph_pools() -> dict[str, list[str]]:
    from sample.crawl import _PII_LIKE, SOURCES_DIR, load_sources

    pools = {}
    for language, documents in sorted(load_sources(SOURCES_DIR).items()):
        # Paragraphs holding PII-like strings are left out, as the sample generator does.
        pools[language] = [p for _, paragraphs in documents for p in paragraphs if not _PII_LIKE.search(p)]
    return pools


def _document(pool: list[str], language: str, rng: random.Random) -> str:
    from sample.crawl import units

    chosen, size = [], 0
    for index in rng.sample(range(len(pool)), min(len(pool), 60)):
        chosen.append(pool[index])
        size += units(pool[index], language)
        if size >= TARGET_WORDS:
            break
    return "\n\n".join(chosen)


def _formats(num_documents: int, rng: random.Random) -> list[str]:
    """Each file's format, in writing order: the shares, shuffled so formats interleave."""
    num_files = max(1, -(-num_documents // DOCS_PER_FILE))
    formats = []
    for fmt, share in FORMAT_SHARES:
        formats += [fmt] * round(num_files * share)
    formats = (formats + ["warc"] * num_files)[:num_files]
    rng.shuffle(formats)
    return formats


def make_snapshot(folder: Path, num_documents: int, seed: int = 0) -> InputStats:
    """Write ``num_documents`` documents into ``folder`` (``warc/``, ``jsonl/``, ``parquet/``).

    Cost: O(num_documents) time (about 1 ms per document, mostly WARC and gzip writing); memory one
    file's documents plus ``RECENT`` texts, whatever ``num_documents``."""
    from sample.crawl import CJK, NEAR_DUP_METHODS, near_duplicate, write_jsonl_gz, write_parquet, write_warc

    rng = random.Random(seed)
    pools = _paragraph_pools()
    languages = sorted(pools)
    recent: deque[tuple[str, str]] = deque(maxlen=RECENT)
    formats = _formats(num_documents, rng)
    files = words = characters = exact = near = 0
    number = 0
    for file_number, fmt in enumerate(formats):
        count = min(DOCS_PER_FILE, num_documents - number)
        records = []
        for _ in range(count):
            draw = rng.random()
            if recent and draw < EXACT_SHARE:
                language, text = rng.choice(recent)
                exact += 1
            elif recent and draw < EXACT_SHARE + NEAR_SHARE:
                language, original = rng.choice(recent)
                text = near_duplicate(original, language, rng.choice(NEAR_DUP_METHODS), rng)
                near += 1
            else:
                language = rng.choice(languages)
                text = _document(pools[language], language, rng)
                recent.append((language, text))
            record_uuid = uuid.UUID(int=rng.getrandbits(128), version=4)
            records.append(
                {
                    "id": f"<urn:uuid:{record_uuid}>" if fmt == "warc" else str(record_uuid),
                    "url": f"https://www.site{rng.randrange(5000):04d}.example/{language}/{number:08d}.html",
                    "text": text,
                    "language": language,
                    "date": f"2025-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}T12:00:00Z",
                }
            )
            words += len(text) // 2 if language in CJK else len(text.split())
            characters += len(text)
            number += 1
        (folder / fmt).mkdir(parents=True, exist_ok=True)
        extension = {"warc": "warc.gz", "jsonl": "jsonl.gz", "parquet": "parquet"}[fmt]
        path = folder / fmt / f"part-{file_number:06d}.{extension}"
        {"warc": write_warc, "jsonl": write_jsonl_gz, "parquet": write_parquet}[fmt](path, records)
        files += 1
    size = sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())
    return InputStats(number, files, size, words, characters, exact, near)
