"""Tests for records.ledger: durable appends, signed tree heads, tamper detection, proofs, concurrency.

Ground truths used here are independent of the ledger code: hashlib for leaf hashes, the
cryptography package for Ed25519, and records.merkle (itself checked against the Certificate
Transparency vectors in test_merkle.py) for roots and consistency.
"""

from __future__ import annotations

import base64
import hashlib
import json
import multiprocessing
import re
import stat
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from records.ledger import (
    ALIAS_MOVED,
    DATASET_VERSION_CREATED,
    ERASURE_REQUESTED,
    EVENT_TYPES,
    KEY_ADOPTED,
    MODEL_CERTIFIED,
    MODEL_TRAINED,
    ROLLBACK,
    Ledger,
    SignedTreeHead,
    verify_entry_offline,
)
from records.ledger import log as ledger_log
from records.ledger.format import AUDIT_INDEX_REBUILT, FRONTIER
from records.merkle import merkle_root, verify_consistency
from records.signing import Checkpoint, parse_head

EVENTS = [
    (DATASET_VERSION_CREATED, {"asset": "deduplicated", "version": "ab" * 32, "shards": 3}),
    (MODEL_TRAINED, {"checkpoint": "ckpt-1", "datasets": ["v1", "v2"], "loss": 2.5}),
    (MODEL_CERTIFIED, {"model": "ckpt-1", "by": "Zoë Müller", "note": "日本語 ok"}),
    (ALIAS_MOVED, {"alias": "prod", "from": None, "to": "ckpt-1"}),
    (ERASURE_REQUESTED, {"url": "https://example.org/a?b=c", "nested": {"z": 1, "a": [1, {"k": True}]}}),
    (ROLLBACK, {"alias": "prod", "to": None}),
]


@pytest.fixture
def ledger(tmp_path: Path) -> Ledger:
    led = Ledger(tmp_path / "ledger")
    for event_type, payload in EVENTS:
        led.append(event_type, payload)
    return led


def _lines(path: Path) -> list[bytes]:
    return path.read_bytes().splitlines()


def _public_key(led: Ledger) -> Ed25519PublicKey:
    return serialization.load_pem_public_key((led.root / "public_key.pem").read_bytes())


def test_append_and_read_back(ledger: Ledger):
    entries = list(ledger.entries())
    assert [(e.event_type, e.payload) for e in entries] == EVENTS
    assert [e.index for e in entries] == list(range(len(EVENTS))) and ledger.size() == len(EVENTS)
    lines = _lines(ledger.root / "entries.jsonl")
    for e, line in zip(entries, lines, strict=True):
        assert e.canonical_json.encode() == line
        assert e.leaf_hash == hashlib.sha256(b"\x00" + line).hexdigest()
        assert (
            json.dumps(json.loads(line), sort_keys=True, separators=(",", ":"), ensure_ascii=False)
            == line.decode()
        )
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z", e.timestamp)
    assert "日本語".encode() in lines[2]  # UTF-8, not \u escapes
    head = ledger.tree_head()
    assert head.tree_size == len(EVENTS)
    assert head.root_hash == merkle_root(lines).hex()
    assert (ledger.root / "leaf_hashes.bin").read_bytes() == b"".join(
        bytes.fromhex(e.leaf_hash) for e in entries
    )
    assert len(_lines(ledger.root / "tree_heads.jsonl")) == len(EVENTS)
    assert (ledger.root / "latest_tree_head.json").read_text().strip() == head.to_json()
    assert ledger.entry(3).payload == EVENTS[3][1]
    assert ledger.verify() == []
    assert (
        {t for t, _ in EVENTS}
        | {
            KEY_ADOPTED,
            AUDIT_INDEX_REBUILT,
        }
        == EVENT_TYPES
    )  # every event type round-trips (key_adopted: test_keys; audit_index_rebuilt: test_audit_index)


def test_a_second_instance_continues_the_same_log(ledger: Ledger):
    again = Ledger(ledger.root)
    entry = again.append(ROLLBACK, {"alias": "prod", "to": "ckpt-0"})
    assert entry.index == len(EVENTS) and again.size() == ledger.size() == len(EVENTS) + 1
    assert ledger.append(MODEL_TRAINED, {}).index == len(EVENTS) + 1  # its cached range catches up
    assert ledger.verify() == []


def test_empty_ledger(tmp_path: Path):
    led = Ledger(tmp_path / "nothing")
    assert led.size() == 0 and list(led.entries()) == [] and led.verify() == []
    with pytest.raises(ValueError, match="no signed tree head"):
        led.tree_head()
    assert not (tmp_path / "nothing").exists()  # reading never creates files


def test_bad_event_type_or_payload_is_refused(tmp_path: Path):
    led = Ledger(tmp_path)
    with pytest.raises(ValueError, match="unknown ledger event type"):
        led.append("model_deleted", {})
    with pytest.raises(ValueError, match="must be a dict"):
        led.append(MODEL_TRAINED, ["not", "a", "dict"])
    with pytest.raises(ValueError):
        led.append(MODEL_TRAINED, {"loss": float("nan")})
    with pytest.raises(ValueError, match="not plain JSON"):
        led.append(MODEL_TRAINED, {"checkpoint": tmp_path})
    assert led.size() == 0


def test_tree_head_is_a_signed_checkpoint_and_forgeries_fail(ledger: Ledger):
    head, pub = ledger.tree_head(), _public_key(ledger)
    assert isinstance(head, Checkpoint) and head.origin == ledger.origin()
    assert head.verify(pub) and head.verify(ledger.public_key_pem())
    # Ground truth (c2sp.org/signed-note): plain Ed25519 over the note text, behind a 4-byte key hash.
    raw = pub.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    text, signature_line = head.note().split("\n\n")
    assert (
        text == f"{head.origin}\n{head.tree_size}\n{base64.b64encode(bytes.fromhex(head.root_hash)).decode()}"
    )
    name, encoded = signature_line.rstrip("\n").removeprefix("\u2014 ").split(" ")
    signature = base64.b64decode(encoded)
    assert name == head.origin
    assert signature[:4] == hashlib.sha256(name.encode() + b"\n\x01" + raw).digest()[:4]
    pub.verify(signature[4:], (text + "\n").encode())  # raises if invalid

    other = Ed25519PrivateKey.generate()
    forgeries = {
        "changed root": Checkpoint(head.origin, head.tree_size, "00" * 32, head.signatures),
        "changed size": Checkpoint(head.origin, head.tree_size + 1, head.root_hash, head.signatures),
        "changed origin": Checkpoint("apertus.ledger/other", head.tree_size, head.root_hash, head.signatures),
        "other key": Checkpoint.sign(other, head.origin, head.tree_size, head.root_hash),
    }
    for name, forged in forgeries.items():
        assert not forged.verify(pub), name
        assert parse_head(forged.to_json()) == forged and parse_head(forged.note()) == forged

    # A forged head written into the log is named by verify().
    heads_path = ledger.root / "tree_heads.jsonl"
    lines = _lines(heads_path)
    lines[2] = forgeries["other key"].to_json().encode()
    heads_path.write_bytes(b"\n".join(lines) + b"\n")
    problems = ledger.verify()
    assert any(re.search(r"tree_heads\.jsonl line 3\b.*signature", p) for p in problems), problems


def test_older_json_tree_heads_still_verify_and_forgeries_fail():
    key = Ed25519PrivateKey.generate()
    pub = key.public_key()
    head = SignedTreeHead.sign(key, 5, "ab" * 32, "2026-11-28T08:49:10.740247Z")
    assert head.verify(pub) and parse_head(head.to_json()) == head
    # Ground truth: the signature is plain Ed25519 over the canonical JSON of the unsigned fields.
    unsigned = json.loads(head.to_json())
    del unsigned["signature"]
    message = json.dumps(unsigned, sort_keys=True, separators=(",", ":")).encode()
    pub.verify(bytes.fromhex(head.signature), message)  # raises if invalid

    other = Ed25519PrivateKey.generate()
    forgeries = {
        "changed root": SignedTreeHead(
            head.tree_size, "00" * 32, head.timestamp, head.key_id, head.signature
        ),
        "changed size": SignedTreeHead(
            head.tree_size + 1, head.root_hash, head.timestamp, head.key_id, head.signature
        ),
        "changed time": SignedTreeHead(
            head.tree_size, head.root_hash, "2020-01-01T00:00:00.000000Z", head.key_id, head.signature
        ),
        "changed signature": SignedTreeHead(
            head.tree_size,
            head.root_hash,
            head.timestamp,
            head.key_id,
            head.signature[:-2] + ("00" if head.signature[-2:] != "00" else "01"),
        ),
        "other key": SignedTreeHead.sign(other, head.tree_size, head.root_hash, head.timestamp),
        "other key, our key id": SignedTreeHead(
            head.tree_size,
            head.root_hash,
            head.timestamp,
            head.key_id,
            SignedTreeHead.sign(other, head.tree_size, head.root_hash, head.timestamp).signature,
        ),
        "garbage signature": SignedTreeHead(
            head.tree_size, head.root_hash, head.timestamp, head.key_id, "zz"
        ),
    }
    for name, forged in forgeries.items():
        assert not forged.verify(pub), name
        assert SignedTreeHead.from_json(forged.to_json()) == forged


def _set_byte(path: Path, offset: int, value: int) -> bytes:
    data = bytearray(path.read_bytes())
    original = bytes(data)
    data[offset] = value
    path.write_bytes(bytes(data))
    return original


def test_changing_one_byte_of_any_entry_line_is_detected_and_named(ledger: Ledger):
    entries_path = ledger.root / "entries.jsonl"
    data = entries_path.read_bytes()
    start = 0
    for lineno, line in enumerate(data.splitlines(), start=1):
        # Spread over the line: structure, keys, index, payload (ASCII and UTF-8), timestamp.
        for col in sorted({*range(0, len(line), max(1, len(line) // 12)), len(line) - 1}):
            original = _set_byte(entries_path, start + col, line[col] ^ 0x01)
            problems = ledger.verify()
            entries_path.write_bytes(original)
            assert any(re.search(rf"entries\.jsonl line {lineno}\b", p) for p in problems), (
                lineno,
                col,
                problems,
            )
        start += len(line) + 1
    assert ledger.verify() == []


def test_rewriting_an_entry_and_its_cached_hash_is_still_caught_by_the_signed_roots(ledger: Ledger):
    entries_path, hashes_path = ledger.root / "entries.jsonl", ledger.root / "leaf_hashes.bin"
    lines = _lines(entries_path)
    lines[3] = lines[3].replace(b'"prod"', b'"prox"')
    entries_path.write_bytes(b"\n".join(lines) + b"\n")
    hashes_path.write_bytes(b"".join(hashlib.sha256(b"\x00" + line).digest() for line in lines))
    problems = ledger.verify()
    assert problems and all("line 4" in p for p in problems[:1]), problems
    assert any("entries.jsonl line 4 differs from what was signed" in p for p in problems), problems


def test_removed_tree_head_leaves_entries_unsigned(ledger: Ledger):
    heads_path = ledger.root / "tree_heads.jsonl"
    heads_path.write_bytes(b"\n".join(_lines(heads_path)[:-1]) + b"\n")
    problems = ledger.verify()
    assert any("entries 5..5 are not covered by any signed tree head" in p for p in problems), problems
    assert any("latest_tree_head.json is not the last line" in p for p in problems), problems


def _root_from_proof_with_hashlib(leaf: bytes, index: int, size: int, proof: list[str]) -> bytes:
    # The docs/ledger.md procedure written with nothing but hashlib (RFC 9162 section 2.1.3.2).
    fn, sn, r = index, size - 1, leaf
    for p in map(bytes.fromhex, proof):
        if fn % 2 == 1 or fn == sn:
            r = hashlib.sha256(b"\x01" + p + r).digest()
            while fn % 2 == 0 and fn != 0:
                fn, sn = fn // 2, sn // 2
        else:
            r = hashlib.sha256(b"\x01" + r + p).digest()
        fn, sn = fn // 2, sn // 2
    assert sn == 0
    return r


def test_inclusion_proofs_verify_offline_with_only_published_files(ledger: Ledger):
    lines = (ledger.root / "entries.jsonl").read_text(encoding="utf-8").splitlines()
    head_json = (ledger.root / "latest_tree_head.json").read_text()
    head_lines = (ledger.root / "tree_heads.jsonl").read_text().splitlines()
    pem = (ledger.root / "public_key.pem").read_text()
    other_pem = (
        Ed25519PrivateKey.generate()
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    head = parse_head(head_json)
    wrong_root = Checkpoint(head.origin, head.tree_size, "11" * 32, head.signatures).to_json()
    for i, line in enumerate(lines):
        proof = ledger.inclusion_proof(i)
        assert verify_entry_offline(line, i, proof, head_json, pem)
        leaf = hashlib.sha256(b"\x00" + line.encode()).digest()
        assert _root_from_proof_with_hashlib(leaf, i, head.tree_size, proof).hex() == head.root_hash
        assert not verify_entry_offline(line, (i + 1) % len(lines), proof, head_json, pem)
        assert not verify_entry_offline(line.replace('"index"', '"index" '), i, proof, head_json, pem)
        assert not verify_entry_offline(
            line.replace('"payload":{', '"payload":{"x":1,'), i, proof, head_json, pem
        )
        assert not verify_entry_offline(line, i, proof, head_json, other_pem)
        assert not verify_entry_offline(line, i, proof, wrong_root, pem)
        if proof:
            assert not verify_entry_offline(line, i, proof[:-1], head_json, pem)
        # ... and against every older signed head that already contained it.
        for size in range(i + 1, len(lines) + 1):
            assert verify_entry_offline(line, i, ledger.inclusion_proof(i, size), head_lines[size - 1], pem)
    assert not verify_entry_offline("not json", 0, [], head_json, pem)
    assert not verify_entry_offline(lines[0], 0, ["zz"], "{}", pem)


def test_consistency_between_tree_heads(ledger: Ledger):
    for _ in range(5):
        ledger.append(MODEL_TRAINED, {"more": True})
    heads = [parse_head(x) for x in (ledger.root / "tree_heads.jsonl").read_text().splitlines()]
    pub = _public_key(ledger)
    for old in heads:
        for new in heads[old.tree_size - 1 :]:
            assert old.verify(pub) and new.verify(pub)
            proof = [bytes.fromhex(p) for p in ledger.consistency_proof(old.tree_size, new.tree_size)]
            old_root, new_root = bytes.fromhex(old.root_hash), bytes.fromhex(new.root_hash)
            assert verify_consistency(old.tree_size, new.tree_size, old_root, new_root, proof)
            if proof:
                assert not verify_consistency(old.tree_size, new.tree_size, new_root, old_root, proof)
    assert ledger.consistency_proof(3) == ledger.consistency_proof(3, ledger.size())
    with pytest.raises(ValueError):
        ledger.consistency_proof(3, ledger.size() + 1)


def test_the_key_lives_in_the_key_folder_not_the_data_folder(tmp_path: Path, instance_keys: Path):
    led = Ledger(tmp_path / "a")
    led.append(MODEL_TRAINED, {})
    assert not (tmp_path / "a" / "keys").exists()
    key_file = instance_keys / "ledger_ed25519.pem"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert stat.S_IMODE(instance_keys.stat().st_mode) == 0o700
    private = serialization.load_pem_private_key(key_file.read_bytes(), password=None)
    published = (tmp_path / "a" / "public_key.pem").read_bytes()
    assert (
        private.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        == published
    )


def test_interrupted_appends_are_cut_off_by_the_next_append(ledger: Ledger):
    entries_path, hashes_path = ledger.root / "entries.jsonl", ledger.root / "leaf_hashes.bin"
    with open(entries_path, "ab") as f:  # a torn line: the writer died mid-write
        f.write(b'{"event_type":"model_tr')
    assert any("no final newline" in p for p in ledger.verify())
    assert ledger.append(MODEL_TRAINED, {"after": "torn line"}).index == 6
    with open(entries_path, "ab") as f:  # a whole line whose leaf hash was never written
        f.write(
            b'{"event_type":"rollback","index":7,"payload":{},"timestamp":"2026-01-01T00:00:00.000000Z"}\n'
        )
    with open(hashes_path, "ab") as f:  # and a torn leaf hash
        f.write(b"\x01" * 13)
    entry = ledger.append(ALIAS_MOVED, {"after": "lost hash"})
    assert entry.index == 7 and entry.event_type == ALIAS_MOVED
    assert [e.index for e in ledger.entries()] == list(range(8))
    assert ledger.verify() == []


def test_appends_read_only_new_leaf_hashes(tmp_path: Path, monkeypatch):
    read_counts: list[int] = []
    real_read = ledger_log.read_leaf_hashes

    def counting_read(path, start, stop):
        read_counts.append(stop - start)
        return real_read(path, start, stop)

    monkeypatch.setattr(ledger_log, "read_leaf_hashes", counting_read)
    writer = Ledger(tmp_path)
    for i in range(50):
        writer.append(MODEL_TRAINED, {"i": i})
    assert sum(read_counts) == 0  # its own appends never re-read the log
    Ledger(tmp_path).append(MODEL_TRAINED, {"i": 50})
    assert read_counts == []  # a fresh instance takes the frontier file the signed head vouches for
    writer.append(MODEL_TRAINED, {"i": 51})
    assert read_counts == [1]  # and the first writer catches up by the one new hash only
    (tmp_path / FRONTIER).unlink()
    Ledger(tmp_path).append(MODEL_TRAINED, {"i": 52})
    assert read_counts == [1, 52]  # without it, a fresh instance reads the cached hashes once


def _writer(root: str, writer_id: int, count: int) -> None:
    led = Ledger(root)
    for n in range(count):
        led.append(MODEL_TRAINED, {"writer": writer_id, "n": n})


PER_WRITER = 250


def test_two_concurrent_writer_processes(tmp_path: Path):
    ctx = multiprocessing.get_context("spawn")
    # 250 appends each (each signs and fsyncs) keep both writers contending for the lock for seconds.
    procs = [ctx.Process(target=_writer, args=(str(tmp_path), w, PER_WRITER)) for w in (0, 1)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=120)
    assert [p.exitcode for p in procs] == [0, 0]
    led = Ledger(tmp_path)
    entries = list(led.entries())
    assert led.size() == len(entries) == 2 * PER_WRITER
    assert [e.index for e in entries] == list(range(2 * PER_WRITER))
    assert {(e.payload["writer"], e.payload["n"]) for e in entries} == {
        (w, n) for w in (0, 1) for n in range(PER_WRITER)
    }
    for w in (0, 1):  # each writer's own appends keep their order
        assert [e.payload["n"] for e in entries if e.payload["writer"] == w] == list(range(PER_WRITER))
    assert led.tree_head().tree_size == 2 * PER_WRITER
    assert led.verify() == []


def test_append_many_commits_a_batch_under_one_signed_head(ledger: Ledger):
    heads_before = (ledger.root / "tree_heads.jsonl").read_bytes().count(b"\n")
    batch = [(MODEL_TRAINED, {"n": n, "path": ("a", n)}) for n in range(50)]
    entries = ledger.append_many(batch)
    assert [e.index for e in entries] == list(range(6, 56))
    assert [e.payload for e in entries] == [{"n": n, "path": ["a", n]} for n in range(50)]  # as stored
    assert len({e.timestamp for e in entries}) == 1
    lines = (ledger.root / "entries.jsonl").read_bytes().splitlines()
    assert [e.canonical_json.encode() for e in entries] == lines[6:]
    assert (ledger.root / "tree_heads.jsonl").read_bytes().count(b"\n") == heads_before + 1  # one head
    head = ledger.tree_head()
    assert head.tree_size == 56
    assert head.root_hash == merkle_root(lines).hex()  # over the raw lines
    for e in (entries[0], entries[17], entries[-1]):  # every entry of the batch proves against it
        proof = ledger.inclusion_proof(e.index)
        assert verify_entry_offline(e.canonical_json, e.index, proof, head.to_json(), ledger.public_key_pem())
    assert ledger.append_many([]) == [] and ledger.size() == 56
    assert ledger.verify() == []


def test_append_many_writes_nothing_when_one_event_is_invalid(ledger: Ledger):
    before = {p.name: p.read_bytes() for p in ledger.root.iterdir() if p.is_file()}
    for bad in ([(MODEL_TRAINED, {})] * 3 + [("model_exploded", {})],
                [(MODEL_TRAINED, {"ok": 1}), (MODEL_TRAINED, {"path": Path("/x")})]):  # fmt: skip
        with pytest.raises(ValueError, match="model_exploded|not plain JSON"):
            ledger.append_many(bad)
    assert {p.name: p.read_bytes() for p in ledger.root.iterdir() if p.is_file()} == before


def test_an_interrupted_batch_commits_a_prefix_and_the_next_append_cuts_the_rest(ledger: Ledger):
    entries_path, hashes_path = ledger.root / "entries.jsonl", ledger.root / "leaf_hashes.bin"
    # A batch of 4 (indices 6..9) died after writing its lines and two and a half leaf hashes.
    lines = [
        json.dumps({"event_type": ROLLBACK, "index": i, "payload": {"lost": i}, "timestamp": "2026-01-01T00:00:00.000000Z"},
                   sort_keys=True, separators=(",", ":")).encode()
        for i in range(6, 10)
    ]  # fmt: skip
    with open(entries_path, "ab") as f:
        f.write(b"".join(line + b"\n" for line in lines))
    with open(hashes_path, "ab") as f:
        f.write(b"".join(hashlib.sha256(b"\x00" + line).digest() for line in lines[:2]) + b"\x07" * 16)
    assert ledger.size() == 8  # entries 6 and 7 are committed, not yet signed
    assert any("not covered by any signed tree head" in p for p in ledger.verify())
    after = ledger.append_many([(ALIAS_MOVED, {"after": "crash", "k": k}) for k in range(3)])
    assert [e.index for e in after] == [8, 9, 10]
    assert [e.payload for e in ledger.entries()][6:8] == [{"lost": 6}, {"lost": 7}]
    assert ledger.verify() == []  # the new head signs the committed prefix too
    # Uncommitted lines that do not continue the committed ones are not cut: verify() must look.
    with open(entries_path, "ab") as f:
        f.write(lines[0] + b"\n")  # index 6 again, after entry 10
    with pytest.raises(ValueError, match="has index 6 but 11 leaf hashes"):
        ledger.append(MODEL_TRAINED, {})


def _batch_writer(root: str, batches: int, size: int) -> None:
    led = Ledger(root)
    for b in range(batches):
        led.append_many([(MODEL_TRAINED, {"writer": "batch", "n": b * size + k}) for k in range(size)])


def test_a_batch_writer_and_a_single_writer_in_two_processes(tmp_path: Path):
    ctx = multiprocessing.get_context("spawn")
    procs = [
        ctx.Process(target=_batch_writer, args=(str(tmp_path), 20, 100)),
        ctx.Process(target=_writer, args=(str(tmp_path), "single", 300)),
    ]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=120)
    assert [p.exitcode for p in procs] == [0, 0]
    led = Ledger(tmp_path)
    entries = list(led.entries())
    assert [e.index for e in entries] == list(range(2300))
    for writer, count in (("batch", 2000), ("single", 300)):
        assert [e.payload["n"] for e in entries if e.payload["writer"] == writer] == list(range(count))
    batch_positions = [e.index for e in entries if e.payload["writer"] == "batch"]
    for b in range(20):  # no single append lands inside a batch
        run = batch_positions[b * 100 : (b + 1) * 100]
        assert run == list(range(run[0], run[0] + 100))
    assert (tmp_path / "tree_heads.jsonl").read_bytes().count(b"\n") == 20 + 300
    assert led.tree_head().tree_size == 2300
    assert led.verify() == []
