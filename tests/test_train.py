"""The trainer: one sharded run end to end, resume, restore, bad batches."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

from audiopt.data import prepare
from audiopt.objectives import DatasetInfo
from audiopt.train import checkpoint as checkpoint_lib
from audiopt.train import metrics as metrics_lib
from audiopt.train import sharding
from audiopt.train import step as step_lib
from audiopt.train import trainer
from conftest import quick_demo_config as quick_config
from objective_training import tiny_config, train_losses


@pytest.fixture
def data_dir(demo_data_dir):
  return demo_data_dir


def _losses(workdir):
  rows = metrics_lib.read_jsonl(os.path.join(workdir, "metrics.jsonl"))
  return {r["step"]: r["loss"] for r in rows}


@pytest.mark.parametrize("encoder", ["transformer", "vit", "zipformer"])
def test_step_loss_falls_on_8_devices(data_dir, encoder):
  config = tiny_config(data_dir, "mtc")
  config.encoder.name = encoder
  losses, _ = train_losses(config, data_dir, steps=8, clip_seconds=2.0)
  assert losses[-1] < losses[0], losses


def test_resume_gives_same_losses(data_dir, tmp_path):
  full = tmp_path / "full"
  trainer.train(quick_config(data_dir, num_steps=6, checkpoint_every=3,
                             keep_checkpoints=5), str(full))
  expected = _losses(full)
  assert sorted(expected) == [1, 2, 3, 4, 5, 6]

  # A run killed right after step 3's checkpoint: only that checkpoint and
  # the metrics up to step 3 survive.
  resumed = tmp_path / "resumed"
  shutil.copytree(full, resumed)
  shutil.rmtree(resumed / "checkpoints" / "6")
  rows = metrics_lib.read_jsonl(str(resumed / "metrics.jsonl"))
  with open(resumed / "metrics.jsonl", "w") as f:
    f.writelines(json.dumps(r) + "\n" for r in rows if r["step"] <= 3)
  trainer.train(quick_config(data_dir, num_steps=6, checkpoint_every=3,
                             keep_checkpoints=5), str(resumed))
  got = _losses(resumed)
  for step in (4, 5, 6):
    np.testing.assert_allclose(got[step], expected[step], rtol=1e-5)


def test_checkpoint_from_8_devices_restores_on_1(data_dir, tmp_path):
  config = quick_config(data_dir, num_steps=2, checkpoint_every=2)
  config.mesh.data, config.mesh.fsdp = 2, 4
  setup, state = trainer.train(config, str(tmp_path))
  one = quick_config(data_dir)
  one.mesh.data, one.mesh.fsdp, one.mesh.tensor = 1, 1, 1
  setup1 = step_lib.build(one, setup.info, setup.metadata,
                         devices=jax.devices()[:1])
  assert setup1.mesh.devices.size == 1
  ckpt = checkpoint_lib.Checkpointer(str(tmp_path / "checkpoints"),
                                     save_every=1)
  restored = ckpt.restore(2, setup1.abstract_state, None)
  ckpt.close()
  leaves = jax.tree.leaves(restored.params)
  assert all(len(x.sharding.device_set) == 1 for x in leaves)
  for a, b in zip(jax.tree.leaves(state.params), leaves):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
  step, meta = checkpoint_lib.read_metadata(str(tmp_path / "checkpoints"))
  assert step == 2 and meta["config"]["encoder"]["size"] == "tiny"
  assert meta["data"]["tag_names"]


def test_nan_batch_stops_naming_step_and_clips(data_dir, tmp_path,
                                              monkeypatch):
  real = sharding.shard_batch
  calls = []

  def poisoned(local, mesh, *args, **kwargs):
    calls.append(1)
    if len(calls) == 3:
      local = dict(local, audio=np.full_like(local["audio"], np.nan))
    return real(local, mesh, *args, **kwargs)

  monkeypatch.setattr(sharding, "shard_batch", poisoned)
  with pytest.raises(trainer.NonFiniteError, match="step 3") as err:
    trainer.train(quick_config(data_dir, num_steps=5), str(tmp_path))
  path = tmp_path / "nonfinite_step_3.txt"
  assert str(path) in str(err.value)
  assert len(path.read_text().split()) == 16


def test_missing_shard_names_file(data_dir, tmp_path):
  copy = tmp_path / "data"
  shutil.copytree(data_dir, copy)
  shards = [p for p in copy.rglob("*array_record*")
            if prepare.DEMO_NAME + "/" in str(p) and "train" in p.name]
  assert shards
  os.remove(shards[0])
  with pytest.raises(Exception, match=shards[0].name):
    trainer.train(quick_config(copy, num_steps=2), str(tmp_path / "w"))


def test_sigterm_saves_and_exits_cleanly(data_dir, tmp_path):
  cmd = [sys.executable, "-m", "audiopt.main", "--config=configs/demo.py:quick",
         f"--workdir={tmp_path}", f"--config.data.data_dir={data_dir}",
         "--config.train.num_steps=100000", "--config.train.log_every=1",
         "--config.train.checkpoint_every=100000", "--config.eval.tasks="]
  env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=2")
  proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True)
  metrics = tmp_path / "metrics.jsonl"
  deadline = time.time() + 240
  while time.time() < deadline and proc.poll() is None:
    if metrics.exists() and len(metrics.read_text().splitlines()) >= 2:
      break
    time.sleep(0.5)
  proc.send_signal(signal.SIGTERM)
  out, _ = proc.communicate(timeout=240)
  assert proc.returncode == 0, out
  steps = sorted(int(d) for d in os.listdir(tmp_path / "checkpoints")
                 if d.isdigit())
  assert steps and steps[-1] >= 2, out


def test_grad_accumulation_matches_one_big_batch(data_dir):
  from audiopt.data import pipeline
  params = []
  for accum in (1, 2):
    config = quick_config(data_dir)
    config.mesh.data, config.mesh.fsdp = 4, 2
    config.optimizer.grad_accum_steps = accum
    config.encoder.dropout_rate = 0.0
    config.objective.dropout_rate = 0.0
    config.frontend.use_spec_augment = False
    source = trainer.pipeline_source(config, str(data_dir))
    setup = step_lib.build(config, DatasetInfo.from_metadata(source.metadata),
                          source.metadata)
    state = step_lib.init_state(setup, jax.random.key(0))
    opts = pipeline.PipelineOptions(global_batch_size=16, clip_seconds=2.0)
    local = next(pipeline.make_iterator(source, opts))
    with sharding.mesh_and_rules(setup.mesh, setup.rules):
      state, metrics = step_lib.make_train_step(setup)(
          state, sharding.shard_batch(local, setup.mesh), jax.random.key(1))
    params.append((float(metrics["loss"]), state.params))
  (loss1, p1), (loss2, p2) = params
  assert loss1 == pytest.approx(loss2, rel=1e-5)
  for a, b in zip(jax.tree.leaves(p1), jax.tree.leaves(p2)):
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=2e-6)
