"""bench/scale.py's builder and timers at a trivial size (2 snapshots, a model every 2, 1 repeat),
so the script cannot rot silently: the history is in the real formats, every per-step measure runs
and passes its checks, the cold `contains` processes answer as expected, and the ratios table reads
two sizes."""

import os

from tests.bench._load import load_bench

scale = load_bench("scale")


def test_scale_bench_builds_grows_and_times_every_per_step_cost(tmp_path, monkeypatch):
    # The builder points APERTUS_KEYS, APERTUS_DATA and DAGSTER_HOME at its history (as a bench run
    # wants): undone after the test, or every later test would sign with the history's key.
    for name in ("APERTUS_KEYS", "APERTUS_DATA", "DAGSTER_HOME"):
        monkeypatch.setenv(name, os.environ.get(name, ""))
        if not os.environ[name]:
            monkeypatch.delenv(name)
    monkeypatch.setattr(scale.audit_index, "MODEL_EVERY", 2)  # a model (for --model) at 2 snapshots
    history = scale.History(tmp_path / "history", documents=8)
    results = {}
    for steps, size in enumerate((2, 4)):  # the second size grows the first one's folder
        results[str(size)] = scale.measure(history, size, repeats=1, docs=50)
        # ~1,000 entries per snapshot, 3 per model (one every 2 snapshots, and one over every snapshot
        # after each size), and 2 per timed step before this size
        entries = size * 1000 + (size // 2 + steps + 1) * 3 + 2 * steps
        assert results[str(size)]["built"]["ledger_entries"] == entries
        decision = results[str(size)]["tick_decision"]
        assert decision["curate"] == 0 and decision["retrain"] is None  # the model covers every snapshot
        # The tick reads the step's one changed record (replayed, judged), then none: not every snapshot.
        assert decision["records_read"] == {"tick": 2, "tick_steady": 0}
    measures = results["4"]["measures"]
    assert set(measures) >= {"pin_version", "ledger_append", "asset_checks", "catalog_update", "tick", "tick_steady",
                             "suppression_start", "suppression_per_doc", "contains.default.url",
                             "contains.model.sha256"}  # fmt: skip
    assert all(m["median"] > 0 for m in measures.values())
    text, ratios = scale.verdicts(results)
    assert set(ratios) == {m for m in measures if not m.startswith("floor.")} and "ratios 4/2" in text
