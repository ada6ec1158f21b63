"""HEAR 2021 and X-ARES adapters against the contracts their benchmarks check.

The checks mirror hear-validator's `ValidateModel` (hearbenchmark/
hear-validator, hearvalidator/validate.py: attributes, dtypes, shapes,
evenly spaced timestamps that cover the audio) and X-ARES's
`check_audio_encoder` (jimbozhang/xares, src/xares/audio_encoder_checker.py);
when those packages are installed, their own checkers run too.
"""

import importlib.util

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="the adapters need the torch "
                            "extra: pip install 'audiopt[torch]'")

from audiopt.export import frozen_encoder  # noqa: E402
from audiopt.export import hear  # noqa: E402
from audiopt.export import xares  # noqa: E402
from audiopt.train import restore  # noqa: E402
from audiopt.train import trainer  # noqa: E402
from conftest import quick_demo_config  # noqa: E402

HEAR_RATES = (16000, 22050, 44100, 48000)


@pytest.fixture(scope="module")
def run_dir(demo_data_dir, tmp_path_factory):
  workdir = tmp_path_factory.mktemp("adapter_run")
  config = quick_demo_config(demo_data_dir, num_steps=2, checkpoint_every=2)
  config.eval.tasks = ""
  trainer.train(config, str(workdir))
  return str(workdir)


@pytest.fixture(scope="module")
def hear_model(run_dir):
  return hear.load_model(run_dir)


def _noise(n, seconds, rate, seed=0):
  g = torch.Generator().manual_seed(seed)
  return torch.rand((n, int(seconds * rate)), generator=g) * 2 - 1


@pytest.mark.parametrize("seconds", [1.07, 1.98, 4.0, 0.01])
def test_hear_timestamp_embeddings_contract(hear_model, seconds):
  model = hear_model
  assert isinstance(model, torch.nn.Module)
  assert model.sample_rate in HEAR_RATES
  assert isinstance(model.scene_embedding_size, int)
  assert isinstance(model.timestamp_embedding_size, int)
  emb, ts = hear.get_timestamp_embeddings(_noise(2, seconds,
                                                 model.sample_rate), model)
  assert emb.dtype == torch.float32
  emb, ts = emb.detach().cpu().numpy(), ts.detach().cpu().numpy()
  assert emb.ndim == 3 and ts.ndim == 2
  assert emb.shape[0] == 2 and emb.shape[:2] == ts.shape
  assert emb.shape[2] == model.timestamp_embedding_size
  assert np.isfinite(emb).all()
  length_ms = 1000 * seconds
  assert ts.max() <= length_ms
  if ts.shape[1] > 1:
    diff = np.diff(ts)
    assert (diff > 0).all()                       # monotone
    assert np.max(np.abs(diff - diff.mean())) <= 1.0  # evenly spaced
    assert diff.mean() <= 50.0                    # HEAR's suggestion
    assert ts.min() <= diff.mean()
    assert ts.max() >= length_ms - 2 * diff.mean()
  np.testing.assert_array_equal(ts[0], ts[1])


def test_hear_scene_embeddings_contract(hear_model):
  audio = _noise(4, 2.74, hear_model.sample_rate, seed=1)
  scene = hear.get_scene_embeddings(audio, hear_model)
  assert scene.dtype == torch.float32
  assert tuple(scene.shape) == (4, hear_model.scene_embedding_size)
  emb, _ = hear.get_timestamp_embeddings(audio, hear_model)
  np.testing.assert_allclose(scene.numpy(), emb.numpy().mean(1), rtol=1e-6,
                             atol=1e-6)


def test_hear_frames_are_the_jax_encoders(run_dir, hear_model):
  restored = restore.load_checkpoint(run_dir)
  wav = _noise(1, 1.5, 16000, seed=2)
  emb, _ = hear.get_timestamp_embeddings(wav, hear_model)
  np.testing.assert_allclose(emb[0].numpy(), restored.embed(wav[0].numpy()),
                             atol=2e-4)


def test_long_audio_is_encoded_in_chunks(run_dir):
  restored = restore.load_checkpoint(run_dir)
  model = hear.HearModel(frozen_encoder.FrozenEncoder(restored,
                                                      chunk_seconds=1.0))
  wav = _noise(1, 2.5, 16000, seed=3)
  emb, ts = hear.get_timestamp_embeddings(wav, model)
  pieces = [restored.embed(wav[0, s:s + 16000].numpy())
            for s in (0, 16000, 32000)]
  want = np.concatenate(pieces)
  assert 2500 / 50 <= len(want) <= 2500 / 40
  np.testing.assert_allclose(emb[0].numpy(), want, atol=2e-4)
  np.testing.assert_allclose(np.diff(ts[0].numpy()), 2500 / len(want),
                             atol=1e-3)


def test_hear_validator_passes_when_installed(run_dir):
  if importlib.util.find_spec("hearvalidator") is None:
    pytest.skip("hearvalidator is not installed; the checks above mirror it")
  from hearvalidator import validate
  validate.ValidateModel("audiopt.export.hear", run_dir, "cpu")()


def test_xares_encoder_contract(run_dir):
  encoder = xares.AudioptEncoder(run_dir)
  assert type(encoder).__name__.endswith("Encoder")
  assert isinstance(encoder, torch.nn.Module)
  assert encoder.sampling_rate == 16000
  assert isinstance(encoder.output_dim, int)
  assert encoder.hop_size_in_ms == 40.0
  sample = torch.randn(2, 50000)
  out = encoder(sample)
  assert isinstance(out, torch.Tensor) and out.ndim == 3
  assert out.size(0) == 2 and out.size(2) == encoder.output_dim
  assert out.dtype == torch.float32
  # The run's clips are 2 s: 50,000 samples are encoded as 32,000 + 18,000.
  restored = restore.load_checkpoint(run_dir)
  want = np.concatenate([restored.embed(sample[0, :32000].numpy()),
                         restored.embed(sample[0, 32000:].numpy())])
  np.testing.assert_allclose(out[0].numpy(), want, atol=2e-4)
  one = encoder(sample[0])
  assert tuple(one.shape) == (1,) + tuple(out.shape[1:])
  # A shorter clip padded in the batch: its frames past the end are zeros.
  mask = torch.ones(2, 50000)
  mask[1, 20000:] = 0
  padded = encoder(sample, mask)
  n = len(restored.embed(sample[1, :20000].numpy()))
  np.testing.assert_allclose(padded[1, :n].numpy(),
                             restored.embed(sample[1, :20000].numpy()),
                             atol=2e-4)
  assert (padded[1, n:] == 0).all()
  if importlib.util.find_spec("xares") is not None:
    from xares.audio_encoder_checker import check_audio_encoder
    assert check_audio_encoder(encoder)


def test_xares_reads_the_checkpoint_from_the_environment(run_dir,
                                                         monkeypatch):
  monkeypatch.setenv(xares.CHECKPOINT_ENV, run_dir)
  assert xares.AudioptEncoder().output_dim > 0
  monkeypatch.delenv(xares.CHECKPOINT_ENV)
  monkeypatch.delenv(frozen_encoder.CHECKPOINT_ENV, raising=False)
  with pytest.raises(ValueError, match="AUDIOPT_CHECKPOINT"):
    xares.AudioptEncoder()


def test_bad_audio_is_refused(hear_model):
  with pytest.raises(ValueError, match="samples"):
    hear_model(torch.zeros(2, 10, 3))
  with pytest.raises(ValueError, match="NaN"):
    hear_model(torch.full((1, 1600), float("nan")))
  with pytest.raises(TypeError, match="torch.Tensor"):
    hear_model(np.zeros((1, 1600), np.float32))
