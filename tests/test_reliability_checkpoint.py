"""Checkpoint faults: corrupt or incomplete checkpoints are skipped."""

import glob
import json
import logging
import os
import shutil
import threading

import numpy as np
import pytest

from audiopt.train import checkpoint as checkpoint_lib
from audiopt.train import metrics as metrics_lib
from audiopt.train import trainer
from conftest import quick_demo_config as quick_config


def _config(data_dir):
  return quick_config(data_dir, num_steps=4, checkpoint_every=2,
                      keep_checkpoints=5)


def _losses(workdir):
  rows = metrics_lib.read_jsonl(os.path.join(workdir, "metrics.jsonl"))
  return {r["step"]: r["loss"] for r in rows}


@pytest.fixture(scope="module")
def full_run(demo_data_dir, tmp_path_factory):
  """An uninterrupted 4-step run with checkpoints at steps 2 and 4."""
  workdir = tmp_path_factory.mktemp("full")
  trainer.train(_config(demo_data_dir), str(workdir))
  return workdir


def _array_file(step_dir):
  files = [f for f in glob.glob(os.path.join(step_dir, "state", "**", "d",
                                             "*"), recursive=True)
           if os.path.getsize(f) > 64]
  assert files, step_dir
  return max(files, key=os.path.getsize)


def _truncate(step_dir):
  path = _array_file(step_dir)
  with open(path, "r+b") as f:
    f.truncate(os.path.getsize(path) // 2)


def _garble(step_dir):
  path = _array_file(step_dir)
  with open(path, "r+b") as f:
    f.seek(os.path.getsize(path) // 2)
    byte = f.read(1)
    f.seek(-1, os.SEEK_CUR)
    f.write(bytes([byte[0] ^ 0xFF]))


def _drop_metadata(step_dir):
  shutil.rmtree(os.path.join(step_dir, "metadata"))


def _drop_checksums(step_dir):
  os.remove(os.path.join(step_dir, checkpoint_lib.CHECKSUMS))


def test_every_committed_step_has_checksums(full_run):
  for step in (2, 4):
    step_dir = full_run / "checkpoints" / str(step)
    assert (step_dir / checkpoint_lib.CHECKSUMS).exists()
    assert checkpoint_lib.verify_checksums(str(step_dir)) is None


@pytest.mark.parametrize("damage", [_truncate, _garble, _drop_metadata])
def test_corrupt_step_is_reported_and_skipped(full_run, tmp_path, damage,
                                              caplog):
  work = tmp_path / "run"
  shutil.copytree(full_run, work)
  damage(str(work / "checkpoints" / "4"))
  ckpt = checkpoint_lib.Checkpointer(str(work / "checkpoints"), save_every=2)
  with caplog.at_level(logging.ERROR):
    assert ckpt.latest_step() == 2
  ckpt.close()
  assert "step 4 is corrupt" in caplog.text
  assert (work / "checkpoints" / "4.corrupt-0").is_dir()
  assert not (work / "checkpoints" / "4").exists()


def test_orbax_tmp_dir_and_missing_checksums_are_handled(full_run, tmp_path):
  work = tmp_path / "run"
  shutil.copytree(full_run, work)
  # A save killed midway leaves Orbax's temporary folder: never a step.
  shutil.copytree(work / "checkpoints" / "4",
                  work / "checkpoints" / "6.orbax-checkpoint-tmp-1")
  # A run killed between Orbax's commit and the checksums: complete by
  # Orbax's commit marker, so it is used (and checksummed on the next save).
  _drop_checksums(str(work / "checkpoints" / "4"))
  ckpt = checkpoint_lib.Checkpointer(str(work / "checkpoints"), save_every=2)
  assert ckpt.latest_step() == 4
  ckpt.close()
  assert (work / "checkpoints" / "4" / checkpoint_lib.CHECKSUMS).exists()


def test_resume_past_a_corrupt_checkpoint_gives_same_losses(
    demo_data_dir, full_run, tmp_path):
  expected = _losses(full_run)
  work = tmp_path / "run"
  shutil.copytree(full_run, work)
  _garble(str(work / "checkpoints" / "4"))
  rows = metrics_lib.read_jsonl(str(work / "metrics.jsonl"))
  with open(work / "metrics.jsonl", "w") as f:
    f.writelines(json.dumps(r) + "\n" for r in rows if r["step"] <= 2)
  trainer.train(_config(demo_data_dir), str(work))
  got = _losses(work)
  for step in (3, 4):
    np.testing.assert_allclose(got[step], expected[step], rtol=1e-5)
  assert checkpoint_lib.verify_checksums(
      str(work / "checkpoints" / "4")) is None


def test_checksums_are_hashed_beside_training(tmp_path, monkeypatch):
  # Hashing a big checkpoint must not hold the next step: save() returns
  # while the checksums of the step before are still being computed, and
  # close() waits for them.
  release = threading.Event()
  hashing = threading.Event()
  digests = checkpoint_lib._file_digests  # pylint: disable=protected-access

  def slow_digests(step_dir):
    hashing.set()
    assert release.wait(60)
    return digests(step_dir)

  monkeypatch.setattr(checkpoint_lib, "_file_digests", slow_digests)
  ckpt = checkpoint_lib.Checkpointer(str(tmp_path), save_every=1,
                                     use_async=False)
  state = {"w": np.arange(6.0, dtype=np.float32)}
  assert ckpt.save(1, state, None, {})
  assert ckpt.save(2, state, None, {})  # starts hashing step 1
  assert hashing.wait(60)
  assert ckpt.save(3, state, None, {})  # hashing still blocked: no wait
  assert not os.path.exists(tmp_path / "1" / checkpoint_lib.CHECKSUMS)
  release.set()
  ckpt.close()
  for step in (1, 2, 3):
    assert checkpoint_lib.verify_checksums(str(tmp_path / str(step))) is None
    assert os.path.exists(tmp_path / str(step) / checkpoint_lib.CHECKSUMS)


def test_checksums_skip_a_killed_writers_temporary(tmp_path):
  (tmp_path / "state").mkdir()
  (tmp_path / "state" / "a").write_bytes(b"abc")
  (tmp_path / f"{checkpoint_lib.CHECKSUMS}.tmp-1-1").write_text("{")
  checkpoint_lib.write_checksums(str(tmp_path))
  with open(tmp_path / checkpoint_lib.CHECKSUMS) as f:
    assert list(json.load(f)) == [os.path.join("state", "a")]
  assert checkpoint_lib.verify_checksums(str(tmp_path)) is None
