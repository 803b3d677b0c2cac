"""The ``tokenizer`` asset: a byte-level BPE vocabulary trained on a language-balanced sample.

    train_tokenizer   deduplicated (or quality_scored) -> tokenizer   (tokenizer.json, fertility.json,
                                                                       training_sample.json)

The tokenizer has no normalizer: text is already in canonical form (``pipelines.normalize``), and
any normalization here would break the promise ``decode(encode(text)) == text`` for every string.
A Unicode-aware split (letters, digits of up to three, punctuation runs, whitespace) comes first,
then the byte-level mapping, so every byte sequence has an encoding and no text is ever unknown.
``<|endoftext|>`` (the document separator) and ``<|pad|>`` are ids 0 and 1; a document that
contains their spelling gets ordinary tokens for it (``encode_special_tokens``), so no text can
forge a document boundary.

The training sample takes each language's documents in a seeded order, holds out a fraction for
measuring fertility, and gives each language at most ``max_chars_per_language`` characters, so the
largest languages do not own the vocabulary. The Rust trainer is deterministic for a given input
order (checked across processes and thread counts), so the same input and seed give a
byte-identical ``tokenizer.json`` and the same version id.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict, defaultdict
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import pyarrow.parquet as pq
from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers

from pipelines.steps import StepResult, finish_step, new_staging
from records.assets import TOKENIZER
from records.canonical import write_record
from records.documents import INDEX
from records.layout import DataLayout
from records.manifest import Manifest, version_folder
from records.tokenizer import FERTILITY, TOKENIZER_FILE, TRAINING_SAMPLE

END_OF_TEXT = "<|endoftext|>"
PAD = "<|pad|>"
SPECIAL_TOKENS = (END_OF_TEXT, PAD)  # ids 0 and 1, in this order
# GPT-4's split, which Llama 3 also uses: \p{L} and \p{N} make it Unicode-aware; letter runs
# take one leading non-letter (a space, an apostrophe); digits go in groups of at most three.
SPLIT_PATTERN = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}"
    r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)
UNKNOWN_LANGUAGE = "unknown"


@dataclass(frozen=True)
class TokenizerConfig:
    """vocab_size: including the 256 byte tokens and the two special tokens (8192 = tiny recipe).

    max_chars_per_language: the training sample's character budget per language.
    held_out_fraction: share of each language's documents kept out of training for fertility.
    min_frequency: a pair must occur this often to be merged.
    """

    vocab_size: int = 8192
    max_chars_per_language: int = 2_000_000
    held_out_fraction: float = 0.1
    min_frequency: int = 2
    seed: int = 0

    def __post_init__(self):
        if self.vocab_size < 256 + len(SPECIAL_TOKENS):
            raise ValueError(f"TokenizerConfig.vocab_size={self.vocab_size}; needs >= 258 (bytes + specials)")
        if not 0 <= self.held_out_fraction < 1:
            raise ValueError(f"TokenizerConfig.held_out_fraction={self.held_out_fraction}; use 0 <= f < 1")
        if self.max_chars_per_language <= 0:
            raise ValueError(
                f"TokenizerConfig.max_chars_per_language={self.max_chars_per_language}; must be > 0"
            )


def train_on_texts(texts: list[str], config: TokenizerConfig) -> Tokenizer:
    """A byte-level BPE tokenizer trained on ``texts`` in the given order (the order is part of the input)."""
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(SPLIT_PATTERN), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=config.vocab_size,
        min_frequency=config.min_frequency,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(texts, trainer, length=len(texts))
    tokenizer.encode_special_tokens = True
    return tokenizer


def load_tokenizer(path: Path | str) -> Tokenizer:
    """The tokenizer of a ``tokenizer`` version folder (or a ``tokenizer.json`` path), ready to encode
    document text: special-token spellings in text are encoded as text."""
    path = Path(path)
    if path.is_dir():
        path = path / TOKENIZER_FILE
    if not path.is_file():
        raise FileNotFoundError(
            f"{path}: no tokenizer.json (train one with pipelines.tokenizer.train_tokenizer)"
        )
    tokenizer = Tokenizer.from_file(str(path))
    tokenizer.encode_special_tokens = True
    return tokenizer


def special_id(tokenizer: Tokenizer, token: str) -> int:
    """The id of a special token; ValueError when the tokenizer lacks it."""
    token_id = tokenizer.token_to_id(token)
    if token_id is None:
        raise ValueError(f"tokenizer has no {token!r} token (was it trained by pipelines.tokenizer?)")
    return token_id


def encode_texts(tokenizer: Tokenizer, texts: list[str]) -> list[list[int]]:
    """Token ids of each text, without special tokens (one batched, multithreaded call)."""
    return [e.ids for e in tokenizer.encode_batch_fast(texts, add_special_tokens=False)]


class DocumentTexts:
    """Texts of documents by (version folder, shard, row), one Parquet shard read at a time.

    Keeps the ``cache_shards`` most recently read shards, so memory is bounded by a few shards.
    """

    def __init__(self, cache_shards: int = 4):
        self.cache_shards = cache_shards
        self._cache: OrderedDict[tuple[Path, str], tuple[list[str], list[str]]] = OrderedDict()

    def get(self, folder: Path, shard: str, row: int, doc_id: str) -> str:
        """The text of ``doc_id``, at ``row`` of ``folder/shard``; ValueError when another document is there."""
        key = (folder, shard)
        if key not in self._cache:
            table = pq.read_table(folder / shard, columns=["id", "text"])
            self._cache[key] = (table["id"].to_pylist(), table["text"].to_pylist())
            if len(self._cache) > self.cache_shards:
                self._cache.popitem(last=False)
        self._cache.move_to_end(key)
        ids, texts = self._cache[key]
        if row >= len(ids) or ids[row] != doc_id:
            found = ids[row] if row < len(ids) else f"only {len(ids)} rows"
            raise ValueError(f"{folder / shard} row {row}: expected document {doc_id!r}, found {found!r}")
        return texts[row]


def _rank(seed: int, doc_id: str) -> str:
    return hashlib.sha256(f"{seed}\0{doc_id}".encode()).hexdigest()


def select_sample(index_rows: list[dict], config: TokenizerConfig) -> tuple[list[dict], list[dict]]:
    """Split a document index into (training, held-out) rows, language-balanced and seeded.

    Per language, documents in sha256(seed, doc_id) order: the first ones are held out, as many as
    ``held_out_fraction`` of the documents but stopping once they hold that fraction of
    ``max_chars_per_language`` characters (at least one when the language has two or more); then
    training documents are taken whole until the language's characters reach
    ``max_chars_per_language``. Memory and time are thus bounded by languages x budget, not by corpus. Training rows come sorted by
    language, then in that order; that is the order the trainer sees.
    """
    by_language: dict[str, list[dict]] = defaultdict(list)
    for row in index_rows:
        by_language[row["language"] or UNKNOWN_LANGUAGE].append(row)
    training, held_out = [], []
    for language in sorted(by_language):
        rows = sorted(by_language[language], key=lambda r: _rank(config.seed, r["doc_id"]))
        num_held, held_chars = 0, 0
        if len(rows) >= 2 and config.held_out_fraction:
            most = max(1, round(config.held_out_fraction * len(rows)))
            # At most that share of the documents, and about that share of the character budget.
            while num_held < most and (
                num_held == 0 or held_chars < config.held_out_fraction * config.max_chars_per_language
            ):
                held_chars += rows[num_held]["num_chars"]
                num_held += 1
        held_out += rows[:num_held]
        budget = config.max_chars_per_language
        for row in rows[num_held:]:
            if budget <= 0:
                break
            training.append(row)
            budget -= row["num_chars"]
    return training, held_out


def fertility(tokenizer: Tokenizer, texts_by_language: dict[str, list[str]]) -> dict[str, dict]:
    """Per language: documents, characters, UTF-8 bytes, whitespace words, tokens, tokens per
    character and per word, and whether every text decodes back exactly.

    Whitespace words are meaningless for Chinese and Japanese; read their tokens per character.
    """
    out = {}
    for language in sorted(texts_by_language):
        texts = texts_by_language[language]
        ids = encode_texts(tokenizer, texts)
        chars = sum(len(t) for t in texts)
        words = sum(len(t.split()) for t in texts)
        tokens = sum(len(i) for i in ids)
        decoded = tokenizer.decode_batch(ids, skip_special_tokens=False)
        out[language] = {
            "documents": len(texts),
            "characters": chars,
            "bytes": sum(len(t.encode("utf-8")) for t in texts),
            "words": words,
            "tokens": tokens,
            "tokens_per_character": round(tokens / max(chars, 1), 6),
            "tokens_per_word": round(tokens / max(words, 1), 6),
            "round_trip_exact": decoded == texts,
        }
    return out


def _read_texts(rows: list[dict]) -> list[str]:
    texts = DocumentTexts(cache_shards=1)
    # Shard order for reading, caller's order for the result: each shard is read once.
    order = sorted(range(len(rows)), key=lambda k: (rows[k]["folder"], rows[k]["shard"], rows[k]["row"]))
    out: list[str] = [""] * len(rows)
    for k in order:
        out[k] = texts.get(rows[k]["folder"], rows[k]["shard"], rows[k]["row"], rows[k]["doc_id"])
    return out


def train_tokenizer(
    layout: DataLayout, sources: Manifest | Sequence[Manifest], *, config: TokenizerConfig
) -> StepResult:
    """Train the tokenizer on a language-balanced sample of ``sources`` (one deduplicated version per
    snapshot) and seal it as a ``tokenizer`` version: ``tokenizer.json``, ``fertility.json`` (per
    language, on held-out documents; languages with a single document are measured on it, marked
    ``"held_out": false``) and ``training_sample.json`` (every training and held-out document by id
    and sha256, and the characters per language). Same sources, config and code: same bytes, same
    version id.
    """
    sources = [sources] if isinstance(sources, Manifest) else sorted(sources, key=lambda m: m.ref)
    columns = ["doc_id", "sha256", "language", "num_chars", "shard", "row"]
    index_rows = []
    for source in sources:
        folder = version_folder(layout.datasets, source.ref)
        rows = pq.read_table(folder / INDEX, columns=columns).to_pylist()
        index_rows += [{**row, "folder": folder} for row in rows]
    if not index_rows:
        raise ValueError(f"{', '.join(s.ref for s in sources)}: no documents to train a tokenizer on")
    training, held_out = select_sample(index_rows, config)
    texts = _read_texts(training)
    tokenizer = train_on_texts(texts, config)

    measured_on: dict[str, list[str]] = defaultdict(list)
    for row, text in zip(held_out, _read_texts(held_out), strict=True):
        measured_on[row["language"] or UNKNOWN_LANGUAGE].append(text)
    held_languages = set(measured_on)
    for row, text in zip(training, texts, strict=True):
        language = row["language"] or UNKNOWN_LANGUAGE
        if language not in held_languages:
            measured_on[language].append(text)
    per_language = {
        language: {**stats, "held_out": language in held_languages}
        for language, stats in fertility(tokenizer, measured_on).items()
    }

    staging = new_staging(layout, TOKENIZER)
    tokenizer.save(str(staging / TOKENIZER_FILE))
    write_record(staging / FERTILITY, {"vocab_size": tokenizer.get_vocab_size(), "languages": per_language})
    write_record(staging / TRAINING_SAMPLE, _sample_record(sources, config, training, held_out))
    snapshots = {s.snapshot for s in sources}
    return finish_step(
        layout,
        staging,
        asset=TOKENIZER,
        snapshot=snapshots.pop() if len(snapshots) == 1 else None,
        parents=tuple(s.ref for s in sources),
        config=asdict(config),
    )


def _sample_record(
    sources: list[Manifest], config: TokenizerConfig, training: list[dict], held_out: list[dict]
) -> dict:
    characters: dict[str, dict[str, int]] = defaultdict(lambda: {"documents": 0, "characters": 0})
    for row in training:
        entry = characters[row["language"] or UNKNOWN_LANGUAGE]
        entry["documents"] += 1
        entry["characters"] += row["num_chars"]
    return {
        "sources": [s.ref for s in sources],
        "config": asdict(config),
        "training_by_language": dict(sorted(characters.items())),
        "training": [
            {"doc_id": r["doc_id"], "sha256": r["sha256"], "language": r["language"]} for r in training
        ],
        "held_out": [
            {"doc_id": r["doc_id"], "sha256": r["sha256"], "language": r["language"]} for r in held_out
        ],
    }


__all__ = [
    "END_OF_TEXT",
    "PAD",
    "SPECIAL_TOKENS",
    "TOKENIZER",
    "DocumentTexts",
    "TokenizerConfig",
    "encode_texts",
    "fertility",
    "load_tokenizer",
    "select_sample",
    "special_id",
    "train_on_texts",
    "train_tokenizer",
]
