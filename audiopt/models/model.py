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

  def features(self, audio: jax.Array, audio_mask: jax.Array, *,
               train: bool = False) -> tuple[jax.Array, jax.Array]:
    """Log-mel frames [B, T, F] and their mask [B, T] (SpecAugment if train)."""
    feats, feat_mask = frontend.fbank(audio, audio_mask, self.fbank_options)
    if train and self.spec_augment is not None:
      feats = frontend.spec_augment(self.make_rng("augment"), feats, feat_mask,
                                    self.spec_augment)
    return feats, feat_mask

  def encode(self, feats: jax.Array, feat_mask: jax.Array, *,
             train: bool = False,
             batch_count: jax.Array | None = None) -> EncoderOutput:
    """Runs the encoder on log-mel frames [B, T, F] with mask [B, T]."""
    if getattr(self.encoder, "takes_batch_count", False):
      return self.encoder(feats, feat_mask, train=train,
                          batch_count=batch_count)
    return self.encoder(feats, feat_mask, train=train)

  def embed(self, audio: jax.Array, audio_mask: jax.Array, *,
            train: bool = False,
            batch_count: jax.Array | None = None) -> EncoderOutput:
    """Encodes waveforms.

    Args:
      audio: [B, N] float32 waveform at the front end's sample rate.
      audio_mask: [B, N] bool, True on real samples.
      train: enables SpecAugment (rng "augment") and dropout (rng "dropout").
      batch_count: [] training progress for encoders with training schedules
        (`takes_batch_count`, e.g. Zipformer's dropout and layer-skip warm-up);
        ignored by the others. None means "fully trained".

    Returns:
      EncoderOutput with frames [B, T', D] and mask [B, T'].
    """
    feats, feat_mask = self.features(audio, audio_mask, train=train)
    return self.encode(feats, feat_mask, train=train, batch_count=batch_count)

  def __call__(self, batch: dict[str, jax.Array], *, train: bool,
               batch_count: jax.Array | None = None
               ) -> tuple[jax.Array, dict[str, jax.Array]]:
    """Returns (scalar loss, metrics) of the objective on one batch.

    An objective that defines `mask_features(rng, feats [B, T, F],
    mask [B, T]) -> (feats_in [B, T, F], extras)` (masked prediction)
    changes the encoder's input; its `extras` (e.g. the clean targets) are
    added to the batch it receives. Its rng is "augment" in training and a
    fixed key otherwise, so evaluation losses are deterministic.
    """
    feats, feat_mask = self.features(batch["audio"], batch["audio_mask"],
                                     train=train)
    mask_features = getattr(self.objective, "mask_features", None)
    if mask_features is not None:
      rng = self.make_rng("augment") if train else jax.random.key(0)
      feats, extras = mask_features(rng, feats, feat_mask)
      batch = {**batch, **extras}
    encoded = self.encode(feats, feat_mask, train=train,
                          batch_count=batch_count)
    return self.objective(encoded, batch, train=train)

  def predict(self, audio: jax.Array, audio_mask: jax.Array, method: str,
              **kwargs: Any) -> Any:
    """Runs the objective's predict `method` (e.g. "tag_scores") on audio."""
    encoded = self.embed(audio, audio_mask, train=False)
    return getattr(self.objective, method)(encoded, **kwargs)

  def predict_text(self, method: str, *args: Any, **kwargs: Any) -> Any:
    """Runs an objective predict `method` that needs no audio.

    For example `model.apply(variables, "text_embedding", ids, mask,
    method="predict_text")` embeds captions with a contrastive text tower.
    """
    return getattr(self.objective, method)(*args, **kwargs)


def dummy_batch(batch_size: int, num_samples: int,
                caption_len: int = 8) -> dict[str, jax.Array]:
  """A zero batch with the pipeline's numeric keys, for shape inference.

  Includes `caption_ids` [B, caption_len] int32 and `caption_mask` [B,
  caption_len] bool, which the pipeline makes only when given a tokenizer.
  """
  return {
      "audio": jnp.zeros((batch_size, num_samples), jnp.float32),
      "audio_mask": jnp.ones((batch_size, num_samples), bool),
      "tags": -jnp.ones((batch_size, 1), jnp.int32),
      "weak_labels": -jnp.ones((batch_size, 1), jnp.int32),
      "label_ids": -jnp.ones((batch_size, 1), jnp.int32),
      "caption_ids": jnp.zeros((batch_size, caption_len), jnp.int32),
      "caption_mask": jnp.ones((batch_size, caption_len), bool),
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
      objective=objectives.build_objective(objective_config(config), info))


def objective_config(config) -> dict[str, Any]:
  """The objective section as a dict, with the `text` and `data` sections.

  Objectives with a text tower or decoder read the tokenizer's vocabulary
  size, special ids and caption length from "text"; PAR reads the tag
  sequence width (`max_tags`) from "data".
  """
  cfg = dict(config.objective.to_dict())
  for section in ("text", "data"):
    if section in config:
      cfg[section] = config[section].to_dict()
  return cfg
