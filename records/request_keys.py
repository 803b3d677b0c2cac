"""The request key index: the URL, sha256 and domain requests as sorted fixed-width keys on disk,
probed by binary search, and the regex requests in a small file of their own, so that a step's
suppression starts in O(new requests) and never parses every recorded request (format
"apertus.request-keys/1", docs/compliance.md, The request key index). This module owns the names
and the format and reads the index; records.request_keys_build brings it up to date.

    <data>/requests/request_keys/request_keys_state.json   how far it was built (see below)
    <data>/requests/request_keys/<root>.keys               one immutable segment, named by its root
    <data>/requests/request_keys/request_patterns.jsonl    the regex requests, one canonical JSON
                                                           line each ({"request_id", "value"}), in
                                                           ledger order

A segment is laid out as a lookup file is (records.lookup_file: MAGIC, JSON header, sections, then
``block_hashes``, the sha256 of each 16 KiB piece before it; its root is the sha256 of that
section):

    fences   the key of every FENCE_ROWS-th row (32 bytes each): which chunk a key can be in
    keys     32 bytes per request: sha256 of ``kind``, a NUL byte and the value (``request_key``),
             ascending, ties by request id
    ids      32 bytes per request: the request id (raw), in the order of ``keys``

Trust (the request index's rule, records.request_index): the state holds the ledger size, the byte
offset and the RFC 6962 frontier the index was built to; bringing it up to date extends the
frontier by the ledger's new entries and must give the root of the latest signed tree head (its
signature checked), which proves that the prefix it was built on is the ledger's. The state names
each segment with its root, and each segment byte is checked against its piece hash before use
(``LookupIntegrityError`` naming the file, never an answer); the patterns file is checked against
the sha256 the state records before a pattern is compiled.

Segments merge like a binary counter (records.request_keys_build), so there are at most
log2(requests) + 1 of them; a probe costs O(segments x log rows) and reads a few pieces of each.
"""

from __future__ import annotations

import bisect
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

from records.erasure_match import RequestMatcher
from records.layout import DataLayout
from records.lookup_file import HashedFile, LookupIntegrityError, sectioned_header
from records.requests import REQUESTS

REQUEST_KEYS = "request_keys"  # the folder, under <data>/requests/
KEYS_STATE = "request_keys_state.json"
PATTERNS = "request_patterns.jsonl"
SEGMENT_SUFFIX = ".keys"
MAGIC = b"APREQKEY"
FORMAT = "apertus.request-keys/1"
SECTIONS = ("fences", "keys", "ids", "block_hashes")
KEY_WIDTH = 32
FENCE_ROWS = 256  # rows per chunk: a probe bisects the fences, then one chunk of 8 KiB
KEYED_KINDS = ("url", "sha256", "domain")
DOMAIN_CACHE = 1 << 16  # host suffixes a worker remembers
REBUILD = "delete that folder: the next step rebuilds it from the ledger"


def keys_folder(layout: DataLayout) -> Path:
    return layout.root / REQUESTS / REQUEST_KEYS


def request_key(kind: str, value: str) -> bytes:
    """The 32-byte key of a request of ``kind`` naming ``value`` (and of a document's URL, hash or
    host suffix looked up as that kind): sha256 of the kind, a NUL byte and the value (UTF-8)."""
    return hashlib.sha256(kind.encode() + b"\0" + value.encode("utf-8", errors="surrogatepass")).digest()


def segment_header(lengths: dict[str, int], rows: int) -> bytes:
    return sectioned_header(
        MAGIC, {"format": FORMAT, "rows": rows, "fence_rows": FENCE_ROWS}, SECTIONS, lengths
    )


class KeySegment(HashedFile):
    """One segment opened for probes, checked against its root (see HashedFile for the costs)."""

    MAGIC, FORMAT, KIND, REBUILD, REWRITE = MAGIC, FORMAT, "request key segment", REBUILD, REBUILD

    def _parse(self, header: dict) -> None:
        self.rows, self.fence_rows = header["rows"], header["fence_rows"]
        self._fences: list[bytes] | None = None
        self._chunks: dict[int, list[bytes]] = {}

    def _split(self, data: bytes) -> list[bytes]:
        return [data[i : i + KEY_WIDTH] for i in range(0, len(data), KEY_WIDTH)]

    def fences(self) -> list[bytes]:
        """The fence keys, read and checked once: O(rows / FENCE_ROWS)."""
        if self._fences is None:
            self._fences = self._split(self.section("fences"))
        return self._fences

    def _chunk(self, number: int) -> list[bytes]:
        if number not in self._chunks:
            base = self.sections["keys"][0] + number * self.fence_rows * KEY_WIDTH
            end = min((number + 1) * self.fence_rows, self.rows) - number * self.fence_rows
            self._chunks[number] = self._split(self._read(base, base + end * KEY_WIDTH))
        return self._chunks[number]

    def first_id(self, key: bytes) -> bytes | None:
        """The smallest request id (32 bytes) whose key is ``key``, None if none: a bisection of
        the fences, then of one chunk (its pieces checked on first read). O(log rows)."""
        fences = self._fences if self._fences is not None else self.fences()
        if not fences:
            return None
        number = bisect.bisect_left(fences, key) - 1
        if number < 0:
            number = 0
        chunk = self._chunks.get(number) or self._chunk(number)
        i = bisect.bisect_left(chunk, key)
        if i < len(chunk):
            if chunk[i] != key:
                return None
            row = number * self.fence_rows + i
        elif number + 1 < len(fences) and fences[number + 1] == key:  # the run starts the next chunk
            row = (number + 1) * self.fence_rows
        else:
            return None
        base = self.sections["ids"][0] + row * KEY_WIDTH
        return self._read(base, base + KEY_WIDTH)


@dataclass(frozen=True)
class StoredRequests:
    """The request key index as one refresh left it: what a step records and what its filter
    ships to the workers (paths and roots, no request), which open it lazily (``StoredKeys``).

    ``segments``: (file name, root) per segment; ``kinds``: requests per kind; ``patterns``:
    (lines, sha256) of the patterns file; ``last``: (ledger index, ledger root just past it) of
    the last request, None without requests."""

    folder: str
    num_requests: int
    kinds: tuple[tuple[str, int], ...]
    segments: tuple[tuple[str, str], ...]
    patterns: tuple[int, str]
    last: tuple[int, str] | None
    ledger_size: int
    rebuilt: str | None = None

    def request_set(self) -> dict | None:
        """As ``records.request_index.RequestIndex.request_set``: ``{"ledger_size", "ledger_root",
        "requests"}`` just past the last request, None without requests. O(1)."""
        if self.last is None:
            return None
        return {"ledger_size": self.last[0] + 1, "ledger_root": self.last[1], "requests": self.num_requests}

    def count(self, kind: str) -> int:
        return dict(self.kinds).get(kind, 0)

    def patterns_path(self) -> Path:
        return Path(self.folder) / PATTERNS


def read_patterns(stored: StoredRequests) -> list[dict]:
    """The regex requests as the filter's plain data ({"request_id", "kind", "value"}), the file
    checked against the state's sha256 first. O(patterns)."""
    lines, digest = stored.patterns
    if lines == 0:
        return []
    path = stored.patterns_path()
    data = path.read_bytes()
    if hashlib.sha256(data).hexdigest() != digest or data.count(b"\n") != lines:
        raise LookupIntegrityError(f"{path}: does not hash as {KEYS_STATE} records; {REBUILD}")
    return [
        {"request_id": d["request_id"], "kind": "regex", "value": d["value"]}
        for d in map(json.loads, data.splitlines())
    ]


class StoredKeys:
    """The URL, sha256 and domain requests of ``stored``, answered from its segments (opened on
    first use, in the process that probes: nothing but paths is pickled). The key sets
    ``records.erasure_match.RequestMatcher`` takes; ``MemoryKeys`` is the in-memory twin."""

    def __init__(self, stored: StoredRequests):
        self.stored = stored
        self._kinds = {kind for kind, n in stored.kinds if n}
        self._prefixes = {kind: kind.encode() + b"\0" for kind in KEYED_KINDS}
        self._segments: list[KeySegment] | None = None
        # Host label suffixes answered so far: a crawl has many pages per host, so most documents'
        # domain look-ups are one dict read. Bounded (cleared when full).
        self._domains: dict[str, dict | None] = {}

    def __getstate__(self):
        return {**self.__dict__, "_segments": None, "_domains": {}}

    def has(self, kind: str) -> bool:
        return kind in self._kinds

    def _opened(self) -> list[KeySegment]:
        if self._segments is None:
            folder = Path(self.stored.folder)
            self._segments = [
                KeySegment(folder / name, root, KEYS_STATE) for name, root in self.stored.segments
            ]
        return self._segments

    def find(self, kind: str, value: str) -> dict | None:
        """The request of ``kind`` naming exactly ``value`` with the smallest id, as plain data;
        None if none. O(segments x log rows)."""
        if kind not in self._kinds:
            return None
        if kind == "domain":
            if value not in self._domains:
                if len(self._domains) >= DOMAIN_CACHE:
                    self._domains.clear()
                self._domains[value] = self._find(kind, value)
            return self._domains[value]
        return self._find(kind, value)

    def _find(self, kind: str, value: str) -> dict | None:
        # request_key, inlined: this runs a few times per document
        key = hashlib.sha256(self._prefixes[kind] + value.encode("utf-8", errors="surrogatepass")).digest()
        best = None
        for segment in self._segments if self._segments is not None else self._opened():
            found = segment.first_id(key)
            if found is not None and (best is None or found < best):
                best = found
        return None if best is None else {"request_id": best.hex(), "kind": kind, "value": value}

    def close(self) -> None:
        for segment in self._segments or []:
            segment.__exit__()
        self._segments = None


# Pattern sets compiled in this process, by the patterns file's sha256 (the index state they belong
# to): a step's workers and the next step in the same process compile them once. One at a time.
_COMPILED: dict[str, RequestMatcher] = {}


def stored_matcher(stored: StoredRequests) -> RequestMatcher:
    """The matcher of every request of ``stored``: keys probed on disk, patterns compiled once per
    process and patterns file. Cost: O(segments) to open plus O(patterns) the first time."""
    digest = stored.patterns[1]
    if digest not in _COMPILED:
        _COMPILED.clear()
        _COMPILED[digest] = RequestMatcher(read_patterns(stored))
    return _COMPILED[digest].with_keys(StoredKeys(stored))
