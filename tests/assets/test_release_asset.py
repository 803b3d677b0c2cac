"""The model_release asset on a real model version: certified in the ledger, documents generated from the
records and sealed as a version, the production alias moved; a second release reuses everything."""

from __future__ import annotations

import json
import shutil

import dagster as dg
import pytest

from assets.finetuning import FINETUNED_MODEL, finetuned_model
from assets.release import MODEL_RELEASE, model_release
from assets.resources import CurationResource
from provenance.audit.verify import verify
from provenance.certify import aliases
from records.layout import DataLayout
from records.ledger import Ledger


@pytest.fixture(scope="module")
def released(trained, tmp_path_factory):
    source, model, _ = trained
    layout = DataLayout(tmp_path_factory.mktemp("release") / "data")
    shutil.copytree(source.root, layout.root)

    @dg.asset(name="trained_model")
    def trained_model_version():
        """Stands in for the trained_model asset: the model version of the fixture."""
        return dg.Output(model.ref, data_version=dg.DataVersion(model.version_id))

    resources = {"curation": CurationResource(data_folder=str(layout.root))}
    assets = [trained_model_version, model_release, finetuned_model]
    tune = {"ops": {"finetuned_model": {"config": {"steps": 6, "threads": 1}}}}
    with dg.instance_for_test() as instance:
        first = dg.materialize(assets, instance=instance, resources=resources, run_config=tune)
        second = dg.materialize(
            assets, instance=instance, resources=resources, selection=["trained_model", "model_release"]
        )
    return layout, model, first, second


def test_release_certifies_documents_and_moves_production(released):
    layout, model, first, _ = released
    assert first.success
    checks = {
        c.check_name: c.passed
        for c in first.get_asset_check_evaluations()
        if c.asset_key.path == [MODEL_RELEASE]
    }
    assert checks == {"version_verifies": True, "ledger_verifies": True, "alias_points_here": True}
    (event,) = first.asset_materializations_for_node(MODEL_RELEASE)
    folder = layout.datasets / first.output_for_node(MODEL_RELEASE)
    for name in ("model-card", "training-content-summary", "annex-xi", "gdpr-art30"):
        assert (folder / f"{name}.md").exists() and (folder / f"{name}.html").exists(), name
    assert json.loads((folder / "sources.json").read_text())["model_version"] == model.ref
    assert event.metadata["model_card"].value.startswith("#")
    # The release names the signing key and the ledger head it was made under (docs/security.md).
    from records.signing import key_id, load_public_key

    anchor = event.metadata["ledger_head"].value
    assert event.metadata["ledger_key_id"].value == anchor["key_id"]
    assert anchor["key_id"] == key_id(load_public_key(Ledger(layout.ledger).public_key_pem()))
    assert anchor["key_id"] in event.metadata["model_card"].value
    assert aliases(layout)["production"] == model.ref
    events = [e.event_type for e in Ledger(layout.ledger).entries()]
    assert events.count("model_certified") == 1 and events.count("alias_moved") == 1
    assert verify(layout).ok


def test_the_released_model_is_fine_tuned_with_its_records(released):
    layout, model, first, _ = released
    tuned = first.output_for_node(FINETUNED_MODEL)
    assert tuned.startswith("finetuned_model/")
    (event,) = first.asset_materializations_for_node(FINETUNED_MODEL)
    assert event.metadata["base_model"].value == model.ref
    assert event.metadata["examples"].value["root"]
    checks = {
        c.check_name: c.passed
        for c in first.get_asset_check_evaluations()
        if c.asset_key.path == [FINETUNED_MODEL]
    }
    assert checks["version_verifies"] and checks["ledger_verifies"]
    assert checks["gates_pass"] == event.metadata["certifiable"].value
    entry = next(
        e
        for e in Ledger(layout.ledger).entries()
        if e.event_type == "model_trained" and e.payload["model_version"] == tuned
    )
    assert entry.payload["kind"] == "finetune"


def test_a_second_release_reuses_the_version_and_moves_nothing(released):
    layout, _, first, second = released
    assert second.success
    assert second.output_for_node(MODEL_RELEASE) == first.output_for_node(MODEL_RELEASE)
    (event,) = second.asset_materializations_for_node(MODEL_RELEASE)
    assert event.metadata["new_version"].value is False and "alias_ledger_index" not in event.metadata
    events = [e.event_type for e in Ledger(layout.ledger).entries()]
    assert events.count("model_certified") == 1 and events.count("alias_moved") == 1
