"""PAR: parallel prediction of the tag set as a token sequence.

Tags are their own token vocabulary: ids 0..2 are the specials PAD, MASK and
EOS, and UTS tag k is token k + 3. A clip's tags, deduplicated and in the
canonical (vocabulary id) order, make the target sequence

  t_1 + 3, ..., t_n + 3, EOS, PAD, ...      width S = max_tags + 1

A transformer decoder cross-attends to the encoder frames; every input
token is [MASK] and there is no causal mask, so all positions are predicted
at once (PAPER.md section 3: a set, so no order bias from autoregression).
The loss is the cross-entropy on the tag tokens and the EOS that closes
them, averaged over those tokens (no label smoothing).

Predict: `predict_tags(encoded)` -> tag set [B, K] bool (tokens before the
first predicted EOS); `tag_scores(encoded)` -> [B, K], the highest
probability a tag gets at any position (for ranking metrics).
"""

import flax.linen as nn
import jax
import jax.numpy as jnp

from audiopt.models import decoder as decoder_lib
from audiopt.objectives import base
from audiopt.objectives import token_losses

PAD_ID, MASK_ID, EOS_ID = 0, 1, 2
NUM_SPECIALS = 3


def tag_sequence(tags: jax.Array) -> tuple[jax.Array, jax.Array]:
  """Canonical tag token sequences of padded tag ids.

  Args:
    tags: [B, N] int tag ids, padded with -1 (any order, repeats allowed).

  Returns:
    tokens [B, N + 1] int32: the distinct tags in increasing id order as
    tokens (id + NUM_SPECIALS), then EOS, then PAD; and weights [B, N + 1]
    bool, True on the tag tokens and the EOS.
  """
  b, n = tags.shape
  big = jnp.iinfo(jnp.int32).max
  ids = jnp.sort(jnp.where(tags >= 0, tags, big).astype(jnp.int32), axis=1)
  repeat = jnp.pad(ids[:, 1:] == ids[:, :-1], ((0, 0), (1, 0)))
  ids = jnp.sort(jnp.where(repeat, big, ids), axis=1)
  count = jnp.sum(ids < big, axis=1)
  tokens = jnp.where(ids < big, ids + NUM_SPECIALS, PAD_ID)
  tokens = jnp.pad(tokens, ((0, 0), (0, 1)), constant_values=PAD_ID)
  tokens = tokens.at[jnp.arange(b), count].set(EOS_ID)
  weights = jnp.arange(n + 1)[None, :] <= count[:, None]
  return tokens, weights


class ParallelTagDecoding(base.Objective):
  """PAR decoder and loss (see module doc).

  Attributes:
    decoder: a `TransformerDecoder` over K + NUM_SPECIALS tokens.
    num_tags: K, the UTS vocabulary size.
  """

  decoder: nn.Module
  num_tags: int

  def _logits(self, encoded, length: int, train: bool) -> jax.Array:
    b = encoded.frames.shape[0]
    inputs = jnp.full((b, length), MASK_ID, jnp.int32)
    return self.decoder(inputs, jnp.ones((b, length), bool), encoded.frames,
                        encoded.mask, causal=False, train=train)

  def __call__(self, encoded, batch, *, train: bool):
    tokens, weights = tag_sequence(batch["tags"])
    valid = batch.get("valid", jnp.ones(tokens.shape[:1], bool))
    logits = self._logits(encoded, tokens.shape[1], train)
    loss, acc = token_losses.token_cross_entropy(
        logits, tokens, weights & valid[:, None])
    return loss, {"par_loss": loss, "par_token_accuracy": acc}

  def _default_length(self) -> int:
    return self.decoder.max_len

  def tag_scores(self, encoded, length: int | None = None) -> jax.Array:
    """[B, K] max over positions of each tag token's probability."""
    logits = self._logits(encoded, length or self._default_length(), False)
    probs = jax.nn.softmax(logits, axis=-1)[..., NUM_SPECIALS:]
    return probs.max(axis=1)

  def predict_tags(self, encoded, length: int | None = None) -> jax.Array:
    """Predicted tag sets [B, K] bool: tag tokens before the first EOS."""
    logits = self._logits(encoded, length or self._default_length(), False)
    tokens = jnp.argmax(logits, axis=-1)
    before_eos = jnp.cumsum(tokens == EOS_ID, axis=1) == 0
    ids = jnp.where(before_eos & (tokens >= NUM_SPECIALS),
                    tokens - NUM_SPECIALS, -1)
    return base.ids_to_multi_hot(ids, self.num_tags) > 0


@base.register_objective("par")
def _build(cfg, info: base.DatasetInfo) -> ParallelTagDecoding:
  if info.num_tags <= 0:
    raise ValueError("objective 'par' needs the UTS tag vocabulary in the "
                     "training records' metadata")
  data = cfg.get("data") or {}
  if "max_tags" not in data:
    raise ValueError("objective 'par' needs data.max_tags (build the model "
                     "with model.build_model, which passes it)")
  decoder = decoder_lib.build_decoder(
      cfg.get("decoder_size", "base"),
      vocab_size=info.num_tags + NUM_SPECIALS,
      max_len=int(data["max_tags"]) + 1)
  return ParallelTagDecoding(decoder=decoder, num_tags=info.num_tags)
