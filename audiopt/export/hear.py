"""The HEAR 2021 common API on a run's frozen encoder.

  hear-validator audiopt.export.hear --model /path/to/run_workdir
  python -m heareval.embeddings.runner audiopt.export.hear \
      --model /path/to/run_workdir --tasks-dir tasks/

`load_model(model_file_path)` takes a run's workdir (or its checkpoints
directory; "" reads $AUDIOPT_CHECKPOINT) and returns `HearModel`, a
`torch.nn.Module` whose forward calls the jitted JAX encoder. Contract
(neuralaudio.ai HEAR 2021 common API, checked by hear-validator):

  model.sample_rate              16000 (the run's front-end rate)
  model.scene_embedding_size     D (int)
  model.timestamp_embedding_size D (int)
  get_timestamp_embeddings(audio [n, N] float32 in [-1, 1], model)
      -> (embeddings [n, T, D] float32, timestamps [n, T] float32 ms)
      the encoder's valid frames (about one per hop: 40 ms for the
      transformer and Zipformer, whose subsampling drops a frame at the
      edges), timestamps evenly spaced over the audio: frame i of T at
      (i + 0.5) * duration / T ms, so they are monotone, regular, start
      within one interval of 0 and end within half an interval of the end
  get_scene_embeddings(audio [n, N], model) -> [n, D] float32
      the mean of the timestamp embeddings

Long audio is encoded in chunks of the run's clip length (see
`frozen_encoder`); all outputs are on the input tensor's device.
"""

from __future__ import annotations

import numpy as np
import torch

from audiopt.export import frozen_encoder


class HearModel(torch.nn.Module):
  """A torch module around a run's frozen JAX encoder.

  Attributes:
    encoder: the `FrozenEncoder`.
    sample_rate: input sample rate in Hz.
    scene_embedding_size: D.
    timestamp_embedding_size: D.
    hop_ms: milliseconds between timestamps.
  """

  def __init__(self, encoder: frozen_encoder.FrozenEncoder):
    super().__init__()
    self.encoder = encoder
    self.sample_rate = int(encoder.sample_rate)
    self.scene_embedding_size = int(encoder.dim)
    self.timestamp_embedding_size = int(encoder.dim)
    self.hop_ms = float(encoder.hop_ms)

  def forward(self, audio: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Frames [n, T, D] float32 and timestamps [n, T] (ms) of audio [n, N]."""
    if not isinstance(audio, torch.Tensor):
      raise TypeError(f"audio must be a torch.Tensor, got {type(audio)}")
    if audio.ndim != 2:
      raise ValueError(f"audio must be [n, samples], got {tuple(audio.shape)}")
    wav = audio.detach().to("cpu", torch.float32).numpy()
    frames, _ = self.encoder.frames(wav)
    duration_ms = 1000.0 * wav.shape[1] / self.sample_rate
    step = duration_ms / frames.shape[1]
    stamps = np.broadcast_to((np.arange(frames.shape[1]) + 0.5) * step,
                             frames.shape[:2]).astype(np.float32)
    return (torch.from_numpy(frames).to(audio.device),
            torch.from_numpy(stamps.copy()).to(audio.device))


def load_model(model_file_path: str = "", *, layer: str | None = None,
               chunk_seconds: float | None = None) -> HearModel:
  """Loads a run for HEAR.

  Args:
    model_file_path: the run's workdir or checkpoints directory; "" reads
      $AUDIOPT_CHECKPOINT.
    layer: None: the last layer; else an encoder intermediate ("layer_3").
    chunk_seconds: longest piece encoded at once; default the run's clip
      length.
  """
  restored = frozen_encoder.load_restored(model_file_path)
  return HearModel(frozen_encoder.FrozenEncoder(
      restored, layer=layer, chunk_seconds=chunk_seconds))


def get_timestamp_embeddings(audio: torch.Tensor, model: HearModel
                             ) -> tuple[torch.Tensor, torch.Tensor]:
  """HEAR: (embeddings [n, T, D], timestamps [n, T] in ms)."""
  return model(audio)


def get_scene_embeddings(audio: torch.Tensor, model: HearModel
                         ) -> torch.Tensor:
  """HEAR: one embedding [n, D] per clip, the mean over its frames."""
  embeddings, _ = model(audio)
  return embeddings.mean(dim=1)
