"""Several processes joined by jax.distributed train like one process.

2 processes x 2 devices and 4 processes x 1 device on 127.0.0.1 give the
losses of 1 process x 4 devices on the same global batches, and so does the
multi-process job restarted from its step-3 checkpoint (model, optimizer and
each process's data iterator restored).
"""

import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

from audiopt.train import metrics as metrics_lib

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STEPS, RESTORE_FROM = 6, 3


def _env(**extra):
  env = dict(os.environ, JAX_PLATFORMS="cpu", **extra)
  env["PATH"] = os.path.dirname(sys.executable) + os.pathsep + env["PATH"]
  return env


def _overrides(data_dir):
  return [f"--config.data.data_dir={data_dir}", "--config.eval.tasks=",
          "--config.train.log_every=1",
          f"--config.train.num_steps={STEPS}",
          f"--config.train.checkpoint_every={RESTORE_FROM}"]


def _losses(workdir):
  rows = metrics_lib.read_jsonl(os.path.join(workdir, "metrics.jsonl"))
  return {int(r["step"]): r["loss"] for r in rows}


def _run_multi(workdir, num, per, data_dir):
  proc = subprocess.run(
      ["bash", os.path.join(REPO, "launch", "multiprocess_cpu.sh"), str(num),
       str(per), "configs/demo.py:quick", str(workdir),
       *_overrides(data_dir)],
      cwd=REPO, env=_env(), capture_output=True, text=True, timeout=600)
  logs = "".join((workdir / f"process_{i}.log").read_text()[-3000:]
                 for i in range(num)
                 if (workdir / f"process_{i}.log").exists())
  assert proc.returncode == 0, logs
  return logs


@pytest.fixture(scope="module")
def single_losses(demo_data_dir, tmp_path_factory):
  """Losses by step of one process with 4 devices."""
  workdir = tmp_path_factory.mktemp("single")
  proc = subprocess.run(
      [sys.executable, "-m", "audiopt.main", "--config=configs/demo.py:quick",
       f"--workdir={workdir}", *_overrides(demo_data_dir)],
      cwd=REPO, capture_output=True, text=True, timeout=600,
      env=_env(XLA_FLAGS="--xla_force_host_platform_device_count=4"))
  assert proc.returncode == 0, proc.stderr[-3000:]
  losses = _losses(workdir)
  assert sorted(losses) == list(range(1, STEPS + 1))
  return losses


@pytest.mark.parametrize("num, per", [(2, 2), (4, 1)])
def test_processes_match_one_including_restore(num, per, demo_data_dir,
                                               single_losses, tmp_path):
  workdir = tmp_path / f"multi_{num}"
  _run_multi(workdir, num, per, demo_data_dir)
  got = _losses(workdir)
  assert sorted(got) == sorted(single_losses)
  np.testing.assert_allclose([got[s] for s in sorted(got)],
                             [single_losses[s] for s in sorted(got)],
                             rtol=1e-5)

  # Restart the whole job from the step-3 checkpoint: drop the later one
  # and the metrics, so only the resumed steps are logged.
  shutil.rmtree(workdir / "checkpoints" / str(STEPS))
  os.remove(workdir / "metrics.jsonl")
  logs = _run_multi(workdir, num, per, demo_data_dir)
  assert f"restored step {RESTORE_FROM}" in logs
  resumed = _losses(workdir)
  assert sorted(resumed) == list(range(RESTORE_FROM + 1, STEPS + 1))
  np.testing.assert_allclose([resumed[s] for s in sorted(resumed)],
                             [single_losses[s] for s in sorted(resumed)],
                             rtol=1e-5)
