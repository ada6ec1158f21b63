"""Signal-processing helpers of the demo world (numpy and scipy.signal).

Everything is vectorised over samples; per-note or per-syllable work is a few
short array operations. Filter designs are cached, so a clip's cost is
dominated by a handful of FFTs and IIR passes.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from typing import Callable

import numpy as np
from scipy import signal


def fast_len(n: int) -> int:
  """The smallest 2^a 3^b 5^c >= n (a fast FFT length)."""
  best = 1 << max(0, n - 1).bit_length()
  f5 = 1
  while f5 < best:
    f35 = f5
    while f35 < best:
      f = f35
      while f < n:
        f *= 2
      best = min(best, f)
      f35 *= 3
    f5 *= 5
  return best


def band(freqs: np.ndarray, lo: float | None, hi: float | None,
         order: int = 4) -> np.ndarray:
  """Butterworth-like magnitude of a band-pass (None: that edge open)."""
  gain = np.ones_like(freqs)
  if lo:
    gain /= np.sqrt(1.0 + (lo / np.maximum(freqs, 1e-3)) ** (2 * order))
  if hi:
    gain /= np.sqrt(1.0 + (freqs / hi) ** (2 * order))
  return gain


def fft_filter(x: np.ndarray, response: Callable[[np.ndarray], np.ndarray],
               sr: int, pad: int = 0) -> np.ndarray:
  """Filters x [N] by a zero-phase-free response H(f_hz); returns [N + pad]."""
  nfft = fast_len(x.size + pad)
  spec = np.fft.rfft(x, nfft) * response(np.fft.rfftfreq(nfft, 1.0 / sr))
  return np.fft.irfft(spec, nfft)[:x.size + pad]


def noise(rng: np.random.Generator, n: int, sr: int, *, tilt: float = 0.0,
          lo: float | None = None, hi: float | None = None) -> np.ndarray:
  """Unit-RMS Gaussian noise [n] with spectrum f^tilt, band-limited."""
  nfft = fast_len(n)
  k = nfft // 2 + 1
  spec = rng.standard_normal(k) + 1j * rng.standard_normal(k)
  freqs = np.fft.rfftfreq(nfft, 1.0 / sr)
  spec *= np.maximum(freqs, 20.0) ** tilt * band(freqs, lo, hi)
  y = np.fft.irfft(spec, nfft)[:n]
  return y / (math.sqrt(float(np.mean(y * y))) + 1e-12)


@functools.lru_cache(maxsize=512)
def _butter(kind: str, edges: tuple[float, ...], order: int,
            sr: int) -> np.ndarray:
  wn = edges[0] if len(edges) == 1 else list(edges)
  sos = signal.butter(order, wn, btype=kind, fs=sr, output="sos")
  return sos


def _edges(lo: float | None, hi: float | None,
           sr: int) -> tuple[str, tuple[float, ...]] | None:
  nyq = 0.5 * sr
  lo = None if lo is None or lo <= 0 else min(float(lo), 0.9 * nyq)
  hi = None if hi is None or hi >= 0.95 * nyq else float(hi)
  if lo is not None and hi is not None:
    if hi <= lo * 1.05:
      hi = min(lo * 1.1, 0.95 * nyq)
    return "bandpass", (round(lo, 1), round(hi, 1))
  if lo is not None:
    return "highpass", (round(lo, 1),)
  if hi is not None:
    return "lowpass", (round(hi, 1),)
  return None


def bandpass(x: np.ndarray, lo: float | None, hi: float | None, sr: int,
             order: int = 2) -> np.ndarray:
  """Butterworth band/high/low-pass of x (None: that edge open); causal."""
  design = _edges(lo, hi, sr)
  if design is None:
    return x
  kind, edges = design
  return signal.sosfilt(_butter(kind, edges, order, sr), x)



_BUFFER_S = 11.0


@functools.lru_cache(maxsize=64)
def _noise_buffer(lo: float | None, hi: float | None, order: int,
                  sr: int) -> np.ndarray:
  """A long stretch of band-passed noise, the same in every process."""
  n = int(_BUFFER_S * sr)
  skip = int(0.1 * sr)  # the filter's start-up transient
  rng = np.random.default_rng([41, sr, order, int(lo or 0), int(hi or 0)])
  y = bandpass(rng.standard_normal(n + skip), lo, hi, sr, order)[skip:]
  y.setflags(write=False)
  return y


def white_band(rng: np.random.Generator, n: int, sr: int,
               lo: float | None = None, hi: float | None = None,
               order: int = 2) -> np.ndarray:
  """Unit-RMS band-limited white noise [n].

  A stretch at a random offset (drawn from `rng`) of a long noise buffer
  per band, so that a clip's many noise layers cost no filtering.
  """
  buf = _noise_buffer(lo, hi, order, sr)
  if n > buf.size:
    y = bandpass(rng.standard_normal(n), lo, hi, sr, order)
  else:
    start = int(rng.integers(buf.size - n + 1))
    y = buf[start:start + n] * (1.0 if rng.random() < 0.5 else -1.0)
  return y / (math.sqrt(float(np.mean(y * y))) + 1e-12)


def one_pole(x: np.ndarray, a: float) -> np.ndarray:
  """y[n] = (1 - a) x[n] + a y[n-1]: a gentle low-pass (a in [0, 1))."""
  return signal.lfilter([1.0 - a], [1.0, -a], x)


def resonator_sos(formants: Sequence[float], bandwidths: Sequence[float],
                  sr: int) -> np.ndarray:
  """Cascaded two-pole resonators as second-order sections, unit DC gain."""
  rows = []
  for f, bw in zip(formants, bandwidths):
    if f >= 0.47 * sr:
      continue
    r = math.exp(-math.pi * bw / sr)
    c = 2 * r * math.cos(2 * math.pi * f / sr)
    rows.append([1 - c + r * r, 0.0, 0.0, 1.0, -c, r * r])
  return np.asarray(rows or [[1.0, 0, 0, 1.0, 0, 0]])


def resonate(x: np.ndarray, f_hz: float, decay_s: float, sr: int) -> np.ndarray:
  """x through one resonator whose impulse response rings at f_hz, decaying
  by 1/e in decay_s (a struck mode, a drop, a knock)."""
  r = math.exp(-1.0 / (decay_s * sr))
  theta = 2 * math.pi * min(f_hz, 0.47 * sr) / sr
  return signal.lfilter([math.sin(theta)], [1.0, -2 * r * math.cos(theta),
                                            r * r], x)


def smooth(rng: np.random.Generator, n: int, sr: int,
           rate_hz: float) -> np.ndarray:
  """A smooth random curve [n], about N(0, 1), varying at `rate_hz`."""
  knots = int(n / sr * rate_hz) + 2
  return np.interp(np.arange(n) * (rate_hz / sr), np.arange(knots),
                   rng.standard_normal(knots))


def table(amps: Sequence[float], f_max: float, sr: int,
          phases: Sequence[float] | None = None,
          size: int = 2048) -> np.ndarray:
  """One period [size] of a harmonic wave, harmonics kept below 0.45 sr."""
  keep = max(1, min(len(amps), int(0.45 * sr / max(f_max, 1.0))))
  k = np.arange(1, keep + 1)[:, None]
  ph = np.zeros((keep, 1)) if phases is None else np.asarray(
      phases[:keep])[:, None]
  grid = np.arange(size)[None, :] / size
  return (np.asarray(amps[:keep])[:, None] *
          np.sin(2 * np.pi * k * grid + ph)).sum(0)


@functools.lru_cache(maxsize=512)
def _cached_table(amps: tuple[float, ...], f_max: float, sr: int
                  ) -> np.ndarray:
  t = table(amps, f_max, sr)
  t.setflags(write=False)
  return t


def cached_table(amps: tuple[float, ...], f_max: float, sr: int
                 ) -> np.ndarray:
  """`table` for tables reused across notes: f_max is rounded up to a
  sixth of an octave, so nearby notes share one table."""
  step = math.ceil(6.0 * math.log2(max(float(f_max), 1.0)))
  return _cached_table(tuple(amps), 2.0 ** (step / 6.0), sr)


def phase_index(freq_hz: np.ndarray | float, n: int, sr: int, size: int,
                phase0: float = 0.0) -> tuple[np.ndarray, np.ndarray,
                                              np.ndarray]:
  """Wavetable read positions of an oscillator: (index, next index, frac)."""
  if np.ndim(freq_hz) == 0:
    phase = phase0 + np.arange(n) * (float(freq_hz) / sr)
  else:
    phase = phase0 + np.cumsum(freq_hz) / sr
  pos = (phase % 1.0) * size
  i = np.minimum(pos.astype(np.intp), size - 1)
  nxt = i + 1
  nxt[nxt == size] = 0
  return i, nxt, pos - i


def read(tab: np.ndarray, index: tuple[np.ndarray, np.ndarray, np.ndarray]
         ) -> np.ndarray:
  """Reads a wavetable at `phase_index` positions, interpolating linearly."""
  i, nxt, frac = index
  a = tab[i]
  return a + frac * (tab[nxt] - a)


def oscillate(tab: np.ndarray, freq_hz: np.ndarray | float, n: int,
              sr: int, phase0: float = 0.0) -> np.ndarray:
  """Reads a wavetable at a (possibly time-varying) frequency; returns [n]."""
  return read(tab, phase_index(freq_hz, n, sr, tab.size, phase0))


def ramps(n: int, sr: int, attack_s: float, release_s: float) -> np.ndarray:
  """A linear attack/release envelope [n]."""
  env = np.ones(n)
  a = min(n, max(1, int(attack_s * sr)))
  r = min(n, max(1, int(release_s * sr)))
  env[:a] *= np.linspace(0.0, 1.0, a, endpoint=False)
  env[n - r:] *= np.linspace(1.0, 0.0, r)
  return env


def add(out: np.ndarray, start: int, y: np.ndarray) -> None:
  """Adds y into out at `start`, clipped to out's bounds."""
  if start < 0:
    y, start = y[-start:], 0
  m = min(y.size, out.size - start)
  if m > 0:
    out[start:start + m] += y[:m]


def rms(y: np.ndarray) -> float:
  """Root mean square of y (any shape), plus 1e-12; a float."""
  return math.sqrt(float(np.mean(y * y))) + 1e-12


def active_rms(y: np.ndarray, sr: int) -> float:
  """RMS over the louder half of 50 ms frames (ignores gaps between sounds)."""
  frame = max(1, int(0.05 * sr))
  count = max(1, y.size // frame)
  power = np.mean(y[:count * frame].reshape(count, -1) ** 2, axis=1)
  power = np.partition(power, count // 2)[count // 2:]
  return math.sqrt(float(power.mean())) + 1e-12


def hz(midi: float) -> float:
  """Frequency in Hz of MIDI note `midi` (69 is A4, 440 Hz)."""
  return 440.0 * 2.0 ** ((midi - 69) / 12)


def db(x: float) -> float:
  """Amplitude ratio of x decibels."""
  return 10.0 ** (x / 20.0)
