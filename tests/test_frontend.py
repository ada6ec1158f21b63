"""Tests of audiopt.audio: Kaldi-compatible fbank, SpecAugment and audio I/O.

The fbank reference is kaldi_native_fbank, a C++ re-implementation of
Kaldi's compute-fbank-feats. Both sides compute in float32, so they agree only
up to float32 rounding of the FFT: where a frame's spectrum spans more than
about 1e10 in power (a pure synthetic tone with no noise floor at all) the
weak bands are rounding noise on both sides. The synthetic test audio is
therefore quantised to 16 bits by a FLAC round trip, as every training record
is.
"""

import io
import shutil
import subprocess

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
import soundfile

from audiopt.audio import frontend
from audiopt.audio import io as audio_io

knf = pytest.importorskip("kaldi_native_fbank")

SR = 16000
_fbank = jax.jit(frontend.fbank, static_argnums=2)
_spec_augment = jax.jit(frontend.spec_augment, static_argnums=3)


def _kaldi_fbank(wav: np.ndarray, opts: frontend.FbankOptions) -> np.ndarray:
  """Reference features [T, num_mel_bins] of one [N] waveform."""
  k = knf.FbankOptions()
  k.frame_opts.samp_freq = opts.sample_rate
  k.frame_opts.frame_length_ms = opts.frame_length_ms
  k.frame_opts.frame_shift_ms = opts.frame_shift_ms
  k.frame_opts.dither = 0.0
  k.frame_opts.preemph_coeff = opts.preemph_coeff
  k.frame_opts.remove_dc_offset = opts.remove_dc_offset
  k.frame_opts.window_type = opts.window_type
  k.frame_opts.snip_edges = opts.snip_edges
  k.mel_opts.num_bins = opts.num_mel_bins
  k.mel_opts.low_freq = opts.low_freq
  k.mel_opts.high_freq = opts.high_freq
  k.use_energy = False
  k.use_log_fbank = opts.use_log_fbank
  k.use_power = opts.use_power
  computer = knf.OnlineFbank(k)
  computer.accept_waveform(
      opts.sample_rate, (wav * opts.input_scale).astype(np.float32))
  computer.input_finished()
  frames = [computer.get_frame(i) for i in range(computer.num_frames_ready)]
  return np.array(frames, np.float32).reshape(-1, opts.num_mel_bins)


def _synthetic(num_samples: int, seed: int = 0) -> np.ndarray:
  """Chirp, harmonic tone, noise burst, near silence; 16-bit quantised."""
  rs = np.random.RandomState(seed)
  t = np.arange(num_samples) / SR
  dur = max(t[-1], 1e-3)
  chirp = 0.5 * np.sin(2 * np.pi * (100 * t + 0.5 * (7000 - 100) / dur * t**2))
  tone = sum(0.2 / k * np.sin(2 * np.pi * 220 * k * t) for k in range(1, 6))
  wav = np.empty(num_samples)
  q = num_samples // 4
  wav[:q] = chirp[:q]
  wav[q:2 * q] = tone[q:2 * q]
  wav[2 * q:3 * q] = 0.3 * rs.randn(q)
  wav[3 * q:] = 1e-4 * rs.randn(num_samples - 3 * q)
  return audio_io.decode_audio(audio_io.encode_flac(wav.astype(np.float32)))


def _padded_batch(wavs, total, seed=0):
  """Stacks [N_i] waveforms into [B, total], padding with noise, and masks."""
  rs = np.random.RandomState(seed)
  batch = rs.uniform(-1, 1, (len(wavs), total)).astype(np.float32)
  mask = np.zeros((len(wavs), total), bool)
  for i, w in enumerate(wavs):
    batch[i, :len(w)] = w
    mask[i, :len(w)] = True
  return batch, mask


def _assert_close_to_kaldi(ours: np.ndarray, ref: np.ndarray):
  assert ours.shape == ref.shape
  diff = np.abs(ours - ref)
  assert diff.max() <= 5e-2, diff.max()
  assert np.percentile(diff, 99.9) <= 1e-2, np.percentile(diff, 99.9)
  assert diff.mean() <= 1e-3, diff.mean()


# -- fbank against Kaldi -----------------------------------------------------


@pytest.mark.parametrize("snip_edges", [False, True])
def test_num_frames_matches_kaldi(snip_edges):
  opts = frontend.FbankOptions(snip_edges=snip_edges)
  for n in [1, 79, 80, 81, 159, 160, 240, 399, 400, 401, 560, 1237, 16000]:
    wav = np.linspace(-0.5, 0.5, n, dtype=np.float32)
    assert frontend.num_frames(n, opts) == len(_kaldi_fbank(wav, opts)), n


@pytest.mark.parametrize("input_scale", [1.0, 32768.0])
def test_fbank_matches_kaldi_on_synthetic_audio(input_scale):
  opts = frontend.FbankOptions(input_scale=input_scale)
  lengths = [400, 1237, 16000, 24037]  # 1237 and 24037: not multiples of 160.
  wavs = [_synthetic(n, seed=i) for i, n in enumerate(lengths)]
  feats, frame_mask = _fbank(*_padded_batch(wavs, max(lengths)), opts)
  assert feats.shape == (4, frontend.num_frames(24037, opts), 80)
  assert feats.dtype == jnp.float32
  ours, refs = [], []
  for i, w in enumerate(wavs):
    ref = _kaldi_fbank(w, opts)
    assert int(frame_mask[i].sum()) == len(ref)
    ours.append(np.asarray(feats[i, :len(ref)]))
    refs.append(ref)
  _assert_close_to_kaldi(np.concatenate(ours), np.concatenate(refs))


@pytest.mark.parametrize("input_scale", [1.0, 32768.0])
def test_fbank_matches_kaldi_on_speech(tmp_path, input_scale):
  if shutil.which("espeak-ng") is None:
    pytest.skip("espeak-ng is not installed: no real speech to test on")
  path = tmp_path / "speech.wav"
  subprocess.run(
      ["espeak-ng", "-w", str(path),
       "The quick brown fox jumps over the lazy dog, while seven audio "
       "encoders learn strong labels."],
      check=True, capture_output=True)
  wav = audio_io.decode_audio(path)  # espeak-ng writes 22050 Hz.
  assert len(wav) > SR
  opts = frontend.FbankOptions(input_scale=input_scale)
  feats, frame_mask = _fbank(wav[None], np.ones((1, len(wav)), bool), opts)
  ref = _kaldi_fbank(wav, opts)
  assert int(frame_mask.sum()) == len(ref) == frontend.num_frames(len(wav), opts)
  _assert_close_to_kaldi(np.asarray(feats[0]), ref)


@pytest.mark.parametrize("overrides", [
    dict(snip_edges=True, window_type="hamming"),
    dict(num_mel_bins=40, high_freq=-400.0, low_freq=64.0, preemph_coeff=0.0),
    dict(remove_dc_offset=False, window_type="hanning", use_power=False),
    dict(use_log_fbank=False, input_scale=32768.0),
])
def test_fbank_options_match_kaldi(overrides):
  opts = frontend.FbankOptions(**overrides)
  wav = _synthetic(4037)
  feats, _ = _fbank(wav[None], np.ones((1, len(wav)), bool), opts)
  ref = _kaldi_fbank(wav, opts)
  if opts.use_log_fbank:
    _assert_close_to_kaldi(np.asarray(feats[0]), ref)
  else:
    np.testing.assert_allclose(np.asarray(feats[0]), ref, rtol=1e-3,
                               atol=1e-3 * ref.max())


# -- padding, masks, options ---------------------------------------------------


def test_fbank_is_padding_invariant():
  opts = frontend.FbankOptions()
  lengths = [170, 3000, 8037, 16000, 0]
  wavs = [_synthetic(n, seed=i) if n else np.zeros(0, np.float32)
          for i, n in enumerate(lengths)]
  feats, frame_mask = _fbank(*_padded_batch(wavs, 16000), opts)
  for i, (w, n) in enumerate(zip(wavs, lengths)):
    t = frontend.num_frames(n, opts)
    np.testing.assert_array_equal(frame_mask[i], np.arange(100) < t)
    np.testing.assert_array_equal(feats[i, t:], 0.0)
    if n:
      alone, _ = _fbank(w[None], np.ones((1, n), bool), opts)
      np.testing.assert_allclose(feats[i, :t], alone[0], atol=1e-5, rtol=0)


def test_fbank_casts_to_float32_and_handles_empty():
  opts = frontend.FbankOptions()
  wav = _synthetic(1600).astype(np.float16)
  feats, _ = _fbank(wav[None], np.ones((1, 1600), bool), opts)
  assert feats.dtype == jnp.float32
  feats, frame_mask = frontend.fbank(np.zeros((2, 50)), np.ones((2, 50), bool),
                                     frontend.FbankOptions(snip_edges=True))
  assert feats.shape == (2, 0, 80) and frame_mask.shape == (2, 0)


def test_options_from_config():
  cfg = ml_collections.ConfigDict({"num_mel_bins": 64, "snip_edges": True})
  opts = frontend.FbankOptions.from_config(cfg)
  assert opts.num_mel_bins == 64 and opts.snip_edges and opts.low_freq == 20.0
  assert frontend.FbankOptions.from_config({}) == frontend.FbankOptions()
  with pytest.raises(ValueError, match="num_mel_binz"):
    frontend.FbankOptions.from_config({"num_mel_binz": 80})
  with pytest.raises(ValueError, match="dither"):
    frontend.FbankOptions(dither=1.0)
  sa = frontend.SpecAugmentOptions.from_config({"num_time_masks": 3})
  assert sa.num_time_masks == 3 and sa.max_freq_mask_bins == 27
  with pytest.raises(ValueError, match="max_time_mask"):
    frontend.SpecAugmentOptions.from_config({"max_time_mask": 3})


def test_options_from_base_config():
  from audiopt import config  # pylint: disable=g-import-not-at-top
  c = config.base_config().frontend
  assert frontend.FbankOptions.from_config(c.fbank) == frontend.FbankOptions()
  assert (frontend.SpecAugmentOptions.from_config(c.spec_augment)
          == frontend.SpecAugmentOptions())


# -- SpecAugment ---------------------------------------------------------------


def _features():
  rs = np.random.RandomState(0)
  feats = rs.randn(4, 120, 80).astype(np.float32) + 3.0
  lengths = np.array([120, 90, 7, 1])
  frame_mask = np.arange(120)[None, :] < lengths[:, None]
  return jnp.asarray(feats), jnp.asarray(frame_mask)


def test_spec_augment_masks_only_valid_frames():
  feats, frame_mask = _features()
  opts = frontend.SpecAugmentOptions(max_time_mask_frames=30)
  aug = _spec_augment
  out = aug(jax.random.key(0), feats, frame_mask, opts)
  assert out.shape == feats.shape and out.dtype == feats.dtype
  changed = np.asarray(out != feats)
  assert not changed[~np.asarray(frame_mask)].any()
  assert changed.any()
  for b in range(4):
    valid = np.asarray(frame_mask[b])
    mean = np.asarray(feats[b])[valid].mean()
    np.testing.assert_allclose(np.asarray(out[b])[changed[b]], mean, rtol=1e-5)
  np.testing.assert_array_equal(
      out, aug(jax.random.key(0), feats, frame_mask, opts))
  assert not np.array_equal(
      out, aug(jax.random.key(1), feats, frame_mask, opts))


def test_spec_augment_mask_sizes():
  feats, frame_mask = _features()
  opts = frontend.SpecAugmentOptions(num_time_masks=1, max_time_mask_frames=10,
                                     num_freq_masks=0)
  for seed in range(5):
    out = _spec_augment(jax.random.key(seed), feats, frame_mask, opts)
    masked_frames = np.asarray((out != feats).all(-1)).sum(-1)
    assert (masked_frames <= np.minimum(10, [120, 90, 7, 1])).all()
  none = frontend.SpecAugmentOptions(num_time_masks=0, num_freq_masks=0)
  np.testing.assert_array_equal(
      _spec_augment(jax.random.key(0), feats, frame_mask, none), feats)


# -- audio I/O -----------------------------------------------------------------


def test_flac_round_trip():
  wav = np.sin(np.linspace(0, 400, 12345)).astype(np.float32) * 0.8
  wav[:10] = [1.5, -1.5, 1, -1, 0, 0.5, -0.5, 1e-6, 0, 0]
  data = audio_io.encode_flac(wav)
  assert data[:4] == b"fLaC"
  out = audio_io.decode_audio(data)
  assert out.dtype == np.float32 and out.shape == wav.shape
  np.testing.assert_allclose(out, np.clip(wav, -1, 1), atol=1.0 / 32768 + 1e-7)


def test_decode_stereo_44k_wav_to_mono_16k(tmp_path):
  t = np.arange(44100 * 2) / 44100
  left = 0.5 * np.sin(2 * np.pi * 440 * t)
  right = 0.3 * np.sin(2 * np.pi * 440 * t)
  path = tmp_path / "stereo.wav"
  soundfile.write(path, np.stack([left, right], -1), 44100, subtype="PCM_16")
  wav = audio_io.decode_audio(str(path))
  assert wav.dtype == np.float32 and wav.ndim == 1
  assert len(wav) == 32000
  t16 = np.arange(32000) / SR
  expected = 0.4 * np.sin(2 * np.pi * 440 * t16)
  np.testing.assert_allclose(wav[1000:-1000], expected[1000:-1000], atol=1e-3)
  native = audio_io.decode_audio(path, target_sample_rate=None)
  assert len(native) == 88200


def test_resample_lengths():
  wav = np.random.RandomState(0).randn(22050).astype(np.float32)
  assert audio_io.resample(wav, 22050, 16000).shape == (16000,)
  assert audio_io.resample(wav, 16000, 16000).dtype == np.float32


@pytest.mark.parametrize("kind", ["empty", "garbage", "truncated"])
def test_decode_errors_name_the_source(tmp_path, kind):
  flac = audio_io.encode_flac(np.sin(np.arange(16000) * 0.05).astype(np.float32))
  data = {"empty": b"", "garbage": b"not audio at all " * 20,
          "truncated": flac[:len(flac) // 2]}[kind]
  path = tmp_path / f"{kind}.flac"
  path.write_bytes(data)
  with pytest.raises(audio_io.AudioDecodeError, match=f"{kind}.flac"):
    audio_io.decode_audio(path)
  with pytest.raises(audio_io.AudioDecodeError, match="clip-7"):
    audio_io.decode_audio(data, name="clip-7")


def test_decode_rejects_non_finite(tmp_path):
  buf = io.BytesIO()
  soundfile.write(buf, np.array([0.1, np.nan, 0.2], np.float32), SR,
                  format="WAV", subtype="FLOAT")
  with pytest.raises(audio_io.AudioDecodeError, match="non-finite"):
    audio_io.decode_audio(buf.getvalue(), name="nan.wav")
  with pytest.raises(audio_io.AudioDecodeError, match="missing.wav"):
    audio_io.decode_audio(tmp_path / "missing.wav")
