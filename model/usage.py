"""Which sequences a run trained on, and how often: the model end of "was document X in model Y".

The batches of a run are a pure function of its stage plan, the stages' training splits, the global
batch and the seed (model.data.batch_indices), so the use of every sequence is replayed after
training rather than logged step by step: the answer is the same after any number of resumes, and
nothing is kept in the checkpoint for it. sequence_use.parquet holds one row per sequence that was
trained on or held out for evaluation; a staged sequence absent from it was never seen.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch

SCHEMA = pa.schema(
    [
        ("stage", pa.string()),
        ("sequence", pa.int64()),
        ("times_trained", pa.int32()),
        ("held_out", pa.bool_()),
    ]
)


def trained_counts(
    num_train: int, first_local_step: int, steps: int, global_batch: int, seed: int
) -> np.ndarray:
    """How many times each training position 0..num_train-1 is drawn by steps
    [first_local_step, first_local_step + steps) of batch_indices(num_train, ·, global_batch, seed)."""
    counts = np.zeros(num_train, dtype=np.int64)
    begin, end = first_local_step * global_batch, (first_local_step + steps) * global_batch
    position = begin
    while position < end:
        epoch, offset = divmod(position, num_train)
        take = min(num_train - offset, end - position)
        perm = torch.randperm(num_train, generator=torch.Generator().manual_seed(seed * 100_003 + epoch))
        np.add.at(counts, perm[offset : offset + take].numpy(), 1)
        position += take
    return counts


def write_sequence_use(
    path: Path, stages: list[tuple[str, np.ndarray, np.ndarray, int]], global_batch: int, seed: int
) -> dict[str, dict[str, int]]:
    """Write sequence_use.parquet for stages given as (name, train sequence ids, held-out sequence ids,
    steps trained on the stage), stage k drawing with seed * 1000 + k as model.staged_training does. Returns per
    stage the number of distinct sequences trained on, of training draws, and of held-out sequences."""
    tables, summary = [], {}
    for k, (name, train, held_out, steps) in enumerate(stages):
        counts = trained_counts(len(train), 0, steps, global_batch, seed * 1000 + k)
        used = counts > 0
        sequences = np.concatenate([train[used], held_out]).astype(np.int64)
        times = np.concatenate([counts[used], np.zeros(len(held_out), dtype=np.int64)]).astype(np.int32)
        flags = np.concatenate([np.zeros(int(used.sum()), bool), np.ones(len(held_out), bool)])
        order = np.argsort(sequences, kind="stable")
        tables.append(
            pa.table(
                {
                    "stage": pa.array([name] * len(sequences), pa.string()),
                    "sequence": sequences[order],
                    "times_trained": times[order],
                    "held_out": flags[order],
                },
                schema=SCHEMA,
            )
        )
        summary[name] = {
            "sequences_trained": int(used.sum()),
            "draws": int(counts.sum()),
            "held_out_sequences": len(held_out),
        }
    pq.write_table(pa.concat_tables(tables) if tables else SCHEMA.empty_table(), path)
    return summary
