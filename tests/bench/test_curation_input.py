"""The curation benchmark's input (documents of realistic size, the format mix, the deliberate
copies) and its two measures (datatrove run time, sampled peak memory), on small real runs."""

import gzip
import html
import json
import random
import re
import sys
import time

import pyarrow.parquet as pq
import pytest

from tests.bench._load import BENCH

sys.path.insert(0, str(BENCH.parent))  # bench/curation*.py import each other as ``bench.*``

from bench.curation_input import DOCS_PER_FILE, InputStats, make_snapshot  # noqa: E402
from bench.curation_measure import clocked_blocks, sampled_rss  # noqa: E402


@pytest.fixture(scope="module")
def snapshot(tmp_path_factory):
    folder = tmp_path_factory.mktemp("curation-input") / "bench"
    return folder, make_snapshot(folder, 2500, seed=3)


def _texts(folder) -> list[str]:
    from warcio.archiveiterator import ArchiveIterator

    texts = []
    for path in sorted(folder.glob("jsonl/*.jsonl.gz")):
        with gzip.open(path, "rt", encoding="utf-8") as f:
            texts += [json.loads(line)["text"] for line in f]
    for path in sorted(folder.glob("parquet/*.parquet")):
        texts += pq.read_table(path).column("text").to_pylist()
    for path in sorted(folder.glob("warc/*.warc.gz")):
        with path.open("rb") as f:
            pages = [
                r.content_stream().read().decode() for r in ArchiveIterator(f) if r.rec_type == "response"
            ]
        # sample.crawl.page_html: one <p> per paragraph, <br> between its lines, escaped
        texts += [
            "\n\n".join(
                html.unescape(p.replace("<br>", "\n")) for p in re.findall(r"<p>(.*?)</p>", page, re.S)
            )
            for page in pages
        ]
    return texts


def test_sizes_formats_and_counts(snapshot):
    folder, stats = snapshot
    assert isinstance(stats, InputStats) and stats.documents == 2500
    assert stats.files == 3 and DOCS_PER_FILE == 1000
    assert 600 <= stats.tokens_per_document <= 800
    assert stats.bytes_on_disk == sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())
    assert len(list(folder.glob("warc/*.warc.gz"))) >= 1
    assert len(_texts(folder)) == 2500
    # 4 % exact and 4 % near copies, drawn at random
    assert 50 <= stats.exact_copies <= 150 and 50 <= stats.near_copies <= 150


def test_documents_are_not_copies_of_each_other_beyond_the_deliberate_ones(snapshot):
    folder, stats = snapshot
    texts = _texts(folder)
    assert len(set(texts)) >= len(texts) - 2 * stats.exact_copies
    rng = random.Random(0)
    shingles = [set(zip(t.split(), t.split()[1:], t.split()[2:], strict=False)) for t in texts]
    overlaps = []
    for _ in range(300):
        a, b = rng.sample(range(len(texts)), 2)
        if texts[a] != texts[b] and shingles[a] and shingles[b]:
            overlaps.append(len(shingles[a] & shingles[b]) / len(shingles[a] | shingles[b]))
    assert sorted(overlaps)[int(0.95 * len(overlaps))] < 0.3


def test_same_seed_same_bytes(tmp_path):
    first, second = tmp_path / "a", tmp_path / "b"
    make_snapshot(first, 300, seed=5)
    make_snapshot(second, 300, seed=5)
    names = sorted(p.relative_to(first) for p in first.rglob("*") if p.is_file())
    assert names == sorted(p.relative_to(second) for p in second.rglob("*") if p.is_file())
    assert all((first / n).read_bytes() == (second / n).read_bytes() for n in names)


def test_clock_times_real_datatrove_runs_and_restores_the_method(tmp_path):
    from datatrove.executor.local import LocalPipelineExecutor

    original = LocalPipelineExecutor.run

    def slow(data, rank=0, world_size=1):
        time.sleep(0.2)
        yield from data or []

    with sampled_rss(interval=0.05) as peaks, clocked_blocks() as clock:
        LocalPipelineExecutor([slow], tasks=1, workers=1, logging_dir=str(tmp_path / "logs")).run()
        busy = time.process_time() + 0.3
        while time.process_time() < busy:  # CPU time the sampler must see
            pass
    assert clock.runs == 1 and clock.seconds >= 0.2
    assert LocalPipelineExecutor.run is original
    assert peaks.main > 10 * 2**20 and peaks.together >= peaks.main
    assert peaks.cpu_seconds >= 0.3
