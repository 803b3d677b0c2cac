"""The ``token_shards`` asset: each curriculum stage as shuffled, fixed-length token sequences.

    build_token_shards   curriculum_stages + tokenizer -> token_shards

Per stage (``stages/<i>-<name>.parquet`` of the stages version, ordered by ``position``) the
documents are tokenized in batches and concatenated, each followed by ``<|endoftext|>``. A document
of multiplicity m appears in m passes over the stage (pass k takes the documents with
multiplicity > k, in position order), so its copies lie a whole pass apart instead of side by side.
The token stream is cut into windows of ``seq_len + 1`` tokens that overlap by one (window i starts
at token i * seq_len, as ``model.data.MemmapTokens`` reads a flat stream), so every token but the
first is a target exactly once; the incomplete tail is dropped and counted. The windows are then
permuted with the seed and written as rows of memory-mappable shards::

    stages/<i>-<name>/tokens-00000.bin   N x (seq_len + 1) token ids, uint16 (vocab <= 65536) or uint32
    stages/<i>-<name>/index.json         dtype, seq_len, shards with their sequences and sha256, counts
    stages/<i>-<name>/sequences.parquet  per sequence, the document slices in it (see docs/tokens.md)
    index.json                           the stages in training order, tokenizer and stages versions

Memory: the token stream goes to a scratch file under ``work/`` and shards are gathered from it
by memory map, so tokens in memory are bounded by one shard plus one batch of documents; the stage
table's ids and the stream offsets of every document copy (a few dozen bytes each) stay in memory.
Tokenization runs in this process: ``encode_batch_fast`` already spreads a batch over all cores
(Rayon threads; ``RAYON_NUM_THREADS`` caps them), and one ordered stream per stage keeps the output
a pure function of (stage, tokenizer, seed).
"""

from __future__ import annotations

import shutil
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from pipelines.steps import StepResult, finish_step, new_staging
from pipelines.tokenizer import END_OF_TEXT, DocumentTexts, encode_texts, load_tokenizer, special_id
from records.assets import TOKEN_SHARDS, TOKENIZER
from records.canonical import write_record
from records.curriculum import STAGES
from records.hashing import sha256_file
from records.layout import DataLayout
from records.manifest import MANIFEST, Manifest, load_manifest, version_folder
from records.token_shards import FORMAT, INDEX, SEQUENCES, shard_name, stage_path

STAGE_COLUMNS = ("stage", "stage_index", "position", "doc_id", "sha256", "source_version", "shard", "row",
                 "language", "multiplicity")  # fmt: skip


@dataclass(frozen=True)
class TokenShardConfig:
    """seq_len: the training context (model TrainConfig.seq_len; the tiny recipe's is 128); rows hold
    seq_len + 1 tokens. sequences_per_shard: rows per shard file. batch_documents: texts per
    encode_batch call. seed: the permutation of each stage's sequences."""

    seq_len: int = 128
    sequences_per_shard: int = 65536
    batch_documents: int = 256
    seed: int = 0

    def __post_init__(self):
        if self.seq_len < 1 or self.sequences_per_shard < 1 or self.batch_documents < 1:
            raise ValueError(
                f"TokenShardConfig: seq_len, sequences_per_shard and batch_documents must be >= 1: {self}"
            )


def build_token_shards(
    layout: DataLayout, stages: Manifest | Path, tokenizer: Manifest, *, config: TokenShardConfig
) -> StepResult:
    """Tokenize every stage of a ``curriculum_stages`` version (a Manifest, or a folder holding
    ``stages/*.parquet``) and seal the shards as a ``token_shards`` version. The same stages,
    tokenizer and config give byte-identical files and the same version id."""
    if isinstance(stages, Manifest):
        stages_folder, stages_manifest = version_folder(layout.datasets, stages.ref), stages
    else:
        stages_folder = Path(stages)
        stages_manifest = load_manifest(stages_folder) if (stages_folder / MANIFEST).exists() else None
    stage_files = _stage_files(stages_folder)
    tok = load_tokenizer(version_folder(layout.datasets, tokenizer.ref))
    dtype = np.dtype(np.uint16 if tok.get_vocab_size() <= 1 << 16 else np.uint32)
    staging = new_staging(layout, TOKEN_SHARDS)
    work = layout.work / TOKEN_SHARDS / staging.name
    work.mkdir(parents=True)
    summaries = []
    try:
        for index, path in stage_files:
            out = staging / STAGES / path.stem
            out.mkdir(parents=True)
            stream = _write_stream(layout, path, work / f"{path.stem}.tokens", tok, dtype, config)
            summaries.append(_write_stage(index, path, out, stream, dtype, config))
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    finally:
        shutil.rmtree(work, ignore_errors=True)
    parents = ((stages_manifest.ref,) if stages_manifest else ()) + (tokenizer.ref,)
    write_record(
        staging / INDEX,
        {
            "format": FORMAT,
            "stages_version": stages_manifest.ref if stages_manifest else None,
            TOKENIZER: tokenizer.ref,
            "vocab_size": tok.get_vocab_size(),
            "end_of_text_id": special_id(tok, END_OF_TEXT),
            "dtype": dtype.name,
            "seq_len": config.seq_len,
            "seed": config.seed,
            "stages": summaries,
        },
    )
    return finish_step(
        layout,
        staging,
        asset=TOKEN_SHARDS,
        snapshot=stages_manifest.snapshot if stages_manifest else None,
        parents=parents,
        config=asdict(config),
    )


def _stage_files(folder: Path) -> list[tuple[int, Path]]:
    files = []
    for path in (folder / STAGES).glob("*.parquet"):
        head, _, name = path.stem.partition("-")
        if not head.isdigit() or not name:
            raise ValueError(f"{path}: stage files are named '<stage index>-<stage name>.parquet'")
        files.append((int(head), path))
    if not files:
        raise ValueError(f"{folder / STAGES}: no stage files (<stage index>-<stage name>.parquet)")
    return sorted(files)


@dataclass
class _Stream:
    """A stage's token stream on disk and where each document copy lies in it: [starts, ends)."""

    path: Path
    num_tokens: int
    table: pa.Table  # the stage file, in position order
    rows: np.ndarray  # stage-table row of each copy
    copies: np.ndarray  # pass number of each copy (0 = first)
    starts: np.ndarray
    ends: np.ndarray


def _write_stream(layout: DataLayout, stage_file: Path, path: Path, tok, dtype: np.dtype, config) -> _Stream:
    table = pq.read_table(stage_file)
    missing = [c for c in STAGE_COLUMNS if c not in table.column_names]
    if missing:
        raise ValueError(f"{stage_file}: missing columns {missing} (curriculum stage contract)")
    table = table.sort_by([("position", "ascending")])
    multiplicity = table["multiplicity"].to_numpy(zero_copy_only=False)
    if np.any(multiplicity < 0) or np.any(multiplicity != np.floor(multiplicity)):
        raise ValueError(f"{stage_file}: column multiplicity must hold whole numbers >= 0")
    doc_ids, shards = table["doc_id"].to_pylist(), table["shard"].to_pylist()
    row_numbers, versions = table["row"].to_pylist(), table["source_version"].to_pylist()
    folders = {v: version_folder(layout.datasets, v) for v in set(versions)}
    texts = DocumentTexts()
    eot = np.array([special_id(tok, END_OF_TEXT)], dtype)
    rows, copies, starts, ends = [], [], [], []
    position = 0
    with open(path, "wb") as stream:
        for copy in range(int(multiplicity.max(initial=0))):
            selected = np.flatnonzero(multiplicity > copy)
            for lo in range(0, len(selected), config.batch_documents):
                batch = selected[lo : lo + config.batch_documents].tolist()
                batch_texts = [
                    texts.get(folders[versions[r]], shards[r], row_numbers[r], doc_ids[r]) for r in batch
                ]
                pieces = []
                for r, ids in zip(batch, encode_texts(tok, batch_texts), strict=True):
                    if not ids:  # an empty text adds no tokens and no separator
                        continue
                    rows.append(r)
                    copies.append(copy)
                    starts.append(position)
                    position += len(ids)
                    ends.append(position)
                    position += 1
                    pieces += [np.array(ids, dtype), eot]
                if pieces:
                    np.concatenate(pieces).tofile(stream)
    as_array = lambda xs: np.array(xs, np.int64)  # noqa: E731
    return _Stream(path, position, table, as_array(rows), as_array(copies), as_array(starts), as_array(ends))


def _write_stage(index: int, stage_file: Path, out: Path, stream: _Stream, dtype: np.dtype, config) -> dict:
    seq_len = config.seq_len
    num_sequences = (stream.num_tokens - 1) // seq_len if stream.num_tokens > seq_len else 0
    if num_sequences == 0:
        raise ValueError(
            f"{stage_file}: {stream.num_tokens} tokens, fewer than seq_len + 1 = {seq_len + 1}; "
            "merge the stage or lower TokenShardConfig.seq_len"
        )
    tokens = np.memmap(stream.path, dtype=dtype, mode="r")
    windows = np.lib.stride_tricks.sliding_window_view(tokens, seq_len + 1)[::seq_len]
    order = np.random.default_rng([config.seed, index]).permutation(num_sequences)
    shards = []
    with pq.ParquetWriter(out / SEQUENCES, _MAP_SCHEMA, compression="zstd") as writer:
        for number, lo in enumerate(range(0, num_sequences, config.sequences_per_shard)):
            chosen = order[lo : lo + config.sequences_per_shard]
            name = shard_name(number)
            np.ascontiguousarray(windows[chosen]).tofile(out / name)
            shards.append({"path": name, "num_sequences": len(chosen), "sha256": sha256_file(out / name)})
            writer.write_table(_sequence_map(stream, chosen, lo, seq_len))
    del windows, tokens
    used = stream.ends <= num_sequences * seq_len + 1
    languages = stream.table["language"].take(pa.array(stream.rows)).to_pylist()
    by_language: dict[str, int] = {}
    for language, n in zip(languages, (stream.ends - stream.starts).tolist(), strict=True):
        by_language[language or "unknown"] = by_language.get(language or "unknown", 0) + n
    summary = {
        "stage": stage_file.stem.partition("-")[2],
        "stage_index": index,
        "path": stage_path(out.name),
        "dtype": dtype.name,
        "seq_len": seq_len,
        "num_sequences": num_sequences,
        "sequences_per_shard": config.sequences_per_shard,
        "shards": shards,
        "num_documents": stream.table.num_rows,
        "num_document_copies": len(stream.rows),
        "num_document_copies_whole": int(used.sum()),
        "num_tokens": stream.num_tokens,
        "num_tokens_dropped": stream.num_tokens - (num_sequences * seq_len + 1),
        "document_tokens_by_language": dict(sorted(by_language.items())),
    }
    write_record(out / INDEX, summary)
    return {k: summary[k] for k in ("stage", "stage_index", "path", "num_sequences", "num_tokens")}


_MAP_SCHEMA = pa.schema(
    [
        ("sequence", pa.int64()),  # row of the stage's sequences, over its shards in order
        ("doc_id", pa.string()),
        ("sha256", pa.string()),
        ("source_version", pa.string()),
        ("position", pa.int64()),  # the document's position in the stage file
        ("copy", pa.int32()),  # which of its multiplicity copies (0 = first)
        # sequence[token_start:token_end] are the document's tokens from doc_token_start on
        ("token_start", pa.int32()),
        ("token_end", pa.int32()),
        ("doc_token_start", pa.int64()),
        ("doc_num_tokens", pa.int64()),
    ]
)


def _sequence_map(stream: _Stream, chosen: np.ndarray, first: int, seq_len: int) -> pa.Table:
    """Rows of sequences.parquet for sequences first, first + 1, ... (stream windows ``chosen``)."""
    seq_start = chosen * seq_len
    lo = np.searchsorted(stream.ends, seq_start, side="right")  # first copy ending after the window starts
    hi = np.searchsorted(stream.starts, seq_start + seq_len + 1, side="left")  # first starting after it
    counts = hi - lo
    copy_index = (
        np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts) + np.repeat(lo, counts)
    )
    window = np.repeat(seq_start, counts)
    starts, ends = stream.starts[copy_index], stream.ends[copy_index]
    clipped_start = np.maximum(starts, window)
    docs = stream.table.take(pa.array(stream.rows[copy_index]))
    return pa.table(
        {
            "sequence": np.repeat(np.arange(first, first + len(chosen)), counts),
            "doc_id": docs["doc_id"],
            "sha256": docs["sha256"],
            "source_version": docs["source_version"],
            "position": pc.cast(docs["position"], pa.int64()),
            "copy": stream.copies[copy_index].astype(np.int32),
            "token_start": (clipped_start - window).astype(np.int32),
            "token_end": (np.minimum(ends, window + seq_len + 1) - window).astype(np.int32),
            "doc_token_start": clipped_start - starts,
            "doc_num_tokens": ends - starts,
        },
        schema=_MAP_SCHEMA,
    )


__all__ = [
    "TokenShardConfig",
    "build_token_shards",
]
