"""One matcher for erasure requests: what the suppression filter, ``impact`` and the asset check all
use to decide which documents a request names, so the three can never disagree.

Patterns are RE2 (google-re2), never Python ``re``: RE2 runs in time linear in the text whatever the
pattern (no backtracking, so ``^(\\w+\\s?)*$`` cannot hang a curation), and it is the syntax the
requests were always documented in. Its meaning is RE2's everywhere: ``[[:digit:]]`` is a POSIX class,
``\\w``, ``\\d``, ``\\s`` and ``\\b`` are ASCII, ``$`` is the end of the text, and there is no look-around
and no back-reference (such a pattern is refused when the request is made).

``url`` and ``sha256`` requests are hash-set lookups; ``domain`` requests are a hash set looked up
with every label suffix of the URL's host (``a.b.example.org`` tries ``a.b.example.org``,
``b.example.org``, ``example.org``, ``org``); ``regex`` requests are one ``re2.Set`` searched once per
text. A document is searched against all patterns at once, in one pass over its text.
"""

from __future__ import annotations

import copy
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import re2

KINDS = ("url", "domain", "sha256", "regex")
# Per-document CPU time the filter may spend searching one text (milliseconds). Over it, the document
# is dropped as ``suppression:timeout``: an erasure request must never let through a document that
# might match it.
DEFAULT_BUDGET_MS = 50.0
BUDGET_ENV = "APERTUS_SUPPRESSION_BUDGET_MS"
# RE2's memory limit per compiled pattern or set (bytes): bounds the program and the DFA cache.
MAX_MEM = 64 << 20

# The host of a URL, for ``domain`` requests: the same pattern in Python ``re`` and DuckDB (RE2). A
# fixed pattern of ours, without nested repetition, so ``re`` is safe here.
HOST_PATTERN = r"^[A-Za-z][A-Za-z0-9+.\-]*://(?:[^@/?#]*@)?(\[[^\]/?#]*\]|[^:/?#]*)"
_HOST = re.compile(HOST_PATTERN)


def url_host(url: str | None) -> str | None:
    """The lower-cased host of ``url`` (no user, port or trailing dot); None when it has none."""
    match = _HOST.match(url or "")
    if match is None:
        return None
    return match.group(1).lower().rstrip(".") or None


def _options() -> re2.Options:
    options = re2.Options()
    options.max_mem = MAX_MEM
    options.log_errors = False  # a refused pattern is a ValueError for the user, not a line on stderr
    return options


def compile_pattern(pattern: str):
    """The RE2 program for ``pattern``; ValueError naming the pattern, RE2's reason and the fix."""
    try:
        return re2.compile(pattern, _options())
    except re2.error as e:
        reason = e.args[0].decode(errors="replace") if e.args and isinstance(e.args[0], bytes) else str(e)
        raise ValueError(
            f"--regex {pattern!r}: RE2 cannot compile it ({reason}); requests use RE2 syntax, which has "
            "no look-around or back-references (docs/compliance.md, Matching)"
        ) from None


def _encode(text: str | None) -> bytes:
    # A lone surrogate (possible in JSON input) must not make matching raise: RE2 sees it as bytes
    # that no UTF-8 pattern matches.
    return (text or "").encode("utf-8", errors="surrogatepass")


@dataclass(frozen=True)
class Verdict:
    """The filter's answer for one document: the request that names it (None if none), or
    ``timed_out`` when its text could not be searched within the budget (it must be dropped)."""

    request: dict | None
    timed_out: bool = False
    elapsed_ms: float = 0.0


class MemoryKeys:
    """The ``url``, ``sha256`` and ``domain`` requests of ``requests`` (plain data, sorted by id) as
    in-memory hash sets. ``records.request_keys.StoredKeys`` answers the same from disk."""

    def __init__(self, requests: Sequence[Mapping]):
        self._keys: dict[str, dict[str, dict]] = {"url": {}, "sha256": {}, "domain": {}}
        for request in requests:
            self._keys[request["kind"]].setdefault(request["value"], request)

    def has(self, kind: str) -> bool:
        return bool(self._keys[kind])

    def find(self, kind: str, value: str) -> dict | None:
        """The request of ``kind`` naming exactly ``value`` with the smallest id; None if none. O(1)."""
        return self._keys[kind].get(value)


class RequestMatcher:
    """Every request in ``requests`` (mappings with ``request_id``, ``kind``, ``value``), compiled once.

    ``keys``: the URL, hash and domain requests as a key set already built (``StoredKeys``, the
    request key index on disk); ``requests`` then holds the patterns only. Without it they are
    taken from ``requests`` into ``MemoryKeys``.

    When several requests name a document, the one reported is found by URL, hash or host first (no
    text search needed), then by pattern; among equals, the smallest request id.
    """

    def __init__(self, requests: Sequence[Mapping], keys=None):
        plain = sorted(
            ({"request_id": r["request_id"], "kind": r["kind"], "value": r["value"]} for r in requests),
            key=lambda r: r["request_id"],
        )
        for request in plain:
            if request["kind"] not in KINDS:
                raise ValueError(f"request kind {request['kind']!r}: expected one of {', '.join(KINDS)}")
        keyed = [r for r in plain if r["kind"] != "regex"]
        assert keys is None or not keyed, "with a key set, requests holds the patterns only"
        self._keys = MemoryKeys(keyed) if keys is None else keys
        self.patterns: list[dict] = [r for r in plain if r["kind"] == "regex"]
        self._programs = [compile_pattern(r["value"]) for r in self.patterns]
        self._set = self._compile_set() if self.patterns else None

    def with_keys(self, keys) -> RequestMatcher:
        """This matcher's compiled patterns with another key set (no pattern compiled again)."""
        other = copy.copy(self)
        other._keys = keys
        return other

    def _compile_set(self):
        """One RE2 set of every pattern plus a sentinel that matches every text. The binding does not
        report a set's DFA running out of memory (it returns no match); a missing sentinel shows it,
        and the text is then searched pattern by pattern (RE2 falls back to its NFA there)."""
        patterns = re2.Set.SearchSet(_options())
        for request in self.patterns:
            patterns.Add(request["value"])
        self._sentinel = patterns.Add("")
        try:
            patterns.Compile()
        except re2.error:
            return None  # too large for one set: searched one by one
        return patterns

    def by_key(self, url: str | None, sha256: str | None) -> list[dict]:
        """Requests naming the document by URL, hash or host. Cost: O(labels of the host) key
        look-ups (each O(1) in memory, O(segments x log requests) from disk)."""
        keys = self._keys
        found = [keys.find("url", url) if url is not None else None]
        found.append(keys.find("sha256", sha256) if sha256 is not None else None)
        host = url_host(url) if keys.has("domain") else None
        if host:
            labels = host.split(".")
            found += [keys.find("domain", ".".join(labels[i:])) for i in range(len(labels))]
        return sorted((r for r in found if r is not None), key=lambda r: r["request_id"])

    def by_pattern(self, text: str | None, budget_ms: float | None = None) -> tuple[list[dict], bool]:
        """(requests whose pattern occurs in ``text``, timed out). Without a budget every pattern is
        searched; with one, the search stops once it has used ``budget_ms`` of this thread's CPU time
        and reports a timeout (the list is then incomplete). Cost: linear in the text's bytes (one
        pass for the set; one per pattern when searched one by one)."""
        if not self.patterns:
            return [], False
        data = _encode(text)
        start = time.thread_time()
        if self._set is not None:
            hits = self._set.Match(data) or []
            if self._sentinel in hits:
                found = [self.patterns[i] for i in sorted(hits) if i != self._sentinel]
                return found, not found and _over(start, budget_ms)
        found = []
        for request, program in zip(self.patterns, self._programs, strict=True):
            if program.search(data) is not None:
                found.append(request)
                if budget_ms is not None:
                    return found, False  # the filter needs one request, not all
            elif _over(start, budget_ms):
                return found, True
        return found, False

    def all_matches(self, url: str | None, sha256: str | None, text: str | None) -> list[dict]:
        """Every request naming the document, with no time budget (the check and ``impact``).
        Cost: linear in the text's bytes."""
        return self.by_key(url, sha256) + self.by_pattern(text)[0]

    def verdict(self, url: str | None, sha256: str | None, text: str | None, budget_ms: float) -> Verdict:
        """The filter's decision for one document (see ``Verdict``). Cost: O(1) for URL, hash and
        host; the text search is linear in its bytes and stops at ``budget_ms`` of CPU time."""
        keyed = self.by_key(url, sha256)
        if keyed:
            return Verdict(keyed[0])
        start = time.thread_time()
        found, timed_out = self.by_pattern(text, budget_ms)
        elapsed_ms = (time.thread_time() - start) * 1000
        return Verdict(found[0] if found else None, timed_out, elapsed_ms)


def _over(start: float, budget_ms: float | None) -> bool:
    return budget_ms is not None and (time.thread_time() - start) * 1000 > budget_ms
