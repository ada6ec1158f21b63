"""A run's frozen encoder as a batched numpy function, for the adapters.

`FrozenEncoder(restored).frames(audio [B, N])` returns the frames of every
clip at the encoder's hop, whatever the length, through the evaluation
suite's own chunked extraction (`evaluate.embeddings.embed_waveforms`):
audio longer than `chunk_seconds` is cut into chunks of a whole number of
hops, each chunk is encoded on its own (the encoder's context is one chunk)
and the valid frames are concatenated, so frame i always covers
[i * hop, (i + 1) * hop).
"""

from __future__ import annotations

import os

import jax
import numpy as np

from audiopt.evaluate import embeddings
from audiopt.train import restore

CHECKPOINT_ENV = "AUDIOPT_CHECKPOINT"


def load_restored(path: str | None):
  """`restore.load_checkpoint` of `path`, or of $AUDIOPT_CHECKPOINT."""
  path = path or os.environ.get(CHECKPOINT_ENV, "")
  if not path:
    raise ValueError(f"give the run's workdir or checkpoints directory (or "
                     f"set ${CHECKPOINT_ENV})")
  return restore.load_checkpoint(path)


class FrozenEncoder:
  """Frames of a restored run's encoder (see module doc).

  Attributes:
    restored: the `Restored` run.
    sample_rate: input rate in Hz (the front end's).
    hop_ms: milliseconds between frames.
    dim: frame width D.
    layer: None for the last layer, else an intermediate's name.
    chunk_samples: longest piece encoded at once (a whole number of hops).
  """

  def __init__(self, restored, *, layer: str | None = None,
               chunk_seconds: float | None = None):
    self.restored = restored
    self.layer = layer
    self.sample_rate = int(restored.config.frontend.fbank.sample_rate)
    self.hop_ms = float(restored.setup.model.encoder.hop_ms)
    hop = self.sample_rate * self.hop_ms / 1000.0
    if abs(hop - round(hop)) > 1e-9:
      raise ValueError(f"hop {self.hop_ms} ms is not a whole number of "
                       f"samples at {self.sample_rate} Hz")
    self.hop_samples = int(round(hop))
    seconds = chunk_seconds or float(restored.config.data.clip_seconds)
    max_seconds = getattr(restored.setup.model.encoder, "max_seconds", None)
    if max_seconds:
      seconds = min(seconds, float(max_seconds))
    self.chunk_samples = max(
        int(seconds * self.sample_rate) // self.hop_samples, 1) * self.hop_samples
    setup = restored.setup
    self._fn = embeddings.make_embed_fn(setup.model, setup.mesh, setup.rules,
                                        layer=layer)
    probe = jax.eval_shape(
        lambda p, a, m: setup.model.apply({"params": p}, a, m, train=False,
                                          method=setup.model.embed),
        restored.params, jax.ShapeDtypeStruct((1, self.sample_rate),
                                              np.float32),
        jax.ShapeDtypeStruct((1, self.sample_rate), bool))
    self.dim = int((probe.frames if layer in (None, embeddings.LAST)
                    else probe.intermediates[layer]).shape[-1])

  def frames(self, audio: np.ndarray,
             mask: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Encodes a batch.

    Args:
      audio: [B, N] float waveforms at `sample_rate` (or [N]).
      mask: optional [B, N] bool, True on each row's real samples, a prefix
        (default all).

    Returns:
      (frames [B, T, D] float32, valid [B, T] bool): the valid frames of
      each chunk, chunks in order. T is about N / hop (an encoder's
      subsampling may drop a frame or two at each chunk's edges); rows
      shorter than others end in zero, invalid frames; T >= 1 even when no
      clip is long enough for a valid frame.
    """
    audio = np.asarray(audio, np.float32)
    if audio.ndim == 1:
      audio = audio[None]
    if audio.ndim != 2:
      raise ValueError(f"audio must be [B, N] samples, got shape "
                       f"{audio.shape}")
    n = audio.shape[1]
    if n == 0:
      raise ValueError("audio has no samples")
    if not np.isfinite(audio).all():
      raise ValueError("audio holds NaN or inf")
    mask = (np.ones(audio.shape, bool) if mask is None
            else np.asarray(mask, bool))
    if mask.shape != audio.shape:
      raise ValueError(f"mask must be {audio.shape}, got {mask.shape}")
    lengths = mask.sum(axis=1)
    if (mask != (np.arange(n) < lengths[:, None])).any():
      raise ValueError("mask must be True on a prefix of each row (the real "
                       "samples) and False after it")
    out = embeddings.embed_waveforms(
        self._fn, self.restored.params,
        [row[:length] for row, length in zip(audio, lengths)],
        batch_size=len(audio), chunk_seconds=self.chunk_samples /
        self.sample_rate, sample_rate=self.sample_rate,
        mesh=self.restored.setup.mesh, lengths=[int(k) for k in lengths])
    return out["frames"], out["mask"]
