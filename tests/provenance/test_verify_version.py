"""`verify_version` (issue 14, finding 4, the verify half): only the version's own top-level manifest is
skipped, every symlink inside a version (to a file or a folder) is a problem, and a file the
manifest does not list is named. Versions are sealed with records.manifest.seal in tmp_path.
"""

from __future__ import annotations

import os

import pytest

from records.manifest import MANIFEST, seal, verify_version


@pytest.fixture
def version(tmp_path):
    staging = tmp_path / "staging"
    (staging / "shards").mkdir(parents=True)
    (staging / "shards" / "part-0.parquet").write_bytes(b"rows of documents")
    (staging / "index.parquet").write_bytes(b"the index")
    manifest, created = seal(staging, tmp_path / "datasets", asset="raw_documents", snapshot="s")
    assert created
    folder = tmp_path / "datasets" / manifest.ref
    assert verify_version(folder) == []
    return folder


def test_a_planted_nested_manifest_is_not_skipped(version):
    planted = version / "shards" / MANIFEST
    planted.write_text('{"planted": true}')
    assert verify_version(version) == [f"{planted}: not recorded in {MANIFEST}"]


def test_planted_files_and_folders_are_named(version):
    (version / "quarantine").mkdir()
    (version / "quarantine" / "part-0.parquet").write_bytes(b"planted")
    assert verify_version(version) == [
        f"{version / 'quarantine' / 'part-0.parquet'}: not recorded in {MANIFEST}"
    ]


def test_a_symlinked_folder_is_reported(version, tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "index.parquet").write_bytes(b"planted index")
    os.symlink(outside, version / "more")
    problems = verify_version(version)
    assert problems == [
        f"{version / 'more'}: a symbolic link (to {outside}); a sealed version holds only regular files"
    ]


def test_a_recorded_file_replaced_by_a_symlink_to_the_same_bytes_is_reported(version, tmp_path):
    recorded = version / "index.parquet"
    elsewhere = tmp_path / "same-bytes"
    elsewhere.write_bytes(recorded.read_bytes())
    recorded.unlink()
    os.symlink(elsewhere, recorded)
    problems = verify_version(version)
    assert problems == [
        f"{recorded}: a symbolic link (to {elsewhere}); a sealed version holds only regular files"
    ]
