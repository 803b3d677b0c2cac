"""Checkpoints are checked before anything unpickles them (model/checkpoint_integrity.py): a resume refuses a
tag whose files differ from their recorded sha256, naming the file, and a 'latest' that is not a tag name.

Each refusal is driven through train(), the entry point that resumes. The attacker's file is a pickle whose
__reduce__ creates a marker file when it is loaded: the marker must not exist after the refusal, so the test
shows that nothing was unpickled, not only that an error came out.
"""

import json
import shutil

import pytest
import torch

from model.checkpoint_integrity import HASHES_FILE, LATEST_FILE, verify_tag, write_tag_hashes
from model.train import CHECKPOINT_DIR, train
from tests.model.conftest import tiny_run

RUN = tiny_run(max_steps=4, checkpoint_every=2, warmup_steps=1, decay_steps=1)
TAG = "step_00000002"
MODEL_STATES = "mp_rank_00_model_states.pt"


class _CreatesMarker:
    """Unpickling this object opens (creates) the marker file: code run by a load."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


@pytest.fixture(scope="module")
def stopped_run(markov, tmp_path_factory):
    """A run stopped after 2 of 4 steps, with its checkpoint at step 2."""
    out = tmp_path_factory.mktemp("stopped")
    train(RUN, markov, out, stop_after=2, export=False)
    assert (out / CHECKPOINT_DIR / LATEST_FILE).read_text() == TAG
    return out


def _copy(stopped_run, tmp_path):
    out = tmp_path / "run"
    shutil.copytree(stopped_run, out)
    return out


def test_checkpoint_records_the_hash_of_every_file_of_its_tag(stopped_run):
    tag_dir = stopped_run / CHECKPOINT_DIR / TAG
    recorded = json.loads((tag_dir / HASHES_FILE).read_text())["files"]
    files = {p.name for p in tag_dir.iterdir()} - {HASHES_FILE}
    assert set(recorded) == files and MODEL_STATES in files and "rng_rank0.pt" in files
    verify_tag(tag_dir)


def test_a_flipped_byte_in_the_model_states_is_refused(stopped_run, markov, tmp_path):
    out = _copy(stopped_run, tmp_path)
    path = out / CHECKPOINT_DIR / TAG / MODEL_STATES
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(ValueError, match=f"{MODEL_STATES}: its sha256 differs"):
        train(RUN, markov, out, export=False)


@pytest.mark.parametrize("name", [MODEL_STATES, "rng_rank0.pt", "zero_pp_rank_0_mp_rank_00_optim_states.pt"])
def test_a_replaced_file_is_refused_before_it_is_unpickled(stopped_run, markov, tmp_path, name):
    out = _copy(stopped_run, tmp_path)
    marker = tmp_path / "unpickled"
    torch.save(_CreatesMarker(marker), out / CHECKPOINT_DIR / TAG / name)
    with pytest.raises(ValueError, match=f"{name}: its sha256 differs"):
        train(RUN, markov, out, export=False)
    assert not marker.exists(), "a checkpoint file was unpickled before its hash was checked"


def test_a_missing_or_unrecorded_file_is_refused(stopped_run, markov, tmp_path):
    out = _copy(stopped_run, tmp_path)
    tag_dir = out / CHECKPOINT_DIR / TAG
    marker = tmp_path / "unpickled"
    torch.save(_CreatesMarker(marker), tag_dir / "zero_pp_rank_1_mp_rank_00_optim_states.pt")
    with pytest.raises(ValueError, match="zero_pp_rank_1_mp_rank_00_optim_states.pt: not recorded"):
        train(RUN, markov, out, export=False)
    (tag_dir / "zero_pp_rank_1_mp_rank_00_optim_states.pt").unlink()
    (tag_dir / "rng_rank0.pt").unlink()
    with pytest.raises(ValueError, match="rng_rank0.pt: recorded in .* but missing"):
        train(RUN, markov, out, export=False)
    (tag_dir / HASHES_FILE).unlink()
    with pytest.raises(ValueError, match=f"{HASHES_FILE}: missing"):
        train(RUN, markov, out, export=False)
    assert not marker.exists()


def test_latest_is_a_tag_name_not_a_path(stopped_run, markov, tmp_path):
    out = _copy(stopped_run, tmp_path)
    ckpt_dir = out / CHECKPOINT_DIR
    # A checkpoint outside the checkpoint folder, consistent with its own hash record, that runs code.
    outside = out / "x"
    shutil.copytree(ckpt_dir / TAG, outside)
    marker = tmp_path / "unpickled"
    torch.save(_CreatesMarker(marker), outside / MODEL_STATES)
    write_tag_hashes(outside)
    for bad in ("../x", str(outside)):
        (ckpt_dir / LATEST_FILE).write_text(bad)
        with pytest.raises(ValueError, match=f"{LATEST_FILE}: .* is not a checkpoint tag"):
            train(RUN, markov, out, export=False)
    assert not marker.exists()
