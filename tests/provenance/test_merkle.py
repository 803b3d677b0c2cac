"""Tests for records.merkle (RFC 6962 trees and proofs) and records.hashing.

Reference vectors are Certificate Transparency's, as published in transparency-dev/merkle
(the Go successor of google/certificate-transparency's merkle_tree_test.cc):
  - leaves and roots: testonly/constants.go (LeafInputs, RootHashes, CompactTrees)
  - inclusion and consistency proofs: proof/verify_test.go (inclusionProofs, consistencyProofs;
    leaf numbers there are 1-based, converted to 0-based indices here)
The corruption probes mirror corruptInclusionProof / corruptConsistencyProof in that file.
"""

from __future__ import annotations

import hashlib
import itertools
from pathlib import Path

import pytest

from records.hashing import CHUNK_SIZE, sha256_bytes, sha256_file
from records.merkle import (
    EMPTY_ROOT,
    consistency_proof,
    frontier_append,
    frontier_root,
    inclusion_proof,
    leaf_hash,
    merkle_root,
    node_hash,
    root_from_leaf_hashes,
    verify_consistency,
    verify_inclusion,
)

h = bytes.fromhex

CT_LEAVES = [
    h(x)
    for x in [
        "",
        "00",
        "10",
        "2021",
        "3031",
        "40414243",
        "5051525354555657",
        "606162636465666768696a6b6c6d6e6f",
    ]
]
CT_ROOTS = [
    h(x)
    for x in [
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
        "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
        "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
        "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
        "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
        "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
        "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
        "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
    ]
]
# (0-based leaf index, tree size, audit path)
CT_INCLUSION = [
    (0, 1, []),
    (
        0,
        8,
        [
            "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
        ],
    ),
    (
        5,
        8,
        [
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        ],
    ),
    (2, 3, ["fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125"]),
    (
        1,
        5,
        [
            "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
        ],
    ),
]
# (old size, new size, consistency proof)
CT_CONSISTENCY = [
    (1, 1, []),
    (
        1,
        8,
        [
            "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
        ],
    ),
    (
        6,
        8,
        [
            "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        ],
    ),
    (
        2,
        5,
        [
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
        ],
    ),
    (
        6,
        7,
        [
            "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
            "b08693ec2e721597130641e8211e7eedccb4c26413963eee6c1e2ed16ffb1a5f",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        ],
    ),
]
SOME_HASH = h("abacaba000000000000000000000000000000000000000000060061e00123456")
CT_LEAF_HASHES = [leaf_hash(d) for d in CT_LEAVES]


# A literal transcription of RFC 6962 section 2.1, recursion and slicing included: the spec the
# iterative implementation must agree with.
def _ref_mth(d: list[bytes]) -> bytes:
    if not d:
        return hashlib.sha256(b"").digest()
    if len(d) == 1:
        return hashlib.sha256(b"\x00" + d[0]).digest()
    k = 1
    while k * 2 < len(d):
        k *= 2
    return hashlib.sha256(b"\x01" + _ref_mth(d[:k]) + _ref_mth(d[k:])).digest()


def _ref_path(m: int, d: list[bytes]) -> list[bytes]:
    if len(d) <= 1:
        return []
    k = 1
    while k * 2 < len(d):
        k *= 2
    if m < k:
        return _ref_path(m, d[:k]) + [_ref_mth(d[k:])]
    return _ref_path(m - k, d[k:]) + [_ref_mth(d[:k])]


def _ref_subproof(m: int, d: list[bytes], b: bool) -> list[bytes]:
    if m == len(d):
        return [] if b else [_ref_mth(d)]
    k = 1
    while k * 2 < len(d):
        k *= 2
    if m <= k:
        return _ref_subproof(m, d[:k], b) + [_ref_mth(d[k:])]
    return _ref_subproof(m - k, d[k:], False) + [_ref_mth(d[:k])]


def _data(n: int) -> list[bytes]:
    return [f"leaf-{i}".encode() for i in range(n)]


def _flip(b: bytes, bit: int = 3) -> bytes:
    return bytes([b[0] ^ (1 << bit)]) + b[1:]


def test_hash_prefixes():
    assert leaf_hash(b"") == CT_ROOTS[1]
    assert node_hash(CT_LEAF_HASHES[0], CT_LEAF_HASHES[1]) == CT_ROOTS[2]
    assert hashlib.sha256(b"").digest() == EMPTY_ROOT


@pytest.mark.parametrize("size", range(9))
def test_roots_match_ct_vectors(size):
    assert merkle_root(CT_LEAVES[:size]) == CT_ROOTS[size]
    assert root_from_leaf_hashes(CT_LEAF_HASHES, 0, size) == CT_ROOTS[size]


def test_frontier_roots_match_ct_vectors():
    frontier: list[bytes] = []
    assert frontier_root(frontier) == CT_ROOTS[0]
    for size, lh in enumerate(CT_LEAF_HASHES):
        frontier_append(frontier, size, lh)
        assert frontier_root(frontier) == CT_ROOTS[size + 1]
    assert frontier == [h("5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328")]


@pytest.mark.parametrize("index,size,path", CT_INCLUSION)
def test_inclusion_proofs_match_ct_vectors(index, size, path):
    expected = [h(p) for p in path]
    assert inclusion_proof(CT_LEAF_HASHES, index, size) == expected
    assert verify_inclusion(CT_LEAF_HASHES[index], index, size, expected, CT_ROOTS[size])


@pytest.mark.parametrize("old,new,proof", CT_CONSISTENCY)
def test_consistency_proofs_match_ct_vectors(old, new, proof):
    expected = [h(p) for p in proof]
    assert consistency_proof(CT_LEAF_HASHES, old, new) == expected
    assert verify_consistency(old, new, CT_ROOTS[old], CT_ROOTS[new], expected)


def _corrupt_inclusion(index, size, proof, root, leaf):
    probes = [
        (index - 1, size, root, leaf, proof),
        (index + 1, size, root, leaf, proof),
        (index ^ 2, size, root, leaf, proof),
        (index, size * 2, root, leaf, proof),
        (index, size // 2, root, leaf, proof),
        (index, size, root, b"WrongLeaf", proof),
        (index, size, EMPTY_ROOT, leaf, proof),
        (index, size, SOME_HASH, leaf, proof),
        (index, size, root, leaf, proof + [b""]),
        (index, size, root, leaf, proof + [root]),
        (index, size, root, leaf, [b""] + proof),
        (index, size, root, leaf, [root] + proof),
    ]
    for i in range(len(proof)):
        probes.append((index, size, root, leaf, proof[:i] + [_flip(proof[i])] + proof[i + 1 :]))
    if proof:
        probes.append((index, size, root, leaf, proof[:-1]))
    if len(proof) > 1:
        probes.append((index, size, root, leaf, [proof[0], SOME_HASH] + proof[1:]))
    return probes


def _corrupt_consistency(old, new, r1, r2, proof):
    probes = [
        (old - 1, new, r1, r2, proof),
        (old + 1, new, r1, r2, proof),
        (old ^ 2, new, r1, r2, proof),
        (old, new * 2, r1, r2, proof),
        (old, new // 2, r1, r2, proof),
        (old, new, b"WrongRoot", r2, proof),
        (old, new, r1, b"WrongRoot", proof),
        (old, new, r2, r1, proof),
        (old, new, r1, r2, []),
        (old, new, r1, r2, proof + [b""]),
        (old, new, r1, r2, proof + [r1]),
        (old, new, r1, r2, proof + [r2]),
        (old, new, r1, r2, [b""] + proof),
        (old, new, r1, r2, [r1] + proof),
        (old, new, r1, r2, [r2] + proof),
        (old, new, r1, r2, [proof[0]] + proof),
        (old, new, r1, r2, proof[:-1]),
    ]
    for i in range(len(proof)):
        probes.append((old, new, r1, r2, proof[:i] + [_flip(proof[i], 4)] + proof[i + 1 :]))
    return probes


@pytest.mark.parametrize("index,size,path", CT_INCLUSION[1:])
def test_corrupted_ct_inclusion_proofs_fail(index, size, path):
    proof = [h(p) for p in path]
    for probe in _corrupt_inclusion(index, size, proof, CT_ROOTS[size], CT_LEAF_HASHES[index]):
        i, n, root, leaf, p = probe
        assert not verify_inclusion(leaf, i, n, p, root), probe


@pytest.mark.parametrize("old,new,proof", CT_CONSISTENCY[1:])
def test_corrupted_ct_consistency_proofs_fail(old, new, proof):
    proof = [h(p) for p in proof]
    for probe in _corrupt_consistency(old, new, CT_ROOTS[old], CT_ROOTS[new], proof):
        assert not verify_consistency(probe[0], probe[1], probe[2], probe[3], probe[4]), probe


def test_trivial_consistency_cases():
    r = CT_ROOTS[3]
    assert verify_consistency(3, 3, r, r, [])
    assert not verify_consistency(3, 3, r, CT_ROOTS[4], [])
    assert not verify_consistency(3, 3, r, r, [r])
    assert verify_consistency(0, 5, EMPTY_ROOT, CT_ROOTS[5], [])
    assert not verify_consistency(0, 5, SOME_HASH, CT_ROOTS[5], [])
    assert not verify_consistency(4, 3, CT_ROOTS[4], CT_ROOTS[3], [])  # time travel
    assert not verify_inclusion(CT_LEAF_HASHES[0], 0, 0, [], EMPTY_ROOT)


def test_all_proofs_up_to_40_leaves_verify_and_match_the_rfc_recursion():
    data = _data(40)
    hashes = [leaf_hash(d) for d in data]
    frontier: list[bytes] = []
    roots = [EMPTY_ROOT]
    for n in range(1, 41):
        frontier_append(frontier, n - 1, hashes[n - 1])
        roots.append(_ref_mth(data[:n]))
        assert frontier_root(frontier) == roots[n] == root_from_leaf_hashes(hashes, 0, n)
    for n in range(1, 41):
        for i in range(n):
            proof = inclusion_proof(hashes, i, n)
            assert proof == _ref_path(i, data[:n])
            assert verify_inclusion(hashes[i], i, n, proof, roots[n])
            assert not verify_inclusion(leaf_hash(b"tampered"), i, n, proof, roots[n])
            if proof:
                assert not verify_inclusion(hashes[i], i, n, proof[:-1] + [_flip(proof[-1])], roots[n])
    for m, n in itertools.combinations_with_replacement(range(0, 41), 2):
        proof = consistency_proof(hashes, m, n)
        assert proof == ([] if m in (0, n) else _ref_subproof(m, data[:n], True))
        assert verify_consistency(m, n, roots[m], roots[n], proof)
        if proof:
            assert not verify_consistency(m, n, roots[m], _flip(roots[n]), proof)
            assert not verify_consistency(m, n, _flip(roots[m]), roots[n], proof)
            for k in range(len(proof)):
                bad = proof[:k] + [_flip(proof[k])] + proof[k + 1 :]
                assert not verify_consistency(m, n, roots[m], roots[n], bad)


def test_proof_arguments_out_of_range_raise():
    with pytest.raises(ValueError):
        inclusion_proof(CT_LEAF_HASHES, 8)
    with pytest.raises(ValueError):
        inclusion_proof(CT_LEAF_HASHES, 0, 9)
    with pytest.raises(ValueError):
        consistency_proof(CT_LEAF_HASHES, 5, 4)


def test_proofs_on_a_large_tree_stay_fast():
    # 100k leaves: an O(n^2) proof would take minutes; O(n) takes well under a second per proof.
    hashes = [hashlib.sha256(i.to_bytes(4, "big")).digest() for i in range(100_003)]
    root = root_from_leaf_hashes(hashes)
    frontier: list[bytes] = []
    for n, lh in enumerate(hashes):
        frontier_append(frontier, n, lh)
    assert frontier_root(frontier) == root
    proof = inclusion_proof(hashes, 77_777)
    assert len(proof) == 17 and verify_inclusion(hashes[77_777], 77_777, len(hashes), proof, root)
    old_root = root_from_leaf_hashes(hashes, 0, 65_537)
    cproof = consistency_proof(hashes, 65_537)
    assert verify_consistency(65_537, len(hashes), old_root, root, cproof)


def test_sha256_bytes_known_vector():
    assert sha256_bytes(b"abc") == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"


def test_sha256_file_local_and_fsspec(tmp_path: Path):
    # Larger than one chunk and not a multiple of it, so the chunk loop's boundaries are exercised.
    payload = bytes(range(256)) * (CHUNK_SIZE // 256 * 2 + 3) + b"tail"
    f = tmp_path / "shard.bin"
    f.write_bytes(payload)
    expected = hashlib.sha256(payload).hexdigest()
    assert sha256_file(f) == expected
    assert sha256_file(str(f)) == expected
    assert sha256_file(f"file://{f}") == expected
    (tmp_path / "empty").write_bytes(b"")
    assert sha256_file(tmp_path / "empty") == hashlib.sha256(b"").hexdigest()
