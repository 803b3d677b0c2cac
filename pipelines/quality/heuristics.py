"""Heuristic quality filters: Gopher quality, Gopher repetition, C4 and FineWeb, per document language.

The rules are datatrove's (``GopherQualityFilter``, ``GopherRepetitionFilter``, ``C4QualityFilter``,
``FineWebQualityFilter``) with two changes. Thresholds and word splitting follow each document's
``fields.LANGUAGE`` (see ``settings`` and ``tokenize``): datatrove fixes one language per filter and
its word tokenizers need packages and data we do not have offline. And every drop says which rule
fired and the numbers behind it: the reason is ``"<filter>:<rule>"`` and ``fields.FILTER_DETAILS``
holds ``{"rule", "value", "threshold", "language"}``.
"""

from __future__ import annotations

import re
from abc import abstractmethod
from collections import Counter

from datatrove.data import Document
from datatrove.pipeline.filters.base_filter import BaseFilter
from datatrove.pipeline.writers.disk_base import DiskWriter

from pipelines import fields, reasons
from pipelines.quality.settings import LanguageSettings, QualityConfig
from pipelines.quality.tokenize import (
    count_sentences,
    ends_with_terminal_punctuation,
    split_chunks,
    split_words,
)

_PARAGRAPHS = re.compile(r"\n{2,}")
_LINES = re.compile(r"\n+")
POLICY_SUBSTRINGS = (
    "terms of use",
    "privacy policy",
    "cookie policy",
    "uses cookies",
    "use of cookies",
    "use cookies",
)


class HeuristicFilter(BaseFilter):
    """A filter whose thresholds depend on the document's language. Subclasses implement ``check``,
    which returns None to keep, or ``(rule, value, threshold)`` for the first rule the document fails."""

    prefix: str

    def __init__(self, config: QualityConfig | None = None, exclusion_writer: DiskWriter | None = None):
        super().__init__(exclusion_writer)
        self.config = config or QualityConfig()

    @abstractmethod
    def check(self, text: str, settings: LanguageSettings) -> tuple[str, float, float] | None:
        """None to keep ``text``; else the first failed rule, its measured value and its threshold."""

    def filter(self, doc: Document) -> bool | tuple[bool, str]:
        language = doc.metadata.get(fields.LANGUAGE)
        failed = (
            self.check(doc.text, self.config.settings_for(language)) if doc.text.strip() else ("empty", 0, 0)
        )
        if failed is None:
            return True
        rule, value, threshold = failed
        doc.metadata[fields.FILTER_DETAILS] = {
            "rule": rule,
            "value": round(float(value), 4),
            "threshold": threshold,
            "language": language,
        }
        return False, f"{self.prefix}:{rule}"


class GopherQualityFilter(HeuristicFilter):
    """Gopher's quality rules: document length, mean word length, symbols, bullets, ellipses,
    words with letters, stop words."""

    name = "🥇 Gopher quality"
    prefix = reasons.GOPHER_QUALITY

    def check(self, text: str, settings: LanguageSettings) -> tuple[str, float, float] | None:
        s = settings.gopher_quality
        words = split_words(text)
        # Gopher's ratios count whitespace-separated words ("/usr/bin" is one, with letters).
        chunks = split_chunks(text)
        num_chunks, num_words = max(1, len(chunks)), len(words)
        if s.min_doc_words is not None and num_words < s.min_doc_words:
            return "min_doc_words", num_words, s.min_doc_words
        if s.max_doc_words is not None and num_words > s.max_doc_words:
            return "max_doc_words", num_words, s.max_doc_words
        mean_length = sum(map(len, words)) / max(1, num_words)
        if s.min_avg_word_length is not None and mean_length < s.min_avg_word_length:
            return "min_avg_word_length", mean_length, s.min_avg_word_length
        if s.max_avg_word_length is not None and mean_length > s.max_avg_word_length:
            return "max_avg_word_length", mean_length, s.max_avg_word_length
        if s.max_symbol_word_ratio is not None:
            hashes = text.count("#") / num_chunks
            if hashes > s.max_symbol_word_ratio:
                return "max_hash_word_ratio", hashes, s.max_symbol_word_ratio
            ellipses = (text.count("...") + text.count("…")) / num_chunks
            if ellipses > s.max_symbol_word_ratio:
                return "max_ellipsis_word_ratio", ellipses, s.max_symbol_word_ratio
        lines = text.splitlines() or [text]
        if s.max_bullet_lines_ratio is not None:
            bullets = sum(line.lstrip().startswith(("•", "-")) for line in lines) / len(lines)
            if bullets > s.max_bullet_lines_ratio:
                return "max_bullet_lines_ratio", bullets, s.max_bullet_lines_ratio
        if s.max_ellipsis_lines_ratio is not None:
            ellipsis_lines = sum(line.rstrip().endswith(("...", "…")) for line in lines) / len(lines)
            if ellipsis_lines > s.max_ellipsis_lines_ratio:
                return "max_ellipsis_lines_ratio", ellipsis_lines, s.max_ellipsis_lines_ratio
        if s.max_non_alpha_words_ratio is not None:
            alpha = sum(any(c.isalpha() for c in chunk) for chunk in chunks) / num_chunks
            if alpha < s.max_non_alpha_words_ratio:
                return "max_non_alpha_words_ratio", alpha, s.max_non_alpha_words_ratio
        if s.min_stop_words is not None:
            found = len(set(s.stop_words).intersection(w.lower() for w in words))
            if found < s.min_stop_words:
                return "min_stop_words", found, s.min_stop_words
        return None


def duplicates(items: list[str]) -> tuple[int, int]:
    """(number, characters) of the items that repeat an earlier one."""
    seen: set[str] = set()
    number = chars = 0
    for item in items:
        if item in seen:
            number += 1
            chars += len(item)
        else:
            seen.add(item)
    return number, chars


def top_ngram_chars(words: list[str], n: int, joiner: str) -> int:
    """Characters covered by the occurrences of the most frequent n-gram (joined by ``joiner``)."""
    counts = Counter(tuple(words[i : i + n]) for i in range(len(words) - n + 1))
    if not counts:
        return 0
    ngram, count = counts.most_common(1)[0]
    return len(joiner.join(ngram)) * count


def duplicate_ngram_chars(words: list[str], n: int) -> int:
    """Characters of the words in n-grams that repeat an earlier one, counted without overlap and
    without separators, exactly as datatrove's ``find_all_duplicate``."""
    seen: set[str] = set()
    chars, i = 0, 0
    while i < len(words) - n + 1:
        ngram = "".join(words[i : i + n])
        if ngram in seen:
            chars += len(ngram)
            i += n
        else:
            seen.add(ngram)
            i += 1
    return chars


class GopherRepetitionFilter(HeuristicFilter):
    """Gopher's repetition rules: duplicated lines and paragraphs, frequent and duplicated n-grams.

    As in datatrove, n-gram fractions are over the text's characters: the most frequent n-gram's
    with its words joined by a space (by nothing in languages without spaces), the duplicated
    n-grams' without separators. Words are lowercased."""

    name = "👯 Gopher repetition"
    prefix = reasons.GOPHER_REPETITION

    def check(self, text: str, settings: LanguageSettings) -> tuple[str, float, float] | None:
        s = settings.gopher_repetition
        paragraphs = _PARAGRAPHS.split(text.strip())
        number, chars = duplicates(paragraphs)
        if s.dup_para_frac is not None and number / len(paragraphs) > s.dup_para_frac:
            return "dup_para_frac", number / len(paragraphs), s.dup_para_frac
        if s.dup_para_char_frac is not None and chars / len(text) > s.dup_para_char_frac:
            return "dup_para_char_frac", chars / len(text), s.dup_para_char_frac
        lines = _LINES.split(text)
        number, chars = duplicates(lines)
        if s.dup_line_frac is not None and number / len(lines) > s.dup_line_frac:
            return "dup_line_frac", number / len(lines), s.dup_line_frac
        if s.dup_line_char_frac is not None and chars / len(text) > s.dup_line_char_frac:
            return "dup_line_char_frac", chars / len(text), s.dup_line_char_frac
        words = [w.lower() for w in split_words(text)]
        total = len(text)
        for n, threshold in s.top_n_grams:
            fraction = top_ngram_chars(words, n, s.ngram_joiner) / total
            if fraction > threshold:
                return f"top_{n}_gram_char_frac", fraction, threshold
        for n, threshold in s.dup_n_grams:
            fraction = duplicate_ngram_chars(words, n) / total
            if fraction > threshold:
                return f"dup_{n}_gram_char_frac", fraction, threshold
        return None


class C4QualityFilter(HeuristicFilter):
    """C4's page rules: "lorem ipsum", curly brackets (off by default), and at least
    ``min_num_sentences`` sentences in lines of enough words that are not about javascript or cookies."""

    name = "⛰ C4 quality"
    prefix = reasons.C4_QUALITY

    def check(self, text: str, settings: LanguageSettings) -> tuple[str, float, float] | None:
        s = settings.c4
        lowered = text.lower()
        if s.filter_lorem_ipsum and "lorem ipsum" in lowered:
            return "lorem_ipsum", 1, 0
        if s.filter_curly_bracket and "{" in text:
            return "curly_bracket", text.count("{"), 0
        if s.min_num_sentences is None:
            return None
        sentences = 0
        for line in lowered.splitlines():
            if len(split_words(line)) < s.min_words_per_line:
                continue
            if (s.filter_javascript and "javascript" in line) or (
                s.filter_policy and any(p in line for p in POLICY_SUBSTRINGS)
            ):
                continue
            sentences += count_sentences(line)
            if sentences >= s.min_num_sentences:
                return None
        return "min_num_sentences", sentences, s.min_num_sentences


class FineWebQualityFilter(HeuristicFilter):
    """FineWeb's line rules: lines ending in punctuation, short lines, duplicated line characters,
    newlines per word."""

    name = "🍷 FineWeb quality"
    prefix = reasons.FINEWEB_QUALITY

    def check(self, text: str, settings: LanguageSettings) -> tuple[str, float, float] | None:
        s = settings.fineweb
        lines = [line for line in text.split("\n") if line.strip()]
        if s.line_punct_thr is not None and len(lines) >= s.line_punct_min_lines:
            ended = sum(
                ends_with_terminal_punctuation(line) or line.rstrip().endswith(tuple(s.line_end_chars))
                for line in lines
            )
            ratio = ended / len(lines)
            if ratio < s.line_punct_thr:
                return "line_punct_ratio", ratio, s.line_punct_thr
        if s.short_line_thr is not None:
            ratio = sum(len(line.strip()) <= s.short_line_length for line in lines) / len(lines)
            if ratio > s.short_line_thr:
                return "short_line_ratio", ratio, s.short_line_thr
        if s.char_duplicates_ratio is not None:
            ratio = duplicates(lines)[1] / max(1, len(text.replace("\n", "")))
            if ratio > s.char_duplicates_ratio:
                return "char_dup_ratio", ratio, s.char_duplicates_ratio
        if s.new_line_ratio is not None:
            ratio = text.count("\n") / max(1, len(split_words(text)))
            if ratio > s.new_line_ratio:
                return "list_ratio", ratio, s.new_line_ratio
        return None
