"""The instance identity: the signing key and the held tree heads, in a key folder outside the data folder.

The key folder is named by ``APERTUS_KEYS`` (default: ``<data folder>-keys`` beside the data folder,
e.g. ``data-keys/`` in the checkout) and made by ``apertus init``. It holds

    ledger_ed25519.pem        the private key (PKCS#8 PEM, mode 0600; the folder is 0700)
    ledger_ed25519.pub.pem    its public key: the ``--trusted-key`` of ``apertus audit verify``
    heads/<origin>.checkpoint the latest head verified for each ledger (its origin, '/' as '_')
    heads/<origin>.checked    the latest head the per-step check verified, with its compact range

Nothing here lives in the data folder: whoever can write the data folder (or read it through SQL)
can then neither sign nor move the heads a later ``verify --head`` compares against. docs/security.md.
"""

from __future__ import annotations

import os
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from records.layout import DataLayout
from records.signing import (
    TreeHead,
    key_id,
    load_private_key,
    load_public_key,
    parse_head,
    public_key_pem,
    write_private_key,
)

KEYS_ENV = "APERTUS_KEYS"
PRIVATE_KEY = "ledger_ed25519.pem"
PUBLIC_KEY = "ledger_ed25519.pub.pem"
HEADS = "heads"
LEGACY_KEY = Path("keys") / PRIVATE_KEY  # where older code kept the key, inside <data>/ledger/


def keys_folder(layout: DataLayout | None = None) -> Path:
    """The key folder: ``APERTUS_KEYS``, or ``<data folder>-keys`` beside the data folder.

    ValueError if it lies inside the data folder (``layout``, or ``APERTUS_DATA``).
    """
    layout = layout or DataLayout.from_env()
    named = os.environ.get(KEYS_ENV)
    folder = Path(named).resolve() if named else layout.root.with_name(layout.root.name + "-keys")
    check_outside(folder, layout.root)
    return folder


def check_outside(folder: Path, data: Path) -> None:
    """ValueError unless key folder `folder` is outside data folder `data` (symlinks resolved)."""
    folder, data = Path(folder).resolve(), Path(data).resolve()
    if folder == data or folder.is_relative_to(data):
        raise ValueError(
            f"the key folder {folder} is inside the data folder {data}: anyone who can write (or, through "
            f"SQL, read) the data folder could sign; set {KEYS_ENV} to a folder outside it and run `apertus init`"
        )


def _missing(folder: Path) -> ValueError:
    return ValueError(
        f"no signing key in {folder / PRIVATE_KEY}: run `apertus init` to create this instance's key "
        f"folder (named by {KEYS_ENV}, outside the data folder), or `apertus init --adopt` for a data "
        "folder written by older code"
    )


def load_signing_key(folder: Path) -> Ed25519PrivateKey:
    """The instance's private key from key folder `folder`; ValueError naming `apertus init` if absent."""
    path = Path(folder) / PRIVATE_KEY
    if not path.is_file():
        raise _missing(Path(folder))
    return load_private_key(path)


def load_trusted_key(folder: Path) -> Ed25519PublicKey:
    """The instance's public key from key folder `folder`; ValueError naming `apertus init` if absent."""
    path = Path(folder) / PUBLIC_KEY
    if not path.is_file():
        raise _missing(Path(folder))
    return load_public_key(path.read_bytes())


def create_identity(folder: Path, key: Ed25519PrivateKey | None = None) -> tuple[Ed25519PrivateKey, bool]:
    """Make key folder `folder` (0700) with a private key (0600), its public key and ``heads/``.

    An existing key is kept (returned with False); otherwise `key`, or a new one, is written (True).
    """
    folder = Path(folder)
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(folder, 0o700)
    (folder / HEADS).mkdir(mode=0o700, exist_ok=True)
    path = folder / PRIVATE_KEY
    created = not path.exists()
    if created:
        write_private_key(path, key or Ed25519PrivateKey.generate())
    existing = load_private_key(path)
    public = folder / PUBLIC_KEY
    if not public.exists() or public.read_text() != public_key_pem(existing):
        tmp = public.with_name(public.name + ".tmp")
        tmp.write_text(public_key_pem(existing))
        os.replace(tmp, public)
    return existing, created


def held_head_path(folder: Path, origin: str) -> Path:
    """Where the held head of the ledger named `origin` lives in key folder `folder`."""
    safe = "".join(c if c.isalnum() or c in "-._" else "_" for c in origin)
    return Path(folder) / HEADS / f"{safe}.checkpoint"


def checked_head_path(folder: Path, origin: str) -> Path:
    """Where the per-step ledger check (records.ledger.incremental) keeps the last head it verified."""
    return held_head_path(folder, origin).with_suffix(".checked")


def read_held_head(path: Path) -> TreeHead:
    """Parse a held head file (a checkpoint note, or an older JSON head); ValueError naming the file."""
    try:
        return parse_head(Path(path).read_text())
    except (OSError, UnicodeDecodeError, ValueError) as e:
        raise ValueError(f"{path}: not a tree head ({e})") from None


def write_held_head(path: Path, text: str) -> None:
    """Replace the held head at `path` atomically."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def describe_key(public_key: Ed25519PublicKey) -> str:
    """A short, stable name of a key for messages and documents: the first 16 hex digits of its key id."""
    return key_id(public_key)[:16]
