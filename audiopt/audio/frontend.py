"""Kaldi-compatible log-mel filterbank and SpecAugment in JAX.

`fbank` reproduces Kaldi's `compute-fbank-feats` (and kaldi_native_fbank)
frame by frame: frame extraction (with reflection at the edges when
snip_edges is false), per-frame DC removal, pre-emphasis, window, zero padding
to a power of two, power spectrum, triangular mel banks and log with a floor.
It runs batched on padded waveforms: each row is processed as if it were
exactly as long as its mask says, so padding never changes a valid frame.

Only dither 0 is supported: dithering is random noise Kaldi adds per frame,
which no JAX implementation could reproduce bit for bit, and the models here
are trained without it.
"""

import dataclasses
import math
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

_FLOAT32_EPS = float(np.finfo(np.float32).eps)
_WINDOW_TYPES = ("povey", "hanning", "hamming", "rectangular", "sine",
                 "blackman")


def _options_from_config(cls, cfg: Any):
  """Builds dataclass `cls` from a mapping or ConfigDict holding some fields."""
  if hasattr(cfg, "to_dict"):
    cfg = cfg.to_dict()
  names = {f.name for f in dataclasses.fields(cls)}
  for key in cfg:
    if key not in names:
      raise ValueError(f"unknown {cls.__name__} key {key!r}; known: "
                       f"{sorted(names)}")
  return cls(**dict(cfg))


@dataclasses.dataclass(frozen=True)
class FbankOptions:
  """Kaldi fbank options (names and defaults of compute-fbank-feats).

  Attributes:
    sample_rate: input sampling rate in Hz.
    num_mel_bins: number of triangular mel filters (feature dimension).
    frame_length_ms: window length in milliseconds.
    frame_shift_ms: hop in milliseconds.
    preemph_coeff: pre-emphasis coefficient (0 turns it off).
    remove_dc_offset: subtract each frame's mean before pre-emphasis.
    window_type: povey, hanning, hamming, rectangular, sine or blackman.
    low_freq: lowest mel filter edge in Hz.
    high_freq: highest mel filter edge in Hz; <= 0 means Nyquist + high_freq.
    snip_edges: True keeps only frames that fit in the signal; False centres
      frames on multiples of the hop and reflects the signal at its ends.
    dither: must be 0 (see the module docstring).
    use_log_fbank: return log mel energies, floored at float32 epsilon before
      the log as Kaldi does; False returns the mel energies themselves.
    use_power: use the power spectrum; False uses its magnitude.
    input_scale: factor applied to the waveform first (Kaldi tools are fed
      16-bit integer ranges: 32768 reproduces them from [-1, 1] audio).
  """

  sample_rate: int = 16000
  num_mel_bins: int = 80
  frame_length_ms: float = 25.0
  frame_shift_ms: float = 10.0
  preemph_coeff: float = 0.97
  remove_dc_offset: bool = True
  window_type: str = "povey"
  low_freq: float = 20.0
  high_freq: float = 0.0
  snip_edges: bool = False
  dither: float = 0.0
  use_log_fbank: bool = True
  use_power: bool = True
  input_scale: float = 1.0

  def __post_init__(self):
    if self.dither != 0.0:
      raise ValueError(f"only dither=0 is supported, got {self.dither}")
    if self.window_type not in _WINDOW_TYPES:
      raise ValueError(f"unknown window_type {self.window_type!r}; "
                       f"known: {_WINDOW_TYPES}")
    if self.frame_shift_samples < 1 or self.frame_length_samples < 2:
      raise ValueError("frame length and shift must be at least 2 and 1 "
                       "samples")
    nyquist = 0.5 * self.sample_rate
    high = self.high_freq if self.high_freq > 0 else nyquist + self.high_freq
    if not 0.0 <= self.low_freq < high <= nyquist:
      raise ValueError(f"need 0 <= low_freq < high_freq <= Nyquist, got "
                       f"{self.low_freq} and {high} (Nyquist {nyquist})")

  @classmethod
  def from_config(cls, cfg: Any) -> "FbankOptions":
    """Builds options from a mapping or ConfigDict holding any subset of keys.

    Args:
      cfg: dict-like of field names to values.

    Returns:
      FbankOptions with the other fields at their defaults.

    Raises:
      ValueError: on a key that is not a field (the message names it).
    """
    return _options_from_config(cls, cfg)

  @property
  def frame_length_samples(self) -> int:
    """Window length in samples (Kaldi truncates, as here)."""
    return int(self.sample_rate * 0.001 * self.frame_length_ms)

  @property
  def frame_shift_samples(self) -> int:
    """Hop in samples."""
    return int(self.sample_rate * 0.001 * self.frame_shift_ms)

  @property
  def fft_size(self) -> int:
    """Window length rounded up to a power of two."""
    return 1 << max(0, math.ceil(math.log2(self.frame_length_samples)))


def num_frames(num_samples: int, opts: FbankOptions) -> int:
  """Number of frames Kaldi produces for `num_samples` samples.

  Args:
    num_samples: signal length in samples.
    opts: front end options.

  Returns:
    (n + shift // 2) // shift when snip_edges is false, else
    1 + (n - length) // shift, or 0 when the signal is shorter than a window.
  """
  shift, length = opts.frame_shift_samples, opts.frame_length_samples
  if opts.snip_edges:
    return 0 if num_samples < length else 1 + (num_samples - length) // shift
  return (num_samples + shift // 2) // shift


def _num_frames_array(lengths: jax.Array, opts: FbankOptions) -> jax.Array:
  """`num_frames` on an integer array of lengths."""
  shift, length = opts.frame_shift_samples, opts.frame_length_samples
  if opts.snip_edges:
    return jnp.where(lengths < length, 0, 1 + (lengths - length) // shift)
  return (lengths + shift // 2) // shift


def window_function(opts: FbankOptions) -> np.ndarray:
  """Kaldi's analysis window.

  Args:
    opts: front end options (window_type and frame length are used).

  Returns:
    [frame_length_samples] float32 window.
  """
  n = opts.frame_length_samples
  a = 2.0 * np.pi / (n - 1)
  i = np.arange(n, dtype=np.float64)
  if opts.window_type == "povey":
    w = (0.5 - 0.5 * np.cos(a * i)) ** 0.85
  elif opts.window_type == "hanning":
    w = 0.5 - 0.5 * np.cos(a * i)
  elif opts.window_type == "hamming":
    w = 0.54 - 0.46 * np.cos(a * i)
  elif opts.window_type == "sine":
    w = np.sin(0.5 * a * i)
  elif opts.window_type == "blackman":
    w = 0.42 - 0.5 * np.cos(a * i) + 0.08 * np.cos(2.0 * a * i)
  else:
    w = np.ones(n)
  return w.astype(np.float32)


def _mel_scale(freq: np.ndarray) -> np.ndarray:
  return 1127.0 * np.log(1.0 + freq / 700.0)


def mel_banks(opts: FbankOptions) -> np.ndarray:
  """Kaldi's triangular mel filters over the FFT bins.

  Triangles are linear in the mel domain (mel = 1127 ln(1 + f / 700)), with
  num_mel_bins + 2 equally spaced edges from low_freq to high_freq; they cover
  bins 0 .. fft_size / 2 - 1 (the Nyquist bin always gets weight 0).

  Args:
    opts: front end options.

  Returns:
    [fft_size // 2 + 1, num_mel_bins] float32 weights.
  """
  nyquist = 0.5 * opts.sample_rate
  high = opts.high_freq if opts.high_freq > 0 else nyquist + opts.high_freq
  mel_low, mel_high = _mel_scale(opts.low_freq), _mel_scale(high)
  delta = (mel_high - mel_low) / (opts.num_mel_bins + 1)
  edges = mel_low + delta * np.arange(opts.num_mel_bins + 2)
  left, center, right = edges[:-2], edges[1:-1], edges[2:]
  num_fft_bins = opts.fft_size // 2
  mel = _mel_scale(np.arange(num_fft_bins) * opts.sample_rate / opts.fft_size)
  mel = mel[:, None]
  up = (mel - left) / (center - left)
  down = (right - mel) / (right - center)
  weights = np.where((mel > left) & (mel < right),
                     np.where(mel <= center, up, down), 0.0)
  weights = np.concatenate([weights, np.zeros((1, opts.num_mel_bins))], 0)
  return weights.astype(np.float32)


def _frame_indices(lengths: jax.Array, num_out: int,
                   opts: FbankOptions) -> jax.Array:
  """Sample indices of every frame, reflected at each row's own ends.

  Args:
    lengths: [B] int32 valid lengths (>= 1).
    num_out: T, frames per row.
    opts: front end options.

  Returns:
    [B, T, frame_length] int32 indices into each row, all in [0, length).
  """
  shift, length = opts.frame_shift_samples, opts.frame_length_samples
  starts = np.arange(num_out, dtype=np.int64) * shift
  if not opts.snip_edges:
    starts += shift // 2 - length // 2
  idx = jnp.asarray(starts[:, None] + np.arange(length)[None, :], jnp.int32)
  # Kaldi reflects as x[-1 - i] = x[i] and x[n + i] = x[n - 1 - i], repeating
  # while out of range: that is folding with period 2n.
  n = lengths[:, None, None]
  folded = jnp.mod(idx[None], 2 * n)
  return jnp.where(folded >= n, 2 * n - 1 - folded, folded)


def fbank(wav: jax.Array, wav_mask: jax.Array,
          opts: FbankOptions = FbankOptions()) -> tuple[jax.Array, jax.Array]:
  """Kaldi-compatible (log) mel filterbank of a padded batch.

  Always computes in float32. Each row's valid length is wav_mask.sum(-1)
  (the mask is expected to be a prefix); its frames are computed as if the
  row held only those samples. Frames past a row's own frame count are 0.

  Args:
    wav: [B, N] waveforms (cast to float32), in [-1, 1] unless input_scale
      says otherwise.
    wav_mask: [B, N] bool, True on valid samples.
    opts: front end options.

  Returns:
    feats: [B, T, num_mel_bins] float32 with T = num_frames(N, opts).
    frame_mask: [B, T] bool, frame_mask[b, t] = t < num_frames(length_b).
  """
  wav = jnp.asarray(wav, jnp.float32)
  if wav.ndim != 2 or wav_mask.shape != wav.shape:
    raise ValueError(f"fbank expects wav and wav_mask of equal shape [B, N], "
                     f"got {wav.shape} and {wav_mask.shape}")
  batch, n = wav.shape
  t = num_frames(n, opts)
  lengths = jnp.sum(wav_mask, axis=-1, dtype=jnp.int32)
  frame_mask = jnp.arange(t)[None, :] < _num_frames_array(lengths, opts)[:, None]
  if t == 0:
    return jnp.zeros((batch, 0, opts.num_mel_bins), jnp.float32), frame_mask

  if opts.input_scale != 1.0:
    wav = wav * jnp.float32(opts.input_scale)
  idx = _frame_indices(jnp.maximum(lengths, 1), t, opts)
  frames = jnp.take_along_axis(wav, idx.reshape(batch, -1), axis=1)
  frames = frames.reshape(batch, t, opts.frame_length_samples)

  if opts.remove_dc_offset:
    frames = frames - jnp.mean(frames, axis=-1, keepdims=True)
  if opts.preemph_coeff != 0.0:
    previous = jnp.concatenate([frames[..., :1], frames[..., :-1]], axis=-1)
    frames = frames - jnp.float32(opts.preemph_coeff) * previous
  frames = frames * jnp.asarray(window_function(opts))

  spectrum = jnp.fft.rfft(frames, n=opts.fft_size, axis=-1)
  power = jnp.real(spectrum) ** 2 + jnp.imag(spectrum) ** 2
  if not opts.use_power:
    power = jnp.sqrt(power)
  # HIGHEST keeps GPUs from using TF32 and TPUs from using bfloat16 passes.
  mel = jnp.matmul(power, jnp.asarray(mel_banks(opts)),
                   precision=jax.lax.Precision.HIGHEST)
  if opts.use_log_fbank:
    mel = jnp.log(jnp.maximum(mel, _FLOAT32_EPS))
  feats = jnp.where(frame_mask[..., None], mel, 0.0)
  return feats, frame_mask


@dataclasses.dataclass(frozen=True)
class SpecAugmentOptions:
  """SpecAugment mask counts and sizes.

  Attributes:
    num_time_masks: time masks per example.
    max_time_mask_frames: each time mask is w consecutive frames with w drawn
      uniformly from [0, max_time_mask_frames], capped at the example's valid
      frame count, placed uniformly inside the valid frames.
    num_freq_masks: frequency masks per example.
    max_freq_mask_bins: each frequency mask is f consecutive mel bins with f
      drawn uniformly from [0, min(max_freq_mask_bins, F)], placed uniformly.
  """

  num_time_masks: int = 2
  max_time_mask_frames: int = 40
  num_freq_masks: int = 2
  max_freq_mask_bins: int = 27

  def __post_init__(self):
    for f in dataclasses.fields(self):
      if getattr(self, f.name) < 0:
        raise ValueError(f"SpecAugmentOptions.{f.name} must be >= 0")

  @classmethod
  def from_config(cls, cfg: Any) -> "SpecAugmentOptions":
    """Builds options from a mapping or ConfigDict holding any subset of keys.

    Args:
      cfg: dict-like of field names to values.

    Returns:
      SpecAugmentOptions with the other fields at their defaults.

    Raises:
      ValueError: on a key that is not a field (the message names it).
    """
    return _options_from_config(cls, cfg)


def _band_mask(rng: jax.Array, size: jax.Array, axis_len: int, num_masks: int,
               max_width: int) -> jax.Array:
  """Union of `num_masks` random bands inside [0, size) per example.

  Args:
    rng: PRNG key.
    size: [B] int32 extent the bands must stay inside.
    axis_len: length of the masked axis.
    num_masks: bands per example.
    max_width: widest band.

  Returns:
    [B, axis_len] bool, True inside a band.
  """
  batch = size.shape[0]
  width_key, start_key = jax.random.split(rng)
  width = jax.random.randint(width_key, (batch, num_masks), 0, max_width + 1)
  width = jnp.minimum(width, size[:, None])
  start = jax.random.randint(start_key, (batch, num_masks), 0,
                             size[:, None] - width + 1)
  pos = jnp.arange(axis_len)[None, None, :]
  inside = (pos >= start[..., None]) & (pos < (start + width)[..., None])
  return jnp.any(inside, axis=1)


def spec_augment(rng: jax.Array, feats: jax.Array, frame_mask: jax.Array,
                 opts: SpecAugmentOptions = SpecAugmentOptions()) -> jax.Array:
  """Random time and frequency masks, independent per example.

  Masked values are set to the example's mean over its valid frames and all
  bins: for un-normalised log-mel features that is a neutral level, where 0
  would be an arbitrary energy. Only valid frames ever change; padded frames
  are returned as they were.

  Args:
    rng: PRNG key.
    feats: [B, T, F] features.
    frame_mask: [B, T] bool, True on valid frames (a prefix per row).
    opts: mask counts and sizes.

  Returns:
    [B, T, F] features with the same dtype.
  """
  batch, t, f = feats.shape
  time_key, freq_key = jax.random.split(rng)
  valid = frame_mask.astype(bool)
  lengths = jnp.sum(valid, axis=-1, dtype=jnp.int32)
  time_mask = _band_mask(time_key, lengths, t, opts.num_time_masks,
                         opts.max_time_mask_frames)
  freq_mask = _band_mask(freq_key, jnp.full((batch,), f, jnp.int32), f,
                         opts.num_freq_masks, min(opts.max_freq_mask_bins, f))
  masked = (time_mask[:, :, None] | freq_mask[:, None, :]) & valid[..., None]

  total = jnp.sum(jnp.where(valid[..., None], feats, 0), axis=(1, 2),
                  dtype=jnp.float32)
  mean = total / jnp.maximum(lengths * f, 1).astype(jnp.float32)
  fill = mean[:, None, None].astype(feats.dtype)
  return jnp.where(masked, fill, feats)
