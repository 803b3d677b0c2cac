"""The files of a ``token_shards`` version and the one reader of its shards (docs/tokens.md)::

    index.json                           the stages in training order, tokenizer and stages versions
    stages/<i>-<name>/index.json         dtype, seq_len, shards with their sequences and sha256, counts
    stages/<i>-<name>/tokens-00000.bin   N x (seq_len + 1) token ids, uint16 or uint32
    stages/<i>-<name>/sequences.parquet  per sequence, the document slices in it

pipelines.token_shards writes them; model/ trains from them through ``ShardRows`` and provenance/
reads the index and the sequence maps. The names are spelled here only.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

from records.curriculum import STAGES

FORMAT = "apertus.token-shards/1"
INDEX = "index.json"  # in the version folder and in each stage folder
SEQUENCES = "sequences.parquet"
SHARD_PREFIX, SHARD_SUFFIX = "tokens-", ".bin"
# A version's sequence maps, by their path in the version folder (group 1: the stage folder's name).
SEQUENCES_PATH = re.compile(rf"{STAGES}/([^/]+)/{re.escape(SEQUENCES)}")

FILE_NAMES = (INDEX, SEQUENCES)


def shard_name(number: int) -> str:
    """The file name of a stage's shard ``number`` (0, 1, ...): ``tokens-00000.bin``."""
    return f"{SHARD_PREFIX}{number:05d}{SHARD_SUFFIX}"


def stage_path(stage_folder_name: str) -> str:
    """A stage folder's path relative to the version folder, as the version's index records it."""
    return f"{STAGES}/{stage_folder_name}"


def is_shards_folder(folder: Path | str) -> bool:
    """True when ``folder`` is a token_shards version or one of its stage folders (it has an index)."""
    return (Path(folder) / INDEX).is_file()


def read_index(folder: Path | str) -> dict:
    """The ``index.json`` of a token_shards version folder or of one of its stage folders."""
    return json.loads((Path(folder) / INDEX).read_text(encoding="utf-8"))


def stage_dirs(version: Path | str, index: dict | None = None) -> list[Path]:
    """The stage folders of a token_shards version, in training order (``index``: its index, when
    the caller has read it already)."""
    index = read_index(version) if index is None else index
    return [Path(version) / s["path"] for s in sorted(index["stages"], key=lambda s: s["stage_index"])]


def sequences_file(stage_dir: Path | str) -> Path:
    """The sequence map (``sequences.parquet``) of a stage folder."""
    return Path(stage_dir) / SEQUENCES


class ShardRows:
    """Random access to one stage folder's sequences: ``rows[i]`` is row i (seq_len + 1 token ids,
    in the shard's dtype) over the stage's shards in order, as in ``sequences.parquet``.
    Memory-mapped and read-only; opening costs one memory map per shard, a row one binary search."""

    def __init__(self, stage_dir: Path | str):
        import numpy as np  # here, not at import: the names above are read where numpy is not needed

        self.folder = Path(stage_dir)
        index = read_index(self.folder)
        self.seq_len: int = index["seq_len"]
        self.dtype: str = index["dtype"]
        self.shards = [
            np.memmap(self.folder / s["path"], dtype=self.dtype, mode="r").reshape(-1, self.seq_len + 1)
            for s in index["shards"]
        ]
        self.offsets = np.cumsum([0] + [len(s) for s in self.shards])
        # The shards' sha256 in order, as the stage's index and the version's manifest record them.
        self.digest = hashlib.sha256("\n".join(s["sha256"] for s in index["shards"]).encode()).hexdigest()

    def __len__(self) -> int:
        return int(self.offsets[-1])

    def __getitem__(self, i: int):
        if not 0 <= i < len(self):
            raise IndexError(i)
        k = int(self.offsets.searchsorted(i, side="right")) - 1
        return self.shards[k][i - self.offsets[k]]
