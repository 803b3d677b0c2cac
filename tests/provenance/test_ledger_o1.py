"""Bookkeeping in O(new work): the persisted frontier (appends without re-reading leaf_hashes.bin) and
the per-step check from the last verified head, kept in the key folder (records.ledger.incremental)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from records.keys import checked_head_path
from records.ledger import DATASET_VERSION_CREATED, Ledger
from records.ledger import incremental as ledger_incremental
from records.ledger import log as ledger_log
from records.ledger.format import ENTRIES, FRONTIER, LATEST_TREE_HEAD, LEAF_HASHES, TREE_HEADS
from records.merkle import merkle_root


def _append(led: Ledger, start: int, stop: int, tag: str = "v") -> None:
    for n in range(start, stop):
        led.append(DATASET_VERSION_CREATED, {"version": f"{tag}{n}", "shards": n})


@pytest.fixture
def ledger(tmp_path: Path) -> Ledger:
    led = Ledger(tmp_path / "ledger")
    _append(led, 0, 7)
    return led


def _root_of_entries(led: Ledger) -> str:
    lines = (led.root / ENTRIES).read_bytes().splitlines()
    return merkle_root(lines).hex()


def _checked(led: Ledger) -> Path:
    return checked_head_path(led.key_folder(), led.origin())


def test_append_takes_the_frontier_file_not_the_leaf_hashes(ledger: Ledger, monkeypatch):
    hashes = ledger.root / LEAF_HASHES
    good = hashes.read_bytes()
    hashes.write_bytes(b"\x00" * len(good))  # were they read, the new root would be wrong
    reads = []
    real = ledger_log.read_leaf_hashes
    monkeypatch.setattr(ledger_log, "read_leaf_hashes", lambda *a: reads.append(a) or real(*a))
    fresh = Ledger(ledger.root)
    _append(fresh, 7, 9)
    assert reads == []
    assert fresh.tree_head().root_hash == _root_of_entries(fresh)
    hashes.write_bytes(good + hashes.read_bytes()[len(good) :])
    assert Ledger(ledger.root).verify() == []
    saved = json.loads((ledger.root / FRONTIER).read_text())
    assert saved["size"] == 9 == fresh.tree_head().tree_size


@pytest.mark.parametrize("damage", ["stale", "tampered", "missing", "garbage"])
def test_a_frontier_the_head_does_not_vouch_for_is_rebuilt(ledger: Ledger, damage: str):
    path = ledger.root / FRONTIER
    old = path.read_text()
    _append(Ledger(ledger.root), 7, 8)
    if damage == "stale":  # the frontier of 7 entries beside a head of 8
        path.write_text(old)
    elif damage == "tampered":  # the right size, a wrong node: trusted blindly, the next root is wrong
        saved = json.loads(path.read_text())
        saved["nodes"][0] = "ab" * 32
        path.write_text(json.dumps(saved))
    elif damage == "missing":
        path.unlink()
    else:
        path.write_text("{not json")
    fresh = Ledger(ledger.root)
    _append(fresh, 8, 10)
    assert fresh.tree_head().root_hash == _root_of_entries(fresh)
    assert Ledger(ledger.root).verify() == []
    assert json.loads(path.read_text())["size"] == 10


def test_the_step_check_reads_only_what_is_new(ledger: Ledger, monkeypatch):
    assert ledger.verify_since_checked() == []  # no head held yet: the full check, then hold its head
    assert json.loads(_checked(ledger).read_text())["head"] == ledger.tree_head().to_json()
    _append(ledger, 7, 12)

    def no_full_check(root):
        raise AssertionError("the step check re-read the whole ledger")

    monkeypatch.setattr(ledger_incremental, "verify_ledger_files", no_full_check)
    assert ledger.verify_since_checked() == []
    assert json.loads(_checked(ledger).read_text())["head"] == ledger.tree_head().to_json()
    assert ledger.verify_since_checked() == []  # nothing new


def test_the_step_check_names_a_bad_new_entry(ledger: Ledger):
    assert ledger.verify_since_checked() == []
    _append(ledger, 7, 9)
    path = ledger.root / ENTRIES
    path.write_bytes(path.read_bytes().replace(b'"v8"', b'"v9"'))
    problems = ledger.verify_since_checked()
    assert any("not consistent" in p for p in problems) and any(LEAF_HASHES in p for p in problems)


def test_an_old_entry_rewritten_unsigned_is_for_the_full_check_or_a_missing_held_head(ledger: Ledger):
    assert ledger.verify_since_checked() == []
    path = ledger.root / ENTRIES
    path.write_bytes(path.read_bytes().replace(b'"v2"', b'"w2"'))  # before the held head; no re-signing
    assert ledger.verify_since_checked() == []  # not re-read: that is what makes the step check O(new)
    assert ledger.verify() != []  # `apertus audit verify` finds it
    _checked(ledger).unlink()  # no held head: the step check falls back to the full check
    assert any("line 3" in p for p in ledger.verify_since_checked())


def test_a_tampered_held_state_falls_back_to_the_full_check(ledger: Ledger):
    assert ledger.verify_since_checked() == []
    state = json.loads(_checked(ledger).read_text())
    state["frontier"][0] = "cd" * 32
    _checked(ledger).write_text(json.dumps(state))
    path = ledger.root / ENTRIES
    path.write_bytes(path.read_bytes().replace(b'"v2"', b'"w2"'))
    assert any("line 3" in p for p in ledger.verify_since_checked())


def _rewrite(led: Ledger, size: int) -> None:
    """A rewritten history, re-signed with the instance's key, under the same origin."""
    for name in (ENTRIES, LEAF_HASHES, TREE_HEADS, LATEST_TREE_HEAD, FRONTIER):
        (led.root / name).unlink()
    _append(Ledger(led.root), 0, size, tag="forged")


def test_a_rewritten_history_is_caught_by_the_held_head(ledger: Ledger):
    assert ledger.verify_since_checked() == []
    _rewrite(ledger, 10)
    assert ledger.verify() == []  # self-consistent and signed: only the held head can tell
    assert any("no longer in the log" in p for p in ledger.verify_since_checked())


def test_a_rewrite_that_keeps_the_held_head_line_fails_the_consistency_check(ledger: Ledger):
    assert ledger.verify_since_checked() == []
    held = (ledger.root / TREE_HEADS).read_bytes().splitlines()[-1]
    _rewrite(ledger, 10)
    lines = (ledger.root / TREE_HEADS).read_bytes().splitlines()
    lines[6] = held  # the forger puts the held head back where it was
    (ledger.root / TREE_HEADS).write_bytes(b"\n".join(lines) + b"\n")
    problems = ledger.verify_since_checked()
    assert any("not consistent with the held head" in p for p in problems)


def test_a_truncated_log_is_named(ledger: Ledger):
    assert ledger.verify_since_checked() == []
    _append(ledger, 7, 9)
    path = ledger.root / ENTRIES
    path.write_bytes(b"".join(path.read_bytes().splitlines(keepends=True)[:8]))
    assert any("truncated" in p for p in ledger.verify_since_checked())
