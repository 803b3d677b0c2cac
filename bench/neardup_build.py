"""Builds the independent near-duplicate evaluation set in ``tests/data/neardup/`` (committed).

    .venv/bin/python bench/neardup_build.py --source <git dir of jlevy/the-art-of-command-line> [--seed 16]

Source: the 18 translations of "The Art of Command Line" (CC BY-SA 4.0; commit in ``SOURCE_COMMIT``),
real documentation text that ``sample.crawl`` does not use. Each README is cut into its ``##``
sections, markdown is stripped (code blocks, images, link targets, emphasis, HTML), and each
section's bullets are grouped by ``BULLETS_PER_PAGE`` into pages; a page is kept when it is long
enough (``MIN_WORDS`` words, or ``MIN_CHARS`` characters in Chinese and Japanese).

From the pages (seeded, deterministic) it writes:

- ``docs.jsonl.gz``: id, text, language, family. Two documents are duplicates exactly when they
  have the same family (a page and its variants); every other pair is distinct.
- ``pairs.jsonl.gz``: labelled pairs (a, b, label ``duplicate``/``negative``, kind). Duplicates, one
  kind each, of an original page: ``word_drop``, ``word_swap``, ``whitespace``, ``punct_case``,
  ``fullwidth``, ``truncated``, ``boilerplate`` (site header, cookie banner and footer added).
  Hard negatives: ``shared_boilerplate`` (two held-out pages wrapped in the same site's header,
  banner and footer), ``same_page_chunks`` (two pages of one section), ``translation`` (the same
  section and page number in two languages).
"""

from __future__ import annotations

import argparse
import gzip
import json
import random
import re
import subprocess
from itertools import combinations
from pathlib import Path

SOURCE_REPO = "https://github.com/jlevy/the-art-of-command-line"
SOURCE_COMMIT = "6b50745d2e788add2e8f1ed29010e72659a9a074"
LANGUAGES = {  # README suffix -> language code the readers would give
    "": "en", "cs": "cs", "de": "de", "el": "el", "es": "es", "fr": "fr", "id": "id", "it": "it",
    "ja": "ja", "ko": "ko", "pl": "pl", "pt": "pt", "ro": "ro", "ru": "ru", "sl": "sl", "uk": "uk",
    "zh": "zh", "zh-Hant": "zh",
}  # fmt: skip
CHARACTER_LANGUAGES = {"zh", "ja"}  # no spaces between words: edits work on characters
BULLETS_PER_PAGE = 6
MIN_WORDS, MIN_CHARS = 80, 250
PAIRS_PER_KIND = 60
HELD_OUT_BODIES = 120  # pages used only as bodies of the shared-boilerplate negatives
SITES = 12
OUT = Path(__file__).resolve().parent.parent / "tests" / "data" / "neardup"

_FENCE = re.compile(r"```.*?```", re.S)
_IMAGE = re.compile(r"!\[[^\]]*\]\([^)]*\)")
_LINK = re.compile(r"\[([^\]]*)\]\([^)]*\)")
_HTML = re.compile(r"<[^>]+>")
_EMPHASIS = re.compile(r"\*\*|__|`")


def clean(markdown: str) -> str:
    text = _LINK.sub(r"\1", _IMAGE.sub("", _FENCE.sub("", markdown)))
    return re.sub(r"[ \t]+", " ", _EMPHASIS.sub("", _HTML.sub("", text))).strip()


def pages_of(readme: str) -> list[list[str]]:
    """Per ``##`` section (the title block and License dropped), its pages: lists of bullets."""
    sections = re.split(r"^## .*$", _FENCE.sub("", readme), flags=re.M)[1:-1]
    out = []
    for section in sections:
        bullets = [clean(b) for b in re.split(r"^- ", section, flags=re.M)[1:]]
        bullets = [re.sub(r"\s*\n\s*", " ", b) for b in bullets if b]
        out.append([bullets[i : i + BULLETS_PER_PAGE] for i in range(0, len(bullets), BULLETS_PER_PAGE)])
    return out


def long_enough(text: str, language: str) -> bool:
    if language in CHARACTER_LANGUAGES:
        return len("".join(text.split())) >= MIN_CHARS
    return len(text.split()) >= MIN_WORDS


def units(text: str, language: str) -> list[str]:
    """What an edit drops or swaps: words, or 2-character spans in Chinese and Japanese."""
    if language in CHARACTER_LANGUAGES:
        return [text[i : i + 2] for i in range(0, len(text), 2)]
    return text.split(" ")


def join(parts: list[str], language: str) -> str:
    return ("" if language in CHARACTER_LANGUAGES else " ").join(parts)


def word_drop(rng, text, language):
    parts = units(text, language)
    rate = rng.uniform(0.03, 0.10)
    return join([p for p in parts if rng.random() >= rate], language)


def word_swap(rng, text, language):
    parts = units(text, language)
    for _ in range(max(1, int(len(parts) * rng.uniform(0.02, 0.06)))):
        i = rng.randrange(len(parts) - 1)
        parts[i], parts[i + 1] = parts[i + 1], parts[i]
    return join(parts, language)


def whitespace(rng, text, language):
    width, out, line = rng.randint(30, 90), [], ""
    for ch in text:
        line += ch
        if len(line) >= width and (ch == " " or language in CHARACTER_LANGUAGES):
            out.append(line.rstrip() + rng.choice(["", " ", "  "]))
            line = ""
    out.append(line)
    return rng.choice(["\n", "\r\n", "\n\n"]).join(out).replace(" ", rng.choice([" ", "  ", " \t"]))


def punct_case(rng, text, language):
    words = []
    for word in text.split(" "):
        r = rng.random()
        word = (
            word.upper() if r < 0.08 else word.capitalize() if r < 0.2 else word.lower() if r < 0.3 else word
        )
        if rng.random() < 0.15:
            word = word.rstrip(".,;:!?") + rng.choice([",", ";", " -", "...", "!", ":", ""])
        words.append(word)
    return (
        " ".join(words).replace("(", rng.choice(["[", "(", " - "])).replace(")", rng.choice(["]", ")", ""]))
    )


def fullwidth(rng, text, language):
    # Full-width forms of printable ASCII (U+FF01..U+FF5E) and the ideographic space, as on CJK sites.
    return "".join(chr(ord(c) + 0xFEE0) if "!" <= c <= "~" else "\u3000" if c == " " else c for c in text)


def truncated(rng, text, language):
    cut = int(len(text) * rng.uniform(0.6, 0.9))
    if language not in CHARACTER_LANGUAGES:
        cut = text.rfind(" ", 0, cut)
    return text[:cut]


SITE_NAMES = ["DevOps Hub", "ShellTips", "LinuxNotes", "Admin Corner", "Terminal Daily", "CodeCrate",
              "OpsWiki", "BashBytes", "SysLearn", "CLI Garden", "TechDigest", "KernelCafe"]  # fmt: skip
NAV = ["Home", "Blog", "Tutorials", "Docs", "Forum", "About", "Contact", "Newsletter", "Search", "Login",
       "Sign up", "Careers", "Pricing", "Community", "Events", "Store"]  # fmt: skip
COOKIE = [
    "We use cookies and similar technologies to improve your browsing experience, personalise content and "
    "ads, provide social media features and analyse our traffic. By clicking Accept all you agree to the "
    "storing of cookies on your device. You can change your preferences at any time in Cookie settings.",
    "This website uses cookies to ensure you get the best experience on our website. Some are essential "
    "for the site to work, others help us understand how you use it so we can improve it. Read our privacy "
    "policy to learn more about the data we collect and your rights. Accept | Reject | Manage choices",
    "Wir verwenden Cookies, um Inhalte und Anzeigen zu personalisieren, Funktionen für soziale Medien "
    "anbieten zu können und die Zugriffe auf unsere Website zu analysieren. Alle akzeptieren | Ablehnen",
    "Nous utilisons des cookies pour vous garantir la meilleure expérience sur notre site web. En "
    "continuant à naviguer, vous acceptez leur utilisation. Tout accepter | Paramètres des cookies",
    "当サイトではサービス向上のためにクッキーを使用しています。サイトを閲覧し続けることで、クッキーの使用に同意したものとみなされます。詳細はプライバシーポリシーをご覧ください。",
]
FOOTER = ["Privacy policy", "Terms of use", "Imprint", "Accessibility", "Sitemap", "RSS feed", "Advertise",
          "Press", "Help center", "Status", "Follow us on Twitter", "Subscribe to our newsletter"]  # fmt: skip


def site(rng, number: int) -> tuple[str, str]:
    """One site's (header, footer): navigation, a cookie banner, links and a copyright line."""
    name = SITE_NAMES[number % len(SITE_NAMES)]
    header = f"{name}\n" + " | ".join(rng.sample(NAV, rng.randint(6, 10))) + "\n" + rng.choice(COOKIE)
    footer = (
        " · ".join(rng.sample(FOOTER, rng.randint(5, 9)))
        + f"\n© {rng.randint(2009, 2024)} {name}. All rights reserved. Made with love by the {name} team."
    )
    return header, footer


def build(source: Path, seed: int) -> tuple[list[dict], list[dict]]:
    rng = random.Random(seed)
    pages = []  # (id, language, section, number, text)
    for suffix, language in LANGUAGES.items():
        name = f"README-{suffix}.md" if suffix else "README.md"
        readme = subprocess.run(
            ["git", "--git-dir", str(source), "show", f"{SOURCE_COMMIT}:{name}"],
            check=True, capture_output=True, text=True,
        ).stdout  # fmt: skip
        tag = suffix or "en"
        for s, section in enumerate(pages_of(readme)):
            for p, bullets in enumerate(section):
                text = "\n\n".join(bullets)
                if long_enough(text, language):
                    pages.append({"id": f"{tag}/s{s:02d}/p{p:02d}", "language": language, "section": (tag, s),
                                  "slot": (s, p), "text": text})  # fmt: skip
    rng.shuffle(pages)
    held_out, originals = pages[:HELD_OUT_BODIES], sorted(pages[HELD_OUT_BODIES:], key=lambda p: p["id"])
    docs = [
        {"id": p["id"], "text": p["text"], "language": p["language"], "family": p["id"]} for p in originals
    ]
    pairs = []
    sites = [site(rng, n) for n in range(SITES)]
    edits = {"word_drop": word_drop, "word_swap": word_swap, "whitespace": whitespace,
             "punct_case": punct_case, "fullwidth": fullwidth, "truncated": truncated}  # fmt: skip
    for kind in [*edits, "boilerplate"]:
        for page in rng.sample(originals, PAIRS_PER_KIND):
            if kind == "boilerplate":
                header, footer = rng.choice(sites)
                text = f"{header}\n\n{page['text']}\n\n{footer}"
            else:
                text = edits[kind](rng, page["text"], page["language"])
            doc_id = f"{page['id']}~{kind}"
            docs.append({"id": doc_id, "text": text, "language": page["language"], "family": page["id"]})
            pairs.append({"a": page["id"], "b": doc_id, "label": "duplicate", "kind": kind})
    wrapped_by_site = [[] for _ in sites]
    for i, page in enumerate(held_out):
        header, footer = sites[i % SITES]
        doc_id = f"{page['id']}~site{i % SITES:02d}"
        docs.append({"id": doc_id, "text": f"{header}\n\n{page['text']}\n\n{footer}",
                     "language": page["language"], "family": doc_id})  # fmt: skip
        wrapped_by_site[i % SITES].append(doc_id)
    for members in wrapped_by_site:
        pairs += [
            {"a": a, "b": b, "label": "negative", "kind": "shared_boilerplate"}
            for a, b in combinations(members, 2)
        ]
    by_section, by_slot = {}, {}
    for page in originals:
        by_section.setdefault(page["section"], []).append(page["id"])
        by_slot.setdefault(page["slot"], []).append(page["id"])
    chunk_pairs = [(a, b) for ids in by_section.values() for a, b in combinations(ids, 2)]
    translation_pairs = [(a, b) for ids in by_slot.values() for a, b in combinations(ids, 2)]
    for kind, candidates in (("same_page_chunks", chunk_pairs), ("translation", translation_pairs)):
        for a, b in rng.sample(candidates, min(len(candidates), 500)):
            pairs.append({"a": a, "b": b, "label": "negative", "kind": kind})
    return sorted(docs, key=lambda d: d["id"]), pairs


def write_jsonl_gz(path: Path, rows: list[dict]) -> None:
    # mtime 0: the same seed gives byte-identical files.
    with open(path, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=0) as f:
        for row in rows:
            f.write((json.dumps(row, ensure_ascii=False, sort_keys=True) + "\n").encode("utf-8"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--source", type=Path, required=True, help="git dir of jlevy/the-art-of-command-line")
    parser.add_argument("--seed", type=int, default=16)
    args = parser.parse_args()
    docs, pairs = build(args.source, args.seed)
    OUT.mkdir(parents=True, exist_ok=True)
    write_jsonl_gz(OUT / "docs.jsonl.gz", docs)
    write_jsonl_gz(OUT / "pairs.jsonl.gz", pairs)
    counts = {}
    for pair in pairs:
        counts[(pair["label"], pair["kind"])] = counts.get((pair["label"], pair["kind"]), 0) + 1
    print(f"{len(docs)} documents, {len({d['language'] for d in docs})} languages, {len(pairs)} pairs")
    for (label, kind), n in sorted(counts.items()):
        print(f"  {label:9s} {kind:18s} {n}")


if __name__ == "__main__":
    main()
