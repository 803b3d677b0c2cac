"""Canonical JSON: the one encoding of every JSON record inside a version and of everything hashed.

The form (``apertus.canonical-json/1``, specified byte for byte in docs/data-model.md):
objects with their keys sorted by Unicode code point, no whitespace (``,`` and ``:`` as
separators), strings as UTF-8 with only ``"``, ``\\`` and the control characters U+0000..U+001F
escaped, integers in decimal, floats in their shortest round-trip spelling (Python's ``repr``),
NaN and the infinities refused, object keys only strings. A record *file* is that text plus one
line feed. The ledger's entries, signed tree heads, erasure requests and fine-tuning records use
the same encoding (their files add the line feed per line), so one verifier reads them all.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

CANONICAL_FORMAT = "apertus.canonical-json/1"


def canonical_json(obj: Any) -> bytes:
    """Return the one canonical encoding of a JSON value: sorted keys, no whitespace, UTF-8.

    Non-ASCII text is written as UTF-8, not \\u escapes; NaN and infinities are refused
    (ValueError), since JSON has no portable spelling for them; so is an object key that is not a
    string (TypeError), since its sorted order would not survive a round trip (2 < 10, "10" < "2").
    Tuples are written as arrays. Cost: O(size of the value).
    """
    _check_keys(obj)
    return json.dumps(
        obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    ).encode()


def record_bytes(obj: Any) -> bytes:
    """The bytes of a record file holding ``obj``: its canonical JSON and one line feed."""
    return canonical_json(obj) + b"\n"


def write_record(path: str | Path, obj: Any) -> bytes:
    """Write ``obj`` to ``path`` as a record file (canonical JSON + line feed) and return the bytes.

    The file appears whole or not at all: the bytes go to a temporary file beside it, which is
    renamed over ``path``, so a reader (or a crash) never sees half a record.
    """
    path = Path(path)
    data = record_bytes(obj)
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    return data


def read_record(path: str | Path) -> Any:
    """The JSON value of a record file. Files written by older code in another JSON form (indented,
    ASCII-escaped) read the same: reading never depends on the form, only hashing does."""
    return json.loads(Path(path).read_text(encoding="utf-8"))


def is_canonical(data: bytes) -> bool:
    """Whether ``data`` is a record file in the canonical form (what ``record_bytes`` would write)."""
    try:
        return record_bytes(json.loads(data)) == data
    except (ValueError, TypeError):
        return False


def _check_keys(obj: Any) -> None:
    # Iterative, so a deeply nested value cannot exhaust the stack before json.dumps refuses it.
    stack = [obj]
    while stack:
        value = stack.pop()
        if isinstance(value, dict):
            for key, item in value.items():
                if not isinstance(key, str):
                    raise TypeError(
                        f"object key {key!r} is {type(key).__name__}, not str: not canonical JSON"
                    )
                stack.append(item)
        elif isinstance(value, list | tuple):
            stack.extend(value)
