"""Building and checking lookup files (the format and the queries: records.lookup, records.lookup_file).

``build_lookup`` writes a version's ``lookup.bin`` by merging sorted runs of its rows
(records.lookup_runs): the runs a step's tasks wrote per shard, or runs cut from its index and
exclusions (pyarrow and numpy; the same tables give the same bytes, so the same root); memory is
bounded by the number of runs, not by the version. ``lookup_problems`` compares a file with
those tables, streaming the same way. Querying never imports this module, so ``apertus audit contains`` starts without
pyarrow or numpy.
"""

from __future__ import annotations

import shutil
import struct
import tempfile
import zlib
from pathlib import Path

from records.layout import DataLayout
from records.lookup import LEGACY_LOOKUP, LOOKUP, TABLES, has_lookup, lookup_path
from records.lookup_file import BLOCK_ROWS, HASH_BLOCK, LookupFile, LookupIntegrityError, block_hashes, header
from records.lookup_runs import Merged, merge_runs, table_runs
from records.manifest import Manifest
from records.versions import holds_documents

ZLIB_LEVEL = 6
COMPRESS_BATCH = 64  # blocks compressed at once, in threads (zlib releases the GIL)


def build_lookup(
    layout: DataLayout, manifest: Manifest, folder: Path, runs: list[Path] | None = None
) -> Path:
    """Write the lookup file of the version in ``folder`` (replacing any); return its path.

    ``runs``: the sorted runs of its rows in table order (records.lookup_runs; a step's tasks write
    one per shard, pipelines.tables), merged as they are; without them the version's index and
    exclusions are cut into runs first. Either way the same tables give the same bytes. Cost: O(rows
    log runs) time; memory O(runs * lookup_runs.BATCH_ROWS rows), whatever the version's size.
    """
    import uuid

    target = lookup_path(layout, manifest.ref)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = target.with_name(f".{LOOKUP}-{uuid.uuid4().hex[:8]}")
    with tempfile.TemporaryDirectory(prefix=".runs-", dir=target.parent) as work:
        work = Path(work)
        stems = runs if runs is not None else table_runs(folder, TABLES, work)
        with open(work / "blocks", "w+b") as blocks:
            offsets = [0]
            merged = _merge_compressed(stems, work, blocks, offsets)
            bodies = {"sha256": merged.sha256, "url_keys": merged.url_keys}
            offsets_body = struct.pack(f">{len(offsets)}Q", *offsets)
            lengths = {name: path.stat().st_size for name, path in bodies.items()}
            lengths.update(block_offsets=len(offsets_body), blocks=offsets[-1])
            fields = {"sources": _sources(manifest), "rows": merged.rows, "url_rows": merged.url_rows}
            with open(staging, "w+b") as f:
                f.write(header(fields, lengths))
                for path in bodies.values():
                    with open(path, "rb") as body:
                        shutil.copyfileobj(body, f)
                f.write(offsets_body)
                blocks.seek(0)
                shutil.copyfileobj(blocks, f)
                f.seek(0)
                hashes = b"".join(block_hashes(piece) for piece in iter(lambda: f.read(HASH_BLOCK), b""))
                f.write(hashes)
    staging.replace(target)
    (target.parent / LEGACY_LOOKUP).unlink(missing_ok=True)
    return target


def _merge_compressed(stems: list[Path], work: Path, out, offsets: list[int]) -> Merged:
    """Merge the runs, writing each block compressed to ``out`` and its end to ``offsets``."""
    from concurrent.futures import ThreadPoolExecutor
    from functools import partial

    pending: list[bytes] = []
    with ThreadPoolExecutor() as pool:

        def flush() -> None:
            for blob in pool.map(partial(zlib.compress, level=ZLIB_LEVEL), pending):
                out.write(blob)
                offsets.append(offsets[-1] + len(blob))
            pending.clear()

        def on_block(block: bytes) -> None:
            pending.append(block)
            if len(pending) >= COMPRESS_BATCH:
                flush()

        merged = merge_runs(stems, work, on_block)
        flush()
    return merged


def _sources(manifest: Manifest) -> list[list]:
    recorded = {f.path: f.sha256 for f in manifest.files}
    return [[manifest.ref, t, recorded.get(t)] for t in TABLES]


def build_missing_lookups(layout: DataLayout, versions: dict[str, Manifest]) -> list[str]:
    """Build the lookup file of every version of documents that has none (or an older format one);
    return the refs built. Models, tokenizers, examples and other versions without documents have none."""
    built = []
    for ref, manifest in sorted(versions.items()):
        if holds_documents(manifest) and not has_lookup(layout, ref):
            build_lookup(layout, manifest, layout.datasets / ref)
            built.append(ref)
    return built


def lookup_problems(
    layout: DataLayout, manifest: Manifest, folder: Path, root: str | None = None, where: str = ""
) -> list[str]:
    """What is wrong with a version's lookup file: unreadable, other bytes than the pinned ``root``
    (when given; ``where`` names the entry), built from other tables, or rows that differ."""
    path = lookup_path(layout, manifest.ref)
    try:
        with LookupFile(path, root, where) as lookup:
            if lookup.header.get("sources") != _sources(manifest):
                return [
                    f"{path}: built from other tables than {manifest.ref}'s; rebuild it (apertus audit index --rebuild)"
                ]
            same = _same_rows(lookup, folder, path.parent)
    except LookupIntegrityError as e:
        return [str(e)]
    except (OSError, ValueError, KeyError, TypeError, struct.error, zlib.error) as e:
        return [f"{path}: unreadable ({e}); rebuild it (apertus audit index --rebuild)"]
    if not same:
        return [f"{path}: its rows differ from {manifest.ref}'s index and exclusions; rebuild it"]
    return []


def _same_rows(lookup: LookupFile, folder: Path, scratch: Path) -> bool:
    """Whether ``lookup`` holds the rows of the tables in ``folder``, block by block and section by
    section, compared as the merge of the tables' runs produces them (in ``scratch``).
    Cost: O(rows log runs) time, memory O(runs * BATCH_ROWS rows + one section piece)."""
    with tempfile.TemporaryDirectory(prefix=".check-", dir=scratch) as work:
        work = Path(work)
        blocks = iter(range(-(-lookup.rows // BLOCK_ROWS)))
        differs = []

        def on_block(block: bytes) -> None:
            number = next(blocks, None)
            if not differs and (number is None or lookup.block(number) != block):
                differs.append(number)

        merged = merge_runs(table_runs(folder, TABLES, work), work, on_block)
        return (
            not differs
            and next(blocks, None) is None
            and lookup.rows == merged.rows
            and _same_section(lookup, "sha256", merged.sha256)
            and _same_section(lookup, "url_keys", merged.url_keys)
        )


def _same_section(lookup: LookupFile, name: str, path: Path) -> bool:
    start, length = lookup.sections[name]
    if path.stat().st_size != length:
        return False
    with open(path, "rb") as f:
        for at in range(0, length, HASH_BLOCK):
            if f.read(HASH_BLOCK) != lookup.section_bytes(name, at, at + HASH_BLOCK):
                return False
    return True
