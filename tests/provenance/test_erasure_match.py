"""The one erasure matcher: RE2 semantics (POSIX classes, ASCII ``\\w``), linear time on patterns that
backtrack exponentially in Python ``re``, host-label suffixes for domains, and the same answers
from the one-pass set as from searching pattern by pattern."""

from __future__ import annotations

import time

import pytest

from records.erasure_match import RequestMatcher, compile_pattern


def _requests(*patterns: str) -> list[dict]:
    return [{"request_id": f"{i:064x}", "kind": "regex", "value": p} for i, p in enumerate(patterns)]


def test_posix_classes_and_ascii_perl_classes_mean_what_re2_says():
    matcher = RequestMatcher(_requests(r"[[:digit:]]{3}-[[:digit:]]{4}", r"^\w+$"))
    assert [r["value"] for r in matcher.by_pattern("call 555-1234")[0]] == [r"[[:digit:]]{3}-[[:digit:]]{4}"]
    assert matcher.by_pattern("digits: 555-12")[0] == []
    assert matcher.by_pattern("plain")[0][0]["value"] == r"^\w+$"
    assert matcher.by_pattern("café")[0] == []  # \w is ASCII in RE2 (Unicode in Python re)


def test_a_catastrophic_pattern_is_linear():
    matcher = RequestMatcher(_requests(r"^(\w+\s?)*$"))
    text = "lorem " * 200_000 + "!"  # 1.2 MB; Python re would not return before the sun burns out
    start = time.perf_counter()
    assert matcher.by_pattern(text) == ([], False)
    assert time.perf_counter() - start < 2


def test_the_set_and_pattern_by_pattern_give_the_same_answers():
    patterns = [r"jane\.doe@example\.org", r"[[:digit:]]{3}-[[:digit:]]{4}", r"(?i)SECRET", r"^only$", r"a+b"]
    texts = ["mail jane.doe@example.org", "tel 555-1234 secret", "only", "only!", "aaab", "", "\ud800 aab"]
    with_set = RequestMatcher(_requests(*patterns))
    one_by_one = RequestMatcher(_requests(*patterns))
    one_by_one._set = None  # the path taken when a set cannot be compiled or runs out of memory
    assert with_set._set is not None
    for text in texts:
        assert with_set.by_pattern(text) == one_by_one.by_pattern(text), text


def test_domains_match_whole_host_labels():
    matcher = RequestMatcher([{"request_id": "a" * 64, "kind": "domain", "value": "example.org"}])
    assert matcher.by_key("https://a.b.example.org/x", None)
    assert matcher.by_key("HTTP://user@Example.ORG.:80/", None)
    assert not matcher.by_key("https://notexample.org/", None)
    assert not matcher.by_key("https://example.org.evil.com/", None)


@pytest.mark.parametrize("pattern", [r"(?<=Mr )Smith", r"(a)\1", "(unclosed", "a{1001}"])
def test_patterns_re2_cannot_compile_are_refused_with_its_reason(pattern):
    with pytest.raises(ValueError, match=r"RE2 cannot compile it \(.+\); requests use RE2 syntax"):
        compile_pattern(pattern)
