"""Ahead-of-time compilation of the train step on a small mesh."""

import os
import subprocess
import sys

import pytest

from audiopt import aot
from audiopt.objectives import DatasetInfo
from configs import mtc

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _config(**mesh):
  config = mtc.get_config("encoder=transformer,size=tiny")
  config.data.clip_seconds = 1.0
  config.train.global_batch_size = 8
  config.sharding = "fsdp_tensor"
  for axis in ("data", "fsdp", "tensor"):
    config.mesh[axis] = mesh.get(axis, 1)
  return config


def test_compile_reports_memory_and_flops():
  info = DatasetInfo(num_tags=30, num_weak_labels=5)
  small = aot.report(*aot.compile_train_step(_config(data=2, fsdp=2, tensor=2),
                                             info))
  assert small["mesh"] == {"data": 2, "fsdp": 2, "tensor": 2}
  assert small["memory"]["peak_bytes"] > 0
  assert small["memory"]["argument"] > 0
  assert small["flops"] > 0
  assert small["params"] > 0
  text = aot.format_report(small)
  assert "memory per device: peak" in text


def test_more_fsdp_shards_less_argument_memory():
  import jax  # pylint: disable=g-import-not-at-top
  info = DatasetInfo(num_tags=30, num_weak_labels=5)
  two = aot.report(*aot.compile_train_step(
      _config(data=2, fsdp=2), info, devices=jax.devices()[:4]))
  eight = aot.report(*aot.compile_train_step(
      _config(fsdp=8), info, devices=jax.devices()))
  assert eight["memory"]["argument"] < two["memory"]["argument"]


@pytest.mark.parametrize("text, want", [
    ("data:4,fsdp:8", {"data": 4, "fsdp": 8}),
    ("tensor:2, data:-1", {"tensor": 2, "data": -1}),
])
def test_parse_mesh(text, want):
  assert aot.parse_mesh(text) == want


@pytest.mark.parametrize("text, match", [
    ("data=4", "'data=4' is not axis:size"),
    ("model:2", "axis 'model' unknown"),
])
def test_parse_mesh_errors(text, match):
  with pytest.raises(ValueError, match=match):
    aot.parse_mesh(text)


def test_command_line_fakes_devices(tmp_path):
  """The CLI fakes the mesh's 16 CPU devices itself and writes the report."""
  env = dict(os.environ, JAX_PLATFORMS="cpu", XLA_FLAGS="")
  out = tmp_path / "aot.json"
  proc = subprocess.run(
      [sys.executable, "-m", "audiopt.aot",
       "--config=configs/mtc.py:encoder=transformer,size=tiny",
       "--mesh=data:2,fsdp:4,tensor:2", "--num_tags=30",
       "--config.data.clip_seconds=1", "--config.train.global_batch_size=8",
       "--max_replicated_fraction=0.2", f"--json={out}"],
      cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert "(16 devices, preset fsdp)" in proc.stdout
  assert "memory per device: peak" in proc.stdout
  assert out.exists()
