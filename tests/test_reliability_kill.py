"""SIGKILL of a training process during a step or an asynchronous save.

Each case runs `python -m audiopt.main` in a subprocess, kills it with
SIGKILL at a chosen moment, restarts it, and checks that the losses of every
step equal those of an uninterrupted run (the restarted run resumes from the
last complete checkpoint and recomputes the steps after it).
"""

import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from audiopt.train import checkpoint as checkpoint_lib
from audiopt.train import metrics as metrics_lib

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STEPS = 6


def _cmd(data_dir, workdir):
  return [sys.executable, "-m", "audiopt.main",
          "--config=configs/demo.py:quick", f"--workdir={workdir}",
          f"--config.data.data_dir={data_dir}",
          f"--config.train.num_steps={STEPS}", "--config.train.log_every=1",
          "--config.train.checkpoint_every=1",
          "--config.train.keep_checkpoints=10", "--config.eval.tasks="]


def _env():
  return dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=2")


def _run(data_dir, workdir):
  proc = subprocess.run(_cmd(data_dir, workdir), env=_env(), cwd=ROOT,
                        capture_output=True, text=True, timeout=400,
                        check=False)
  assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]


def _losses(workdir):
  """{step: loss}, the last row of a step winning (re-run steps)."""
  rows = metrics_lib.read_jsonl(os.path.join(workdir, "metrics.jsonl"))
  return {r["step"]: r["loss"] for r in rows}


def _kill_when(data_dir, workdir, ready, what):
  """Starts a run and SIGKILLs it as soon as `ready()` holds."""
  proc = subprocess.Popen(_cmd(data_dir, workdir), env=_env(), cwd=ROOT,
                          stdout=subprocess.DEVNULL,
                          stderr=subprocess.DEVNULL)
  deadline = time.time() + 300
  try:
    while time.time() < deadline and proc.poll() is None:
      if ready():
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=60)
        return
      time.sleep(0.001)
  finally:
    if proc.poll() is None:
      proc.kill()
      proc.wait()
  pytest.fail(f"run ended (rc {proc.returncode}) before {what}")


@pytest.fixture(scope="module")
def expected(demo_data_dir, tmp_path_factory):
  workdir = tmp_path_factory.mktemp("uninterrupted")
  _run(demo_data_dir, workdir)
  losses = _losses(workdir)
  assert sorted(losses) == list(range(1, STEPS + 1))
  return losses


def _check_resumed(demo_data_dir, workdir, expected):
  _run(demo_data_dir, workdir)
  got = _losses(workdir)
  assert sorted(got) == sorted(expected)
  for step in expected:
    np.testing.assert_allclose(got[step], expected[step], rtol=1e-5,
                               err_msg=f"step {step}")
  ckpt_dir = os.path.join(workdir, "checkpoints", str(STEPS))
  assert checkpoint_lib.verify_checksums(ckpt_dir) is None


def test_sigkill_during_a_step(demo_data_dir, tmp_path, expected):
  metrics = tmp_path / "metrics.jsonl"

  def mid_run():
    return metrics.exists() and len(metrics.read_text().splitlines()) >= 3

  _kill_when(demo_data_dir, tmp_path, mid_run, "step 3")
  _check_resumed(demo_data_dir, tmp_path, expected)


def test_sigkill_during_an_async_save(demo_data_dir, tmp_path, expected):
  ckpts = tmp_path / "checkpoints"
  seen = []

  def saving():
    if not ckpts.exists():
      return False
    tmp = [d for d in os.listdir(ckpts) if "tmp" in d]
    seen.extend(tmp)
    return bool(tmp)

  _kill_when(demo_data_dir, tmp_path, saving, "an Orbax temporary folder")
  assert seen
  _check_resumed(demo_data_dir, tmp_path, expected)
