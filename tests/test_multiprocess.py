"""Several processes joined by jax.distributed train like one process."""

import os
import subprocess
import sys

import numpy as np

from audiopt.train import metrics as metrics_lib

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _env(**extra):
  env = dict(os.environ, JAX_PLATFORMS="cpu", **extra)
  env["PATH"] = os.path.dirname(sys.executable) + os.pathsep + env["PATH"]
  return env


def _losses(workdir):
  rows = metrics_lib.read_jsonl(os.path.join(workdir, "metrics.jsonl"))
  return np.array([r["loss"] for r in rows])


def test_two_processes_match_one(demo_data_dir, tmp_path):
  overrides = [f"--config.data.data_dir={demo_data_dir}",
               "--config.eval.tasks=", "--config.train.log_every=1"]
  multi = tmp_path / "multi"
  proc = subprocess.run(
      ["bash", os.path.join(REPO, "launch", "multiprocess_cpu.sh"), "2", "2",
       "configs/demo.py:quick", str(multi), *overrides],
      cwd=REPO, env=_env(), capture_output=True, text=True, timeout=600)
  logs = "".join((multi / f"process_{i}.log").read_text()[-3000:]
                 for i in range(2) if (multi / f"process_{i}.log").exists())
  assert proc.returncode == 0, logs

  single = tmp_path / "single"
  proc = subprocess.run(
      [sys.executable, "-m", "audiopt.main", "--config=configs/demo.py:quick",
       f"--workdir={single}", *overrides],
      cwd=REPO, capture_output=True, text=True, timeout=600,
      env=_env(XLA_FLAGS="--xla_force_host_platform_device_count=4"))
  assert proc.returncode == 0, proc.stderr[-3000:]

  got, want = _losses(multi), _losses(single)
  assert len(got) == len(want) == 6
  np.testing.assert_allclose(got, want, rtol=1e-5)
