"""The canonical JSON form, checked byte for byte against the rules docs/data-model.md states."""

from __future__ import annotations

import json

import pytest

from records.canonical import canonical_json, is_canonical, read_record, record_bytes, write_record


def test_keys_sort_by_code_point_with_no_whitespace():
    # "B" (U+0042) < "a" (U+0061) < "é" (U+00E9) < "😀" (U+1F600): code point order, not locale.
    value = {"é": 1, "a": [1, 2], "B": {"z": None, "y": True}, "😀": False}
    assert canonical_json(value) == '{"B":{"y":true,"z":null},"a":[1,2],"é":1,"😀":false}'.encode()


def test_strings_are_utf8_with_only_quote_backslash_and_controls_escaped():
    value = ["Zürich \u2028 \x7f", 'q"b\\', "\n\r\t\b\f\x00\x1f"]
    expected = '["Zürich \u2028 \x7f","q\\"b\\\\","\\n\\r\\t\\b\\f\\u0000\\u001f"]'.encode()
    assert canonical_json(value) == expected


@pytest.mark.parametrize(
    ("number", "spelled"),
    [(0, "0"), (-7, "-7"), (2**70, "1180591620717411303424"), (0.5, "0.5"), (1.0, "1.0"), (-0.0, "-0.0"),
     (0.1 + 0.2, "0.30000000000000004"), (1e-05, "1e-05"), (0.0001, "0.0001"), (1e16, "1e+16"),
     (1234567890123456.0, "1234567890123456.0"), (1.5e300, "1.5e+300"), (123456789012345.6, "123456789012345.6")],
)  # fmt: skip
def test_numbers_use_their_shortest_round_trip_spelling(number, spelled):
    assert canonical_json(number) == spelled.encode()
    assert json.loads(spelled) == number


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf"), {"x": [float("nan")]}])
def test_nan_and_infinities_are_refused(bad):
    with pytest.raises(ValueError):
        canonical_json(bad)


def test_a_key_that_is_not_a_string_is_refused():
    # json.dumps would sort 2 before 10 and then write "2","10": not the order a reader re-sorts to.
    with pytest.raises(TypeError, match="object key 10"):
        canonical_json({"ok": [{10: "a", 2: "b"}]})


def test_a_record_file_is_the_canonical_text_and_one_line_feed(tmp_path):
    path = tmp_path / "r.json"
    data = write_record(path, {"b": (1, 2), "a": "ü"})
    assert data == path.read_bytes() == '{"a":"ü","b":[1,2]}\n'.encode()
    assert data == record_bytes({"a": "ü", "b": [1, 2]})
    assert read_record(path) == {"a": "ü", "b": [1, 2]}
    assert [p.name for p in tmp_path.iterdir()] == ["r.json"]  # no temporary file left behind
    assert is_canonical(data)


def test_records_of_older_code_read_the_same_but_are_not_canonical(tmp_path):
    path = tmp_path / "old.json"
    path.write_text(json.dumps({"b": 1, "a": "ü"}, indent=2) + "\n", encoding="utf-8")
    assert read_record(path) == {"a": "ü", "b": 1}
    assert not is_canonical(path.read_bytes())
    assert not is_canonical(b'{"a":1}')  # no line feed
