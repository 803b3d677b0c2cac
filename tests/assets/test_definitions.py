"""The asset graph cannot change by accident: keys, dependencies, partitions, checks and jobs."""

from __future__ import annotations

import dagster as dg

from assets.definitions import defs

EXPECTED_GRAPH = {
    "raw_documents": set(),
    "language_identified": {"raw_documents"},
    "quality_filtered": {"language_identified"},
    "deduplicated": {"quality_filtered"},
    "quality_classifier": {"raw_documents", "language_identified", "quality_filtered"},
    "quality_scored": {"deduplicated", "quality_classifier"},
    "curriculum_stages": {"quality_scored"},
    "tokenizer": {"deduplicated"},
    "token_shards": {"curriculum_stages", "tokenizer"},
    "trained_model": {"token_shards"},
    "model_release": {"trained_model"},
    "finetuned_model": {"model_release"},
}
UNPARTITIONED = {
    "curriculum_stages", "tokenizer", "token_shards", "trained_model", "model_release", "finetuned_model",
}  # fmt: skip


def test_asset_keys_and_dependencies():
    graph = defs.resolve_asset_graph()
    keys = {key.to_user_string() for key in graph.get_all_asset_keys()}
    assert keys == set(EXPECTED_GRAPH)
    for key, parents in EXPECTED_GRAPH.items():
        node = graph.get(dg.AssetKey(key))
        assert {p.to_user_string() for p in node.parent_keys} == parents
        if key in UNPARTITIONED:
            assert node.partitions_def is None
        else:
            assert node.partitions_def.name == "snapshots"
        assert node.code_version  # pinned to the curation code's hash


def test_every_asset_has_a_description_and_checks():
    graph = defs.resolve_asset_graph()
    for key in EXPECTED_GRAPH:
        node = graph.get(dg.AssetKey(key))
        assert node.description and len(node.description) > 40
        checks = {c.name for c in graph.get_check_keys_for_assets([dg.AssetKey(key)])}
        expected = {"version_verifies", "ledger_verifies"} | (
            {"loss_decreased", "export_reloads"}
            if key == "trained_model"
            else {"alias_points_here"}
            if key == "model_release"
            else {"gates_pass"}
            if key == "finetuned_model"
            else set()
        )
        assert expected <= checks


def test_jobs_are_defined():
    assert defs.resolve_job_def("curate").partitions_def.name == "snapshots"
    assert defs.resolve_job_def("stage").partitions_def is None
    assert defs.resolve_job_def("train").partitions_def is None
    assert defs.resolve_job_def("release").partitions_def is None
    assert defs.resolve_job_def("finetune").partitions_def is None
