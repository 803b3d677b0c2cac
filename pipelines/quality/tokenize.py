"""Offline word and sentence splitting for the quality heuristics, in any language.

datatrove's word tokenizers need spaCy, Kiwi or pythainlp (none installed) or nltk's punkt data
(not on disk and not downloadable here), so the heuristics use these regular expressions instead.
Languages written with spaces get one word per run of letters, marks and digits, and one token per
run of punctuation or symbols (the way spaCy's tokens feed datatrove's Gopher rules). Scripts written
without spaces (Han, Hiragana, Katakana, Thai, Lao, Khmer, Myanmar) get one word per character,
whatever the document's language: a character is the unit their per-language thresholds are set in.
"""

from __future__ import annotations

import regex

# Scripts written without spaces between words.
_CONTINUOUS = r"\p{Han}\p{Hiragana}\p{Katakana}\p{Thai}\p{Lao}\p{Khmer}\p{Myanmar}ー"
_TOKEN = regex.compile(
    rf"[{_CONTINUOUS}]"  # one character of a continuous script
    rf"|(?:[[\p{{L}}\p{{M}}\p{{N}}]--[{_CONTINUOUS}]])+(?:['’][[\p{{L}}\p{{M}}\p{{N}}]--[{_CONTINUOUS}]]+)*"
    rf"|[^\s\p{{L}}\p{{M}}\p{{N}}]+",  # a run of punctuation or symbols
    regex.VERSION1,
)
_CONTINUOUS_CHAR = regex.compile(f"[{_CONTINUOUS}]")
_WORD_CHAR = regex.compile(r"[\p{L}\p{M}\p{N}]")

# Sentence ends: datatrove's TERMINAL_PUNCTUATION covers every script; these are the common ones.
TERMINAL_PUNCTUATION = frozenset(".!?。！？．｡؟।॥։።።፧…‼⁇⁈⁉")
CLOSING_QUOTES = frozenset("\"'”’»」』)）")
_SENTENCE_END = regex.compile(r"[.!?。！？．｡؟।॥։።፧…‼⁇⁈⁉]+[\"'”’»」』)）]*(?=\s|$)|[。！？｡]+")

# Languages whose text has no spaces between words; their "words" are characters.
CONTINUOUS_LANGUAGES = frozenset({"zh", "ja", "th", "lo", "km", "my", "wuu", "yue", "bo"})


def split_tokens(text: str) -> list[str]:
    """Words and punctuation runs of ``text``, in order; continuous scripts one character each."""
    return _TOKEN.findall(text)


def split_chunks(text: str) -> list[str]:
    """Whitespace-separated chunks of ``text`` (Gopher's "words" for its symbol and letter ratios);
    a chunk in a continuous script is split into its tokens, one character each."""
    chunks = []
    for chunk in text.split():
        if _CONTINUOUS_CHAR.search(chunk):
            chunks.extend(_TOKEN.findall(chunk))
        else:
            chunks.append(chunk)
    return chunks


def is_word(token: str) -> bool:
    """Whether a token holds a letter, mark or digit (and is not punctuation or symbols only)."""
    return _WORD_CHAR.search(token) is not None


def split_words(text: str) -> list[str]:
    """The words of ``text`` (tokens with a letter, mark or digit), punctuation left out."""
    return [token for token in _TOKEN.findall(text) if _WORD_CHAR.search(token)]


def count_sentences(text: str) -> int:
    """Sentences in ``text``: runs of terminal punctuation, plus an unterminated tail."""
    ends = list(_SENTENCE_END.finditer(text))
    tail = text[ends[-1].end() :] if ends else text
    return len(ends) + (1 if is_word(tail) else 0)


def ends_with_terminal_punctuation(line: str) -> bool:
    """Whether ``line`` ends a sentence: terminal punctuation, optionally followed by closing quotes."""
    stripped = line.rstrip()
    while stripped and stripped[-1] in CLOSING_QUOTES:
        stripped = stripped[:-1]
    return bool(stripped) and stripped[-1] in TERMINAL_PUNCTUATION
