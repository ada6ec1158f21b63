"""Audio-text contrastive objectives: "contrastive" (CLAP) and "siglip".

Two towers meet in a shared space of width `embed_dim` (1024 in the paper):

  audio: encoder frames [B, T', D] -> mean over valid frames -> Dense
  text:  caption_ids [B, L] -> BERT-style text encoder -> pooled [B, Dt]
         -> Dense

and the L2-normalised embeddings of a batch are scored against each other
across the whole global batch (`contrastive_losses`):

  "contrastive"  symmetric InfoNCE, learnable temperature init 0.07
  "siglip"       sigmoid pairwise loss, temperature init 10, bias init -10;
                 `objective.chunked` selects the ring-of-devices form

Predict methods for evaluators (retrieval, zero-shot):
  audio_embedding(encoded)        -> [B, embed_dim], unit norm
  text_embedding(ids, mask)       -> [B, embed_dim], unit norm
(through `AudioModel.predict` and `AudioModel.predict_text`).

Batch keys: `caption_ids` int32 [B, L], `caption_mask` bool [B, L] (the
pipeline makes them when given a tokenizer), `valid` [B].
"""

import flax.linen as nn
import jax
import jax.numpy as jnp

from audiopt.objectives import base
from audiopt.objectives import contrastive_losses as losses
from audiopt.objectives import text_inputs

LOSSES = ("info_nce", "siglip")


def _dense(features: int, name: str) -> nn.Dense:
  return nn.Dense(
      features, dtype=jnp.float32, name=name,
      kernel_init=nn.with_logical_partitioning(
          nn.initializers.xavier_uniform(), ("embed", "mlp")),
      bias_init=nn.with_logical_partitioning(nn.initializers.zeros_init(),
                                             ("mlp",)))


def _scalar(init: float):
  return nn.with_logical_partitioning(nn.initializers.constant(init), ())


class ContrastiveObjective(base.Objective):
  """Two towers and a contrastive loss (see module doc).

  Attributes:
    text_encoder: the text tower, `(ids [B, L], mask [B, L], train) ->
      (hidden [B, L, Dt], pooled [B, Dt])`.
    loss: "info_nce" (CLAP) or "siglip".
    embed_dim: width of the shared space.
    chunked: siglip only: the ring form (`siglip_loss_chunked`).
  """

  text_encoder: nn.Module
  loss: str = "info_nce"
  embed_dim: int = 1024
  chunked: bool = False

  def setup(self):
    if self.loss not in LOSSES:
      raise ValueError(f"loss {self.loss!r}; valid: {LOSSES}")
    self.audio_proj = _dense(self.embed_dim, "audio_proj")
    self.text_proj = _dense(self.embed_dim, "text_proj")
    init = (losses.INFO_NCE_INIT_LOG_SCALE if self.loss == "info_nce"
            else losses.SIGLIP_INIT_LOG_SCALE)
    self.log_scale = self.param("log_scale", _scalar(init), ())
    if self.loss == "siglip":
      self.bias = self.param("bias", _scalar(losses.SIGLIP_INIT_BIAS), ())

  def _audio(self, encoded) -> jax.Array:
    pooled = base.mean_over_frames(encoded.frames.astype(jnp.float32),
                                   encoded.mask)
    return self.audio_proj(pooled)

  def _text(self, ids: jax.Array, mask: jax.Array, train: bool) -> jax.Array:
    _, pooled = self.text_encoder(ids, mask, train=train)
    return self.text_proj(pooled.astype(jnp.float32))

  def audio_embedding(self, encoded) -> jax.Array:
    """Unit-norm audio embeddings [B, embed_dim] of encoder frames."""
    return losses.l2_normalize(self._audio(encoded))

  def text_embedding(self, ids: jax.Array, mask: jax.Array) -> jax.Array:
    """Unit-norm text embeddings [B, embed_dim] of token ids/mask [B, L]."""
    return losses.l2_normalize(self._text(ids, mask, train=False))

  def __call__(self, encoded, batch, *, train: bool):
    text_inputs.check_caption_batch(batch)
    audio = self._audio(encoded)
    text = self._text(batch["caption_ids"], batch["caption_mask"], train)
    valid = batch.get("valid", jnp.ones(audio.shape[:1], bool))
    metrics = {}
    if self.loss == "info_nce":
      loss = losses.info_nce_loss(audio, text, self.log_scale, valid)
      metrics["logit_scale"] = jnp.exp(
          jnp.clip(self.log_scale, 0.0, losses.MAX_LOG_SCALE))
    else:
      fn = losses.siglip_loss_chunked if self.chunked else losses.siglip_loss
      loss = fn(audio, text, self.log_scale, self.bias, valid)
      metrics["logit_scale"] = jnp.exp(self.log_scale)
      metrics["logit_bias"] = self.bias
    metrics[f"{self.loss}_loss"] = loss
    return loss, metrics


def _build(cfg, loss: str) -> ContrastiveObjective:
  if loss == "info_nce" and cfg.get("chunked", False):
    raise ValueError("objective.chunked applies to siglip only; the InfoNCE "
                     "softmax needs every row's logits")
  embed_dim = int(cfg.get("embed_dim", 1024))
  if embed_dim < 1:
    raise ValueError(f"objective.embed_dim={embed_dim} must be >= 1")
  return ContrastiveObjective(
      text_encoder=text_inputs.build_text_encoder(cfg),
      loss=loss, embed_dim=embed_dim,
      chunked=bool(cfg.get("chunked", False)))


@base.register_objective("contrastive")
def _build_contrastive(cfg, info: base.DatasetInfo) -> ContrastiveObjective:
  del info  # Captions only.
  return _build(cfg, "info_nce")


@base.register_objective("siglip")
def _build_siglip(cfg, info: base.DatasetInfo) -> ContrastiveObjective:
  del info  # Captions only.
  return _build(cfg, "siglip")
