"""The ledger's Ed25519 key files, and signed tree heads in two formats.

`Checkpoint` (written by every append now): a C2SP signed note (c2sp.org/signed-note) whose text
is a tlog checkpoint (c2sp.org/tlog-checkpoint): origin line, tree size, base64 root, then a blank
line and `— <key name> base64(key hash || Ed25519 signature)`. The key name is the origin, the key
hash SHA-256(name || 0x0A || 0x01 || raw public key)[:4]. Other tools that speak the format
(witnesses, sigsum, Go's golang.org/x/mod/sumdb/note) can check and cosign these heads.

`SignedTreeHead` (written by older code, still verified): what is signed is the canonical JSON
(see `records.canonical.canonical_json`) of a head *without* its "signature" field, i.e. the object
{"key_id", "root_hash", "timestamp", "tree_size", "type"}.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
import re
import stat
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from records.canonical import canonical_json

TREE_HEAD_TYPE = "apertus.ledger.tree_head.v1"
CHECKPOINT_TYPE = "c2sp.org/tlog-checkpoint"
# Read only by `apertus init --adopt`: where older code may have kept the private key.
KEY_ENV = "APERTUS_LEDGER_KEY"
ED25519_NOTE_TYPE = b"\x01"  # signed-note signature type of Ed25519
SIGNATURE_PREFIX = "\u2014 "  # em dash, space
MAX_NOTE_SIGNATURES = 16


def load_private_key(path: Path) -> Ed25519PrivateKey:
    """Return the Ed25519 key stored at `path` (unencrypted PKCS#8 PEM).

    A key readable by group or others is refused with a ValueError, as ssh does, since anyone who
    reads it can forge tree heads.
    """
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        raise ValueError(f"ledger private key {path} has mode {oct(mode)}; run `chmod 600 {path}`")
    key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    if not isinstance(key, Ed25519PrivateKey):
        raise ValueError(f"ledger private key {path} is not an Ed25519 key")
    return key


def write_private_key(path: Path, key: Ed25519PrivateKey) -> None:
    """Write `key` to a new file `path` with mode 0600 (FileExistsError if it exists), fsynced."""
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.fchmod(fd, 0o600)  # the umask can only remove bits, but be explicit about the result
        os.write(fd, pem)
        os.fsync(fd)
    finally:
        os.close(fd)


def public_key_pem(key: Ed25519PrivateKey | Ed25519PublicKey) -> str:
    """Return the SubjectPublicKeyInfo PEM of a key (the private key's public half)."""
    pub = key.public_key() if isinstance(key, Ed25519PrivateKey) else key
    return pub.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode()


def load_public_key(pem: str | bytes) -> Ed25519PublicKey:
    """Parse an Ed25519 public key from PEM; ValueError if it is not one."""
    key = serialization.load_pem_public_key(pem.encode() if isinstance(pem, str) else pem)
    if not isinstance(key, Ed25519PublicKey):
        raise ValueError("the public key is not an Ed25519 key")
    return key


def key_id(public_key: Ed25519PublicKey) -> str:
    """Return the hex SHA-256 of the raw 32-byte public key, naming which key signed a head."""
    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()


@dataclass(frozen=True)
class SignedTreeHead:
    """A signed statement that the ledger's first `tree_size` entries have Merkle root `root_hash`."""

    tree_size: int
    root_hash: str  # hex of the RFC 6962 root
    timestamp: str  # UTC ISO 8601
    key_id: str  # hex SHA-256 of the raw public key
    signature: str  # hex Ed25519 signature over signed_bytes()

    def signed_bytes(self) -> bytes:
        """Return the exact bytes the signature covers: canonical JSON of every field but the signature."""
        return canonical_json(
            {
                "key_id": self.key_id,
                "root_hash": self.root_hash,
                "timestamp": self.timestamp,
                "tree_size": self.tree_size,
                "type": TREE_HEAD_TYPE,
            }
        )

    def to_json(self) -> str:
        """Return the canonical JSON stored in tree_heads.jsonl and latest_tree_head.json."""
        fields = json.loads(self.signed_bytes())
        fields["signature"] = self.signature
        return canonical_json(fields).decode()

    @classmethod
    def from_json(cls, text: str | bytes) -> SignedTreeHead:
        """Parse a stored tree head; ValueError naming the problem if any field is missing or mistyped."""
        try:
            d = json.loads(text)
        except json.JSONDecodeError as e:
            raise ValueError(f"tree head is not JSON: {e}") from None
        expected = {"key_id", "root_hash", "signature", "timestamp", "tree_size", "type"}
        if not isinstance(d, dict) or set(d) != expected:
            raise ValueError(f"tree head must have exactly the fields {sorted(expected)}")
        if d["type"] != TREE_HEAD_TYPE:
            raise ValueError(f"tree head type is {d['type']!r}, expected {TREE_HEAD_TYPE!r}")
        if not isinstance(d["tree_size"], int) or isinstance(d["tree_size"], bool) or d["tree_size"] < 0:
            raise ValueError("tree head tree_size must be a non-negative integer")
        for name in ("key_id", "root_hash", "signature", "timestamp"):
            if not isinstance(d[name], str):
                raise ValueError(f"tree head field {name} must be a string")
        return cls(d["tree_size"], d["root_hash"], d["timestamp"], d["key_id"], d["signature"])

    @classmethod
    def sign(cls, key: Ed25519PrivateKey, tree_size: int, root_hash: str, timestamp: str) -> SignedTreeHead:
        """Return the tree head for (tree_size, root_hash, timestamp) signed with `key`."""
        unsigned = cls(tree_size, root_hash, timestamp, key_id(key.public_key()), "")
        return cls(tree_size, root_hash, timestamp, unsigned.key_id, key.sign(unsigned.signed_bytes()).hex())

    def verify(self, public_key: Ed25519PublicKey | str | bytes) -> bool:
        """Return True iff this head was signed by `public_key` (a key object or its PEM). Never raises."""
        try:
            pub = public_key if isinstance(public_key, Ed25519PublicKey) else load_public_key(public_key)
            if self.key_id != key_id(pub):
                return False
            pub.verify(bytes.fromhex(self.signature), self.signed_bytes())
        except (InvalidSignature, ValueError):
            return False
        return True


def _raw(public_key: Ed25519PublicKey) -> bytes:
    return public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def note_key_hash(name: str, public_key: Ed25519PublicKey) -> bytes:
    """Return the signed-note key hash of an Ed25519 key: SHA-256(name || 0x0A || 0x01 || raw key)[:4]."""
    return hashlib.sha256(name.encode() + b"\n" + ED25519_NOTE_TYPE + _raw(public_key)).digest()[:4]


def verifier_key(name: str, public_key: Ed25519PublicKey) -> str:
    """Return the signed-note verifier key `<name>+<hex key hash>+<base64(0x01 || raw key)>`."""
    encoded = base64.b64encode(ED25519_NOTE_TYPE + _raw(public_key)).decode()
    return f"{name}+{note_key_hash(name, public_key).hex()}+{encoded}"


def _check_key_name(name: str) -> None:
    if not name or re.search(r"[\s+]", name):
        raise ValueError(f"key name {name!r} must be non-empty, without spaces or '+'")


@dataclass(frozen=True)
class NoteSignature:
    """One signature line of a signed note."""

    name: str
    key_hash: bytes  # 4 bytes
    signature: bytes


def split_note(text: str) -> tuple[str, list[NoteSignature]]:
    """Split a signed note into its text (final newline included) and signatures; ValueError if malformed."""
    if any(ord(c) < 0x20 and c != "\n" for c in text):
        raise ValueError("a signed note must not contain control characters other than newline")
    if not text.endswith("\n"):
        raise ValueError("a signed note must end with a newline")
    cut = text.rfind("\n\n")
    if cut < 0:
        raise ValueError("a signed note needs a blank line between its text and its signatures")
    body, lines = text[: cut + 1], text[cut + 2 :].splitlines()
    if not lines or len(lines) > MAX_NOTE_SIGNATURES:
        raise ValueError(f"a signed note needs 1 to {MAX_NOTE_SIGNATURES} signature lines, got {len(lines)}")
    signatures = []
    for line in lines:
        name, _, encoded = line.removeprefix(SIGNATURE_PREFIX).partition(" ")
        try:
            if not line.startswith(SIGNATURE_PREFIX):
                raise ValueError
            _check_key_name(name)
            raw = base64.b64decode(encoded, validate=True)
        except (ValueError, binascii.Error):
            raise ValueError(f"malformed signature line {line!r}") from None
        if len(raw) < 5:
            raise ValueError(f"signature line {line!r} is shorter than a key hash and a signature")
        signatures.append(NoteSignature(name, raw[:4], raw[4:]))
    return body, signatures


@dataclass(frozen=True)
class Checkpoint:
    """A tlog checkpoint as a C2SP signed note: the log `origin` has `tree_size` entries with root `root_hash`."""

    origin: str
    tree_size: int
    root_hash: str  # hex of the RFC 6962 root (base64 in the note)
    signatures: tuple[NoteSignature, ...] = ()

    def body(self) -> bytes:
        """Return the note text the signatures cover: origin, size and base64 root, one per line."""
        root = base64.b64encode(bytes.fromhex(self.root_hash)).decode()
        return f"{self.origin}\n{self.tree_size}\n{root}\n".encode()

    def note(self) -> str:
        """Return the signed note: the text, a blank line, then one `— name signature` line per signature."""
        lines = [
            f"{SIGNATURE_PREFIX}{s.name} {base64.b64encode(s.key_hash + s.signature).decode()}\n"
            for s in self.signatures
        ]
        return self.body().decode() + "\n" + "".join(lines)

    def to_json(self) -> str:
        """Return the line stored in tree_heads.jsonl: canonical JSON of {"checkpoint": note, "type"}."""
        return canonical_json({"checkpoint": self.note(), "type": CHECKPOINT_TYPE}).decode()

    @classmethod
    def from_note(cls, text: str | bytes) -> Checkpoint:
        """Parse a checkpoint note; ValueError naming the problem. Extension lines are refused (we write none)."""
        if isinstance(text, bytes):
            text = text.decode()
        body, signatures = split_note(text)
        lines = body[:-1].split("\n")
        if len(lines) != 3:
            raise ValueError(f"a checkpoint's text has 3 lines (origin, size, root), got {len(lines)}")
        origin, size, root = lines
        if not origin:
            raise ValueError("the checkpoint's origin line is empty")
        if not re.fullmatch(r"0|[1-9][0-9]*", size):
            raise ValueError(f"the checkpoint's tree size {size!r} is not a decimal without leading zeros")
        try:
            root_bytes = base64.b64decode(root, validate=True)
        except binascii.Error:
            root_bytes = b""
        if len(root_bytes) != 32:
            raise ValueError(f"the checkpoint's root hash {root!r} is not the base64 of 32 bytes")
        head = cls(origin, int(size), root_bytes.hex(), tuple(signatures))
        if head.body().decode() != body:  # e.g. base64 with stray padding bits: the signed bytes would differ
            raise ValueError(f"the checkpoint's root hash {root!r} is not in canonical base64")
        return head

    @classmethod
    def sign(cls, key: Ed25519PrivateKey, origin: str, tree_size: int, root_hash: str) -> Checkpoint:
        """Return the checkpoint for (origin, tree_size, root_hash) signed by `key` under key name `origin`."""
        _check_key_name(origin)
        unsigned = cls(origin, tree_size, root_hash)
        signature = NoteSignature(origin, note_key_hash(origin, key.public_key()), key.sign(unsigned.body()))
        return cls(origin, tree_size, root_hash, (signature,))

    def verify(self, public_key: Ed25519PublicKey | str | bytes, key_name: str | None = None) -> bool:
        """Return True iff the key named `key_name` (default: the origin) with `public_key` signed this note.

        As signed-note requires, signatures by other keys are ignored, and one signature by the
        known key that fails rejects the note. Never raises.
        """
        try:
            pub = public_key if isinstance(public_key, Ed25519PublicKey) else load_public_key(public_key)
            name = self.origin if key_name is None else key_name
            expected = note_key_hash(name, pub)
            known = [s for s in self.signatures if s.name == name and s.key_hash == expected]
            for s in known:
                pub.verify(s.signature, self.body())
        except (InvalidSignature, ValueError):
            return False
        return bool(known)


TreeHead = SignedTreeHead | Checkpoint


def parse_head(text: str | bytes) -> TreeHead:
    """Parse a tree head in any form we write or publish: a tree_heads.jsonl line (either format),
    an older JSON head, or a bare checkpoint note. ValueError naming the problem."""
    if isinstance(text, bytes):
        text = text.decode()
    if not text.lstrip().startswith("{"):
        return Checkpoint.from_note(text)
    try:
        d = json.loads(text)
    except json.JSONDecodeError as e:
        raise ValueError(f"tree head is not JSON: {e}") from None
    if isinstance(d, dict) and d.get("type") == CHECKPOINT_TYPE:
        if set(d) != {"checkpoint", "type"} or not isinstance(d["checkpoint"], str):
            raise ValueError('a stored checkpoint must have exactly the fields ["checkpoint", "type"]')
        return Checkpoint.from_note(d["checkpoint"])
    return SignedTreeHead.from_json(text.strip())
