"""bench/audit_index.py's synthetic history (what bench/scale.py will import): real versions, pinned,
indexed at each pin, and the index answers as the manifests do, for the default scope and a model's."""

from provenance.audit.contains import contains
from provenance.audit.model_use import contains_in_model, training_data
from records.indexed_versions import IndexedVersions
from records.layout import DataLayout
from tests.bench._load import load_bench

bench = load_bench("audit_index")


def test_the_synthetic_history_is_indexed_and_answers_as_the_manifests(tmp_path):
    samples = bench.build_history(tmp_path / "data", bench.MODEL_EVERY, documents=12)
    layout = DataLayout(tmp_path / "data")
    with IndexedVersions(layout) as versions:
        assert len(versions) == bench.MODEL_EVERY * 6 + 3 and versions._unindexed == []
    sources = training_data(layout, samples["model"])[3]
    for key in ("url", "sha256"):
        for name, status in (("kept", "in"), ("dropped", "dropped")):
            question = {key: samples[name][key]}
            for targets in (None, sources):
                new = contains(layout, **question, targets=targets)
                assert (
                    new.to_dict() == contains(layout, **question, targets=targets, use_index=False).to_dict()
                )
                assert new.status == status
        model = contains_in_model(layout, samples["model"], **{key: samples["dropped"][key]})
        assert model.status == "dropped"
