"""Rebuilds a trained model from its checkpoint alone.

What a notebook or an evaluation script needs: the config, the vocabularies
and the front end come from the checkpoint's metadata, the parameters from
its state, laid out on a single device whatever mesh saved them, or, with
`on_mesh=True`, sharded over the run's own mesh (evaluation at scale).
"""

import dataclasses
import os
from typing import Any

import jax
import ml_collections
import numpy as np

from audiopt.objectives import DatasetInfo
from audiopt.train import checkpoint as checkpoint_lib
from audiopt.train import sharding
from audiopt.train import step as step_lib


@dataclasses.dataclass
class Restored:
  """A trained model ready to run.

  Attributes:
    step: the checkpoint's step.
    config: the run's ConfigDict.
    metadata: the checkpoint metadata (config, data vocabularies, front end).
    setup: the trainer Setup (model, mesh, rules...): a one-device mesh, or
      the run's own with `load_checkpoint(..., on_mesh=True)`.
    params: the parameters.
  """

  step: int
  config: ml_collections.ConfigDict
  metadata: dict[str, Any]
  setup: step_lib.Setup
  params: Any

  @property
  def tag_names(self) -> list[str]:
    """Names of the classes of the MTC head, in id order."""
    data = self.metadata["data"]
    key = ("weak_label_names" if self.config.objective.get("target") ==
           "weak_labels" else "tag_names")
    return list(data.get(key, []))

  @property
  def tokenizer(self):
    """The run's caption `TextTokenizer` (text objectives), else None."""
    text = self.metadata.get("tokenizer")
    if not text:
      return None
    from audiopt.text import tokenizer as tokenizer_lib  # pylint: disable=g-import-not-at-top
    return tokenizer_lib.TextTokenizer.from_json(text)

  def embed(self, wav: np.ndarray) -> np.ndarray:
    """Encodes one waveform [N] (16 kHz float) into frames [T', D]."""
    audio = np.asarray(wav, np.float32)[None]
    with sharding.mesh_and_rules(self.setup.mesh, self.setup.rules):
      out = self.setup.model.apply(
          {"params": self.params}, audio, np.ones_like(audio, bool),
          train=False, method=self.setup.model.embed)
    return np.asarray(out.frames[0])[np.asarray(out.mask[0])]

  def predict(self, wav: np.ndarray, method: str) -> np.ndarray:
    """Runs an objective predict method (e.g. "tag_scores") on one clip."""
    audio = np.asarray(wav, np.float32)[None]
    with sharding.mesh_and_rules(self.setup.mesh, self.setup.rules):
      out = self.setup.model.apply(
          {"params": self.params}, audio, np.ones_like(audio, bool), method,
          method=self.setup.model.predict)
    return np.asarray(out[0])

  def captions(self, wavs: list[np.ndarray], *, beam_size: int = 1,
               max_len: int | None = None) -> list[str]:
    """Captions of waveforms by the run's caption decoder.

    Args:
      wavs: float32 [N_i] 16 kHz mono waveforms; padded into one batch.
      beam_size: 1: greedy decoding; more: beam search.
      max_len: tokens to generate; default the decoder's caption width.

    Returns:
      One decoded caption per waveform, in order.
    """
    tok = self.tokenizer
    if tok is None:
      raise ValueError(f"checkpoint step {self.step} has no caption "
                       f"tokenizer: objective {self.config.objective.name!r} "
                       "does not decode captions")
    longest = max(len(w) for w in wavs)
    audio = np.zeros((len(wavs), longest), np.float32)
    mask = np.zeros((len(wavs), longest), bool)
    for i, w in enumerate(wavs):
      audio[i, :len(w)], mask[i, :len(w)] = w, True
    with sharding.mesh_and_rules(self.setup.mesh, self.setup.rules):
      ids = self.setup.model.apply(
          {"params": self.params}, audio, mask, "generate_captions",
          beam_size=beam_size, max_len=max_len,
          method=self.setup.model.predict)
    return tok.decode_batch(np.asarray(ids))

  def top_tags(self, wav: np.ndarray, k: int = 10) -> list[tuple[str, float]]:
    """The k highest tag scores of one clip as (tag name, probability)."""
    scores = self.predict(wav, "tag_scores")
    order = np.argsort(-scores)[:k]
    return [(self.tag_names[i], float(scores[i])) for i in order]


def load_checkpoint(path: str, step: int | None = None, *,
                    on_mesh: bool = False) -> Restored:
  """Loads a run's checkpoint onto one device, or onto the run's mesh.

  Args:
    path: a run's workdir or its `checkpoints` directory.
    step: which step; the newest when None.
    on_mesh: keep the mesh of the run's config over every device, the
      parameters sharded as the run trained them; else one device.

  Returns:
    A `Restored` model.
  """
  ckpt_dir = path
  if os.path.isdir(os.path.join(path, "checkpoints")):
    ckpt_dir = os.path.join(path, "checkpoints")
  step, metadata = checkpoint_lib.read_metadata(ckpt_dir, step)
  config = ml_collections.ConfigDict(metadata["config"])
  devices = None
  if not on_mesh:
    config.mesh.data = config.mesh.fsdp = config.mesh.tensor = 1
    devices = jax.devices()[:1]
  info = DatasetInfo.from_metadata(metadata["data"])
  setup = step_lib.build(config, info, metadata["data"], devices=devices)
  manager = checkpoint_lib.Checkpointer(ckpt_dir, save_every=1)
  try:
    state = manager.restore(step, setup.abstract_state, None)
  finally:
    manager.close()
  return Restored(step=step, config=config, metadata=metadata, setup=setup,
                  params=state.params)
