"""The whole pre-training model: front end -> encoder -> objective.

`AudioModel` is what the trainer initialises and differentiates. Its
`__call__` returns the objective's loss; `embed` returns the encoder frames
that every evaluator uses; `predict` forwards any objective predict method
(for example "tag_scores") on raw audio.
"""

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from audiopt.audio import frontend
from audiopt.models.outputs import EncoderOutput


class AudioModel(nn.Module):
  """Log-mel front end, encoder and objective in one module.

  Attributes:
    fbank_options: the Kaldi-compatible log-mel settings.
    spec_augment: SpecAugment settings, or None to train without it.
    encoder: an encoder module honouring `EncoderOutput`.
    objective: an `audiopt.objectives.Objective`.
  """

  fbank_options: frontend.FbankOptions
  spec_augment: frontend.SpecAugmentOptions | None
  encoder: nn.Module
  objective: nn.Module

  def embed(self, audio: jax.Array, audio_mask: jax.Array, *,
            train: bool = False) -> EncoderOutput:
    """Encodes waveforms.

    Args:
      audio: [B, N] float32 waveform at the front end's sample rate.
      audio_mask: [B, N] bool, True on real samples.
      train: enables SpecAugment (rng "augment") and dropout (rng "dropout").

    Returns:
      EncoderOutput with frames [B, T', D] and mask [B, T'].
    """
    feats, feat_mask = frontend.fbank(audio, audio_mask, self.fbank_options)
    if train and self.spec_augment is not None:
      feats = frontend.spec_augment(self.make_rng("augment"), feats, feat_mask,
                                    self.spec_augment)
    return self.encoder(feats, feat_mask, train=train)

  def __call__(self, batch: dict[str, jax.Array], *, train: bool
               ) -> tuple[jax.Array, dict[str, jax.Array]]:
    """Returns (scalar loss, metrics) of the objective on one batch."""
    encoded = self.embed(batch["audio"], batch["audio_mask"], train=train)
    return self.objective(encoded, batch, train=train)

  def predict(self, audio: jax.Array, audio_mask: jax.Array, method: str,
              **kwargs: Any) -> Any:
    """Runs the objective's predict `method` (e.g. "tag_scores") on audio."""
    encoded = self.embed(audio, audio_mask, train=False)
    return getattr(self.objective, method)(encoded, **kwargs)


def dummy_batch(batch_size: int, num_samples: int) -> dict[str, jax.Array]:
  """A zero batch with the pipeline's numeric keys, for shape inference."""
  return {
      "audio": jnp.zeros((batch_size, num_samples), jnp.float32),
      "audio_mask": jnp.ones((batch_size, num_samples), bool),
      "tags": -jnp.ones((batch_size, 1), jnp.int32),
      "weak_labels": -jnp.ones((batch_size, 1), jnp.int32),
      "label_ids": -jnp.ones((batch_size, 1), jnp.int32),
      "valid": jnp.ones((batch_size,), bool),
  }


def build_model(config, info) -> AudioModel:
  """Builds the model of an experiment config.

  Args:
    config: the experiment ConfigDict (sections frontend, encoder, objective).
    info: `audiopt.objectives.DatasetInfo` of the training records.

  Returns:
    An unbound `AudioModel`.
  """
  from audiopt import objectives  # pylint: disable=g-import-not-at-top
  from audiopt.models import registry  # pylint: disable=g-import-not-at-top

  fe = config.frontend
  augment = (frontend.SpecAugmentOptions.from_config(fe.spec_augment)
             if fe.get("use_spec_augment", True) else None)
  return AudioModel(
      fbank_options=frontend.FbankOptions.from_config(fe.fbank),
      spec_augment=augment,
      encoder=registry.build_encoder(config.encoder),
      objective=objectives.build_objective(config.objective, info))
