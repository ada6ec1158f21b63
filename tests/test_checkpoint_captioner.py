"""The captioner's local backend: a trained captioning run decodes clips."""

import io

import numpy as np
import pytest
import soundfile

from audiopt.labels import captioner as captioner_lib
from audiopt.train import restore
from audiopt.train import trainer
from objective_training import tiny_config


def _flac(wav):
  buf = io.BytesIO()
  soundfile.write(buf, wav, 16000, format="FLAC")
  return buf.getvalue()


@pytest.fixture(scope="module")
def captioning_run(demo_data_dir, tmp_path_factory):
  workdir = tmp_path_factory.mktemp("captioning_run")
  config = tiny_config(demo_data_dir, "captioning", decoder_size="tiny")
  config.train.num_steps = config.train.checkpoint_every = 2
  config.text.vocab_size, config.text.max_len = 300, 12
  trainer.train(config, str(workdir))
  return workdir


def test_captions_do_not_depend_on_batch_padding(captioning_run):
  model = restore.load_checkpoint(str(captioning_run))
  rng = np.random.default_rng(0)
  wavs = [rng.uniform(-0.3, 0.3, n).astype(np.float32)
          for n in (16000, 9000)]
  together = model.captions(wavs)
  alone = [model.captions([w])[0] for w in wavs]
  assert together == alone and all(isinstance(c, str) for c in together)


def test_from_checkpoint_captions_flac_and_quarantines_bad_audio(
    captioning_run):
  captioner = captioner_lib.CheckpointCaptioner.from_checkpoint(
      str(captioning_run))
  assert captioner.name.endswith("@2")
  wav = np.random.default_rng(1).uniform(-0.3, 0.3, 12000).astype(np.float32)
  got = captioner.caption_batch([("good", _flac(wav)), ("bad", b"\0" * 10)])
  decoded = restore.load_checkpoint(str(captioning_run)).captions(
      [soundfile.read(io.BytesIO(_flac(wav)), dtype="float32")[0]])[0]
  if decoded.strip():
    assert isinstance(got[0], captioner_lib.Caption)
    assert got[0].full == decoded.strip()
  else:
    assert got[0].kind == "empty"
  assert isinstance(got[1], captioner_lib.CaptionError)
  assert got[1].kind == "audio"


def test_from_checkpoint_refuses_a_run_without_a_decoder(demo_data_dir,
                                                         tmp_path):
  config = tiny_config(demo_data_dir, "mtc")
  config.train.num_steps = config.train.checkpoint_every = 1
  trainer.train(config, str(tmp_path))
  with pytest.raises(ValueError, match="no caption decoder"):
    captioner_lib.CheckpointCaptioner.from_checkpoint(str(tmp_path))
