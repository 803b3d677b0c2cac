"""Merkle trees as defined in RFC 6962 section 2.1 (Certificate Transparency).

The tree hash of a list of leaves D[0:n] is
    MTH({})      = SHA-256()
    MTH({d0})    = SHA-256(0x00 || d0)                       (leaf_hash)
    MTH(D[0:n])  = SHA-256(0x01 || MTH(D[0:k]) || MTH(D[k:n])) (node_hash)
with k the largest power of two smaller than n. The 0x00/0x01 prefixes keep a leaf from ever
being mistaken for an inner node (second-preimage resistance).

Proof generation follows RFC 6962 section 2.1.1 (PATH) and 2.1.2 (PROOF); verification follows
the iterative algorithms of RFC 9162 sections 2.1.3.2 and 2.1.4.2, so a verifier needs nothing
but SHA-256. Proof functions work on a sequence of *leaf hashes* (32-byte values from
`leaf_hash`), so callers with cached hashes never re-hash leaf data; each proof costs O(n) hashes
at most (every sibling subtree is hashed once), O(log n) of memory besides the input.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

HASH_SIZE = 32
EMPTY_ROOT = hashlib.sha256(b"").digest()


def leaf_hash(data: bytes) -> bytes:
    """Return SHA-256(0x00 || data), the RFC 6962 hash of one leaf's data."""
    return hashlib.sha256(b"\x00" + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """Return SHA-256(0x01 || left || right), the RFC 6962 hash of an inner node."""
    return hashlib.sha256(b"\x01" + left + right).digest()


def root_from_leaf_hashes(hashes: Sequence[bytes], lo: int = 0, hi: int | None = None) -> bytes:
    """Return MTH of the leaves whose hashes are hashes[lo:hi]; SHA-256(b"") when the range is empty.

    Builds the tree bottom-up, pairing left to right and carrying an odd last node up unchanged,
    which yields exactly the RFC 6962 split at the largest power of two. O(hi - lo) hashes.
    """
    hi = len(hashes) if hi is None else hi
    if hi <= lo:
        return EMPTY_ROOT
    level = list(hashes[lo:hi])
    while len(level) > 1:
        paired = [node_hash(level[i], level[i + 1]) for i in range(0, len(level) - 1, 2)]
        if len(level) % 2:
            paired.append(level[-1])
        level = paired
    return level[0]


def merkle_root(leaves: Sequence[bytes]) -> bytes:
    """Return the RFC 6962 Merkle tree hash over raw leaf data; SHA-256(b"") for no leaves."""
    return root_from_leaf_hashes([leaf_hash(d) for d in leaves])


def _split(n: int) -> int:
    """Largest power of two strictly smaller than n (n >= 2)."""
    return 1 << ((n - 1).bit_length() - 1)


def inclusion_proof(leaf_hashes: Sequence[bytes], index: int, tree_size: int | None = None) -> list[bytes]:
    """Return the RFC 6962 audit path for leaf `index` in the tree of the first `tree_size` leaves.

    `leaf_hashes` are leaf hashes (not raw data); tree_size defaults to all of them. The path
    lists sibling subtree hashes from the leaf upwards, as `verify_inclusion` expects.
    Raises ValueError when index or tree_size is out of range.
    """
    n = len(leaf_hashes) if tree_size is None else tree_size
    if not 0 < n <= len(leaf_hashes):
        raise ValueError(f"tree_size {n} must be between 1 and the number of leaves {len(leaf_hashes)}")
    if not 0 <= index < n:
        raise ValueError(f"leaf index {index} outside a tree of size {n}")
    path: list[bytes] = []
    lo, hi, m = 0, n, index
    # Walk down from the root (RFC 6962 PATH); siblings are collected top-down, returned bottom-up.
    while hi - lo > 1:
        k = _split(hi - lo)
        if m < k:
            path.append(root_from_leaf_hashes(leaf_hashes, lo + k, hi))
            hi = lo + k
        else:
            path.append(root_from_leaf_hashes(leaf_hashes, lo, lo + k))
            lo, m = lo + k, m - k
    path.reverse()
    return path


def consistency_proof(
    leaf_hashes: Sequence[bytes], old_size: int, new_size: int | None = None
) -> list[bytes]:
    """Return the RFC 6962 consistency proof that the tree of `old_size` leaves is a prefix of `new_size`.

    new_size defaults to len(leaf_hashes). The proof is empty when old_size is 0 or equals
    new_size (both trivially consistent). Raises ValueError when 0 <= old_size <= new_size <=
    len(leaf_hashes) does not hold.
    """
    n = len(leaf_hashes) if new_size is None else new_size
    if not 0 <= old_size <= n <= len(leaf_hashes):
        raise ValueError(
            f"need 0 <= old_size ({old_size}) <= new_size ({n}) <= number of leaves ({len(leaf_hashes)})"
        )
    if old_size == 0 or old_size == n:
        return []
    proof: list[bytes] = []
    lo, hi, m, whole_old_tree = 0, n, old_size, True
    # RFC 6962 SUBPROOF, unrolled: descend until the old tree's boundary is a subtree boundary.
    while m != hi - lo:
        k = _split(hi - lo)
        if m <= k:
            proof.append(root_from_leaf_hashes(leaf_hashes, lo + k, hi))
            hi = lo + k
        else:
            proof.append(root_from_leaf_hashes(leaf_hashes, lo, lo + k))
            lo, m, whole_old_tree = lo + k, m - k, False
    if not whole_old_tree:
        proof.append(root_from_leaf_hashes(leaf_hashes, lo, hi))
    proof.reverse()
    return proof


def verify_inclusion(leaf: bytes, index: int, tree_size: int, proof: Sequence[bytes], root: bytes) -> bool:
    """Return True iff `proof` shows that leaf hash `leaf` sits at `index` in the tree with `root`.

    RFC 9162 section 2.1.3.2. `leaf` is the leaf *hash* (see `leaf_hash`). Never raises on bad
    input: any malformed proof simply fails.
    """
    if not 0 <= index < tree_size or any(len(p) != HASH_SIZE for p in proof):
        return False
    fn, sn, r = index, tree_size - 1, leaf
    for p in proof:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            if not fn & 1:
                while fn and not fn & 1:
                    fn, sn = fn >> 1, sn >> 1
        else:
            r = node_hash(r, p)
        fn, sn = fn >> 1, sn >> 1
    return sn == 0 and r == root


def verify_consistency(
    old_size: int, new_size: int, old_root: bytes, new_root: bytes, proof: Sequence[bytes]
) -> bool:
    """Return True iff `proof` shows the tree (old_size, old_root) is a prefix of (new_size, new_root).

    RFC 9162 section 2.1.4.2, plus the trivial cases: equal sizes need an empty proof and equal
    roots; old_size 0 needs an empty proof and the empty-tree root. Never raises on bad input.
    """
    if not 0 <= old_size <= new_size or any(len(p) != HASH_SIZE for p in proof):
        return False
    if old_size == new_size:
        return not proof and old_root == new_root
    if old_size == 0:
        return not proof and old_root == EMPTY_ROOT
    if not proof:
        return False
    path = list(proof)
    if old_size & (old_size - 1) == 0:  # a power of two: the old root is itself a node of the new tree
        path.insert(0, old_root)
    fn, sn = old_size - 1, new_size - 1
    while fn & 1:
        fn, sn = fn >> 1, sn >> 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            fr, sr = node_hash(c, fr), node_hash(c, sr)
            if not fn & 1:
                while fn and not fn & 1:
                    fn, sn = fn >> 1, sn >> 1
        else:
            sr = node_hash(sr, c)
        fn, sn = fn >> 1, sn >> 1
    return sn == 0 and fr == old_root and sr == new_root


def frontier_append(frontier: list[bytes], size: int, leaf: bytes) -> None:
    """Add leaf hash `leaf` to `frontier`, the compact range of a tree of `size` leaves, in place.

    The frontier holds the roots of the perfect subtrees that make up the tree, largest first
    (one per set bit of size), so appending costs O(log n) hashes and memory stays O(log n).
    """
    assert len(frontier) == bin(size).count("1"), "frontier does not match the tree size"
    frontier.append(leaf)
    while size & 1:  # each trailing one bit of the old size is a perfect subtree to merge with
        right = frontier.pop()
        frontier[-1] = node_hash(frontier[-1], right)
        size >>= 1


def frontier_root(frontier: Sequence[bytes]) -> bytes:
    """Return the RFC 6962 root of the tree whose compact range is `frontier` (see frontier_append)."""
    if not frontier:
        return EMPTY_ROOT
    root = frontier[-1]
    for h in reversed(frontier[:-1]):
        root = node_hash(h, root)
    return root
