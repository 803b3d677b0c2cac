"""The per-step ledger check: verify only what was appended since the last head this check verified.

The last verified head is kept with the trust anchors, in the key folder (records.keys:
``heads/<origin>.checked``), never in the data folder, together with the tree's compact range at
that head (the frontier). The frontier is taken only if its root is that head's root and the head
verifies with the key folder's public key. Extending it by the leaf hashes of the new entry lines
(re-hashed from the lines, not read from the cache) must give the root of every new signed head:
this is the RFC 6962 consistency proof from the held head to the latest one, computed from the new
entries themselves (the proof's left nodes are the frontier), so a history rewritten and re-signed
since that head is named, as is a truncated log or a head that does not extend the held one.

What it does not re-read: entries before the held head. An entry rewritten there without
re-signing is found by the full check (``apertus audit verify``, records.ledger.verify), not here.
"""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from records.keys import PUBLIC_KEY as KEY_FOLDER_PUBLIC_KEY
from records.keys import checked_head_path, write_held_head
from records.ledger.files import last_line_bounds
from records.ledger.format import ENTRIES, LEAF_HASHES, ORIGIN, TREE_HEADS
from records.ledger.verify import check_entry, verify_ledger_files
from records.merkle import HASH_SIZE, frontier_append, frontier_root, leaf_hash
from records.signing import Checkpoint, TreeHead, load_public_key, parse_head


def _tail_lines(path: Path, stop) -> list[tuple[int, bytes]]:
    """(offset, line) of the last lines of `path`, read backwards until stop(line) is true (that
    line included), in file order; reads only those lines. A torn last line is returned as is."""
    lines: list[tuple[int, bytes]] = []
    with open(path, "rb") as f:
        end = f.seek(0, os.SEEK_END)
        f.seek(max(0, end - 1))
        if end and f.read(1) != b"\n":  # a torn last line: keep it so the caller names it
            start, newline = last_line_bounds(f, end)
            start = newline + 1 if newline >= 0 else 0
            f.seek(start)
            lines.append((start, f.read(end - start)))
            if stop(lines[-1][1]):
                return lines
            end = start
        while end > 0:
            start, newline = last_line_bounds(f, end)
            if newline < 0:
                break
            f.seek(start)
            lines.append((start, f.read(newline - start)))
            if stop(lines[-1][1]):
                break
            end = start
    return lines[::-1]


def _index(line: bytes) -> int | None:
    try:
        index = json.loads(line)["index"]
    except (ValueError, KeyError, TypeError):
        return None
    return index if type(index) is int else None


def _save(path: Path, head: TreeHead, frontier: list[bytes]) -> None:
    """Hold `head` for the next check; a key folder that cannot be written only makes that one full."""
    text = json.dumps({"head": head.to_json(), "frontier": [h.hex() for h in frontier]}) + "\n"
    with contextlib.suppress(OSError):
        write_held_head(path, text)


def _full(root: Path, path: Path | None, key: Ed25519PublicKey | None) -> list[str]:
    """The full check; when it passes and the key folder is known, hold its latest head for next time."""
    problems = verify_ledger_files(root)
    heads = root / TREE_HEADS
    if problems or path is None or key is None or not heads.exists() or not heads.stat().st_size:
        return problems
    head = parse_head(_tail_lines(heads, lambda _: True)[-1][1])
    if not head.verify(key):
        return [f"{TREE_HEADS}: the latest head does not verify with the key folder's public key"]
    frontier: list[bytes] = []
    data = (root / LEAF_HASHES).read_bytes()  # equal to the entries: the full check just said so
    for n in range(head.tree_size):
        frontier_append(frontier, n, data[n * HASH_SIZE : (n + 1) * HASH_SIZE])
    _save(path, head, frontier)
    return problems


def verify_since_checked(root: Path, key_folder: Path | None) -> list[str]:
    """Check ledger folder `root` from the last head this check verified (kept in `key_folder`); [] if valid.

    Cost: O(new entries + new heads + log n): the entry lines and heads appended since that head
    are read and hashed, one signature per new head. Falls back to the full check
    (verify_ledger_files, O(n)) when there is no key folder, no public key in it, or no usable
    held state (missing, unreadable, another origin, not signed by the key, or its frontier does
    not match its root); after a passing check the latest head is held for the next one.
    Call under the ledger's lock (Ledger.verify_since_checked) so no append is half-written.
    """
    root = Path(root)
    origin_path = root / ORIGIN
    origin = origin_path.read_text().strip() if origin_path.exists() else None
    key = None
    if key_folder is not None and (Path(key_folder) / KEY_FOLDER_PUBLIC_KEY).is_file():
        key = load_public_key((Path(key_folder) / KEY_FOLDER_PUBLIC_KEY).read_bytes())
    if key is None or origin is None:
        return _full(root, None, None)
    path = checked_head_path(key_folder, origin)
    try:
        saved = json.loads(path.read_text())
        held = parse_head(saved["head"])
        frontier = [bytes.fromhex(h) for h in saved["frontier"]]
        usable = (
            isinstance(held, Checkpoint)
            and held.origin == origin
            and held.verify(key)
            and len(frontier) == bin(held.tree_size).count("1")
            and frontier_root(frontier).hex() == held.root_hash
        )
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        usable = False
    if not usable:
        return _full(root, path, key)
    return _check_new(root, path, key, held, frontier)


def _check_new(
    root: Path, path: Path, key: Ed25519PublicKey, held: TreeHead, frontier: list[bytes]
) -> list[str]:
    m = held.tree_size
    problems: list[str] = []
    head_lines = (
        _tail_lines(root / TREE_HEADS, lambda line: line == held.to_json().encode())
        if (root / TREE_HEADS).exists()
        else []
    )
    if not head_lines or head_lines[0][1] != held.to_json().encode():
        return [
            f"{TREE_HEADS}: the head held in the key folder ({m} entries) is no longer in the log: "
            "heads were removed or rewritten"
        ]
    heads = []
    for _, line in head_lines[1:]:
        try:
            head = parse_head(line)
        except ValueError as e:
            problems.append(f"{TREE_HEADS}: a head after the held one: {e}")
            continue
        if not head.verify(key):
            problems.append(
                f"{TREE_HEADS}: a head for {head.tree_size} entries is not signed by the key folder's key"
            )
        heads.append(head)
    if not heads:
        return problems  # nothing appended since the held head
    n = max(h.tree_size for h in heads)
    if any(b.tree_size < a.tree_size for a, b in zip([held, *heads], heads, strict=False)):
        problems.append(f"{TREE_HEADS}: tree sizes after the held head ({m} entries) shrink")
    lines = _tail_lines(root / ENTRIES, lambda line: _index(line) is not None and _index(line) <= m)
    new = [line for _, line in lines if _index(line) is None or _index(line) >= m]
    if len(new) < n - m or (new and _index(new[0]) != m):
        return problems + [
            f"{ENTRIES}: truncated or rewritten: the entries {m}..{n - 1} signed since the held head are not all there"
        ]
    if len(new) > n - m:
        problems.append(f"{ENTRIES}: entries {n}..{m + len(new) - 1} are not covered by any signed tree head")
    leaves = []
    for k, line in enumerate(new[: n - m]):
        problems += check_entry(line, m + k + 1)
        leaves.append(leaf_hash(line))
    cache = root / LEAF_HASHES
    with open(cache, "rb") as f:
        f.seek(m * HASH_SIZE)
        if f.read() != b"".join(leaves) and len(new) == n - m:
            problems.append(f"{LEAF_HASHES}: the hashes of entries {m}..{n - 1} do not match {ENTRIES}")
    roots = {}
    for k, h in enumerate(leaves):
        frontier_append(frontier, m + k, h)
        roots[m + k + 1] = frontier_root(frontier).hex()
    for head in heads:
        if head.tree_size > m and roots.get(head.tree_size) != head.root_hash:
            problems.append(
                f"{TREE_HEADS}: the head for {head.tree_size} entries is not consistent with the held head "
                f"({m} entries) and the entries after it: the history was rewritten or re-signed"
            )
    if not problems:
        _save(path, heads[-1], frontier)
    return problems
