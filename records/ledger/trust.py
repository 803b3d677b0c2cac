"""Checking a ledger against trust anchors held outside its data folder: a pinned public key and a held head.

`verify_ledger_files` trusts the public key stored beside the data, so whoever can write the data
folder can rewrite the log, sign it with a key of their own and publish that key. `check_trust`
closes that: every head must verify with the *trusted* key, and the log must extend the *held*
head (an RFC 6962 consistency proof from it to the latest head, from the entries as they are now).
So truncation (the latest entries removed with their heads), a rewrite re-signed with another key,
and a replaced public key are each named. What is not proved without them is said in `unproven`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from records.ledger.format import ENTRIES, ORIGIN, PUBLIC_KEY, TREE_HEADS
from records.merkle import consistency_proof, leaf_hash, root_from_leaf_hashes, verify_consistency
from records.signing import Checkpoint, TreeHead, key_id, load_public_key, parse_head

MAX_LISTED = 10


@dataclass
class TrustReport:
    """Which anchors the check used, what it could not prove without the others, and every problem."""

    key: str  # where the key the signatures were checked with came from
    held_head: str | None  # the held head checked against, or None
    latest: TreeHead | None = None  # the latest head in the log, when it is readable
    problems: list[str] = field(default_factory=list)
    unproven: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def to_dict(self) -> dict:
        return {"ok": self.ok, "key": self.key, "held_head": self.held_head,
                "problems": self.problems, "unproven": self.unproven}  # fmt: skip


def _leaves(root: Path) -> list[bytes]:
    """Leaf hashes recomputed from the entry lines themselves (the cache is what an attacker rewrites too)."""
    path = root / ENTRIES
    if not path.exists():
        return []
    with open(path, "rb") as f:
        return [leaf_hash(raw.rstrip(b"\n")) for raw in f]


def _heads(root: Path, problems: list[str]) -> list[tuple[int, TreeHead]]:
    path = root / TREE_HEADS
    heads = []
    for lineno, line in enumerate(path.read_bytes().splitlines() if path.exists() else [], start=1):
        try:
            heads.append((lineno, parse_head(line)))
        except ValueError as e:
            problems.append(f"{root / TREE_HEADS} line {lineno}: {e}")
    return heads


def check_trust(
    root: Path,
    trusted_key: Ed25519PublicKey | None = None,
    held: TreeHead | None = None,
    *,
    trusted_key_source: str = "",
    held_source: str = "",
) -> TrustReport:
    """Check ledger folder `root` against a trusted key and a held head (either may be None).

    Without `trusted_key`, signatures are checked with the ledger's own public_key.pem and the report
    says so. Cost: reads and hashes every entry line once, plus one signature check per head
    (a deliberate full check, as ``apertus audit verify``).
    """
    root = Path(root)
    problems: list[str] = []
    published_path = root / PUBLIC_KEY
    published = None
    try:
        published = load_public_key(published_path.read_bytes())
    except (OSError, ValueError) as e:
        problems.append(f"{published_path}: cannot load the published public key ({e})")
    if trusted_key is None:
        key, where = published, f"the key stored in the data folder ({published_path})"
        unproven = [
            "that the data folder's key is this instance's: whoever can write the data folder can replace "
            "it and re-sign a rewritten history (pass --trusted-key with the key folder's public key)"
        ]
    else:
        key, where = trusted_key, f"the trusted key {key_id(trusted_key)[:16]} ({trusted_key_source})"
        unproven = []
        if published is not None and key_id(published) != key_id(trusted_key):
            problems.append(
                f"{published_path}: key {key_id(published)[:16]} is not the trusted key "
                f"{key_id(trusted_key)[:16]}: the published key was replaced"
            )
    report = TrustReport(key=where, held_head=held_source or None, problems=problems, unproven=unproven)
    heads = _heads(root, problems)
    origin_path = root / ORIGIN
    origin = origin_path.read_text().strip() if origin_path.exists() else None
    if key is not None and trusted_key is not None:
        unsigned = [lineno for lineno, head in heads if not head.verify(key)]
        if unsigned:
            listed = ", ".join(map(str, unsigned[:MAX_LISTED])) + (
                ", …" if len(unsigned) > MAX_LISTED else ""
            )
            problems.append(
                f"{root / TREE_HEADS}: {len(unsigned)} of {len(heads)} heads (line {listed}) are not signed "
                f"by {where}: re-signed with another key, or forged"
            )
    report.latest = heads[-1][1] if heads else None
    if held is None:
        report.unproven.append(
            "no held head was given (--head): the removal of the latest entries together with their heads, "
            "or a history rewritten and re-signed by the key holder, cannot be excluded"
        )
        return report
    problems += _check_held(root, held, held_source, key, where, origin, report.latest)
    return report


def _check_held(
    root: Path,
    held: TreeHead,
    source: str,
    key: Ed25519PublicKey | None,
    where: str,
    origin: str | None,
    latest: TreeHead | None,
) -> list[str]:
    """The log must extend the held head: its signature, its origin, then a consistency proof to the latest."""
    problems = []
    if key is not None and not held.verify(key):
        problems.append(f"held head {source}: not signed by {where}")
    if isinstance(held, Checkpoint) and held.origin != origin:
        problems.append(
            f"held head {source}: it is a head of ledger {held.origin!r}, but {root / ORIGIN} names {origin!r}: "
            "another ledger, or the origin was rewritten"
        )
    leaves = _leaves(root)
    n = held.tree_size
    if len(leaves) < n:
        problems.append(
            f"{root / ENTRIES}: truncated: it holds {len(leaves)} entries but the held head {source} signed "
            f"{n}; entries were removed (the last {n - len(leaves)}, or some before them)"
        )
        return problems
    if root_from_leaf_hashes(leaves, 0, n).hex() != held.root_hash:
        problems.append(
            f"{root / ENTRIES}: rewritten: its first {n} entries do not hash to the root of the held head "
            f"{source}; an entry among 0..{n - 1} was changed, removed or reordered"
        )
        return problems
    if latest is None or latest.tree_size < n:
        size = latest.tree_size if latest else 0
        problems.append(
            f"{root / TREE_HEADS}: the latest head signs {size} entries, fewer than the held head's {n}: "
            "heads were removed"
        )
        return problems
    if latest.tree_size <= len(leaves):
        proof = consistency_proof(leaves[: latest.tree_size], n, latest.tree_size)
        old, new = bytes.fromhex(held.root_hash), bytes.fromhex(latest.root_hash)
        if not verify_consistency(n, latest.tree_size, old, new, proof):
            problems.append(
                f"{root / TREE_HEADS}: no consistency proof from the held head {source} ({n} entries) to the "
                f"latest head ({latest.tree_size} entries): the latest head does not extend it"
            )
    return problems
