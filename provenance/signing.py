"""Canonical JSON, the ledger's Ed25519 key files, and signed tree heads.

What is signed: the canonical JSON (see `canonical_json`) of a tree head *without* its
"signature" field, i.e. the object {"key_id", "root_hash", "timestamp", "tree_size", "type"}.
The "type" string separates these signatures from any other use of the same key.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

TREE_HEAD_TYPE = "apertus.ledger.tree_head.v1"
KEY_ENV = "APERTUS_LEDGER_KEY"


def canonical_json(obj: Any) -> bytes:
    """Return the one canonical encoding of a JSON value: sorted keys, no whitespace, UTF-8.

    Non-ASCII text is written as UTF-8, not \\u escapes; NaN and infinities are refused
    (ValueError), since JSON has no portable spelling for them.
    """
    return json.dumps(
        obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    ).encode()


def load_or_create_private_key(path: Path) -> Ed25519PrivateKey:
    """Return the Ed25519 key stored at `path` (unencrypted PKCS#8 PEM), generating it if absent.

    A new key file is created with mode 0600 in a 0700 folder. An existing key readable by group
    or others is refused with a ValueError, as ssh does, since anyone who reads it can forge
    tree heads. Callers serialize creation (the ledger does it under its lock).
    """
    if path.exists():
        mode = stat.S_IMODE(path.stat().st_mode)
        if mode & 0o077:
            raise ValueError(f"ledger private key {path} has mode {oct(mode)}; run `chmod 600 {path}`")
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
        if not isinstance(key, Ed25519PrivateKey):
            raise ValueError(f"ledger private key {path} is not an Ed25519 key")
        return key
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    key = Ed25519PrivateKey.generate()
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
    return key


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
