"""The shard blocks of deduplication (``MinhashShardSignatures``, ``DedupShardFilter``,
``DocumentShardWriter.write_rows``) against the document blocks they replace: the same bytes."""

from __future__ import annotations

import random
from pathlib import Path

import pyarrow as pa
import pytest

from pipelines.dedup import DedupConfig, deduplicate
from pipelines.dedup.filter import DedupFilter, DedupShardFilter
from pipelines.dedup.minhash import MinhashShardSignatures, MinhashSignatures
from pipelines.executor import ExecutorConfig, run_pipeline
from pipelines.shards import SHARD_SCHEMA, DocumentShardReader, DocumentShardWriter, document_to_row
from tests.pipelines.test_dedup import handmade_shards, make_doc, words, write_shards

EXECUTOR = ExecutorConfig(tasks=2, workers=1, ray_address=None)


def files_of(folder: Path) -> dict[str, bytes]:
    return {
        p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()
    }


def shards_with_extras():
    """The hand-made shards, plus a document with ``extra`` metadata, a kept one with a non-ASCII
    id (its duplicate's details hold a \\u escape in the decisions), and a shard of one duplicate."""
    shards, _ = handmade_shards()
    extra = make_doc("s/d#0ß", shards[0][6].text)
    extra.metadata["topic"] = {"z": 1, "a": "ü"}
    shards.append([extra, make_doc("s/0ü", shards[0][7].text), make_doc("s/d#2", shards[0][6].text)])
    shards.append([make_doc("s/e#0", shards[0][4].text)])
    return shards


def reference_filter(
    input_folder: Path, work: Path, out: Path, excluded: Path, writer_args: dict, batch_size: int = 3
) -> None:
    output, exclusion = DocumentShardWriter(out, **writer_args), DocumentShardWriter(excluded, **writer_args)
    for writer in (output, exclusion):
        writer.batch_size = batch_size  # 3: several row groups per file
    run_pipeline(
        [DocumentShardReader(input_folder), DedupFilter(str(work), exclusion_writer=exclusion), output],
        logging_dir=work / "logs" / "reference", config=EXECUTOR,
    )  # fmt: skip


@pytest.mark.parametrize("max_buffer_bytes", [64 << 20, 6000])
def test_shard_filter_writes_the_document_filter_bytes(tmp_path, max_buffer_bytes):
    input_folder = write_shards(tmp_path / "input", shards_with_extras())
    work = tmp_path / "work"
    deduplicate(str(input_folder), str(tmp_path / "o"), str(tmp_path / "x"), str(work), executor=EXECUTOR)
    writer_args = {"max_buffer_bytes": max_buffer_bytes}
    reference_filter(input_folder, work, tmp_path / "ref-out", tmp_path / "ref-excluded", writer_args)
    output = DocumentShardWriter(tmp_path / "out", **writer_args)
    exclusion = DocumentShardWriter(tmp_path / "excluded", **writer_args)
    for writer in (output, exclusion):
        writer.batch_size = 3
    run_pipeline(
        [DedupShardFilter(input_folder, str(work), output, exclusion, batch_size=4)],
        logging_dir=work / "logs" / "shards", config=EXECUTOR,
    )  # fmt: skip
    for name in ("out", "excluded"):
        ours, reference = files_of(tmp_path / name), files_of(tmp_path / f"ref-{name}")
        assert ours.keys() == reference.keys() and len(ours) == 2
        assert ours == reference
    # and deduplicate itself (its default writers) wrote what the reference chain writes
    reference_filter(input_folder, work, tmp_path / "ref-o", tmp_path / "ref-x", {}, batch_size=1000)
    for name in ("o", "x"):
        assert files_of(tmp_path / name) == files_of(tmp_path / f"ref-{name}")


def test_shard_filter_rejects_changed_input(tmp_path):
    shards = shards_with_extras()
    input_folder = write_shards(tmp_path / "input", shards)
    work = tmp_path / "work"
    deduplicate(str(input_folder), str(tmp_path / "o"), str(tmp_path / "x"), str(work), executor=EXECUTOR)
    shards[1][0], shards[1][1] = shards[1][1], shards[1][0]
    write_shards(input_folder, shards)
    step = DedupShardFilter(
        input_folder, str(work), DocumentShardWriter(tmp_path / "out"), DocumentShardWriter(tmp_path / "ex")
    )
    with pytest.raises(AssertionError, match="input changed between stages"):
        list(step.run(None, rank=1, world_size=2))


def test_shard_signatures_write_the_document_signature_files(tmp_path):
    input_folder = write_shards(tmp_path / "input", shards_with_extras())
    config = DedupConfig()
    run_pipeline(
        [DocumentShardReader(input_folder), MinhashSignatures(str(tmp_path / "ref"), config)],
        logging_dir=tmp_path / "logs-ref", config=EXECUTOR,
    )  # fmt: skip
    run_pipeline(
        [MinhashShardSignatures(input_folder, str(tmp_path / "ours"), config)],
        logging_dir=tmp_path / "logs-ours", config=EXECUTOR,
    )  # fmt: skip
    ours, reference = files_of(tmp_path / "ours"), files_of(tmp_path / "ref")
    assert len(ours) == 2 * (3 + config.num_bands) and ours == reference


@pytest.mark.parametrize("max_buffer_bytes", [64 << 20, 5000, 1])
def test_write_rows_cuts_row_groups_as_write(tmp_path, max_buffer_bytes):
    """Rows of mixed sizes and scripts (1, 2 and 4 bytes a character in CPython) in batches of
    mixed lengths: the same file as writing their documents one by one."""
    rng = random.Random(3)
    docs = []
    for i in range(60):
        text = " ".join(words(rng.randint(0, 400), seed=i)) + rng.choice(["", "é", "ж", "😀"])
        doc = make_doc(f"d{i}", text)
        if i % 7 == 0:
            doc.metadata["note"] = "x" * i
        docs.append(doc)
    reference, ours = (
        DocumentShardWriter(tmp_path / n, max_buffer_bytes=max_buffer_bytes) for n in ("r", "o")
    )
    for writer in (reference, ours):
        writer.batch_size = 7
    with reference:
        for doc in docs:
            reference.write(doc, rank=3)
    with ours:
        start = 0
        while start < len(docs):
            n = rng.randint(0, 11)
            rows = [document_to_row(d) for d in docs[start : start + n]]
            ours.write_rows(pa.RecordBatch.from_pylist(rows, schema=SHARD_SCHEMA), rank=3)
            start += n
    assert files_of(tmp_path / "o") == files_of(tmp_path / "r") and files_of(tmp_path / "r")
