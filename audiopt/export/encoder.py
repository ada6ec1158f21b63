"""Loads an exported encoder: waveform [B, T] -> frames [B, T', D] + mask.

Imports only JAX, Flax, the front end and the encoder registry: no optax,
orbax, grain or training code, for people who only want embeddings.
"""

import json
import os

import jax
import jax.numpy as jnp
import numpy as np

from audiopt import export
from audiopt.audio import frontend


class Encoder:
  """A jitted exported encoder.

  Attributes:
    config: the export's JSON config (frontend, encoder, step).
    sample_rate: the waveform rate the front end expects (Hz).
    params: the encoder parameters (nested dict of arrays).
  """

  def __init__(self, config: dict, params: dict):
    from audiopt.models import registry  # pylint: disable=g-import-not-at-top
    self.config = config
    self.params = params
    self._fbank = frontend.FbankOptions.from_config(
        config["frontend"]["fbank"])
    self.sample_rate = self._fbank.sample_rate
    module = registry.build_encoder(config["encoder"])

    def run(params, audio, mask):
      feats, feat_mask = frontend.fbank(audio, mask, self._fbank)
      out = module.apply({"params": params}, feats, feat_mask, train=False)
      return out.frames, out.mask

    self._run = jax.jit(run)

  def __call__(self, waveform, lengths=None) -> tuple[np.ndarray, np.ndarray]:
    """Encodes a batch of waveforms.

    Args:
      waveform: float32 [B, T] at `sample_rate` (16 kHz for the presets).
      lengths: optional int [B] valid samples per row (rest is padding);
        all T when None.

    Returns:
      (frames float32 [B, T', D], mask bool [B, T']).
    """
    audio = np.asarray(waveform, np.float32)
    if audio.ndim != 2:
      raise ValueError(f"waveform must be [B, T], got shape {audio.shape}")
    if lengths is None:
      mask = np.ones(audio.shape, bool)
    else:
      lengths = np.asarray(lengths)
      if lengths.shape != (audio.shape[0],):
        raise ValueError(f"lengths must be [{audio.shape[0]}], got shape "
                         f"{lengths.shape}")
      mask = np.arange(audio.shape[1])[None] < lengths[:, None]
    frames, frame_mask = self._run(self.params, jnp.asarray(audio),
                                   jnp.asarray(mask))
    return np.asarray(frames), np.asarray(frame_mask)


def load_encoder(path: str) -> Encoder:
  """Loads an export written by `audiopt.export.export_checkpoint`.

  Args:
    path: the export directory.

  Returns:
    An `Encoder`: encoder(waveform [B, T], lengths [B] | None) ->
    (frames [B, T', D], mask [B, T']).

  Raises:
    FileNotFoundError: a file of the export is missing (named).
    ValueError: an unknown export format.
  """
  from safetensors.numpy import load_file  # pylint: disable=g-import-not-at-top
  cfg_path = os.path.join(path, export.CONFIG_FILE)
  params_path = os.path.join(path, export.PARAMS_FILE)
  for p in (cfg_path, params_path):
    if not os.path.exists(p):
      raise FileNotFoundError(f"encoder export {path!r} lacks {p}")
  with open(cfg_path) as f:
    config = json.load(f)
  if config.get("format") != export.FORMAT:
    raise ValueError(f"{cfg_path}: format {config.get('format')!r}, "
                     f"expected {export.FORMAT}")
  params = export.unflatten(load_file(params_path))
  return Encoder(config, params)
