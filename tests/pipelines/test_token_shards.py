"""Token shards built from a hand-made curriculum stage file over the curated fixture's documents:
deterministic bytes and version, every token accounted for by the sequence map, and every
document's tokens recovered exactly from the shards."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipelines.token_shards import TokenShardConfig, build_token_shards
from pipelines.tokenizer import TokenizerConfig, load_tokenizer, train_tokenizer
from records.hashing import sha256_file
from records.layout import DataLayout
from records.manifest import seal, verify_version, version_folder
from records.token_shards import ShardRows, stage_dirs

CONFIG = TokenShardConfig(seq_len=64, sequences_per_shard=300, batch_documents=50, seed=11)


def _stage_files(index: pa.Table, folder: Path) -> dict[str, pa.Table]:
    """Two stages over the deduplicated documents: 'warmup' (every third document, once each) and
    'main' (the rest, in reverse index order; every fifth twice, every seventh left out)."""
    rows = index.to_pylist()
    stages = {"0-warmup": rows[::3], "1-main": [r for i, r in enumerate(rows) if i % 3][::-1]}
    tables = {}
    for name, docs in stages.items():
        stage_index, stage = name.split("-")
        multiplicity = [1 if name == "0-warmup" else (0 if i % 7 == 3 else 2 if i % 5 == 0 else 1)
                        for i in range(len(docs))]  # fmt: skip
        table = pa.table({
            "stage": [stage] * len(docs),
            "stage_index": [int(stage_index)] * len(docs),
            "position": list(range(len(docs))),
            "doc_id": [d["doc_id"] for d in docs],
            "sha256": [d["sha256"] for d in docs],
            "source_version": [d["source_version"] for d in docs],
            "shard": [d["shard"] for d in docs],
            "row": [d["row"] for d in docs],
            "language": [d["language"] for d in docs],
            "multiplicity": multiplicity,
            "num_tokens_est": [d["num_tokens_est"] for d in docs],
        })  # fmt: skip
        (folder / "stages").mkdir(parents=True, exist_ok=True)
        pq.write_table(table, folder / "stages" / f"{name}.parquet")
        tables[name] = table
    return tables


@pytest.fixture(scope="module")
def built(curated, tmp_path_factory):
    source_layout, results, _ = curated
    layout = DataLayout(tmp_path_factory.mktemp("shards") / "data")
    shutil.copytree(source_layout.root, layout.root)
    deduplicated = results[-1].manifest
    tokenizer = train_tokenizer(layout, deduplicated, config=TokenizerConfig(vocab_size=2048)).manifest
    index = pq.read_table(version_folder(layout.datasets, deduplicated.ref) / "index.parquet")
    index = index.append_column("source_version", pa.array([deduplicated.ref] * index.num_rows))
    staging = layout.work / "handmade-stages"
    tables = _stage_files(index, staging)
    stages, _ = seal(
        staging, layout.datasets, asset="curriculum_stages", snapshot="small", parents=(deduplicated.ref,)
    )
    result = build_token_shards(layout, stages, tokenizer, config=CONFIG)
    return layout, stages, tokenizer, tables, result


def _sequence_rows(stage_dir: Path) -> np.ndarray:
    reader = ShardRows(stage_dir)
    return np.stack([reader[i] for i in range(len(reader))])


def test_same_seed_same_bytes_and_version(built):
    layout, stages, tokenizer, _, first = built
    assert first.created and verify_version(first.folder) == []
    assert first.manifest.parents == (stages.ref, tokenizer.ref)
    again = build_token_shards(layout, stages, tokenizer, config=CONFIG)
    assert again.manifest.version_id == first.manifest.version_id and not again.created
    recorded = {f.path: f.sha256 for f in first.manifest.files}
    for stage_dir in stage_dirs(first.folder):
        for shard in json.loads((stage_dir / "index.json").read_text())["shards"]:
            path = stage_dir / shard["path"]
            assert recorded[path.relative_to(first.folder).as_posix()] == shard["sha256"] == sha256_file(path)


def test_other_seed_permutes_the_same_sequences(built, tmp_path):
    layout, stages, tokenizer, _, first = built
    # The unsealed stage folder is accepted too; the stages are the same files.
    plain = tmp_path / "stages-copy"
    shutil.copytree(version_folder(layout.datasets, stages.ref) / "stages", plain / "stages")
    other = build_token_shards(
        layout, plain, tokenizer, config=TokenShardConfig(**{**CONFIG.__dict__, "seed": 12})
    )
    assert other.manifest.version_id != first.manifest.version_id
    for a, b in zip(stage_dirs(first.folder), stage_dirs(other.folder), strict=True):
        rows_a, rows_b = _sequence_rows(a), _sequence_rows(b)
        assert not np.array_equal(rows_a, rows_b)
        assert np.array_equal(np.unique(rows_a, axis=0), np.unique(rows_b, axis=0))


def _texts(layout: DataLayout, refs_shards_rows) -> dict:
    out = {}
    for ref, shard, row, doc_id in refs_shards_rows:
        table = pq.read_table(version_folder(layout.datasets, ref) / shard, columns=["id", "text"])
        assert table["id"][row].as_py() == doc_id
        out[doc_id] = table["text"][row].as_py()
    return out


def test_every_sequence_maps_to_stage_documents_and_every_token_is_accounted_for(built):
    layout, _, tokenizer_manifest, tables, result = built
    tokenizer = load_tokenizer(version_folder(layout.datasets, tokenizer_manifest.ref))
    eot = tokenizer.token_to_id("<|endoftext|>")
    for stage_dir in stage_dirs(result.folder):
        stage = tables[stage_dir.name].to_pylist()
        by_key = {(r["doc_id"], r["sha256"], r["source_version"], r["position"]): r for r in stage}
        mapping = pq.read_table(stage_dir / "sequences.parquet").to_pylist()
        rows = _sequence_rows(stage_dir)
        assert {m["sequence"] for m in mapping} == set(range(len(rows)))
        texts = _texts(layout, {(r["source_version"], r["shard"], r["row"], r["doc_id"]) for r in stage})
        encoded = tokenizer.encode_batch(list(texts.values()), add_special_tokens=False)
        expected = {doc_id: e.ids for doc_id, e in zip(texts, encoded, strict=True)}
        covered = np.zeros(rows.shape, bool)
        pieces: dict[tuple[str, int], dict[int, list[int]]] = {}
        for m in mapping:
            doc = by_key[(m["doc_id"], m["sha256"], m["source_version"], m["position"])]  # in this stage
            assert m["copy"] < doc["multiplicity"]
            tokens = rows[m["sequence"], m["token_start"] : m["token_end"]].tolist()
            want = expected[m["doc_id"]][m["doc_token_start"] : m["doc_token_start"] + len(tokens)]
            assert tokens == want and m["doc_num_tokens"] == len(expected[m["doc_id"]])
            covered[m["sequence"], m["token_start"] : m["token_end"]] = True
            # A copy starting on a window's last token also starts the next window: keep the longer.
            parts = pieces.setdefault((m["doc_id"], m["copy"]), {})
            parts[m["doc_token_start"]] = max(parts.get(m["doc_token_start"], []), tokens, key=len)
        assert np.all(rows[~covered] == eot)  # what is not a document is a separator
        # Whole copies decode to the document's text; all but the cut-off tail's copies are whole.
        whole = 0
        for (doc_id, _), parts in pieces.items():
            ids: list[int] = []
            for start in sorted(parts):
                ids = ids[:start] + parts[start]
            if ids == expected[doc_id]:
                assert tokenizer.decode(ids, skip_special_tokens=False) == texts[doc_id]
                whole += 1
        index = json.loads((stage_dir / "index.json").read_text())
        assert index["num_document_copies"] == sum(r["multiplicity"] for r in stage)
        assert whole == index["num_document_copies_whole"] >= index["num_document_copies"] - 3
        assert any(copy == 1 for _, copy in pieces) == (stage_dir.name == "1-main")
        left_out = {r["doc_id"] for r in stage if r["multiplicity"] == 0}
        assert not left_out & {doc_id for doc_id, _ in pieces}


def test_index_counts_and_random_access(built):
    _, _, _, tables, result = built
    top = json.loads((result.folder / "index.json").read_text())
    assert [s["stage"] for s in top["stages"]] == ["warmup", "main"] and top["dtype"] == "uint16"
    for stage_dir in stage_dirs(result.folder):
        index = json.loads((stage_dir / "index.json").read_text())
        reader = ShardRows(stage_dir)
        assert len(reader) == index["num_sequences"] == sum(s["num_sequences"] for s in index["shards"])
        assert len(index["shards"]) == -(-index["num_sequences"] // CONFIG.sequences_per_shard) > 1
        assert (
            index["num_tokens"] == index["num_sequences"] * CONFIG.seq_len + 1 + index["num_tokens_dropped"]
        )
        flat = np.concatenate([np.fromfile(stage_dir / s["path"], dtype=np.uint16) for s in index["shards"]])
        flat = flat.reshape(-1, CONFIG.seq_len + 1)
        for i in np.random.default_rng(0).integers(0, len(reader), 50):
            assert np.array_equal(reader[int(i)], flat[i])
        with pytest.raises(IndexError):
            reader[len(reader)]
        assert index["num_documents"] == tables[stage_dir.name].num_rows


def test_stage_file_without_contract_columns_is_refused(built, tmp_path):
    layout, _, tokenizer, tables, _ = built
    (tmp_path / "stages").mkdir()
    pq.write_table(tables["0-warmup"].drop(["multiplicity"]), tmp_path / "stages" / "0-x.parquet")
    with pytest.raises(ValueError, match="multiplicity"):
        build_token_shards(layout, tmp_path, tokenizer, config=CONFIG)
