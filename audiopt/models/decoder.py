"""Transformer decoder over encoder frames: captions and tag sequences.

tokens [B, L] -> token + learned position embeddings -> dropout ->
num_layers x pre-LN blocks
  x += SelfAttn(LN(x))    causal mask in "causal" mode; none in "parallel"
                          mode, where the caller feeds [MASK] tokens (CapPa,
                          PAR)
  x += CrossAttn(LN(x), memory)   keys: encoder frames with their mask
  x += MLP(LN(x))
-> LN -> logits [B, L, V] (output projection tied to the token embedding,
or a separate Dense).

Incremental decoding keeps an explicit `DecodeCache` pytree (self-attention
keys/values of the positions decoded so far, cross-attention keys/values
computed once from the memory), so one step costs O(L) instead of O(L^2).
`greedy_search` and `beam_search` are jit-friendly loops of fixed shapes over
any step function; `TransformerDecoder.greedy_decode` / `.beam_search` run
them on the decoder and are jit-compiled.

Parameters:
  token_embed/embedding [V, D] ("vocab", "embed"); position_embeddings [P, D]
  layer_i/{norm_self, norm_cross, norm_mlp}/{scale, bias}
  layer_i/{self_attn, cross_attn}/{query, key, value}/kernel [Din, H, Dh]
  layer_i/{self_attn, cross_attn}/out/kernel [H, Dh, D]
  layer_i/mlp/{wi, wo}; norm_out
  logits_bias [V] (tied) or logits/{kernel [D, V], bias} (untied)
"""

from collections.abc import Callable
import functools
from typing import Any, ClassVar

import flax.struct
import flax.linen as nn
import jax
import jax.numpy as jnp

from audiopt.models import layers

Dtype = Any
# (tokens [N] int32, index int32 scalar, state) -> (logits [N, V], state).
StepFn = Callable[[jax.Array, jax.Array, Any], tuple[jax.Array, Any]]

SIZES: dict[str, dict[str, Any]] = {
    "tiny": dict(num_layers=2, width=64, num_heads=4, mlp_dim=256),
    # The paper's caption / PAR decoder.
    "base": dict(num_layers=6, width=768, num_heads=8, mlp_dim=3072),
}
BATCH_TIME_VOCAB = ("batch", "time", "vocab")
_EMBED_INIT = nn.initializers.normal(stddev=0.02)


@flax.struct.dataclass
class DecodeCache:
  """What incremental decoding keeps between steps (one entry per layer).

  N is the number of sequences decoded at once (batch x beams).

  Attributes:
    self_keys: per layer [N, S, H, Dh] keys of positions 0..S-1 (S = the
      longest decode); entries beyond the current index are stale.
    self_values: per layer [N, S, H, Dh] values.
    cross_keys: per layer [N, T, H, Dh] keys of the memory frames.
    cross_values: per layer [N, T, H, Dh] values of the memory frames.
    memory_mask: [N, T] bool, True on valid memory frames.
  """

  self_keys: tuple[jax.Array, ...]
  self_values: tuple[jax.Array, ...]
  cross_keys: tuple[jax.Array, ...]
  cross_values: tuple[jax.Array, ...]
  memory_mask: jax.Array


class Attention(nn.Module):
  """Multi-head attention whose key/value projection is a separate method.

  Attributes:
    num_heads: heads H.
    width: query/output width D (divisible by H).
    dropout_rate: dropout on the attention weights.
    dtype: compute dtype (softmax in float32).
    param_dtype: parameter dtype.
  """

  num_heads: int
  width: int
  dropout_rate: float = 0.0
  dtype: Dtype = jnp.float32
  param_dtype: Dtype = jnp.float32

  def setup(self):
    if self.width % self.num_heads:
      raise ValueError(f"width {self.width} is not divisible by "
                       f"{self.num_heads} heads")
    head_dim = self.width // self.num_heads
    kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
    proj = lambda: layers.DenseGeneral(  # pylint: disable=g-long-lambda
        (self.num_heads, head_dim), ("embed", "heads", "kv"), **kw)
    self.query, self.key, self.value = proj(), proj(), proj()
    self.out = layers.DenseGeneral(self.width, ("heads", "kv", "embed"),
                                   axis=(-2, -1), **kw)
    self.dropout = nn.Dropout(self.dropout_rate)

  def keys_values(self, x: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Projects x [B, S, Dx] to keys and values [B, S, H, Dh]."""
    k = nn.with_logical_constraint(self.key(x), layers.BATCH_TIME_HEADS_KV)
    v = nn.with_logical_constraint(self.value(x), layers.BATCH_TIME_HEADS_KV)
    return k, v

  def __call__(self, x: jax.Array, keys: jax.Array, values: jax.Array,
               mask: jax.Array, train: bool = False) -> jax.Array:
    """Attends queries from x to given keys/values.

    Args:
      x: [B, Lq, D] query inputs.
      keys: [B, S, H, Dh] from `keys_values`.
      values: [B, S, H, Dh] from `keys_values`.
      mask: [B or 1, Lq or 1, S] bool, True where a query may see a key.
      train: enables dropout on the weights.

    Returns:
      [B, Lq, D] in `dtype`.
    """
    q = nn.with_logical_constraint(self.query(x), layers.BATCH_TIME_HEADS_KV)
    q = q * jnp.asarray(q.shape[-1] ** -0.5, q.dtype)
    logits = jnp.einsum("bqhd,bkhd->bhqk", q, keys).astype(jnp.float32)
    # A finite floor keeps rows with no visible key NaN-free.
    logits = jnp.where(mask[:, None], logits, jnp.finfo(jnp.float32).min)
    weights = jax.nn.softmax(logits, axis=-1).astype(self.dtype)
    weights = self.dropout(weights, deterministic=not train)
    ctx = jnp.einsum("bhqk,bkhd->bqhd", weights, values)
    ctx = nn.with_logical_constraint(ctx, layers.BATCH_TIME_HEADS_KV)
    return nn.with_logical_constraint(self.out(ctx), layers.BATCH_TIME_EMBED)


class DecoderBlock(nn.Module):
  """Pre-LN block: self-attention, cross-attention to memory, MLP.

  Attributes:
    num_heads: attention heads.
    width: model width D.
    mlp_dim: MLP hidden width.
    dropout_rate: dropout on residual branches and inside the MLP.
    attention_dropout_rate: dropout on attention weights.
    dtype: compute dtype.
    param_dtype: parameter dtype.
  """

  num_heads: int
  width: int
  mlp_dim: int
  dropout_rate: float = 0.1
  attention_dropout_rate: float = 0.0
  dtype: Dtype = jnp.float32
  param_dtype: Dtype = jnp.float32

  def setup(self):
    kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
    self.norm_self = layers.LayerNorm(**kw)
    self.norm_cross = layers.LayerNorm(**kw)
    self.norm_mlp = layers.LayerNorm(**kw)
    self.self_attn = Attention(self.num_heads, self.width,
                               self.attention_dropout_rate, **kw)
    self.cross_attn = Attention(self.num_heads, self.width,
                                self.attention_dropout_rate, **kw)
    self.mlp = layers.Mlp(self.mlp_dim, self.dropout_rate, **kw)
    self.dropout = nn.Dropout(self.dropout_rate)

  def __call__(self, x: jax.Array, self_mask: jax.Array, memory: jax.Array,
               memory_mask: jax.Array, train: bool = False) -> jax.Array:
    """Maps x [B, L, D] to [B, L, D].

    Args:
      x: [B, L, D] token features.
      self_mask: [B, L, L] bool, True where query i may see token j.
      memory: [B, T, Dm] encoder frames.
      memory_mask: [B, T] bool, True on valid frames.
      train: enables dropout.

    Returns:
      [B, L, D].
    """
    cross_k, cross_v = self.cross_keys_values(memory)
    h = self.norm_self(x)
    k, v = self.self_attn.keys_values(h)
    x = x + self._drop(self.self_attn(h, k, v, self_mask, train), train)
    return self._cross_and_mlp(x, cross_k, cross_v, memory_mask[:, None],
                               train)

  def cross_keys_values(self, memory: jax.Array) -> tuple[jax.Array,
                                                          jax.Array]:
    """Cross-attention keys and values [B, T, H, Dh] of memory [B, T, Dm]."""
    return self.cross_attn.keys_values(memory)

  def step(self, x: jax.Array, index: jax.Array, keys: jax.Array,
           values: jax.Array, cross_k: jax.Array, cross_v: jax.Array,
           memory_mask: jax.Array
           ) -> tuple[jax.Array, jax.Array, jax.Array]:
    """One causal decoding step at position `index`.

    Args:
      x: [N, 1, D] features of the token at `index`.
      index: int32 scalar position.
      keys: [N, S, H, Dh] self-attention key cache.
      values: [N, S, H, Dh] self-attention value cache.
      cross_k: [N, T, H, Dh] memory keys.
      cross_v: [N, T, H, Dh] memory values.
      memory_mask: [N, T] bool.

    Returns:
      ([N, 1, D] output, updated keys, updated values).
    """
    h = self.norm_self(x)
    k, v = self.self_attn.keys_values(h)
    keys = jax.lax.dynamic_update_slice_in_dim(keys, k.astype(keys.dtype),
                                               index, axis=1)
    values = jax.lax.dynamic_update_slice_in_dim(
        values, v.astype(values.dtype), index, axis=1)
    visible = (jnp.arange(keys.shape[1]) <= index)[None, None, :]
    x = x + self.self_attn(h, keys, values, visible)
    x = self._cross_and_mlp(x, cross_k, cross_v, memory_mask[:, None], False)
    return x, keys, values

  def _drop(self, y: jax.Array, train: bool) -> jax.Array:
    return self.dropout(y, deterministic=not train)

  def _cross_and_mlp(self, x: jax.Array, cross_k: jax.Array,
                     cross_v: jax.Array, cross_mask: jax.Array,
                     train: bool) -> jax.Array:
    h = self.cross_attn(self.norm_cross(x), cross_k, cross_v, cross_mask,
                        train)
    x = x + self._drop(h, train)
    x = x + self._drop(self.mlp(self.norm_mlp(x), train), train)
    return nn.with_logical_constraint(x, layers.BATCH_TIME_EMBED)


class TransformerDecoder(nn.Module):
  """Token decoder cross-attending to encoder frames.

  Attributes:
    vocab_size: output (and input) token ids V.
    max_len: position table rows: the longest token sequence.
    num_layers: blocks.
    width: model width D.
    num_heads: attention heads (divide D).
    mlp_dim: MLP hidden width.
    dropout_rate: dropout after the embeddings, on residual branches and in
      MLPs.
    attention_dropout_rate: dropout on attention weights.
    tie_embeddings: logits = LN(x) @ token_embedding^T + bias; otherwise a
      separate Dense(V) named "logits".
    dtype: compute dtype; logits come out in float32.
    param_dtype: parameter dtype.
    remat: rematerialise each block in the backward pass.
    remat_policy: a `jax.checkpoint_policies` name.
  """

  vocab_size: int
  max_len: int = 128
  num_layers: int = 6
  width: int = 768
  num_heads: int = 8
  mlp_dim: int = 3072
  dropout_rate: float = 0.1
  attention_dropout_rate: float = 0.0
  tie_embeddings: bool = True
  dtype: Dtype = jnp.float32
  param_dtype: Dtype = jnp.float32
  remat: bool = False
  remat_policy: str = "dots_with_no_batch_dims_saveable"

  SIZES: ClassVar[dict[str, dict[str, Any]]] = SIZES

  def setup(self):
    kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
    self.token_embed = nn.Embed(
        self.vocab_size, self.width,
        embedding_init=nn.with_logical_partitioning(_EMBED_INIT,
                                                    ("vocab", "embed")),
        **kw)
    self.position_embeddings = self.param(
        "position_embeddings",
        nn.with_logical_partitioning(_EMBED_INIT, (None, "embed")),
        (self.max_len, self.width), self.param_dtype)
    self.embed_dropout = nn.Dropout(self.dropout_rate)
    block_cls = self._block_class()
    self.blocks = [
        block_cls(self.num_heads, self.width, self.mlp_dim,
                  self.dropout_rate, self.attention_dropout_rate,
                  name=f"layer_{i}", **kw)
        for i in range(self.num_layers)]
    self.norm_out = layers.LayerNorm(**kw)
    if self.tie_embeddings:
      self.logits_bias = self.param(
          "logits_bias",
          nn.with_logical_partitioning(nn.initializers.zeros_init(),
                                       ("vocab",)),
          (self.vocab_size,), self.param_dtype)
    else:
      self.logits_dense = layers.DenseGeneral(
          self.vocab_size, ("embed", "vocab"), name="logits", **kw)

  def _block_class(self) -> type[nn.Module]:
    if not self.remat:
      return DecoderBlock
    policy = getattr(jax.checkpoint_policies, self.remat_policy, None)
    if policy is None:
      raise ValueError(f"unknown remat_policy {self.remat_policy!r}")
    # Linen counts `self` as argument 0, so `train` is argument 5.
    return nn.remat(DecoderBlock, policy=policy, static_argnums=(5,))

  def _embed(self, tokens: jax.Array, positions: jax.Array) -> jax.Array:
    x = self.token_embed(tokens) + positions.astype(self.dtype)
    return nn.with_logical_constraint(x, layers.BATCH_TIME_EMBED)

  def _logits(self, x: jax.Array) -> jax.Array:
    x = self.norm_out(x)
    if self.tie_embeddings:
      logits = self.token_embed.attend(x) + self.logits_bias.astype(x.dtype)
    else:
      logits = self.logits_dense(x)
    return nn.with_logical_constraint(logits.astype(jnp.float32),
                                      BATCH_TIME_VOCAB)

  def __call__(self, tokens: jax.Array, token_mask: jax.Array,
               memory: jax.Array, memory_mask: jax.Array, *, causal: bool,
               train: bool = False) -> jax.Array:
    """Predicts a token at every position.

    Args:
      tokens: [B, L] int input ids, L <= max_len: "BOS w1 .. wn" to
        predict "w1 .. wn EOS" in causal mode, [MASK] ids in parallel mode.
      token_mask: [B, L] bool, True on real input tokens; padded positions
        are never attended to.
      memory: [B, T, Dm] encoder frames.
      memory_mask: [B, T] bool, True on valid frames.
      causal: position i sees only positions <= i (autoregressive);
        otherwise every valid position sees all valid positions (parallel).
      train: enables dropout (rng "dropout").

    Returns:
      [B, L, V] float32 logits; rows of padded positions are to be ignored.
    """
    length = tokens.shape[1]
    if length > self.max_len:
      raise ValueError(f"{length} tokens exceed max_len {self.max_len}")
    x = self._embed(tokens, self.position_embeddings[None, :length])
    x = self.embed_dropout(x, deterministic=not train)
    self_mask = jnp.broadcast_to(token_mask[:, None, :],
                                 (tokens.shape[0], length, length))
    if causal:
      self_mask = self_mask & jnp.tril(jnp.ones((length, length), bool))
    for block in self.blocks:
      x = block(x, self_mask, memory, memory_mask, train)
    return self._logits(x)

  def init_cache(self, memory: jax.Array, memory_mask: jax.Array,
                 max_len: int) -> DecodeCache:
    """An empty decoding cache for `max_len` positions over `memory`.

    Args:
      memory: [N, T, Dm] encoder frames (repeated per beam for beam search).
      memory_mask: [N, T] bool.
      max_len: positions to decode (<= the model's max_len).

    Returns:
      A `DecodeCache` with zero self-attention entries and the memory's
      cross-attention keys/values.
    """
    n = memory.shape[0]
    head_dim = self.width // self.num_heads
    empty = jnp.zeros((n, max_len, self.num_heads, head_dim), self.dtype)
    cross = [block.cross_keys_values(memory) for block in self.blocks]
    return DecodeCache(
        self_keys=(empty,) * self.num_layers,
        self_values=(empty,) * self.num_layers,
        cross_keys=tuple(k for k, _ in cross),
        cross_values=tuple(v for _, v in cross),
        memory_mask=memory_mask)

  def decode_step(self, tokens: jax.Array, index: jax.Array,
                  cache: DecodeCache) -> tuple[jax.Array, DecodeCache]:
    """One causal step: the logits after the token at position `index`.

    Args:
      tokens: [N] int ids at position `index` (BOS at 0).
      index: int32 scalar position.
      cache: the cache holding positions < index.

    Returns:
      (logits [N, V] float32 for position index + 1, updated cache).
    """
    position = jax.lax.dynamic_slice_in_dim(self.position_embeddings, index,
                                            1)
    x = self._embed(tokens[:, None], position[None])
    keys, values = [], []
    for i, block in enumerate(self.blocks):
      x, k, v = block.step(x, index, cache.self_keys[i], cache.self_values[i],
                           cache.cross_keys[i], cache.cross_values[i],
                           cache.memory_mask)
      keys.append(k)
      values.append(v)
    cache = cache.replace(self_keys=tuple(keys), self_values=tuple(values))
    return self._logits(x)[:, 0], cache

  @nn.nowrap
  def greedy_decode(self, params: Any, memory: jax.Array,
                    memory_mask: jax.Array, *, bos_id: int, eos_id: int,
                    max_len: int, pad_id: int = 0) -> jax.Array:
    """Greedy autoregressive decoding (jit-compiled, KV-cached).

    Args:
      params: the "params" collection of this decoder.
      memory: [B, T, Dm] encoder frames.
      memory_mask: [B, T] bool.
      bos_id: the first input token.
      eos_id: the token that ends a sequence.
      max_len: tokens generated per sequence (<= the model's max_len).
      pad_id: filler after EOS.

    Returns:
      [B, max_len] int32 generated tokens (BOS not included): each row ends
      with its EOS then pad_id, or fills max_len without EOS.
    """
    self._check_len(max_len)
    return _greedy_decode(self, params, memory, memory_mask, bos_id=bos_id,
                          eos_id=eos_id, max_len=max_len, pad_id=pad_id)

  @nn.nowrap
  def beam_search(self, params: Any, memory: jax.Array,
                  memory_mask: jax.Array, *, bos_id: int, eos_id: int,
                  max_len: int, beam_size: int, length_penalty: float = 0.0,
                  pad_id: int = 0) -> tuple[jax.Array, jax.Array]:
    """Beam search decoding (jit-compiled, KV-cached); see `beam_search`.

    Args:
      params: the "params" collection of this decoder.
      memory: [B, T, Dm] encoder frames.
      memory_mask: [B, T] bool.
      bos_id: the first input token.
      eos_id: the token that ends a sequence.
      max_len: tokens generated per sequence (<= the model's max_len).
      beam_size: beams K per example.
      length_penalty: alpha of score = log p / length**alpha.
      pad_id: filler after EOS.

    Returns:
      tokens [B, max_len] int32 as `greedy_decode` gives, and scores [B]
      float32 of the chosen sequences.
    """
    self._check_len(max_len)
    return _beam_decode(self, params, memory, memory_mask, bos_id=bos_id,
                        eos_id=eos_id, max_len=max_len, beam_size=beam_size,
                        length_penalty=length_penalty, pad_id=pad_id)

  @nn.nowrap
  def sequence_scores(self, params: Any, memory: jax.Array,
                      memory_mask: jax.Array, tokens: jax.Array, *,
                      bos_id: int, eos_id: int,
                      length_penalty: float = 0.0) -> jax.Array:
    """Scores sequences with one teacher-forced causal pass (jit-compiled).

    Args:
      params: the "params" collection of this decoder.
      memory: [B, T, Dm] encoder frames.
      memory_mask: [B, T] bool.
      tokens: [B, S] generated tokens as `greedy_decode` returns them.
      bos_id: the first input token.
      eos_id: the token that ends a sequence.
      length_penalty: alpha of score = log p / length**alpha.

    Returns:
      [B] float32: the summed log-probabilities of the tokens up to and
      including the first EOS (all S tokens without one), divided by
      length**alpha; the same score `beam_search` maximises.
    """
    return _sequence_scores(self, params, memory, memory_mask, tokens,
                            bos_id=bos_id, eos_id=eos_id,
                            length_penalty=length_penalty)

  @nn.nowrap
  def _check_len(self, max_len: int) -> None:
    if not 1 <= max_len <= self.max_len:
      raise ValueError(f"decode max_len {max_len} must lie in "
                       f"[1, {self.max_len}] (the position table)")


def build_decoder(size: str, *, vocab_size: int, max_len: int,
                  **overrides: Any) -> TransformerDecoder:
  """A `TransformerDecoder` of a named size.

  Args:
    size: a key of SIZES ("tiny", "base" = the paper's 6 x 768, 8 heads).
    vocab_size: the tokenizer's vocabulary size.
    max_len: position table rows (the longest token sequence).
    **overrides: other `TransformerDecoder` fields (tie_embeddings, dtype,
      remat, ...); None values are ignored.

  Returns:
    An unbound `TransformerDecoder`.
  """
  if size not in SIZES:
    raise ValueError(f"unknown decoder size {size!r}; valid: {sorted(SIZES)}")
  fields = {**SIZES[size],
            **{k: v for k, v in overrides.items() if v is not None}}
  return TransformerDecoder(vocab_size=vocab_size, max_len=max_len, **fields)


# Search loops over any step function.


def _length_norm(length: jax.Array, alpha: float) -> jax.Array:
  return jnp.maximum(length, 1).astype(jnp.float32) ** alpha


def greedy_search(step_fn: StepFn, state: Any, *, batch_size: int,
                  bos_id: int, eos_id: int, max_len: int,
                  pad_id: int = 0) -> jax.Array:
  """Greedy decoding with a `lax.while_loop` of fixed shapes.

  Args:
    step_fn: (tokens [B], index, state) -> (logits [B, V], state).
    state: the step function's state (e.g. a `DecodeCache`).
    batch_size: B.
    bos_id: input token at position 0.
    eos_id: ends a sequence; the loop stops once every row has one.
    max_len: tokens to generate.
    pad_id: filler after EOS.

  Returns:
    [B, max_len] int32 generated tokens.
  """

  def cond(carry):
    i, _, _, finished, _ = carry
    return (i < max_len) & ~jnp.all(finished)

  def body(carry):
    i, prev, tokens, finished, state = carry
    logits, state = step_fn(prev, i, state)
    token = jnp.argmax(logits, axis=-1).astype(jnp.int32)
    token = jnp.where(finished, pad_id, token)
    tokens = jax.lax.dynamic_update_slice_in_dim(tokens, token[:, None], i,
                                                 axis=1)
    return i + 1, token, tokens, finished | (token == eos_id), state

  carry = (jnp.int32(0), jnp.full((batch_size,), bos_id, jnp.int32),
           jnp.full((batch_size, max_len), pad_id, jnp.int32),
           jnp.zeros((batch_size,), bool), state)
  return jax.lax.while_loop(cond, body, carry)[2]


@flax.struct.dataclass
class _Beams:
  """Beam search carry; K beams for each of B examples."""

  index: jax.Array          # int32 scalar: the position being generated
  alive: jax.Array          # [B, K, S] tokens of the open hypotheses
  alive_logp: jax.Array     # [B, K] their log-probabilities (-inf: empty)
  finished: jax.Array       # [B, K, S] tokens of the ended hypotheses
  finished_scores: jax.Array  # [B, K] their scores (-inf: empty)
  num_finished: jax.Array   # [B] int32 ended hypotheses so far
  state: Any                # step function state, rows b * K + k


def _gather_beams(x: jax.Array, beam: jax.Array) -> jax.Array:
  """x [B, K', ...] -> [B, K, ...] rows beam [B, K] of each example."""
  idx = beam.reshape(beam.shape + (1,) * (x.ndim - 2))
  return jnp.take_along_axis(x, idx, axis=1)


def beam_search(step_fn: StepFn, state: Any, *, batch_size: int,
                beam_size: int, bos_id: int, eos_id: int, max_len: int,
                length_penalty: float = 0.0,
                pad_id: int = 0) -> tuple[jax.Array, jax.Array]:
  """Beam search with a `lax.while_loop` of fixed shapes.

  Each step expands the K open hypotheses of an example into their 2K best
  continuations. Those ending in EOS among the K best are closed with score
  log p / length**length_penalty (length counts the EOS); the K best of the
  others stay open. An example is done once K hypotheses are closed; at
  max_len the open ones compete too, unended, with length max_len. With
  beam_size 1 this is exactly greedy decoding.

  Args:
    step_fn: (tokens [B*K], index, state) -> (logits [B*K, V], state).
    state: the step function's state; every leaf has leading size B*K with
      row b * K + k for beam k of example b (e.g. a cache of memory
      repeated K times).
    batch_size: B.
    beam_size: K.
    bos_id: input token at position 0.
    eos_id: ends a hypothesis.
    max_len: tokens to generate.
    length_penalty: alpha above; 0 ranks by summed log-probability.
    pad_id: filler after EOS.

  Returns:
    tokens [B, max_len] int32 of each example's best hypothesis and its
    score [B] float32.
  """
  b, k = batch_size, beam_size
  neg_inf = jnp.float32(-jnp.inf)

  def cond(beams: _Beams) -> jax.Array:
    return (beams.index < max_len) & ~jnp.all(beams.num_finished >= k)

  def body(beams: _Beams) -> _Beams:
    i = beams.index
    done = beams.num_finished >= k
    prev = jnp.where(i == 0, bos_id,
                     jnp.take(beams.alive, jnp.maximum(i - 1, 0), axis=2))
    logits, state = step_fn(prev.reshape(b * k), i, beams.state)
    logp = jax.nn.log_softmax(logits.astype(jnp.float32)).reshape(b, k, -1)
    vocab = logp.shape[-1]
    cand = (beams.alive_logp[..., None] + logp).reshape(b, k * vocab)
    top_logp, top_idx = jax.lax.top_k(cand, 2 * k)
    src, token = top_idx // vocab, (top_idx % vocab).astype(jnp.int32)
    seqs = _gather_beams(beams.alive, src).at[:, :, i].set(token)
    is_eos = token == eos_id

    closing = is_eos & (jnp.arange(2 * k) < k) & ~done[:, None]
    closing &= top_logp > neg_inf
    close_scores = jnp.where(
        closing, top_logp / _length_norm(i + 1, length_penalty), neg_inf)
    pool_scores = jnp.concatenate([beams.finished_scores, close_scores], 1)
    pool_seqs = jnp.concatenate([beams.finished, seqs], 1)
    finished_scores, keep = jax.lax.top_k(pool_scores, k)
    finished = _gather_beams(pool_seqs, keep)

    alive_logp, pos = jax.lax.top_k(jnp.where(is_eos, neg_inf, top_logp), k)
    rows = (jnp.arange(b)[:, None] * k + _gather_beams(src, pos)).reshape(-1)
    return _Beams(
        index=i + 1, alive=_gather_beams(seqs, pos), alive_logp=alive_logp,
        finished=finished, finished_scores=finished_scores,
        num_finished=beams.num_finished + jnp.sum(closing, 1),
        state=jax.tree.map(lambda x: x[rows], state))

  first = jnp.where(jnp.arange(k) == 0, 0.0, neg_inf)
  beams = _Beams(
      index=jnp.int32(0),
      alive=jnp.full((b, k, max_len), pad_id, jnp.int32),
      alive_logp=jnp.broadcast_to(first, (b, k)),
      finished=jnp.full((b, k, max_len), pad_id, jnp.int32),
      finished_scores=jnp.full((b, k), neg_inf),
      num_finished=jnp.zeros((b,), jnp.int32), state=state)
  beams = jax.lax.while_loop(cond, body, beams)
  done = beams.num_finished >= k
  open_scores = jnp.where(
      done[:, None], neg_inf,
      beams.alive_logp / _length_norm(max_len, length_penalty))
  scores = jnp.concatenate([beams.finished_scores, open_scores], 1)
  best = jnp.argmax(scores, axis=1)
  seqs = jnp.concatenate([beams.finished, beams.alive], 1)
  tokens = jnp.take_along_axis(seqs, best[:, None, None], axis=1)[:, 0]
  return tokens, jnp.take_along_axis(scores, best[:, None], axis=1)[:, 0]


def _decoder_step_fn(model: TransformerDecoder, params: Any) -> StepFn:
  def step(tokens, index, cache):
    return model.apply({"params": params}, tokens, index, cache,
                       method=TransformerDecoder.decode_step)
  return step


@functools.partial(jax.jit, static_argnames=(
    "model", "bos_id", "eos_id", "max_len", "pad_id"))
def _greedy_decode(model, params, memory, memory_mask, *, bos_id, eos_id,
                   max_len, pad_id):
  cache = model.apply({"params": params}, memory, memory_mask, max_len,
                      method=TransformerDecoder.init_cache)
  return greedy_search(_decoder_step_fn(model, params), cache,
                       batch_size=memory.shape[0], bos_id=bos_id,
                       eos_id=eos_id, max_len=max_len, pad_id=pad_id)


@functools.partial(jax.jit, static_argnames=(
    "model", "bos_id", "eos_id", "max_len", "beam_size", "length_penalty",
    "pad_id"))
def _beam_decode(model, params, memory, memory_mask, *, bos_id, eos_id,
                 max_len, beam_size, length_penalty, pad_id):
  cache = model.apply({"params": params},
                      jnp.repeat(memory, beam_size, axis=0),
                      jnp.repeat(memory_mask, beam_size, axis=0), max_len,
                      method=TransformerDecoder.init_cache)
  return beam_search(_decoder_step_fn(model, params), cache,
                     batch_size=memory.shape[0], beam_size=beam_size,
                     bos_id=bos_id, eos_id=eos_id, max_len=max_len,
                     length_penalty=length_penalty, pad_id=pad_id)


@functools.partial(jax.jit, static_argnames=(
    "model", "bos_id", "eos_id", "length_penalty"))
def _sequence_scores(model, params, memory, memory_mask, tokens, *, bos_id,
                     eos_id, length_penalty):
  inputs = jnp.concatenate(
      [jnp.full((tokens.shape[0], 1), bos_id, tokens.dtype), tokens[:, :-1]],
      axis=1)
  logits = model.apply({"params": params}, inputs,
                       jnp.ones(inputs.shape, bool), memory, memory_mask,
                       causal=True)
  logp = jnp.take_along_axis(jax.nn.log_softmax(logits), tokens[..., None],
                             axis=-1)[..., 0]
  is_eos = tokens == eos_id
  before_eos = jnp.cumsum(is_eos, axis=1) - is_eos == 0
  total = jnp.sum(jnp.where(before_eos, logp, 0.0), axis=1)
  return total / _length_norm(jnp.sum(before_eos, axis=1), length_penalty)
