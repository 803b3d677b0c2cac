"""Where training sequences come from: the TokenSource interface, a flat memmap and token_shards stages.

A TokenSource is random access over fixed-length training sequences: item i is a LongTensor of T + 1
token ids (inputs are [:-1], targets [1:]). The batch order is a pure function of (seed, step), so the
data-loader position is the step alone and resuming needs nothing else.
"""

import hashlib
from abc import ABC, abstractmethod
from pathlib import Path

import numpy as np
import torch

from records.token_shards import ShardRows

__all__ = ["TokenSource", "MemmapTokens", "TokenShards", "batch_indices", "write_markov_tokens"]


class TokenSource(ABC):
    """Random-access fixed-length sequences: len(source) of them, each a LongTensor (seq_len + 1,)."""

    seq_len: int

    @abstractmethod
    def __len__(self) -> int: ...

    @abstractmethod
    def __getitem__(self, i: int) -> torch.Tensor: ...

    @abstractmethod
    def fingerprint(self) -> str:
        """A deterministic string identifying the ordered contents of the source (for provenance)."""


class MemmapTokens(TokenSource):
    """A flat file of uint16 or uint32 token ids, cut into consecutive windows of seq_len + 1 tokens
    that overlap by one token, so every token but the first is a target exactly once."""

    def __init__(self, path: str | Path, seq_len: int, dtype: str = "uint16"):
        if dtype not in ("uint16", "uint32"):
            raise ValueError(f"MemmapTokens({path}): dtype {dtype!r}; use 'uint16' or 'uint32'")
        self.path = Path(path)
        self.seq_len = seq_len
        self.tokens = np.memmap(self.path, dtype=dtype, mode="r")
        if len(self.tokens) < seq_len + 1:
            raise ValueError(f"MemmapTokens({path}): {len(self.tokens)} tokens, fewer than seq_len + 1")

    def __len__(self) -> int:
        return (len(self.tokens) - 1) // self.seq_len

    def __getitem__(self, i: int) -> torch.Tensor:
        if not 0 <= i < len(self):
            raise IndexError(i)
        start = i * self.seq_len
        return torch.from_numpy(self.tokens[start : start + self.seq_len + 1].astype(np.int64))

    def fingerprint(self) -> str:
        h = hashlib.sha256()
        with open(self.path, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
        return f"memmap:{self.tokens.dtype}:{self.seq_len}:{h.hexdigest()}"


class TokenShards(TokenSource):
    """One stage of a token_shards version (records/token_shards.py, docs/tokens.md): the rows of its
    shards in order, each seq_len + 1 token ids, as int64 tensors. The rows are already shuffled,
    independent windows, so unlike MemmapTokens they do not share tokens with their neighbours."""

    def __init__(self, stage_dir: str | Path):
        self.rows = ShardRows(stage_dir)
        self.folder, self.seq_len, self.dtype = self.rows.folder, self.rows.seq_len, self.rows.dtype

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int) -> torch.Tensor:
        return torch.from_numpy(self.rows[i].astype(np.int64))

    def fingerprint(self) -> str:
        return f"token-shards:{self.dtype}:{self.seq_len}:{self.rows.digest}"


def batch_indices(num_samples: int, step: int, global_batch: int, seed: int) -> torch.Tensor:
    """The sample indices of optimizer step `step`: global_batch consecutive positions of the stream formed
    by one seeded permutation of all samples per epoch. Rank r of a data-parallel world of size dp, in
    micro-step a, takes the slice [(a * dp + r) * micro : + micro]."""
    positions = torch.arange(step * global_batch, (step + 1) * global_batch)
    epochs, offsets = positions // num_samples, positions % num_samples
    out = torch.empty(global_batch, dtype=torch.int64)
    for epoch in epochs.unique().tolist():
        perm = torch.randperm(num_samples, generator=torch.Generator().manual_seed(seed * 100_003 + epoch))
        sel = epochs == epoch
        out[sel] = perm[offsets[sel]]
    return out


def write_markov_tokens(
    path: str | Path,
    num_tokens: int,
    *,
    num_states: int = 256,
    branching: int = 4,
    seed: int = 0,
    dtype: str = "uint16",
) -> float:
    """Write a learnable synthetic corpus: a random first-order Markov chain over token ids
    0 .. num_states - 1, each state with `branching` equally likely successors.

    Returns the entropy rate in nats/token (log(branching)): the loss a perfect model reaches.
    """
    rng = np.random.default_rng(seed)
    successors = rng.integers(0, num_states, size=(num_states, branching))
    choices = rng.integers(0, branching, size=num_tokens)
    out = np.empty(num_tokens, dtype=np.int64)
    state = int(rng.integers(num_states))
    for t in range(num_tokens):
        out[t] = state
        state = int(successors[state, choices[t]])
    np.asarray(out, dtype=dtype).tofile(path)
    return float(np.log(branching))
