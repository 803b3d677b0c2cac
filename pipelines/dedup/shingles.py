"""Text to MinHash signatures: normalization, shingles and band keys, vectorized over a batch.

Shapes: B = documents in a batch, S = shingles of the batch, P = permutations, R = rows per band.

The text is normalized as FineWeb-2 does (datatrove's ``simplify_text``: lower case, digits to 0,
punctuation to spaces, diacritics removed) after folding compatibility forms (NFKD), split into
words (characters for languages written without spaces), and each n-gram of token hashes is folded
into one 64-bit shingle hash with numpy; rensa computes the MinHash of every document of the batch
in one call. Only numpy and Rust touch the shingles, which is where the speed over datatrove's
per-n-gram Python loop comes from.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from itertools import chain

import numpy as np
import regex
from datatrove.utils.text import NUMBERS_PATTERN, PUNCTUATION
from rensa import RMinHash

from pipelines.dedup.config import DedupConfig

_COMBINING_MARKS = regex.compile(r"\p{Mn}+")
# One pass of the stdlib's re (5x faster than regex here, and str.translate with a dict is slower still).
_PUNCTUATION = re.compile("[" + re.escape(PUNCTUATION) + "]")


def normalize(text: str) -> str:
    """The text as shingles see it: the words of datatrove's ``simplify_text`` (defaults), computed
    with regex passes instead of ``str.translate`` and a per-character Python loop, with
    compatibility forms folded (NFKD: full-width ``Ａｂｃ１``, ligatures, ideographic spaces), which
    ``simplify_text`` lacks: without it a page in full-width characters shares no shingle with itself.
    """
    if text.isascii():  # nothing to decompose or fold (most of the web): skip two passes
        return _PUNCTUATION.sub(" ", NUMBERS_PATTERN.sub("0", text.lower()))
    # NFKD folds compatibility forms and decomposes in one pass (diacritics become marks, removed
    # last); lower case and the digit and punctuation passes act the same on decomposed text.
    text = _PUNCTUATION.sub(" ", NUMBERS_PATTERN.sub("0", unicodedata.normalize("NFKD", text).lower()))
    return _COMBINING_MARKS.sub("", text)


def tokens(text: str, language: str | None, config: DedupConfig) -> list[str]:
    """Words of the normalized text, or its non-space characters for ``no_space_languages``."""
    normalized = normalize(text)
    if language in config.no_space_languages:
        return list("".join(normalized.split()))
    return normalized.split()


def _splitmix64(z: np.ndarray) -> np.ndarray:
    # A bijective avalanche on uint64 (Steele et al.): folding n token hashes through it keeps order.
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


def shingle_hashes(token_lists: list[list[str]], ngram_sizes: list[int]) -> tuple[np.ndarray, np.ndarray]:
    """Hashes of each document's token n-grams, flat, and the row offsets (B + 1) into them.

    A document with fewer tokens than its n is one shingle (its tokens padded with zeros), so short
    copies still match; a document without tokens has no shingles (an empty row).
    """
    lengths = np.fromiter((len(t) for t in token_lists), dtype=np.int64, count=len(token_lists))
    flat = np.array(RMinHash.hash_token_sets([list(chain.from_iterable(token_lists))])[0], dtype=np.uint64)
    n_b = np.asarray(ngram_sizes, dtype=np.int64)
    max_n = int(n_b.max()) if len(n_b) else 1
    # Lay each document out followed by max_n - 1 zeros, so no window crosses into the next one.
    starts_b = np.concatenate([[0], np.cumsum(lengths + max_n - 1)[:-1]]).astype(np.int64)
    padded = np.zeros(int(lengths.sum() + len(lengths) * (max_n - 1)) + max_n, dtype=np.uint64)
    padded[np.repeat(starts_b, lengths) + _ranks_within(lengths)] = flat
    counts_b = np.where(lengths > 0, np.maximum(lengths - n_b + 1, 1), 0)
    window_s = np.repeat(starts_b, counts_b) + _ranks_within(counts_b)
    n_s = np.repeat(n_b, counts_b)
    folded_s = np.empty(len(window_s), dtype=np.uint64)
    sizes = np.unique(n_b).tolist()
    for n in sizes:
        # A shingle folds exactly its own n tokens, whatever else the batch holds; grouped by n, a
        # batch with 5-character shingles (CJK) no longer folds its 3-word shingles 5 times.
        chosen_s = np.flatnonzero(n_s == n) if len(sizes) > 1 else slice(None)
        w_s = window_s[chosen_s]
        folded = padded[w_s]
        for k in range(1, n):
            folded = _splitmix64(folded) ^ padded[w_s + k]
        folded_s[chosen_s] = folded
    offsets = np.concatenate([[0], np.cumsum(counts_b)]).astype(np.uint64)
    return _splitmix64(folded_s), offsets


def _ranks_within(counts: np.ndarray) -> np.ndarray:
    """0..c-1 for each count c, concatenated."""
    total = int(counts.sum())
    return np.arange(total, dtype=np.int64) - np.repeat(np.cumsum(counts) - counts, counts)


def signatures(
    texts: list[str], languages: list[str | None], config: DedupConfig
) -> tuple[np.ndarray, np.ndarray]:
    """MinHash signatures (B, P) uint32 of a batch, and whether each document had any shingle.
    A document's signature depends on its text, language and ``config`` only, not on the batch."""
    if not texts:
        return np.zeros((0, config.num_perm), dtype=np.uint32), np.zeros(0, dtype=bool)
    token_lists = [tokens(text, lang, config) for text, lang in zip(texts, languages, strict=True)]
    sizes = [
        config.char_n_grams if lang in config.no_space_languages else config.n_grams for lang in languages
    ]
    hashes_s, offsets = shingle_hashes(token_lists, sizes)
    has_shingles_b = offsets[1:] > offsets[:-1]
    matrix = RMinHash.digest_matrix_from_flat_token_hashes(hashes_s, offsets, config.num_perm, config.seed)
    return np.asarray(matrix.to_rows(), dtype=np.uint32).reshape(len(texts), config.num_perm), has_shingles_b


def band_keys(sig_bp: np.ndarray, config: DedupConfig) -> np.ndarray:
    """(B, bands) uint64: one key per band, equal when all its R rows are equal (up to 2**-64)."""
    rows_bnr = sig_bp.reshape(len(sig_bp), config.num_bands, config.rows_per_band).astype(np.uint64)
    key = np.zeros(rows_bnr.shape[:2], dtype=np.uint64)
    for r in range(config.rows_per_band):
        key = _splitmix64(key ^ rows_bnr[:, :, r])
    return key


def id_hash(doc_id: str) -> int:
    """A 64-bit hash of a document id: orders the members of a bucket the same for any task split."""
    return int.from_bytes(hashlib.blake2b(doc_id.encode("utf-8"), digest_size=8).digest(), "little")


def sha256_key(sha256_hex: str) -> int:
    """The first 64 bits of a text's sha256: the bucket key of exact deduplication."""
    return int(sha256_hex[:16], 16)
