"""The sampling math of a curriculum stage, on plain arrays (docs/curriculum.md derives it).

    language_targets        tokens per language -> target tokens per language (temperature T)
    integer_multiplicities  documents' tokens and weights, a target -> copies of each document
    stage_order             a seeded permutation of a stage's document copies

Which documents get a rounding copy depends only on the documents and the stage, never on the
curriculum's seed: a different seed reorders a stage, it does not change what is in it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence

import numpy as np


def temperature_shares(tokens: Mapping[str, float], temperature: float) -> dict[str, float]:
    """p_l = n_l ** (1/T) / sum_k n_k ** (1/T): T = 1 keeps the natural shares, larger T flattens
    them towards uniform (upsampling low-resource languages), T -> 0 concentrates on the largest."""
    assert temperature > 0
    present = {language: n for language, n in tokens.items() if n > 0}
    if not present:
        return {}
    # In log space: n ** (1/T) overflows for trillions of tokens and small T.
    logs = {language: np.log(n) / temperature for language, n in present.items()}
    top = max(logs.values())
    raw = {language: float(np.exp(v - top)) for language, v in logs.items()}
    total = sum(raw.values())
    return {language: raw[language] / total for language in sorted(raw)}


def language_targets(tokens: Mapping[str, float], budget: float, temperature: float) -> dict[str, float]:
    """Target tokens per language: ``budget`` split by ``temperature_shares``."""
    return {language: budget * p for language, p in temperature_shares(tokens, temperature).items()}


def priority(key: str, salt: str) -> float:
    """A uniform number in (0, 1) fixed by ``key`` and ``salt`` (sha256), the same on every machine."""
    value = int.from_bytes(hashlib.sha256(f"{salt}\0{key}".encode()).digest()[:8], "big")
    return (value + 0.5) / 2**64


def integer_multiplicities(
    tokens: Sequence[int], weights: Sequence[float], keys: Sequence[str], target: float, salt: str
) -> np.ndarray:
    """Copies of each document so that sum(copies * tokens) is as close to ``target`` as whole
    documents allow, and each document's expected copies are proportional to its weight.

    Every document gets ``floor(r * w)`` copies, with ``r = target / sum(w * t)``; the tokens still
    missing are filled with one more copy of documents taken in weighted random order (key
    ``u ** (1 / frac)``, Efraimidis-Spirakis, with ``u = priority(key, salt)``), each taken only if
    it brings the total closer to the target, then single moves (one copy out, one in, or one for
    another) while they help. Each count is the floor or the ceiling of its expectation; the error is at most half
    the smallest document left out.
    """
    t = np.asarray(tokens, dtype=np.float64)
    w = np.asarray(weights, dtype=np.float64)
    effective = float((t * w).sum())
    if target <= 0 or effective <= 0:
        return np.zeros(len(t), dtype=np.int64)
    wanted = target / effective * w
    copies = np.floor(wanted).astype(np.int64)
    fraction = wanted - copies
    missing = target - float((copies * t).sum())
    candidates = [n for n in range(len(t)) if fraction[n] > 0]
    order = sorted(candidates, key=lambda n: (-np.log(priority(keys[n], salt)) / fraction[n], keys[n]))
    taken = np.zeros(len(t), dtype=bool)
    filled = 0.0
    for n in order:
        if filled + t[n] / 2 < missing:
            taken[n] = True
            filled += t[n]
    _refine(t, taken, candidates, missing - filled)
    return copies + taken


def _refine(t: np.ndarray, taken: np.ndarray, candidates: list[int], error: float, rounds: int = 8) -> None:
    """While it brings the total closer to the target (``error`` = tokens still missing, negative when
    over), drop one taken candidate, add one left out, or swap one for the other. In place; O(n log n)
    per round."""
    for _ in range(rounds):
        out = [n for n in candidates if not taken[n]]
        inside = [n for n in candidates if taken[n]]
        best = (abs(error), None, None)
        for a in inside:  # a drop alone: when every candidate is taken there is nothing to swap in
            if abs(error + t[a]) < best[0] - 1e-9:
                best = (abs(error + t[a]), a, None)
        for b in out:
            if abs(error - t[b]) < best[0] - 1e-9:
                best = (abs(error - t[b]), None, b)
        out_tokens = t[out]
        order = np.argsort(out_tokens, kind="stable")
        sorted_tokens = out_tokens[order]
        for a in inside:
            want = error + t[a]  # the left-out document that would cancel the error after dropping a
            k = int(np.searchsorted(sorted_tokens, want))
            for j in (k - 1, k):
                if 0 <= j < len(out):
                    gap = abs(want - sorted_tokens[j])
                    if gap < best[0] - 1e-9:
                        best = (gap, a, out[order[j]])
        _, a, b = best
        if a is None and b is None:
            return
        _apply(taken, a, b)
        error += (t[a] if a is not None else 0) - (t[b] if b is not None else 0)


def _apply(taken: np.ndarray, drop: int | None, add: int | None) -> None:
    if drop is not None:
        taken[drop] = False
    if add is not None:
        taken[add] = True


def stage_order(num_items: int, seed: int, stage_index: int) -> np.ndarray:
    """A permutation of ``range(num_items)`` fixed by the curriculum seed and the stage."""
    return np.random.Generator(np.random.PCG64([seed, stage_index])).permutation(num_items)
