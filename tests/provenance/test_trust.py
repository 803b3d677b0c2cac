"""Trust anchors outside the data folder (issue 14, finding 2): the key folder, checkpoint heads, held heads.

Each history rewrite of finding 2 is done the way an attacker holding only the data folder would
(with no key, or with a key of their own), and `apertus audit verify --trusted-key K --head H` must
fail naming it. Ground truths: hashlib and the cryptography package, and the example of the C2SP
signed-note spec for the key hash and signature format.
"""

from __future__ import annotations

import base64
import hashlib
import json
import stat
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from apertus.cli import main
from records.canonical import canonical_json
from records.identity import init_instance
from records.keys import PUBLIC_KEY, held_head_path
from records.layout import DataLayout
from records.ledger import (
    ALIAS_MOVED,
    DATASET_VERSION_CREATED,
    ERASURE_REQUESTED,
    KEY_ADOPTED,
    MODEL_CERTIFIED,
    Checkpoint,
    Ledger,
    SignedTreeHead,
)
from records.manifest import MANIFEST, seal
from records.merkle import leaf_hash, root_from_leaf_hashes
from records.pins import pin_dataset_version, write_pin
from records.signing import note_key_hash, parse_head, public_key_pem, verifier_key


def _small_data_folder(root: Path) -> DataLayout:
    """Two sealed, pinned versions with two certifications and an erasure request between them,
    and an alias move after: the shape of the demo's ledger, in six entries."""
    layout = DataLayout(root / "data")
    ledger = Ledger(layout.ledger)
    for name in ("a", "b"):
        staging = root / "staging" / name
        staging.mkdir(parents=True)
        (staging / "doc.txt").write_text(f"document {name}\n")
        manifest, _ = seal(staging, layout.datasets, asset="raw_documents", snapshot=name)
        pin_dataset_version(layout, manifest)
        if name == "a":
            ledger.append(MODEL_CERTIFIED, {"model_version": "trained_model/x", "by": "test"})
            ledger.append(MODEL_CERTIFIED, {"model_version": "trained_model/y", "by": "test"})
            ledger.append(ERASURE_REQUESTED, {"request_id": "r1", "url": "https://example.org/a"})
    ledger.append(ALIAS_MOVED, {"alias": "production", "model_version": "trained_model/y"})
    return layout


def _verify(capsys, *flags: str) -> tuple[int, str]:
    capsys.readouterr()
    code = main(["audit", "verify", *flags])
    captured = capsys.readouterr()
    if "--json" in flags:
        return code, captured.out
    assert captured.out.splitlines()[-1].startswith(("OK: ", "FAILED: "))  # the summary stays last
    return code, captured.out + captured.err


def _held_head(capsys, path: Path) -> Path:
    capsys.readouterr()
    assert main(["audit", "head"]) == 0
    path.write_text(capsys.readouterr().out)
    return path


def _entries(layout: DataLayout) -> list[dict]:
    return [json.loads(line) for line in (layout.ledger / "entries.jsonl").read_bytes().splitlines()]


def _rewrite_and_resign(layout: DataLayout, entries: list[dict], key: Ed25519PrivateKey) -> None:
    """What an attacker with the data folder and a key of their own does: renumber the entries, rewrite
    the leaf cache and the pin markers, sign a head per entry and publish their public key in the data folder."""
    ledger = layout.ledger
    lines = [canonical_json(dict(e, index=i)) for i, e in enumerate(entries)]
    leaves = [leaf_hash(line) for line in lines]
    origin = (ledger / "origin").read_text().strip()
    heads = [
        Checkpoint.sign(key, origin, n, root_from_leaf_hashes(leaves, 0, n).hex()).to_json()
        for n in range(1, len(lines) + 1)
    ]
    (ledger / "entries.jsonl").write_bytes(b"".join(line + b"\n" for line in lines))
    (ledger / "leaf_hashes.bin").write_bytes(b"".join(leaves))
    (ledger / "tree_heads.jsonl").write_text("".join(h + "\n" for h in heads))
    (ledger / "latest_tree_head.json").write_text(heads[-1] + "\n")
    (ledger / "public_key.pem").write_text(public_key_pem(key))
    for index, entry in enumerate(entries):  # the pin markers are in the data folder too
        if entry["event_type"] == DATASET_VERSION_CREATED:
            write_pin(layout, entry["payload"]["dataset_version"], index, lines[index].decode())


def _delete_last_entry(layout: DataLayout) -> None:
    """Rewrite (a): no key needed: the last entry, its leaf hash and its head removed."""
    ledger = layout.ledger
    for name in ("entries.jsonl", "tree_heads.jsonl"):
        lines = (ledger / name).read_bytes().splitlines(keepends=True)
        (ledger / name).write_bytes(b"".join(lines[:-1]))
    hashes = (ledger / "leaf_hashes.bin").read_bytes()
    (ledger / "leaf_hashes.bin").write_bytes(hashes[:-32])
    last = (ledger / "tree_heads.jsonl").read_bytes().splitlines()[-1]
    (ledger / "latest_tree_head.json").write_bytes(last + b"\n")


def _rewrite_manifest(layout: DataLayout) -> None:
    """Rewrite (b): a manifest changed, its entry's manifest_sha256 with it, heads re-signed by a new key."""
    entries = _entries(layout)
    pin = next(e for e in entries if e["event_type"] == "dataset_version_created")
    path = layout.datasets / pin["payload"]["dataset_version"] / MANIFEST
    manifest = json.loads(path.read_text())
    manifest["created_at"] = "2020-01-01T00:00:00Z"  # backdated: the version id does not cover it
    path.write_text(json.dumps(manifest, indent=1))
    pin["payload"]["manifest_sha256"] = hashlib.sha256(path.read_bytes()).hexdigest()
    _rewrite_and_resign(layout, entries, Ed25519PrivateKey.generate())


def _remove_from_the_middle(layout: DataLayout) -> None:
    """Rewrite (c): two certifications and the erasure request removed, a new key, public_key.pem replaced."""
    kept = [e for e in _entries(layout) if e["event_type"] not in (MODEL_CERTIFIED, ERASURE_REQUESTED)]
    _rewrite_and_resign(layout, kept, Ed25519PrivateKey.generate())


REWRITES = {
    "a: last entry deleted with its leaf hash and head": (
        _delete_last_entry,
        ["truncated: it holds 5 entries but the held head"],
    ),
    "b: manifest rewritten, heads re-signed with a new key": (
        _rewrite_manifest,
        ["the published key was replaced", "not signed by the trusted key", "rewritten: its first 6 entries"],
    ),
    "c: certifications and erasure removed from the middle, new key": (
        _remove_from_the_middle,
        ["the published key was replaced", "not signed by the trusted key", "truncated: it holds 3 entries"],
    ),
}


@pytest.mark.parametrize("rewrite", sorted(REWRITES))
def test_each_history_rewrite_fails_against_the_trusted_key_and_held_head(
    rewrite, tmp_path, monkeypatch, capsys, instance_keys
):
    layout = _small_data_folder(tmp_path)
    monkeypatch.setenv("APERTUS_DATA", str(layout.root))
    head = _held_head(capsys, tmp_path / "held.checkpoint")
    trusted = instance_keys / PUBLIC_KEY
    code, out = _verify(capsys, "--trusted-key", str(trusted), "--head", str(head))
    assert code == 0 and "the log extends it" in out, out

    apply, causes = REWRITES[rewrite]
    apply(layout)
    # Against the data folder's own key the rewrite is consistent: verify passes, and says what it did not prove.
    code, out = _verify(capsys)
    assert code == 0, out
    assert "not proved: that the data folder's key is this instance's" in out
    assert "not proved: no held head was given" in out

    code, out = _verify(capsys, "--trusted-key", str(trusted), "--head", str(head))
    assert code == 1 and "FAILED" in out, out
    for cause in causes:
        assert cause in out, (cause, out)
    code, out = _verify(capsys, "--json", "--trusted-key", str(trusted), "--head", str(head))
    result = json.loads(out)
    assert code == 1 and not result["ok"] and not result["trust"]["ok"]


def test_verify_with_anchors_passes_and_moves_the_held_head_forward(
    tmp_path, monkeypatch, capsys, instance_keys
):
    layout = _small_data_folder(tmp_path)
    monkeypatch.setenv("APERTUS_DATA", str(layout.root))
    head = _held_head(capsys, tmp_path / "held.checkpoint")
    note = Checkpoint.from_note(head.read_text())
    assert note.tree_size == 6 and note.origin == Ledger(layout.ledger).origin()
    held = held_head_path(instance_keys, note.origin)
    assert held.read_text() == head.read_text()  # `audit head` keeps what it printed
    Ledger(layout.ledger).append(ALIAS_MOVED, {"alias": "production", "model_version": "trained_model/x"})
    code, out = _verify(capsys, "--trusted-key", str(instance_keys), "--head", str(head))
    assert code == 0 and f"held head saved: {held}" in out, out
    assert Checkpoint.from_note(held.read_text()).tree_size == 7


def test_audit_head_refuses_to_hold_a_head_the_log_does_not_extend(tmp_path, monkeypatch, capsys):
    layout = _small_data_folder(tmp_path)
    monkeypatch.setenv("APERTUS_DATA", str(layout.root))
    _held_head(capsys, tmp_path / "held.checkpoint")
    _delete_last_entry(layout)  # still signed by our key, but smaller than the head held before
    assert main(["audit", "head"]) == 1
    assert "not held" in capsys.readouterr().err


def test_signing_without_a_key_folder_stops_naming_apertus_init(tmp_path, monkeypatch):
    monkeypatch.setenv("APERTUS_KEYS", str(tmp_path / "no-keys"))
    data = tmp_path / "data"
    with pytest.raises(ValueError, match=r"apertus init.*APERTUS_KEYS"):
        Ledger(data / "ledger").append(MODEL_CERTIFIED, {})
    assert not any(p.suffix == ".pem" for p in tmp_path.rglob("*"))  # no key was made anywhere
    assert Ledger(data / "ledger").size() == 0


def test_a_key_folder_inside_the_data_folder_is_refused(tmp_path, monkeypatch, capsys):
    data = tmp_path / "data"
    monkeypatch.setenv("APERTUS_DATA", str(data))
    monkeypatch.setenv("APERTUS_KEYS", str(data / "keys"))
    assert main(["init"]) == 2
    assert "inside the data folder" in capsys.readouterr().err
    assert not (data / "keys").exists()
    with pytest.raises(ValueError, match="inside the data folder"):
        Ledger(data / "ledger").append(MODEL_CERTIFIED, {})


def test_init_makes_a_private_key_folder_once(tmp_path, monkeypatch, capsys):
    keys = tmp_path / "keys"
    monkeypatch.setenv("APERTUS_DATA", str(tmp_path / "data"))
    monkeypatch.setenv("APERTUS_KEYS", str(keys))
    assert main(["init"]) == 0
    assert "created a new signing key" in capsys.readouterr().out
    assert stat.S_IMODE(keys.stat().st_mode) == 0o700
    assert stat.S_IMODE((keys / "ledger_ed25519.pem").stat().st_mode) == 0o600
    assert (keys / "heads").is_dir() and (keys / PUBLIC_KEY).is_file()
    before = (keys / "ledger_ed25519.pem").read_bytes()
    assert main(["init"]) == 0 and "nothing changed" in capsys.readouterr().out
    assert (keys / "ledger_ed25519.pem").read_bytes() == before
    Ledger(tmp_path / "data" / "ledger").append(MODEL_CERTIFIED, {})
    assert (tmp_path / "data" / "ledger" / "public_key.pem").read_text() == (keys / PUBLIC_KEY).read_text()


# The example of c2sp.org/signed-note ("Verifier keys"): a verifier key and the note it verifies.
SPEC_VKEY = "example.com/foo+530d903a+AekyeRrm56hApGFkyQR4ZCbV54Id2LKaANYcrnKv3U2k"
SPEC_NOTE = (
    "This is an example message.\n\n"
    "\u2014 example.com/foo Uw2QOkn8srV1yJGh2VYRlL1Tnagv1YEq6TfXppzi2ONncAlTgK7Ztg1ERYNZXsYjOBH3mFXmRKuwHjG1Yu72IneyaQM=\n"
)


def test_key_hash_and_signature_format_match_the_signed_note_spec():
    from records.signing import split_note

    name, key_hash, encoded = SPEC_VKEY.split("+")
    raw = base64.b64decode(encoded)
    assert raw[0] == 1  # Ed25519
    pub = Ed25519PublicKey.from_public_bytes(raw[1:])
    assert note_key_hash(name, pub).hex() == key_hash
    assert verifier_key(name, pub) == SPEC_VKEY
    text, (signature,) = split_note(SPEC_NOTE)
    assert text == "This is an example message.\n" and signature.name == name
    assert signature.key_hash.hex() == key_hash
    pub.verify(signature.signature, text.encode())  # raises if our split is wrong


def test_checkpoint_round_trip_and_malformed_notes():
    key = Ed25519PrivateKey.generate()
    head = Checkpoint.sign(key, "apertus.ledger/0123", 20852163, hashlib.sha256(b"x").hexdigest())
    note = head.note()
    root = base64.b64encode(hashlib.sha256(b"x").digest()).decode()
    assert note.startswith(f"apertus.ledger/0123\n20852163\n{root}\n\n\u2014 apertus.ledger/0123 ")
    assert Checkpoint.from_note(note) == head == parse_head(head.to_json()) == parse_head(note)
    assert head.verify(key.public_key()) and not head.verify(Ed25519PrivateKey.generate().public_key())
    signature = base64.b64decode(note.rstrip("\n").rsplit(" ", 1)[1])
    key.public_key().verify(signature[4:], head.body())
    # A signature by an unknown key beside ours is ignored, as signed-note requires.
    cosigned = note + f"\u2014 witness.example/w {base64.b64encode(b'1234' + b'0' * 64).decode()}\n"
    assert Checkpoint.from_note(cosigned).verify(key.public_key())
    bad = {
        "no blank line": note.replace("\n\n", "\n"),
        "leading zero": note.replace("\n20852163\n", "\n020852163\n"),
        "short root": note.replace(root, base64.b64encode(b"abc").decode()),
        "control character": note.replace("apertus.ledger/0123\n", "apertus.ledger/0123\t\n", 1),
        "no em dash": note.replace("\u2014 ", "- "),
        "extension line": note.replace(f"{root}\n", f"{root}\nextra\n"),
    }
    for name, text in bad.items():
        with pytest.raises(ValueError):
            Checkpoint.from_note(text)
        assert name


def _older_ledger(layout: DataLayout, key: Ed25519PrivateKey, num: int) -> None:
    """A ledger as older code wrote it: JSON heads, public_key.pem, and the private key in ledger/keys/."""
    root = layout.ledger
    (root / "keys").mkdir(parents=True, mode=0o700)
    from records.signing import write_private_key

    write_private_key(root / "keys" / "ledger_ed25519.pem", key)
    lines = [
        canonical_json({"event_type": MODEL_CERTIFIED, "index": i, "payload": {"n": i},
                        "timestamp": "2026-11-28T08:49:10.740247Z"})
        for i in range(num)
    ]  # fmt: skip
    leaves = [leaf_hash(line) for line in lines]
    heads = [
        SignedTreeHead.sign(key, n, root_from_leaf_hashes(leaves, 0, n).hex(), "2026-11-28T08:49:10.740247Z")
        for n in range(1, num + 1)
    ]
    (root / "entries.jsonl").write_bytes(b"".join(line + b"\n" for line in lines))
    (root / "leaf_hashes.bin").write_bytes(b"".join(leaves))
    (root / "tree_heads.jsonl").write_text("".join(h.to_json() + "\n" for h in heads))
    (root / "latest_tree_head.json").write_text(heads[-1].to_json() + "\n")
    (root / "public_key.pem").write_text(public_key_pem(key))


def test_adopt_moves_an_older_key_out_of_the_data_folder_and_old_heads_still_verify(
    tmp_path, monkeypatch, capsys
):
    layout = DataLayout(tmp_path / "data")
    old_key = Ed25519PrivateKey.generate()
    _older_ledger(layout, old_key, 3)
    keys = tmp_path / "keys"
    monkeypatch.setenv("APERTUS_DATA", str(layout.root))
    monkeypatch.setenv("APERTUS_KEYS", str(keys))
    assert Ledger(layout.ledger).verify() == []  # the older JSON heads verify as they are
    with pytest.raises(ValueError, match="apertus init --adopt"):
        init_instance(layout)
    with pytest.raises(ValueError, match="apertus init"):
        Ledger(layout.ledger).append(MODEL_CERTIFIED, {})

    assert main(["init", "--adopt"]) == 0
    assert "key_adopted" in capsys.readouterr().out
    assert not (layout.ledger / "keys").exists()  # the key left the data folder
    assert (keys / "ledger_ed25519.pem").read_bytes() != b""
    assert (keys / PUBLIC_KEY).read_text() == public_key_pem(old_key)
    ledger = Ledger(layout.ledger)
    adopted = list(ledger.entries())[-1]
    assert adopted.event_type == KEY_ADOPTED and adopted.index == 3
    assert adopted.payload["from"] == "ledger/keys/ledger_ed25519.pem"
    assert adopted.payload["key_id"] == hashlib.sha256(old_key.public_key().public_bytes_raw()).hexdigest()
    assert isinstance(ledger.tree_head(), Checkpoint) and ledger.verify() == []
    old_lines = (layout.ledger / "tree_heads.jsonl").read_text().splitlines()[:3]
    assert all(isinstance(parse_head(line), SignedTreeHead) for line in old_lines)  # kept as written

    # An older JSON head held elsewhere is a valid --head; the log extends it under the same key.
    (tmp_path / "old-head.json").write_text(old_lines[-1] + "\n")
    code, out = _verify(
        capsys, "--trusted-key", str(keys / PUBLIC_KEY), "--head", str(tmp_path / "old-head.json")
    )
    assert code == 0 and "the log extends it" in out, out
    with pytest.raises(ValueError, match="nothing to adopt"):
        init_instance(layout, adopt=True)


def test_the_demo_makes_its_key_folder_outside_the_data_folder_and_ends_with_the_head(
    tmp_path, monkeypatch, capsys
):
    from apertus.demo import _print_head_and_verify, ensure_instance_keys

    monkeypatch.delenv("APERTUS_KEYS")  # restored after the test, though the demo sets it
    monkeypatch.setenv("APERTUS_DATA", str(tmp_path / "data"))
    folder = ensure_instance_keys(DataLayout.from_env())
    out = capsys.readouterr().out
    assert folder == tmp_path / "data-keys" and "the demo sets it" in out and "$ apertus init" in out
    assert (folder / PUBLIC_KEY).is_file()
    layout = _small_data_folder(tmp_path)
    assert _print_head_and_verify(layout, folder) == 0
    out = capsys.readouterr().out
    held = held_head_path(folder, Ledger(layout.ledger).origin())
    assert Checkpoint.from_note(held.read_text()).note() in out
    assert f"--trusted-key {folder / PUBLIC_KEY} --head {held}" in out and "the log extends it" in out
