"""An X-ARES encoder on a run's frozen JAX encoder.

  python -m xares.run audiopt/export/xares.py src/tasks/*.py

X-ARES loads this file and instantiates the class whose name ends in
"Encoder" with no arguments, so the run is read from
$AUDIOPT_XARES_CHECKPOINT (or $AUDIOPT_CHECKPOINT) unless a path is given.
Contract (jimbozhang/xares `check_audio_encoder`):

  a torch.nn.Module whose class name ends in "Encoder", with
  sampling_rate (16000), output_dim (D) and hop_size_in_ms (the encoder's
  hop); forward(audio [B, T] float) -> [B, T', D] float32 tensor,
  T' = ceil(T / hop samples).
"""

from __future__ import annotations

import os

import torch

from audiopt.export import frozen_encoder

CHECKPOINT_ENV = "AUDIOPT_XARES_CHECKPOINT"


class AudioptEncoder(torch.nn.Module):
  """X-ARES encoder of an audiopt run (see module doc).

  Args:
    checkpoint: the run's workdir or checkpoints directory; default
      $AUDIOPT_XARES_CHECKPOINT, then $AUDIOPT_CHECKPOINT.
    layer: None for the last layer, else an encoder intermediate.
    chunk_seconds: longest piece encoded at once; default the run's clip
      length.
  """

  def __init__(self, checkpoint: str | None = None, *,
               layer: str | None = None,
               chunk_seconds: float | None = None):
    super().__init__()
    path = checkpoint or os.environ.get(CHECKPOINT_ENV) or None
    self.encoder = frozen_encoder.FrozenEncoder(
        frozen_encoder.load_restored(path), layer=layer,
        chunk_seconds=chunk_seconds)
    self.sampling_rate = int(self.encoder.sample_rate)
    self.output_dim = int(self.encoder.dim)
    self.hop_size_in_ms = float(self.encoder.hop_ms)

  def forward(self, audio: torch.Tensor,
              audio_attention_mask: torch.Tensor | None = None
              ) -> torch.Tensor:
    """Frames [B, T', D] of audio [B, T] (or [T]) at `sampling_rate`.

    Args:
      audio: float waveforms.
      audio_attention_mask: optional [B, T], nonzero on real samples;
        frames past a clip's end come out as zeros.
    """
    if not isinstance(audio, torch.Tensor):
      raise TypeError(f"audio must be a torch.Tensor, got {type(audio)}")
    if audio.ndim == 1:
      audio = audio.unsqueeze(0)
    mask = None
    if audio_attention_mask is not None:
      mask = audio_attention_mask.detach().cpu().numpy() != 0
    frames, _ = self.encoder.frames(
        audio.detach().to("cpu", torch.float32).numpy(), mask)
    return torch.from_numpy(frames).to(audio.device)
