"""Confirmation of candidate near pairs from their MinHash signatures: Jaccard and containment.

Shapes: E = candidate pairs, P = permutations.

For one permutation, let ``u`` be the shingle of ``A | B`` with the smallest permuted hash. The two
signatures agree when ``u`` is in both sets, and the smaller value is ``A``'s when ``u`` is only in
``A``. Over P permutations the three fractions estimate ``|A & B|``, ``|A - B|`` and ``|B - A|``
over ``|A | B|``, so one signature comparison gives both the Jaccard ``|A & B| / |A | B|`` and the
containment of the smaller set in the other, ``|A & B| / min(|A|, |B|)``, without the shingles
(standard error about ``sqrt(x (1 - x) / P)`` each). Containment is what recognises a page with a
truncated tail or with a site's header, cookie banner and footer added: their Jaccard with the
original falls with the size of the cut or the boilerplate, their containment stays near 1.
"""

from __future__ import annotations

import numpy as np

from pipelines.dedup.config import DedupConfig

EDGE_CHUNK = 1 << 16  # pairs per comparison: bounds memory at 2 x EDGE_CHUNK x P x 4 bytes


def similarity(sig_a_ep: np.ndarray, sig_b_ep: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(E,) estimated Jaccard and (E,) estimated containment of the smaller set in the larger."""
    agree_e = (sig_a_ep == sig_b_ep).mean(axis=1)
    only_smaller_e = np.minimum((sig_a_ep < sig_b_ep).mean(axis=1), (sig_a_ep > sig_b_ep).mean(axis=1))
    containment_e = np.divide(
        agree_e, agree_e + only_smaller_e, out=np.zeros_like(agree_e), where=agree_e > 0
    )
    return agree_e, containment_e


def confirm(gather, a_e: np.ndarray, b_e: np.ndarray, config: DedupConfig) -> np.ndarray:
    """(E,) bool: the pairs whose estimated Jaccard is at least ``min_jaccard`` or whose estimated
    containment is at least ``min_containment``. ``gather`` maps (n,) nodes to their (n, P)
    signatures. Cost: O(E x P), in chunks of ``EDGE_CHUNK`` pairs."""
    out = np.zeros(len(a_e), dtype=bool)
    for start in range(0, len(a_e), EDGE_CHUNK):
        a, b = a_e[start : start + EDGE_CHUNK], b_e[start : start + EDGE_CHUNK]
        jaccard_e, containment_e = similarity(gather(a), gather(b))
        out[start : start + len(a)] = (jaccard_e >= config.min_jaccard) | (
            containment_e >= config.min_containment
        )
    return out
