"""A deterministic crawl snapshot cut from ``sample/sources/``, with the ground truth of every defect in it.

``generate_snapshot(out_dir, seed=...)`` writes a snapshot folder the way a crawler delivers one::

    out_dir/jsonl/part-00000.jsonl.gz    records {"id", "url", "text", "language", "date"}   (~40 %)
    out_dir/parquet/part-00000.parquet   the same columns                                   (~40 %)
    out_dir/warc/part-00000.warc.gz      WARC/1.1: one warcinfo, then HTML response records (~20 %)

and, beside it (never inside, so readers of the snapshot do not ingest it), the truth table
``out_dir.parent / f"{out_dir.name}.truth.parquet"``. Same seed and sources, same bytes.

Pages are runs of consecutive paragraphs of one source document (about 100 to 2000 words; CJK
counts characters / 2), cut without overlap, so two clean pages never share a paragraph.
Paragraphs holding an email address, an IPv4 address or a phone-like number are left out, so the
only PII in the snapshot is what the truth lists.

Every page is on a site (its URL host; five per language) and carries that site's boilerplate, as
crawled text does (``sample.boilerplate``): in JSONL and Parquet, the whole page's text
as a crawler's text dump has it (menu, byline, share line, tags, pager, newsletter box, footer,
cookie banner, as the site's template shows them); in WARC, the page's HTML has the menu, sidebar,
footer and cookie banner as ``<nav>``, ``<aside>``, ``<footer>`` around ``<main><article>``, and the
text, the part of the boilerplate that sits inside the article (byline, share line, tags) around
the content, is in ``<article>``: one ``<p>`` per paragraph, ``<br>`` between its lines. HTML
extraction gives back exactly that text. Each page has exactly one ``kind``:

- ``clean``: the page as cut, on its site.
- ``exact_duplicate``: the text of a clean page (its boilerplate included) under another id and
  URL of the same site, in any format.
- ``near_duplicate``: a clean page with ``near_dup_method`` ``word_drop`` (2-10 % of the words,
  characters in CJK, removed in 1-3 runs), ``boilerplate`` (cookie banner / navigation lines added,
  5-10 % of the characters) or ``truncation`` (the first 80-95 % kept), on its original's site.
  Its original has at least 150 words (of content).
- ``repetition_spam``: a clean page with one line repeated 15-40 times, or a short phrase repeated
  60-150 times in one paragraph.
- ``symbol_spam``: a clean page interleaved with lines of "#", "…", "|" and emoji.
- ``mojibake``: a clean page's UTF-8 bytes (boilerplate included) decoded as Windows-1252
  (Latin-1 for its five undefined bytes), as ftfy's "sloppy-windows-1252"; reversible, so a fixer
  can restore it exactly.
  Only in JSONL and Parquet: HTML text extraction drops the C1 controls and soft hyphens it holds.
- ``wrong_language``: a clean page whose declared ``language`` (and WARC ``<html lang>``) is another.
- ``pii``: a clean page with 1-4 emails, IPv4 addresses and phone numbers (international and
  national formats) inserted at paragraph ends, each followed by a full stop.

Duplicates point at a ``clean`` original, and each original has at most one duplicate, so each
duplicate cluster has exactly two members (a deduplicator must keep exactly one of them).

Truth table columns (one row per record of the snapshot):

- ``source_id``: the record's id as written (WARC: the WARC-Record-ID, ``<urn:uuid:...>``)
- ``file``: path relative to ``out_dir``; ``offset``: line (JSONL, from 0), row (Parquet, from 0)
  or byte offset of the record's gzip member (WARC); ``format``: jsonl / parquet / warc
- ``url``, ``date``; ``kind``: one of ``KINDS``
- ``true_language`` and ``declared_language`` (ISO 639-1; they differ only for wrong_language)
- ``duplicate_of``: source_id of the original (exact/near duplicates), else null
- ``near_dup_method``: word_drop / boilerplate / truncation, else null
- ``near_dup_jaccard``: Jaccard similarity of the 5-gram sets (words; characters in CJK) of a near
  duplicate and its original, the quantity MinHash estimates; else null. A deduplicator's recall is
  best measured against a threshold on this column.
- ``spam_method``: line / ngram (repetition_spam), else null
- ``pii``: list of the exact PII strings inserted (empty unless kind is pii)
- ``text_sha256``: sha256 of the text as written (WARC: the <p>s joined by a blank line, <br> = newline)
- ``original_text_sha256``: sha256 of the clean text before mojibake; else equal to text_sha256
- ``original_text``: the clean text before mojibake, else null
- ``source_document``: id of the ``sample/sources`` document the page was cut from
- ``boilerplate``: the site's lines placed around the content, before mojibake (a near duplicate:
  its original's, which its change may have cut or edited)
"""

from __future__ import annotations

import gzip
import hashlib
import html
import io
import json
import math
import random
import re
import uuid
from dataclasses import dataclass, field, replace
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from warcio.statusandheaders import StatusAndHeaders
from warcio.warcwriter import WARCWriter

from sample.boilerplate import (
    SiteTemplate,
    page_boilerplate,
    page_chrome_html,
    site_templates,
    with_boilerplate,
)

SOURCES_DIR = Path(__file__).resolve().parent / "sources"
DEFAULT_NUM_DOCUMENTS = 6000
DOCS_PER_SHARD = 500
SITES_PER_LANGUAGE = 5
FORMAT_SHARES = (("jsonl", 0.4), ("parquet", 0.4), ("warc", 0.2))
EXTENSIONS = {"jsonl": "jsonl.gz", "parquet": "parquet", "warc": "warc.gz"}
KINDS = (
    "clean", "exact_duplicate", "near_duplicate", "repetition_spam",
    "symbol_spam", "mojibake", "wrong_language", "pii",
)  # fmt: skip
# Share of documents per injected kind; the rest are clean.
KIND_SHARES = {
    "exact_duplicate": 0.05, "near_duplicate": 0.06, "repetition_spam": 0.03, "symbol_spam": 0.03,
    "mojibake": 0.03, "wrong_language": 0.04, "pii": 0.05,
}  # fmt: skip
NEAR_DUP_METHODS = ("word_drop", "boilerplate", "truncation")
CJK = {"ja", "zh"}
MIN_WORDS, MAX_WORDS, MEDIAN_WORDS = 100, 2000, 110
MIN_NEAR_DUP_WORDS = 150

_PII_LIKE = re.compile(r"@\w|\b\d{1,3}(?:\.\d{1,3}){3}\b|\d[\d ()/-]{6,}\d")

TLDS = {
    "en": ("com", "org", "co.uk"), "de": ("de",), "fr": ("fr",), "es": ("es",), "it": ("it",),
    "pt": ("pt", "com.br"), "nl": ("nl",), "pl": ("pl",), "cs": ("cz",), "sv": ("se",), "ro": ("ro",),
    "ca": ("cat",), "da": ("dk",), "id": ("co.id",), "vi": ("vn",), "ru": ("ru",), "uk": ("ua",),
    "el": ("gr",), "ja": ("jp", "co.jp"), "zh": ("cn", "com.cn"), "ko": ("kr", "co.kr"),
}  # fmt: skip
SITE_WORDS = ("linux", "open", "tech", "code", "net", "data", "free", "soft", "sys", "info", "web", "byte")
SITE_SUFFIXES = ("forum", "news", "blog", "wiki", "docs", "hub", "zone", "world", "help", "portal")
SECTIONS = ("blog", "news", "docs", "wiki", "forum/thread", "artikel", "help", "howto")
PHONE_COUNTRY = {
    "en": "1", "de": "49", "fr": "33", "es": "34", "it": "39", "pt": "351", "nl": "31", "pl": "48",
    "cs": "420", "sv": "46", "ro": "40", "ca": "34", "da": "45", "id": "62", "vi": "84", "ru": "7",
    "uk": "380", "el": "30", "ja": "81", "zh": "86", "ko": "82",
}  # fmt: skip
MAIL_HOSTS = (
    "gmail.com",
    "outlook.com",
    "gmx.de",
    "yandex.ru",
    "orange.fr",
    "libero.it",
    "naver.com",
    "qq.com",
)
FIRST_NAMES = ("anna", "jan", "maria", "li", "olga", "pierre", "sofia", "kenji", "minji", "lucas", "eva")
LAST_NAMES = ("novak", "schmidt", "rossi", "wang", "ivanova", "martin", "silva", "tanaka", "kim", "jensen")
BOILERPLATE = (
    "We use cookies to improve your experience. Accept all cookies | Reject | Settings",
    "Home | About us | Contact | Privacy policy | Terms of use", "Share on Facebook · Share on X · Share by email",
    "Subscribe to our newsletter", "© 2024 All rights reserved.", "Skip to main content",
    "Log in | Register | Search", "Related articles",
)  # fmt: skip
SYMBOL_LINES = ("##########", "# # # # # # #", "… … … … …", "| | | | | | |", "🔥🔥🔥🔥🔥🔥", "★★★★★ ☆☆☆", "###", "...... ......")  # fmt: skip


@dataclass
class Page:
    """One document of the snapshot, before it is written."""

    text: str
    kind: str
    true_language: str
    source_document: str
    declared_language: str = ""
    duplicate_of: int | None = None  # index into the page list
    near_dup_method: str | None = None
    near_dup_jaccard: float | None = None
    spam_method: str | None = None
    pii: list[str] = field(default_factory=list)
    original_text: str | None = None
    site: SiteTemplate | None = None  # the site (URL host) it is on, and its page layout
    format: str = ""  # jsonl / parquet / warc
    title: str = ""
    boilerplate: list[str] = field(default_factory=list)


def units(text: str, language: str) -> int:
    """Length in words; CJK text has no spaces, so half its characters stand in for words."""
    return len(text) // 2 if language in CJK else len(text.split())


def load_sources(sources_dir: Path) -> dict[str, list[tuple[str, list[str]]]]:
    """language -> [(source document id, paragraphs)], in file order."""
    files = sorted(sources_dir.glob("*.jsonl.gz"))
    if not files:
        raise ValueError(f"{sources_dir} holds no <lang>.jsonl.gz files; run sample/build_sources.py")
    sources: dict[str, list[tuple[str, list[str]]]] = {}
    for path in files:
        with gzip.open(path, "rt", encoding="utf-8") as f:
            for line in f:
                record = json.loads(line)
                sources.setdefault(record["language"], []).append(
                    (record["id"], record["text"].split("\n\n"))
                )
    return sources


def cut_pages(sources: dict[str, list[tuple[str, list[str]]]], rng: random.Random) -> list[Page]:
    """Every non-overlapping run of paragraphs that makes a page of realistic length. Paragraphs
    that hold PII-like strings are left out, so the only PII in a snapshot is what its truth lists."""
    pages = []
    for language, documents in sources.items():
        for doc_id, all_paragraphs in documents:
            paragraphs = [p for p in all_paragraphs if not _PII_LIKE.search(p)]
            start = 0
            while start < len(paragraphs):
                target = min(MAX_WORDS, max(MIN_WORDS, int(rng.lognormvariate(math.log(MEDIAN_WORDS), 0.6))))
                end, size = start, 0
                while end < len(paragraphs) and size < target:
                    size += units(paragraphs[end], language)
                    end += 1
                if MIN_WORDS <= size <= MAX_WORDS * 1.5:
                    pages.append(Page("\n\n".join(paragraphs[start:end]), "clean", language, doc_id))
                start = end
    return pages


def jaccard(a: str, b: str, language: str, n: int = 5) -> float:
    """Jaccard similarity of the two texts' n-gram sets: of words, or of characters in CJK."""

    def grams(text: str) -> set:
        tokens = text.replace("\n", "") if language in CJK else text.lower().split()
        return {tuple(tokens[k : k + n]) for k in range(max(1, len(tokens) - n + 1))}

    x, y = grams(a), grams(b)
    return round(len(x & y) / len(x | y), 4)


def sloppy_cp1252(text: str) -> str:
    """UTF-8 bytes read as Windows-1252; the five bytes it leaves undefined are read as Latin-1."""
    return "".join(
        bytes([b]).decode("cp1252") if b not in (0x81, 0x8D, 0x8F, 0x90, 0x9D) else chr(b)
        for b in text.encode("utf-8")
    )


def near_duplicate(text: str, language: str, method: str, rng: random.Random) -> str:
    if method == "truncation":
        # Keep 82-95 %, at a word boundary where one is near enough: always at least 80 %.
        cut = int(len(text) * rng.uniform(0.82, 0.95))
        space = text.rfind(" ", 0, cut)
        if language not in CJK and space > len(text) * 0.81:
            cut = space
        return text[:cut].rstrip()
    if method == "boilerplate":
        # 5-10 % of the characters, and at least the shortest line.
        budget, lines, present = len(text) * rng.uniform(0.05, 0.10), [], set(text.split("\n"))
        for line in rng.sample(BOILERPLATE, len(BOILERPLATE)):
            if line not in present and sum(map(len, lines)) + len(line) <= budget:
                lines.append(line)
        lines = lines or [min(BOILERPLATE, key=len)]
        head = lines[: len(lines) // 2]
        return "\n".join([*head, text, *lines[len(head) :]]) if head else text + "\n" + "\n".join(lines)
    # Drop 2-10 % of the words (characters in CJK) in 1-3 runs, as an edit would; never a line break.
    tokens = list(text) if language in CJK else text.split(" ")
    num_runs = rng.randint(1, 3)
    run = max(1, round(len(tokens) * rng.uniform(0.02, 0.10) / num_runs))
    dropped = set()
    for _ in range(num_runs):
        start = rng.randrange(max(1, len(tokens) - run))
        dropped.update(k for k in range(start, start + run) if "\n" not in tokens[k])
    return ("" if language in CJK else " ").join(t for k, t in enumerate(tokens) if k not in dropped)


def repetition_spam(text: str, language: str, rng: random.Random) -> tuple[str, str]:
    paragraphs = text.split("\n\n")
    if rng.random() < 0.5:
        first = paragraphs[0]
        line = first[: min(len(first), 60 if language in CJK else 80)].rsplit(" ", 1)[0]
        block = "\n".join([line] * rng.randint(15, 40))
        return "\n\n".join([paragraphs[0], block, *paragraphs[1:]]), "line"
    words = paragraphs[0].split()
    phrase = paragraphs[0][:12] if language in CJK or len(words) < 4 else " ".join(words[:3])
    return "\n\n".join([*paragraphs, " ".join([phrase] * rng.randint(60, 150))]), "ngram"


def symbol_spam(text: str, language: str, rng: random.Random) -> str:
    """The text with a line of symbols after every few words' worth: ~1 symbol line per 12 words."""
    paragraphs = text.split("\n\n")
    num_lines = max(6, units(text, language) // 12)
    for _ in range(num_lines):
        i = rng.randrange(len(paragraphs))
        paragraphs[i] += "\n" + rng.choice(SYMBOL_LINES)
    return "\n\n".join(paragraphs)


def phone_number(language: str, international: bool, rng: random.Random) -> str:
    """A phone number as people write it: "+49 30 1234567" or "030 1234567"; NANP style for English."""
    if language == "en":
        area, line = rng.randint(201, 989), rng.randint(1000, 9999)
        return f"+1 {area}-555-{line}" if international else f"({area}) 555-{line}"
    area, number = rng.randint(20, 899), rng.randint(1_000_000, 9_999_999)
    return f"+{PHONE_COUNTRY[language]} {area} {number}" if international else f"0{area} {number}"


def pii_strings(language: str, rng: random.Random) -> list[str]:
    """1-4 PII strings: emails, public IPv4 addresses, phone numbers (international or national)."""
    found = []
    for _ in range(rng.randint(1, 4)):
        what = rng.choice(("email", "ipv4", "phone_international", "phone_national"))
        if what == "email":
            name = f"{rng.choice(FIRST_NAMES)}.{rng.choice(LAST_NAMES)}{rng.randint(1, 99)}"
            found.append(f"{name}@{rng.choice(MAIL_HOSTS)}")
        elif what == "ipv4":
            first = rng.choice([n for n in range(11, 223) if n not in (100, 127, 169, 172, 192, 198, 203)])
            found.append(f"{first}.{rng.randint(0, 255)}.{rng.randint(0, 255)}.{rng.randint(1, 254)}")
        else:
            found.append(phone_number(language, what == "phone_international", rng))
    return found


def insert_pii(text: str, items: list[str], rng: random.Random) -> str:
    paragraphs = text.split("\n\n")
    for item in items:
        i = rng.randrange(len(paragraphs))
        paragraphs[i] = f"{paragraphs[i]} {item}."  # as a sentence ends: the line still ends in one
    return "\n\n".join(paragraphs)


def choose_format(rng: random.Random) -> str:
    """jsonl, parquet or warc, in the shares of FORMAT_SHARES."""
    point, total = rng.random(), 0.0
    for fmt, share in FORMAT_SHARES:
        total += share
        if point < total:
            return fmt
    return FORMAT_SHARES[-1][0]


def place_on_site(page: Page, sites: list[SiteTemplate], rng: random.Random) -> None:
    """Put the page on one of its language's sites, in a format, with the site's boilerplate around
    its text: the whole page's in a text dump (JSONL, Parquet), the article's part in a WARC page."""
    page.site = rng.choice(sites)
    page.format = choose_format(rng)
    if page.kind == "mojibake" and page.format == "warc":
        page.format = rng.choice(("jsonl", "parquet"))  # HTML extraction drops the C1 controls it holds
    page.title = page.text.split("\n", 1)[0][:70]
    head, tail = page_boilerplate(page.site, page.text, rng, extracted=page.format == "warc")
    page.text, page.boilerplate = with_boilerplate(page.text, head, tail), head + tail


def plan_pages(
    pool: list[Page], num_documents: int, rng: random.Random, sites: dict[str, list[SiteTemplate]]
) -> list[Page]:
    """Pick base pages from the pool, turn the planned share of them into each defect kind and put
    each on a site of its language (``sites``), with that site's boilerplate. A duplicate is on its
    original's site and carries the same boilerplate."""
    counts = {kind: round(num_documents * share) for kind, share in KIND_SHARES.items()}
    num_duplicates = counts["exact_duplicate"] + counts["near_duplicate"]
    num_base = num_documents - num_duplicates
    if len(pool) < num_base:
        raise ValueError(
            f"the sources give {len(pool)} pages; ask for at most {len(pool) + num_duplicates} documents"
        )
    base = rng.sample(pool, num_base)  # in random order: taking the first eligible ones is a random draw
    for page in base:
        page.declared_language = page.true_language
    for kind in ("mojibake", "repetition_spam", "symbol_spam", "wrong_language", "pii"):
        # Mojibake needs a non-ASCII character to garble.
        eligible = [p for p in base if p.kind == "clean" and (kind != "mojibake" or not p.text.isascii())]
        for page in eligible[: counts[kind]]:
            page.kind = kind
    # Near-duplicate originals need enough words to stay near after the change.
    originals = [i for i, p in enumerate(base) if p.kind == "clean"]
    long_ones = [i for i in originals if units(base[i].text, base[i].true_language) >= MIN_NEAR_DUP_WORDS]
    near_originals = rng.sample(long_ones, counts["near_duplicate"])
    taken = set(near_originals)
    exact_originals = rng.sample([i for i in originals if i not in taken], counts["exact_duplicate"])
    languages = sorted({p.true_language for p in pool})
    pages = list(base)
    for page in base:
        language = page.true_language
        if page.kind == "repetition_spam":
            page.text, page.spam_method = repetition_spam(page.text, language, rng)
        elif page.kind == "symbol_spam":
            page.text = symbol_spam(page.text, language, rng)
        elif page.kind == "wrong_language":
            page.declared_language = rng.choice([x for x in languages if x != language])
        elif page.kind == "pii":
            page.pii = pii_strings(language, rng)
            page.text = insert_pii(page.text, page.pii, rng)
    for page in base:
        place_on_site(page, sites[page.true_language], rng)
        if page.kind == "mojibake":
            page.original_text, page.text = page.text, sloppy_cp1252(page.text)
    for i in exact_originals:
        pages.append(replace(base[i], kind="exact_duplicate", duplicate_of=i, format=choose_format(rng)))
    for n, i in enumerate(near_originals):
        method = NEAR_DUP_METHODS[n % len(NEAR_DUP_METHODS)]
        text = near_duplicate(base[i].text, base[i].true_language, method, rng)
        similarity = jaccard(text, base[i].text, base[i].true_language)
        pages.append(
            replace(base[i], text=text, kind="near_duplicate", duplicate_of=i, near_dup_method=method,
                    near_dup_jaccard=similarity, format=choose_format(rng))
        )  # fmt: skip
    return pages


def generate_snapshot(
    out_dir: Path, *, sources_dir: Path = SOURCES_DIR, seed: int = 0, num_documents: int | None = None
) -> Path:
    """Write a crawl snapshot of ``num_documents`` (default 6000) pages into ``out_dir`` and return the
    path of its truth table, ``out_dir.parent / f"{out_dir.name}.truth.parquet"``. Deterministic:
    the same seed and sources give byte-identical files."""
    rng = random.Random(seed)
    pool = cut_pages(load_sources(Path(sources_dir)), rng)
    hosts: dict[str, list[str]] = {}
    for lang, tlds in sorted(TLDS.items()):
        hosts[lang] = []
        while len(hosts[lang]) < SITES_PER_LANGUAGE:  # distinct: a host is one site, with one template
            host = f"www.{rng.choice(SITE_WORDS)}{rng.choice(SITE_SUFFIXES)}.{rng.choice(tlds)}"
            hosts[lang] += [host] if host not in hosts[lang] else []
    sites = site_templates(hosts, rng)
    pages = plan_pages(pool, DEFAULT_NUM_DOCUMENTS if num_documents is None else num_documents, rng, sites)
    order = list(range(len(pages)))
    rng.shuffle(order)
    records = []  # in writing order: (page index, format, record)
    for number, i in enumerate(order):
        page = pages[i]
        fmt = page.format
        record_uuid = uuid.UUID(int=rng.getrandbits(128), version=4)
        record = {
            "id": f"<urn:uuid:{record_uuid}>" if fmt == "warc" else str(record_uuid),
            "url": f"https://{page.site.host}/{rng.choice(SECTIONS)}/"
            f"{rng.randint(2019, 2025)}/{number:06d}-{rng.getrandbits(24):06x}.html",
            "text": page.text,
            "language": page.declared_language,
            "date": f"2025-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}T"
            f"{rng.randint(0, 23):02d}:{rng.randint(0, 59):02d}:{rng.randint(0, 59):02d}Z",
        }
        records.append((i, fmt, record))
    out_dir = Path(out_dir)
    located = {}  # page index -> (file, offset)
    for fmt, _ in FORMAT_SHARES:
        mine = [(i, r) for i, f, r in records if f == fmt]
        num_shards = max(1, math.ceil(len(mine) / DOCS_PER_SHARD))
        (out_dir / fmt).mkdir(parents=True, exist_ok=True)
        for shard in range(num_shards):
            chunk = mine[shard * len(mine) // num_shards : (shard + 1) * len(mine) // num_shards]
            name = f"{fmt}/part-{shard:05d}.{EXTENSIONS[fmt]}"
            if fmt == "warc":
                offsets = write_warc(out_dir / name, [r for _, r in chunk], [pages[i] for i, _ in chunk])
            else:
                offsets = WRITERS[fmt](out_dir / name, [r for _, r in chunk])
            for (i, _), offset in zip(chunk, offsets, strict=True):
                located[i] = (name, offset)
    return write_truth(out_dir, pages, records, located)


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def write_truth(out_dir: Path, pages: list[Page], records: list, located: dict) -> Path:
    ids = {i: r["id"] for i, _, r in records}
    rows = []
    for i, fmt, record in records:
        page = pages[i]
        file, offset = located[i]
        original = page.original_text if page.original_text is not None else page.text
        rows.append({
            "source_id": record["id"], "file": file, "offset": offset, "format": fmt, "url": record["url"],
            "date": record["date"], "kind": page.kind, "true_language": page.true_language,
            "declared_language": page.declared_language,
            "duplicate_of": ids[page.duplicate_of] if page.duplicate_of is not None else None,
            "near_dup_method": page.near_dup_method, "near_dup_jaccard": page.near_dup_jaccard,
            "spam_method": page.spam_method, "pii": page.pii,
            "text_sha256": sha256(page.text), "original_text_sha256": sha256(original),
            "original_text": page.original_text, "source_document": page.source_document,
            "boilerplate": page.boilerplate,
        })  # fmt: skip
    rows.sort(key=lambda r: (r["file"], r["offset"]))
    return write_table(truth_path(out_dir), rows, TRUTH_SCHEMA)


TRUTH_SCHEMA = pa.schema([
    ("source_id", pa.string()), ("file", pa.string()), ("offset", pa.int64()), ("format", pa.string()),
    ("url", pa.string()), ("date", pa.string()), ("kind", pa.string()), ("true_language", pa.string()),
    ("declared_language", pa.string()), ("duplicate_of", pa.string()), ("near_dup_method", pa.string()),
    ("near_dup_jaccard", pa.float64()), ("spam_method", pa.string()), ("pii", pa.list_(pa.string())),
    ("text_sha256", pa.string()), ("original_text_sha256", pa.string()), ("original_text", pa.string()),
    ("source_document", pa.string()), ("boilerplate", pa.list_(pa.string())),
])  # fmt: skip


def truth_path(out_dir: Path) -> Path:
    return out_dir.parent / f"{out_dir.name}.truth.parquet"


def write_table(path: Path, rows: list[dict], schema: pa.Schema) -> Path:
    pq.write_table(pa.Table.from_pylist(rows, schema=schema), path, compression="zstd")
    return path


RECORD_SCHEMA = pa.schema([(c, pa.string()) for c in ("id", "url", "text", "language", "date")])


def gzip_bytes(data: bytes) -> bytes:
    """gzip with mtime 0 and no file name, so equal data gives equal bytes."""
    buffer = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=buffer, mtime=0, compresslevel=6) as gz:
        gz.write(data)
    return buffer.getvalue()


def jsonl_bytes(records: list[dict]) -> bytes:
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records).encode("utf-8")


def write_jsonl_gz(path: Path, records: list[dict]) -> list[int]:
    """Write records as gzipped JSON lines; returns each record's line number."""
    path.write_bytes(gzip_bytes(jsonl_bytes(records)))
    return list(range(len(records)))


def write_parquet(path: Path, records: list[dict]) -> list[int]:
    """Write records as a Parquet table; returns each record's row."""
    write_table(path, records, RECORD_SCHEMA)
    return list(range(len(records)))


def page_html(record: dict, page: Page) -> bytes:
    """A web page around the text: the site's header, menu, sidebar, footer and cookie banner
    (``page_chrome_html``), the text in <p>s inside ``<article>``."""
    before, after = page_chrome_html(page.site)
    # One <p> per paragraph, <br> between its lines: the text can be read back exactly.
    body = "\n".join(
        "<p>" + "<br>".join(html.escape(line) for line in paragraph.split("\n")) + "</p>"
        for paragraph in record["text"].split("\n\n")
    )
    return (
        f'<!DOCTYPE html>\n<html lang="{record["language"]}">\n<head><meta charset="utf-8">'
        f"<title>{html.escape(page.title)}</title></head>\n<body>\n{before}"
        f'<main id="main"><article>\n{body}\n</article></main>\n{after}'
        "</body>\n</html>\n"
    ).encode()


def plain_page(record: dict) -> Page:
    """A page for a record that was not planned on a site: a plain site of the record's host."""
    host, language = record["url"].split("/")[2], record["language"]
    site = SiteTemplate(
        host, host, language, (), ("home", "news", "about", "contact"), " | ", ("admin",), False
    )
    return Page(record["text"], "clean", language, "", site=site, title=record["text"].split("\n", 1)[0][:70])


def write_warc(path: Path, records: list[dict], pages: list[Page] | None = None) -> list[int]:
    """Write a warcinfo record, then one HTTP response record per page (the record's text on its
    page's site, ``page_html``; a plain site when ``pages`` is None); returns each page record's byte
    offset (the start of its gzip member)."""
    pages = pages if pages is not None else [plain_page(record) for record in records]
    offsets = []
    with path.open("wb") as f:
        writer = WARCWriter(f, gzip=True, warc_version="WARC/1.1")
        info_id = uuid.uuid5(uuid.NAMESPACE_URL, path.name + records[0]["id"])
        fields = b"software: apertus-pipeline sample_crawl\r\nformat: WARC File Format 1.1\r\n"
        writer.write_record(writer.create_warc_record(
            "", "warcinfo", payload=io.BytesIO(fields), length=len(fields),
            warc_content_type="application/warc-fields",
            warc_headers_dict={"WARC-Record-ID": f"<urn:uuid:{info_id}>", "WARC-Date": records[0]["date"],
                               "WARC-Filename": path.name},
        ))  # fmt: skip
        for record, page in zip(records, pages, strict=True):
            payload = page_html(record, page)
            http_headers = StatusAndHeaders(
                "200 OK",
                [("Content-Type", "text/html; charset=utf-8"), ("Content-Length", str(len(payload)))],
                protocol="HTTP/1.1",
            )
            offsets.append(f.tell())
            writer.write_record(writer.create_warc_record(
                record["url"], "response", payload=io.BytesIO(payload), length=len(payload),
                http_headers=http_headers,
                warc_headers_dict={"WARC-Record-ID": record["id"], "WARC-Date": record["date"]},
            ))  # fmt: skip
    return offsets


WRITERS = {"jsonl": write_jsonl_gz, "parquet": write_parquet}
