"""Hash a version once, at sealing: what the file system said of each file when ``seal`` hashed it.

A step seals its version (every file hashed), and its ``version_verifies`` check runs moments later
in the same process. Re-hashing every shard there doubled a step's hashing for no new evidence. So
``seal`` keeps, in this process only, each file's stamp (device, inode, size, modification and
change times, as ``os.stat`` gives them, taken after hashing) and the time it was taken; the check
(``records.manifest.verify_version(..., since_sealing=True)``) re-hashes only the files whose stamp
no longer matches. ``apertus audit verify`` and every other reader re-hash as before: nothing here
is written to disk, and another process has no stamps.

Why a matching stamp means the same bytes: writing a file sets its change time to the current time,
and no system call sets it back (``utime`` sets only access and modification times). Two caveats,
both handled by re-hashing:

- Coarse clocks. File times come from a clock that ticks every few milliseconds, so a file written
  within a tick of the stamp could be rewritten in the same tick with the same size and times (git's
  "racily clean" index entries). A stamp whose modification or change time is within ``RACY_NS`` of
  the moment it was taken is not trusted: that file is re-hashed by the check (in practice the small
  ``lineage.json`` that ``seal`` writes just before hashing).
- Other processes and later calls. Stamps live in this process's memory and are consulted only for
  the folder ``seal`` created, by the check that asks for it.

Cost: O(files) ``stat`` calls instead of O(bytes) hashing.
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

RACY_NS = 100_000_000  # 0.1 s: well above any file-time granularity of Linux file systems

Stamp = tuple[int, int, int, int, int]  # st_dev, st_ino, st_size, st_mtime_ns, st_ctime_ns

_STAMPS: dict[str, dict[str, Stamp]] = {}  # version folder -> relative path -> trusted stamp
_GUARD = threading.Lock()
_KEEP = 64  # folders remembered: a step checks the version it just sealed, nothing older


def stamp(path: Path) -> Stamp:
    st = os.stat(path, follow_symlinks=False)
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


def trusted(stamp_value: Stamp, taken_ns: int) -> bool:
    """Whether a stamp taken at ``taken_ns`` (``time.time_ns()``) can stand for the file's bytes:
    its times are older than the stamp by more than the file-time granularity."""
    return max(stamp_value[3], stamp_value[4]) < taken_ns - RACY_NS


def remember(folder: Path, stamps: dict[str, Stamp]) -> None:
    """Keep the trusted ``stamps`` (relative path -> stamp, taken by ``take``) of the version sealed
    into ``folder``."""
    with _GUARD:
        _STAMPS[str(folder)] = stamps
        while len(_STAMPS) > _KEEP:
            _STAMPS.pop(next(iter(_STAMPS)))


def take(path: Path) -> Stamp | None:
    """The file's stamp after it was hashed, or None when it cannot be trusted (written too recently)."""
    value = stamp(path)
    return value if trusted(value, time.time_ns()) else None


def unchanged_since_sealing(folder: Path, rel: str) -> bool:
    """Whether ``folder / rel`` is the very file this process hashed when it sealed ``folder``."""
    with _GUARD:
        held = _STAMPS.get(str(folder), {}).get(rel)
    if held is None:
        return False
    try:
        return stamp(folder / rel) == held
    except OSError:
        return False
