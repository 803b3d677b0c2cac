"""Checking a ledger: the full audit of its folder, and the offline check of one entry.

`verify_ledger_files` trusts nothing but public_key.pem: it re-hashes every entry, recomputes the
root behind every stored tree head and checks every signature. `verify_entry_offline` is the
procedure docs/ledger.md spells out for an auditor holding one entry, its proof, a tree head and
the public key.
"""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

from records.canonical import canonical_json
from records.ledger.format import (
    ENTRIES,
    EVENT_TYPES,
    LATEST_TREE_HEAD,
    LEAF_HASHES,
    ORIGIN,
    PUBLIC_KEY,
    TREE_HEADS,
    LedgerEntry,
)
from records.merkle import (
    EMPTY_ROOT,
    HASH_SIZE,
    frontier_append,
    frontier_root,
    leaf_hash,
    verify_inclusion,
)
from records.signing import Checkpoint, TreeHead, load_public_key, parse_head

MAX_LISTED = 10  # one changed entry can fail thousands of later checks; list a few, count the rest


def check_entry(line: bytes, lineno: int) -> list[str]:
    where = f"{ENTRIES} line {lineno} (entry {lineno - 1})"
    try:
        entry = LedgerEntry.from_line(line)
        datetime.fromisoformat(entry.timestamp)
    except (ValueError, TypeError) as e:
        return [f"{where}: not a valid entry: {e}"]
    problems = []
    if canonical_json(json.loads(line)) != line:
        problems.append(f"{where}: not in canonical JSON form (sorted keys, no whitespace, UTF-8)")
    if entry.index != lineno - 1:
        problems.append(
            f"{where}: index field is {entry.index}, expected {lineno - 1} (indices are contiguous)"
        )
    if entry.event_type not in EVENT_TYPES:
        problems.append(f"{where}: unknown event type {entry.event_type!r}")
    return problems


def _read_entries(root: Path, problems: list[str]) -> list[bytes]:
    """Check every entry line and return the leaf hashes recomputed from the lines themselves."""
    leaves: list[bytes] = []
    path = root / ENTRIES
    if not path.exists():
        return leaves
    with open(path, "rb") as f:
        for lineno, raw in enumerate(f, start=1):
            if not raw.endswith(b"\n"):
                problems.append(f"{ENTRIES} line {lineno}: no final newline (a torn or altered last line)")
            line = raw.rstrip(b"\n")
            leaves.append(leaf_hash(line))
            problems.extend(check_entry(line, lineno))
    return leaves


def _check_leaf_cache(root: Path, leaves: list[bytes], problems: list[str]) -> None:
    path = root / LEAF_HASHES
    cached = path.read_bytes() if path.exists() else b""
    if len(cached) % HASH_SIZE:
        problems.append(f"{LEAF_HASHES}: length {len(cached)} is not a multiple of {HASH_SIZE}")
    if len(cached) // HASH_SIZE != len(leaves):
        problems.append(
            f"{LEAF_HASHES} holds {len(cached) // HASH_SIZE} hashes but {ENTRIES} has {len(leaves)} lines"
        )
    bad = [i for i, h in enumerate(leaves) if cached[i * HASH_SIZE : (i + 1) * HASH_SIZE] not in (h, b"")]
    for i in bad[:MAX_LISTED]:
        problems.append(f"{LEAF_HASHES}: hash {i} does not match {ENTRIES} line {i + 1} (entry {i})")
    if len(bad) > MAX_LISTED:
        problems.append(f"{LEAF_HASHES}: {len(bad) - MAX_LISTED} more hashes do not match their entries")


def _roots_at(leaves: list[bytes], sizes: set[int]) -> dict[int, bytes]:
    roots, frontier = {0: EMPTY_ROOT}, []
    for n, h in enumerate(leaves):
        frontier_append(frontier, n, h)
        if n + 1 in sizes:
            roots[n + 1] = frontier_root(frontier)
    return roots


def _check_tree_heads(root: Path, leaves: list[bytes], problems: list[str]) -> None:
    path = root / TREE_HEADS
    lines = path.read_bytes().splitlines() if path.exists() else []
    if not lines:
        if leaves:
            problems.append(f"{TREE_HEADS}: missing or empty, so none of the {len(leaves)} entries is signed")
        return
    pub = None
    try:
        pub = load_public_key((root / PUBLIC_KEY).read_bytes())
    except (OSError, ValueError) as e:
        problems.append(f"{PUBLIC_KEY}: cannot load the public key ({e}); no signature can be checked")
    heads: list[tuple[int, TreeHead]] = []
    previous = 0
    origin = (root / ORIGIN).read_text().strip() if (root / ORIGIN).exists() else None
    for lineno, line in enumerate(lines, start=1):
        try:
            head = parse_head(line)
        except ValueError as e:
            problems.append(f"{TREE_HEADS} line {lineno}: {e}")
            continue
        if head.to_json().encode() != line:
            problems.append(f"{TREE_HEADS} line {lineno}: not in canonical JSON form")
        if isinstance(head, Checkpoint) and head.origin != origin:
            problems.append(
                f"{TREE_HEADS} line {lineno}: checkpoint origin {head.origin!r} is not this ledger's "
                f"({ORIGIN} file: {origin!r})"
            )
        if pub is not None and not head.verify(pub):
            problems.append(f"{TREE_HEADS} line {lineno}: signature does not verify with {PUBLIC_KEY}")
        if head.tree_size < previous:
            problems.append(f"{TREE_HEADS} line {lineno}: tree size {head.tree_size} shrinks from {previous}")
        if head.tree_size > len(leaves):
            problems.append(
                f"{TREE_HEADS} line {lineno}: signs {head.tree_size} entries but {ENTRIES} has {len(leaves)}"
            )
        else:
            heads.append((lineno, head))
        previous = max(previous, head.tree_size)
    _check_roots(leaves, heads, problems)
    if previous < len(leaves):
        problems.append(
            f"{ENTRIES}: entries {previous}..{len(leaves) - 1} are not covered by any signed tree head"
        )
    latest = root / LATEST_TREE_HEAD
    if not latest.exists() or latest.read_bytes().rstrip(b"\n") != lines[-1]:
        problems.append(f"{LATEST_TREE_HEAD} is not the last line of {TREE_HEADS}")


def _check_roots(leaves: list[bytes], heads: list[tuple[int, TreeHead]], problems: list[str]) -> None:
    """Compare each head's root with the entries; the first mismatch after a match pins the changed lines."""
    roots = _roots_at(leaves, {h.tree_size for _, h in heads})
    matched = 0  # entries below this size are as signed
    num_wrong = 0
    for lineno, head in sorted(heads, key=lambda lh: lh[1].tree_size):
        if roots[head.tree_size].hex() == head.root_hash:
            matched = max(matched, head.tree_size)
            continue
        num_wrong += 1
        if num_wrong <= MAX_LISTED:
            first, last = matched + 1, head.tree_size  # 1-based line numbers of the suspect entries
            suspects = (
                f"{ENTRIES} line {last}" if first == last else f"one of {ENTRIES} line {first} to line {last}"
            )
            problems.append(
                f"{TREE_HEADS} line {lineno}: signed root for {head.tree_size} entries does not match {ENTRIES}; "
                f"{suspects} differs from what was signed"
            )
    if num_wrong > MAX_LISTED:
        problems.append(f"{TREE_HEADS}: {num_wrong - MAX_LISTED} more tree heads do not match {ENTRIES}")


def verify_ledger_files(root: Path) -> list[str]:
    """Return every problem in the ledger folder `root`, each naming its file and line; [] if valid."""
    problems: list[str] = []
    leaves = _read_entries(root, problems)
    _check_leaf_cache(root, leaves, problems)
    _check_tree_heads(root, leaves, problems)
    return problems


def verify_entry_offline(
    entry_json: str, index: int, proof: list[str], tree_head_json: str, public_key_pem: str
) -> bool:
    """Return True iff the entry (its exact stored line) sits at `index` under a genuinely signed head.

    `tree_head_json`: a checkpoint note, a tree_heads.jsonl line, or an older JSON head.
    Needs only the published public key: checks the head's Ed25519 signature, that the entry's
    own index field equals `index`, then the RFC 6962 inclusion proof from SHA-256(0x00 || entry)
    to the head's root. Never raises on malformed input; returns False.
    """
    try:
        head = parse_head(tree_head_json)
        if not head.verify(load_public_key(public_key_pem)):
            return False
        data = entry_json.rstrip("\n").encode()
        if json.loads(data).get("index") != index:
            return False
        path = [bytes.fromhex(p) for p in proof]
        return verify_inclusion(leaf_hash(data), index, head.tree_size, path, bytes.fromhex(head.root_hash))
    except (ValueError, AttributeError, TypeError):
        return False
