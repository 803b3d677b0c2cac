"""The ledger folder and its writer: append, read back, tree heads and proofs.

Files in the ledger folder (`<data>/ledger/`; formats in docs/ledger.md):
    entries.jsonl          one canonical JSON entry per line; the line's bytes are the Merkle leaf
    leaf_hashes.bin        32-byte RFC 6962 leaf hash per entry, a cache that verify() re-derives
    tree_heads.jsonl       one signed tree head per append (or batch, append_many), append-only;
                           a C2SP checkpoint note now, older JSON heads before it stay as written
    latest_tree_head.json  a copy of the last tree head, for publishing
    frontier.json          the tree's compact range at the latest head, so a fresh Ledger appends in
                           O(log n); checked against the signed head's root before use
    public_key.pem         the Ed25519 key that verifies every tree head, published for readers
    origin                 the ledger's name (first line of its checkpoints), written at its first append

The private key is not here: it is in the instance's key folder (records.keys, `apertus init`),
outside the data folder. Appending without it raises a ValueError naming `apertus init`.

An entry is committed once its leaf hash is in leaf_hashes.bin. Appends (one entry, or a batch)
hold an exclusive flock on `.lock` from reading the tail to writing the tree head, so concurrent
writers in any number of processes serialize, and each append first cuts off what an interrupted
append left behind.
"""

from __future__ import annotations

import fcntl
import itertools
import json
import os
import secrets
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from records.canonical import canonical_json
from records.ledger.files import entries_end, last_line, read_leaf_hashes
from records.ledger.format import (
    ENTRIES,
    EVENT_TYPES,
    FRONTIER,
    LATEST_TREE_HEAD,
    LEAF_HASHES,
    LOCK,
    ORIGIN,
    ORIGIN_PREFIX,
    PUBLIC_KEY,
    TREE_HEADS,
    LedgerEntry,
    utc_now,
)
from records.ledger.verify import verify_ledger_files
from records.merkle import (
    HASH_SIZE,
    consistency_proof,
    frontier_append,
    frontier_root,
    inclusion_proof,
    root_from_leaf_hashes,
)
from records.signing import Checkpoint, TreeHead, parse_head, public_key_pem


def _append_durably(path: Path, data: bytes) -> None:
    with open(path, "ab") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def _replace_atomically(path: Path, text: str) -> None:
    """Readers see the old file or the new one, never a partial write."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def _entry(event_type: str, index: int, payload: dict[str, Any], now: str) -> LedgerEntry:
    """The entry as it will be stored (e.g. tuples in the payload become lists); ValueError if not JSON."""
    try:
        line = canonical_json(
            {"event_type": event_type, "index": index, "payload": payload, "timestamp": now}
        )
    except TypeError as e:
        raise ValueError(
            f"ledger payload for {event_type} is not plain JSON ({e}); convert paths and other "
            "objects to strings, keys to str"
        ) from None
    return LedgerEntry.from_line(line)


class Ledger:
    """The ledger in folder `root` (normally `<data>/ledger`). Reading needs only public files."""

    def __init__(self, root: Path | str):
        self.root = Path(root)
        self.public_key_path = self.root / PUBLIC_KEY
        self._key: Ed25519PrivateKey | None = None
        # Compact range of the first _num_cached leaves: appends cost O(log n), not a log re-read.
        self._frontier: list[bytes] = []
        self._num_cached = 0

    def _path(self, name: str) -> Path:
        return self.root / name

    @contextmanager
    def _locked(self) -> Iterator[None]:
        self.root.mkdir(parents=True, exist_ok=True)
        with open(self._path(LOCK), "ab") as lock:
            fcntl.flock(lock.fileno(), fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock.fileno(), fcntl.LOCK_UN)

    def key_folder(self) -> Path:
        """The instance's key folder (records.keys.keys_folder: ``APERTUS_KEYS``, or beside this
        ledger's data folder); ValueError if it is inside the data folder (the parent of a folder
        named ``ledger``, as DataLayout lays it out) or inside this folder."""
        from records.keys import check_outside, keys_folder
        from records.layout import DataLayout

        in_layout = self.root.name == "ledger"
        folder = keys_folder(DataLayout(self.root.parent) if in_layout else None)
        check_outside(folder, self.root)
        return folder

    def _signing_key(self) -> Ed25519PrivateKey:
        """Load the key folder's private key and publish its public key here. Call under the lock.

        ValueError naming `apertus init` when there is no key folder, or `apertus init --adopt`
        when older code left a private key in this folder or signed with another key.
        """
        from records.keys import LEGACY_KEY, load_signing_key

        if self._key is None:
            folder = self.key_folder()
            legacy = self.root / LEGACY_KEY
            if legacy.exists():
                raise ValueError(
                    f"a private key written by older code is still in the data folder ({legacy}); run "
                    "`apertus init --adopt` to move it into the key folder (APERTUS_KEYS)"
                )
            key = load_signing_key(folder)
            pem = public_key_pem(key)
            if not self.public_key_path.exists():
                _replace_atomically(self.public_key_path, pem)
            elif self.public_key_path.read_text() != pem:
                raise ValueError(
                    f"the key in {folder} does not match {self.public_key_path}, which signed this ledger; "
                    "point APERTUS_KEYS at this instance's key folder (or, for a data folder written by "
                    "older code, run `apertus init --adopt` with its old key)"
                )
            self._key = key
        return self._key

    def origin(self) -> str | None:
        """Return this ledger's origin (the first line of its checkpoints), or None before its first append."""
        path = self._path(ORIGIN)
        return path.read_text().strip() if path.exists() else None

    def _ensure_origin(self) -> str:
        """The origin, created once (random, so two ledgers never share one). Call under the lock."""
        origin = self.origin()
        if origin is None:
            origin = ORIGIN_PREFIX + secrets.token_hex(16)
            _replace_atomically(self._path(ORIGIN), origin + "\n")
        return origin

    def _recover(self) -> int:
        """Cut off what an interrupted append left behind and return the committed size. Under the lock."""
        hashes_path, entries_path = self._path(LEAF_HASHES), self._path(ENTRIES)
        num = 0
        if hashes_path.exists():
            nbytes = hashes_path.stat().st_size
            num = nbytes // HASH_SIZE
            if nbytes % HASH_SIZE:  # a torn hash: its entry never committed
                os.truncate(hashes_path, num * HASH_SIZE)
        if not entries_path.exists():
            if num:
                raise ValueError(f"{entries_path} is missing but {hashes_path} holds {num} hashes")
            return 0
        with open(entries_path, "r+b") as f:
            end = f.seek(0, os.SEEK_END)
            committed_end = entries_end(f, end, num, entries_path)
            if committed_end != end:
                f.truncate(committed_end)
                os.fsync(f.fileno())
        return num

    def _sync_frontier(self, num: int, key: Ed25519PrivateKey) -> None:
        """Bring the cached compact range up to `num` leaves. Call under the lock.

        O(log n) per append; O(n) only when the frontier file is missing or does not match the
        signed head. A fresh Ledger takes frontier.json only if its size is `num`, the latest head
        signs `num` entries with this instance's key, and the frontier's root is that head's root;
        otherwise (missing, stale, tampered, or an interrupted append) it re-reads leaf_hashes.bin.
        """
        if num < self._num_cached:  # the log shrank under us: start over, verify() will say why
            self._frontier, self._num_cached = [], 0
        if not self._num_cached and num:
            self._load_frontier(num, key)
        if num > self._num_cached:
            for h in read_leaf_hashes(self._path(LEAF_HASHES), self._num_cached, num):
                frontier_append(self._frontier, self._num_cached, h)
                self._num_cached += 1

    def _load_frontier(self, num: int, key: Ed25519PrivateKey) -> None:
        """Take frontier.json if the latest signed head vouches for it (see _sync_frontier); else nothing."""
        try:
            saved = json.loads(self._path(FRONTIER).read_text())
            nodes = [bytes.fromhex(h) for h in saved["nodes"]]
            head = self.tree_head()
            trusted = (
                saved["size"] == num == head.tree_size
                and len(nodes) == bin(num).count("1")
                and all(len(h) == HASH_SIZE for h in nodes)
                and frontier_root(nodes).hex() == head.root_hash
                and head.verify(key.public_key())
            )
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            return
        if trusted:
            self._frontier, self._num_cached = nodes, num

    def _save_frontier(self) -> None:
        """Replace frontier.json atomically (no fsync: a lost or torn one only costs one rebuild)."""
        nodes = [h.hex() for h in self._frontier]
        _replace_atomically(
            self._path(FRONTIER), json.dumps({"size": self._num_cached, "nodes": nodes}) + "\n"
        )

    def append(self, event_type: str, payload: dict[str, Any]) -> LedgerEntry:
        """Durably append one event and a new signed tree head covering it; return the committed entry.

        O(log n) hashing per append; O(n) only when the frontier file is missing or does not match
        the signed head (see _sync_frontier).

        Raises ValueError for an unknown event type or a payload that is not a JSON object.
        Safe to call from several processes at once: each entry gets a unique, contiguous index.
        """
        return self.append_many([(event_type, payload)])[0]

    def append_many(self, events: Iterable[tuple[str, dict[str, Any]]]) -> list[LedgerEntry]:
        """Durably append a batch of ``(event_type, payload)`` events and one signed tree head covering them.

        The batch takes contiguous indices in the given order under one lock: no other writer's
        entry falls between them. All its entries share one timestamp, their tree head's. The
        files are fsynced once per batch (three fsyncs, as for a single append), so a batch costs
        about what one append does. Returns the committed entries once the head is written. A
        crash during the call commits a prefix of the batch (possibly none; entries with their
        leaf hash written), never a gap; the next append cuts off the rest and signs what was
        committed. Raises ValueError, writing nothing, if any event is invalid (as ``append``).
        """
        events = list(events)
        for event_type, payload in events:
            if event_type not in EVENT_TYPES:
                raise ValueError(f"unknown ledger event type {event_type!r}; known: {sorted(EVENT_TYPES)}")
            if not isinstance(payload, dict):
                raise ValueError(f"ledger payload must be a dict, got {type(payload).__name__}")
        if not events:
            return []
        with self._locked():
            key = self._signing_key()
            origin = self._ensure_origin()
            num = self._recover()
            self._sync_frontier(num, key)
            now = utc_now()
            entries = [
                _entry(event_type, num + k, payload, now) for k, (event_type, payload) in enumerate(events)
            ]
            hashes = [bytes.fromhex(e.leaf_hash) for e in entries]
            _append_durably(self._path(ENTRIES), b"".join(e.canonical_json.encode() + b"\n" for e in entries))
            _append_durably(self._path(LEAF_HASHES), b"".join(hashes))
            for k, h in enumerate(hashes):
                frontier_append(self._frontier, num + k, h)
            self._num_cached = num + len(entries)
            head = Checkpoint.sign(key, origin, self._num_cached, frontier_root(self._frontier).hex())
            _append_durably(self._path(TREE_HEADS), head.to_json().encode() + b"\n")
            # A convenience copy: tree_heads.jsonl is authoritative, so no fsync for this one.
            _replace_atomically(self._path(LATEST_TREE_HEAD), head.to_json() + "\n")
            self._save_frontier()
        return entries

    def size(self) -> int:
        """Return the number of committed entries."""
        path = self._path(LEAF_HASHES)
        return path.stat().st_size // HASH_SIZE if path.exists() else 0

    def entries(self) -> Iterator[LedgerEntry]:
        """Yield committed entries in index order; ValueError naming the line if one is malformed."""
        num = self.size()  # read first: entries are written before their hashes, so these are complete
        if not num:
            return
        with open(self._path(ENTRIES), "rb") as f:
            for lineno, line in enumerate(itertools.islice(f, num), start=1):
                try:
                    yield LedgerEntry.from_line(line.rstrip(b"\n"))
                except ValueError as e:
                    raise ValueError(f"{self._path(ENTRIES)} line {lineno}: {e}") from None

    def entry(self, index: int) -> LedgerEntry:
        """Return the committed entry at `index`; ValueError if there is none."""
        for e in self.entries():
            if e.index == index:
                return e
        raise ValueError(f"ledger {self.root} has no entry {index} (size {self.size()})")

    def tree_head(self) -> TreeHead:
        """Return the latest signed tree head (the last line of tree_heads.jsonl): a Checkpoint, or a
        SignedTreeHead written by older code; ValueError if none."""
        path = self._path(TREE_HEADS)
        line = last_line(path) if path.exists() else b""
        if not line:
            raise ValueError(f"ledger {self.root} has no signed tree head yet (nothing appended)")
        return parse_head(line)

    def public_key_pem(self) -> str:
        """Return the published public key (PEM) that verifies this ledger's tree heads."""
        return self.public_key_path.read_text()

    def _leaf_hashes(self, upto: int) -> list[bytes]:
        if not 0 <= upto <= self.size():
            raise ValueError(f"tree size {upto} is outside the ledger's 0..{self.size()} entries")
        return read_leaf_hashes(self._path(LEAF_HASHES), 0, upto)

    def root_at(self, tree_size: int) -> str:
        """Return the hex RFC 6962 root of the first `tree_size` entries (from the leaf cache; O(n) hashes)."""
        return root_from_leaf_hashes(self._leaf_hashes(tree_size)).hex()

    def inclusion_proof(self, index: int, tree_size: int | None = None) -> list[str]:
        """Return the hex RFC 6962 audit path of entry `index` in the tree of `tree_size` entries.

        tree_size defaults to the latest signed tree head's, so the proof checks against that head.
        """
        n = self.tree_head().tree_size if tree_size is None else tree_size
        return [p.hex() for p in inclusion_proof(self._leaf_hashes(n), index, n)]

    def consistency_proof(self, old_size: int, new_size: int | None = None) -> list[str]:
        """Return the hex RFC 6962 proof that the first old_size entries are a prefix of the first new_size.

        new_size defaults to the latest signed tree head's size.
        """
        n = self.tree_head().tree_size if new_size is None else new_size
        return [p.hex() for p in consistency_proof(self._leaf_hashes(n), old_size, n)]

    def verify(self) -> list[str]:
        """Re-derive everything from the files and return every problem found (empty: the ledger is valid).

        Checks entries (canonical form, fields, contiguous indices), the leaf hash cache, every
        tree head (signature under public_key.pem, root recomputed from the entries, growing
        sizes), that latest_tree_head.json is the last head, and that no entry is unsigned.
        """
        return verify_ledger_files(self.root)

    def verify_since_checked(self) -> list[str]:
        """The per-step check: verify only what was appended since the last head this check verified.

        That head (and the tree's compact range at it) is kept in the key folder, with the trust
        anchors. O(new entries + new heads + log n); O(n), a full verify(), when the key folder or its
        held state is missing or unusable (records.ledger.incremental). Problems as verify()'s; [] if
        valid. Entries before the held head are not re-read: ``apertus audit verify`` is the full check.
        """
        from records.ledger.incremental import verify_since_checked

        if not self.root.exists():
            return verify_ledger_files(self.root)
        try:
            folder = self.key_folder()
        except ValueError:
            folder = None
        with self._locked():  # an append in progress would look like unsigned entries
            return verify_since_checked(self.root, folder)
