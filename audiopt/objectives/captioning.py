"""Captioning, CapPa-style: autoregressive and parallel caption prediction.

A transformer decoder cross-attends to the encoder frames and predicts the
strong caption `caption_ids` = [BOS w1 .. wn EOS PAD ..] (targets: the ids
after BOS, scored up to and including EOS). Each training batch is one of
(Tschannen et al. 2023, "Image captioners are scalable vision learners too"):

  autoregressive  (probability `ar_fraction`, 0.25 by default)
                  inputs BOS w1 .. w(n-1) .., causal self-attention,
                  teacher forcing;
  parallel        (otherwise) every input is [MASK], no causal mask: all
                  tokens at once from the audio alone, which pushes the
                  work into the encoder.

All input positions are visible in the parallel mode (padding included), so
the decoder cannot count the caption's length. Loss: cross-entropy with
label smoothing 0.1 averaged over target tokens. Evaluation (train=False)
reports both modes and their `ar_fraction` mixture as the loss.

Predict: `generate_captions(encoded)` -> token ids [B, S] (greedy or beam
search, autoregressive); the tokenizer decodes them.
"""

import flax.linen as nn
import jax
import jax.numpy as jnp

from audiopt.models import decoder as decoder_lib
from audiopt.objectives import base
from audiopt.objectives import text_inputs
from audiopt.objectives import token_losses


class Captioning(base.Objective):
  """CapPa caption decoder and loss (see module doc).

  Attributes:
    decoder: a `TransformerDecoder` over the text vocabulary.
    bos_id: first input token of autoregressive decoding.
    eos_id: token that ends a caption.
    pad_id: filler after EOS.
    mask_id: the input token of parallel prediction.
    ar_fraction: probability that a training batch is autoregressive.
    label_smoothing: eps of the smoothed target distribution.
  """

  decoder: nn.Module
  bos_id: int
  eos_id: int
  pad_id: int
  mask_id: int
  ar_fraction: float = 0.25
  label_smoothing: float = 0.1

  def _mode_loss(self, encoded, ids: jax.Array, mask: jax.Array,
                 weights: jax.Array, causal: bool, train: bool):
    """(loss, accuracy) of one mode with teacher forcing."""
    inputs, input_mask = ids[:, :-1], mask[:, :-1]
    if not causal:
      inputs = jnp.full_like(inputs, self.mask_id)
      input_mask = jnp.ones_like(input_mask)
    logits = self.decoder(inputs, input_mask, encoded.frames, encoded.mask,
                          causal=causal, train=train)
    return token_losses.token_cross_entropy(logits, ids[:, 1:], weights,
                                            self.label_smoothing)

  def __call__(self, encoded, batch, *, train: bool):
    text_inputs.check_caption_batch(batch)
    ids, mask = batch["caption_ids"], batch["caption_mask"]
    valid = batch.get("valid", jnp.ones(ids.shape[:1], bool))
    weights = mask[:, 1:] & valid[:, None]

    def run(causal):
      return self._mode_loss(encoded, ids, mask, weights, causal, train)

    if not train:
      ar_loss, ar_acc = run(True)
      par_loss, par_acc = run(False)
      loss = self.ar_fraction * ar_loss + (1 - self.ar_fraction) * par_loss
      return loss, {"caption_loss": loss, "caption_ar_loss": ar_loss,
                    "caption_parallel_loss": par_loss,
                    "caption_ar_accuracy": ar_acc,
                    "caption_parallel_accuracy": par_acc}
    if self.ar_fraction <= 0.0 or self.ar_fraction >= 1.0:
      causal = self.ar_fraction >= 1.0
      loss, acc = run(causal)
      is_ar = jnp.asarray(causal)
    else:
      is_ar = jax.random.uniform(self.make_rng("dropout")) < self.ar_fraction
      loss, acc = nn.cond(
          is_ar,
          lambda m: m._mode_loss(encoded, ids, mask, weights, True, True),
          lambda m: m._mode_loss(encoded, ids, mask, weights, False, True),
          self)
    return loss, {"caption_loss": loss, "caption_accuracy": acc,
                  "caption_autoregressive": is_ar.astype(jnp.float32)}

  def generate_captions(self, encoded, max_len: int | None = None,
                        beam_size: int = 1,
                        length_penalty: float = 0.0) -> jax.Array:
    """Autoregressive captions of encoder frames.

    Args:
      encoded: `EncoderOutput` with frames [B, T', D] and mask [B, T'].
      max_len: tokens to generate; default: the caption width minus BOS.
      beam_size: 1: greedy; more: beam search.
      length_penalty: beam search's alpha of log p / length**alpha.

    Returns:
      [B, max_len] int32 token ids (no BOS), each row ending with EOS then
      pad ids, or filling max_len without EOS.
    """
    decoder = self.decoder.clone(parent=None)
    params = self.decoder.variables["params"]
    max_len = max_len or decoder.max_len - 1
    kw = dict(bos_id=self.bos_id, eos_id=self.eos_id, max_len=max_len,
              pad_id=self.pad_id)
    if beam_size == 1:
      return decoder.greedy_decode(params, encoded.frames, encoded.mask, **kw)
    tokens, _ = decoder.beam_search(params, encoded.frames, encoded.mask,
                                    beam_size=beam_size,
                                    length_penalty=length_penalty, **kw)
    return tokens


@base.register_objective("captioning")
def _build(cfg, info: base.DatasetInfo) -> Captioning:
  del info  # Captions only.
  vocab_size, max_len = text_inputs.text_settings(cfg)
  ids = text_inputs.special_ids(cfg)
  ar_fraction = float(cfg.get("ar_fraction", 0.25))
  smoothing = float(cfg.get("label_smoothing", 0.1))
  if not 0.0 <= ar_fraction <= 1.0:
    raise ValueError(f"objective.ar_fraction={ar_fraction} must be in [0, 1]")
  if not 0.0 <= smoothing < 1.0:
    raise ValueError(f"objective.label_smoothing={smoothing} must be in "
                     "[0, 1)")
  for name, value in ids.items():
    if not 0 <= value < vocab_size:
      raise ValueError(f"config text.{name}_id={value} is outside the "
                       f"vocabulary [0, {vocab_size})")
  decoder = decoder_lib.build_decoder(cfg.get("decoder_size", "base"),
                                      vocab_size=vocab_size, max_len=max_len)
  return Captioning(decoder=decoder, bos_id=ids["bos"], eos_id=ids["eos"],
                    pad_id=ids["pad"], mask_id=ids["mask"],
                    ar_fraction=ar_fraction, label_smoothing=smoothing)
