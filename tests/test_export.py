"""Export: encoder to safetensors, loaded back without the training code."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

import audiopt
from audiopt.train import restore
from audiopt.train import trainer
from conftest import quick_demo_config as quick_config

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def exported(demo_data_dir, tmp_path_factory):
  """(workdir of a 2-step run, its export directory made by the CLI)."""
  workdir = tmp_path_factory.mktemp("export_run")
  trainer.train(quick_config(demo_data_dir, num_steps=2, checkpoint_every=2),
                str(workdir))
  out = workdir / "export"
  proc = subprocess.run(
      [sys.executable, "-m", "audiopt.export", f"--checkpoint={workdir}",
       f"--out={out}"], cwd=ROOT, capture_output=True, text=True,
      timeout=300, check=False)
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert "exported step 2" in proc.stdout
  return workdir, out


def test_export_matches_checkpoint_embeddings(exported):
  workdir, out = exported
  config = json.loads((out / "encoder_config.json").read_text())
  assert config["step"] == 2 and config["frontend"]["fbank"]["sample_rate"]
  rng = np.random.default_rng(0)
  wavs = rng.normal(0, 0.1, (2, 16000)).astype(np.float32)
  encoder = audiopt.load_encoder(str(out))
  frames, mask = encoder(wavs, lengths=[16000, 9000])
  assert frames.ndim == 3 and frames.shape[:2] == mask.shape
  ref = restore.load_checkpoint(str(workdir))
  full = ref.embed(wavs[0])
  np.testing.assert_allclose(frames[0][mask[0]], full, atol=1e-4, rtol=1e-4)
  short = ref.embed(wavs[1, :9000])
  assert mask[1].sum() == len(short) < mask[0].sum()
  np.testing.assert_allclose(frames[1][mask[1]], short, atol=1e-4, rtol=1e-4)


def test_load_encoder_imports_no_training_code(exported):
  _, out = exported
  code = (
      "import sys, numpy as np, audiopt\n"
      f"enc = audiopt.load_encoder({str(out)!r})\n"
      "frames, mask = enc(np.zeros((1, 8000), np.float32))\n"
      "assert frames.shape[0] == 1 and mask.any()\n"
      "bad = sorted(m for m in sys.modules if m.split('.')[0] in "
      "('optax', 'orbax', 'grain', 'tensorflow', 'tensorflow_datasets') "
      "or m.startswith(('audiopt.train', 'audiopt.objectives', "
      "'audiopt.data')))\n"
      "print('BAD', bad)\n")
  proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT,
                        capture_output=True, text=True, timeout=300,
                        check=False)
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert "BAD []" in proc.stdout, proc.stdout


def test_missing_export_file_is_named(tmp_path):
  with pytest.raises(FileNotFoundError, match="encoder_config.json"):
    audiopt.load_encoder(str(tmp_path))
