"""Tokenization throughput of the token_shards step against the tokenizers library, and random-read
speed of the shards against what the tiny training recipe consumes.

    RAYON_NUM_THREADS=1 .venv/bin/python bench/tokenization.py [--rounds 5] [--repeat 2]

Builds, in a temporary data folder, a document version from every text of the bundled sample
(``sample/sources``, 21 languages; ``--repeat`` copies of it) and a tokenizer (vocab 8192) on it.
Then, alternating in rounds so load from other processes hits both alike, it times on one core
(Rayon pinned to one thread):

- ours: ``build_token_shards`` on one stage holding every document (read the Parquet shards,
  encode in batches, write the stream, shuffle, write the shards and the sequence map, hash, seal);
- the library: ``Tokenizer.encode_batch`` and ``encode_batch_fast`` on the same texts, already in
  memory, in batches of the same size.

The figure is tokens per second of CPU time (process_time, one core; median and best of the rounds)
and the ratio ours / library
(goal >= 0.9: wrapping, I/O and shard writing cost under 10 %). Then it reads random sequences
through ``TokenShardReader`` into int64 tensors, as a training data loader does, and compares with
the tiny recipe's training throughput from bench/out/train.json (goal >= 10x). Writes
bench/out/tokenize.json.
"""

from __future__ import annotations

import os

os.environ.setdefault("RAYON_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import argparse  # noqa: E402
import gzip  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import statistics  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import pyarrow as pa  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402
import torch  # noqa: E402

from pipelines.normalize import text_sha256  # noqa: E402
from pipelines.shards import SHARD_SCHEMA  # noqa: E402
from pipelines.steps import finish_step, new_staging  # noqa: E402
from pipelines.token_shards import TokenShardConfig, build_token_shards  # noqa: E402
from pipelines.tokenizer import TokenizerConfig, load_tokenizer, train_tokenizer  # noqa: E402
from records.assets import CURRICULUM_STAGES  # noqa: E402
from records.curriculum import STAGES, stage_file  # noqa: E402
from records.documents import INDEX, SHARDS  # noqa: E402
from records.layout import DataLayout  # noqa: E402
from records.manifest import seal, version_folder  # noqa: E402
from records.token_shards import ShardRows, stage_dirs  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
DOCS_PER_SHARD = 500


def _machine() -> dict:
    lines = Path("/proc/cpuinfo").read_text().splitlines()
    cpu = next((line.split(":", 1)[1].strip() for line in lines if line.startswith("model name")), "?")
    return {"cpu": cpu, "cores": os.cpu_count(), "python": platform.python_version(), "load": os.getloadavg()}


def _document_version(layout: DataLayout, repeat: int):
    records = []
    for path in sorted((ROOT / "sample" / "sources").glob("*.jsonl.gz")):
        with gzip.open(path, "rt", encoding="utf-8") as f:
            records += [json.loads(line) for line in f]
    staging = new_staging(layout, "bench_documents")
    (staging / SHARDS).mkdir()
    rows = [
        {
            "id": f"{r['id']}~{k}",
            "text": r["text"],
            "language": r["language"],
            "sha256": text_sha256(r["text"]),
        }
        for k in range(repeat)
        for r in records
    ]
    for n, lo in enumerate(range(0, len(rows), DOCS_PER_SHARD)):
        chunk = rows[lo : lo + DOCS_PER_SHARD]
        table = pa.Table.from_pylist(
            chunk, schema=pa.schema([SHARD_SCHEMA.field(c) for c in ("id", "text", "language", "sha256")])
        )
        for field in SHARD_SCHEMA:
            if field.name not in table.column_names:
                table = table.append_column(field, pa.nulls(table.num_rows, field.type))
        pq.write_table(table.select(SHARD_SCHEMA.names), staging / SHARDS / f"{n:05d}.parquet")
    return finish_step(layout, staging, asset="bench_documents", snapshot="bench", parents=(), config={})


def _one_stage(layout: DataLayout, documents) -> Path:
    index = pq.read_table(version_folder(layout.datasets, documents.manifest.ref) / INDEX)
    n = index.num_rows
    table = pa.table({
        "stage": ["all"] * n, "stage_index": [0] * n, "position": list(range(n)), "doc_id": index["doc_id"],
        "sha256": index["sha256"], "source_version": [documents.manifest.ref] * n, "shard": index["shard"],
        "row": index["row"], "language": index["language"], "multiplicity": [1] * n,
        "num_tokens_est": index["num_tokens_est"],
    })  # fmt: skip
    staging = layout.work / "bench-stages"
    (staging / STAGES).mkdir(parents=True)
    pq.write_table(table, staging / stage_file(0, "all"))
    manifest, _ = seal(staging, layout.datasets, asset=CURRICULUM_STAGES, snapshot="bench")
    return manifest


def _texts(layout: DataLayout, documents) -> list[str]:
    folder = version_folder(layout.datasets, documents.manifest.ref)
    return [
        t for p in sorted((folder / SHARDS).glob("*.parquet")) for t in pq.read_table(p)["text"].to_pylist()
    ]


def _cpu_time(fn) -> float:
    start = time.process_time()
    fn()
    return time.process_time() - start


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--repeat", type=int, default=2, help="copies of the sample in the document version")
    p.add_argument("--reads", type=int, default=20000, help="random sequences read")
    args = p.parse_args()
    config = TokenShardConfig(seq_len=128)
    with tempfile.TemporaryDirectory() as tmp:
        layout = DataLayout(Path(tmp) / "data")
        documents = _document_version(layout, args.repeat)
        tokenizer = train_tokenizer(
            layout,
            documents.manifest,
            config=TokenizerConfig(vocab_size=8192, max_chars_per_language=150_000),
        ).manifest
        stages = _one_stage(layout, documents)
        tok = load_tokenizer(version_folder(layout.datasets, tokenizer.ref))
        texts = _texts(layout, documents)
        batches = [
            texts[i : i + config.batch_documents] for i in range(0, len(texts), config.batch_documents)
        ]
        num_tokens = sum(
            len(e.ids) for b in batches for e in tok.encode_batch_fast(b, add_special_tokens=False)
        )

        seconds: dict[str, list[float]] = {"ours": [], "encode_batch": [], "encode_batch_fast": []}
        built = []
        for seed in range(args.rounds):
            run = TokenShardConfig(seq_len=config.seq_len, seed=seed)  # a new version each round: no reuse
            seconds["ours"].append(
                _cpu_time(
                    lambda run=run: built.append(build_token_shards(layout, stages, tokenizer, config=run))
                )
            )
            seconds["encode_batch"].append(
                _cpu_time(lambda: [tok.encode_batch(b, add_special_tokens=False) for b in batches])
            )
            seconds["encode_batch_fast"].append(
                _cpu_time(lambda: [tok.encode_batch_fast(b, add_special_tokens=False) for b in batches])
            )
        rate = {k: num_tokens / statistics.median(v) for k, v in seconds.items()}
        best = {k: num_tokens / min(v) for k, v in seconds.items()}

        reader = ShardRows(stage_dirs(built[-1].folder)[0])
        picks = np.random.default_rng(0).integers(0, len(reader), args.reads).tolist()
        start = time.perf_counter()
        for i in picks:
            torch.from_numpy(reader[i].astype(np.int64))
        read_rate = args.reads * config.seq_len / (time.perf_counter() - start)

    train_path = ROOT / "bench" / "out" / "train.json"
    train = json.loads(train_path.read_text()) if train_path.exists() else {}
    consumed = max((v["tokens_per_s"] for v in train.values() if isinstance(v, dict)), default=None)
    result = {
        "machine": _machine(),
        "rayon_threads": int(os.environ["RAYON_NUM_THREADS"]),
        "documents": len(texts),
        "characters": sum(len(t) for t in texts),
        "tokens": num_tokens,
        "tokens_per_cpu_s": rate,
        "tokens_per_cpu_s_best": best,
        "cpu_seconds": seconds,
        "ratio_ours_vs_encode_batch": rate["ours"] / rate["encode_batch"],
        "ratio_ours_vs_encode_batch_fast": rate["ours"] / rate["encode_batch_fast"],
        "ratio_best_ours_vs_encode_batch_fast": best["ours"] / best["encode_batch_fast"],
        "random_read_tokens_per_s": read_rate,
        "training_tokens_per_s": consumed,
        "read_over_training": read_rate / consumed if consumed else None,
    }
    out = ROOT / "bench" / "out"
    out.mkdir(exist_ok=True)
    (out / "tokenize.json").write_text(json.dumps(result, indent=2))
    m = result["machine"]
    print(
        f"machine: {m['cpu']}, {m['cores']} cores, load {m['load'][0]:.1f}; Rayon threads {result['rayon_threads']}"
    )
    print(f"corpus: {len(texts)} documents, {result['characters']:,} characters, {num_tokens:,} tokens")
    for name, value in rate.items():
        print(
            f"{name:>18}: {value:10,.0f} tokens per CPU second (median of {args.rounds}; best {best[name]:,.0f})"
        )
    print(f"ratio ours / encode_batch: {result['ratio_ours_vs_encode_batch']:.2f}, "
          f"ours / encode_batch_fast: {result['ratio_ours_vs_encode_batch_fast']:.2f} "
          f"(best / best: {result['ratio_best_ours_vs_encode_batch_fast']:.2f}; goal >= 0.9)")  # fmt: skip
    print(f"random sequence reads: {read_rate:,.0f} tokens/s", end="")
    if consumed:
        print(
            f"; tiny training consumes {consumed:,.0f} tokens/s: {result['read_over_training']:,.0f}x (goal >= 10x)"
        )
    else:
        print(" (run bench/train.py for the training side)")


if __name__ == "__main__":
    main()
