"""BERT-style text tower: token ids -> contextual token features + pooled.

ids [B, L] -> word + learned position + token-type embeddings -> LayerNorm
-> dropout -> num_layers x post-LN blocks
[x = LN(x + MHSA(x)); x = LN(x + MLP(x))] with exact (erf) GELU, as BERT,
so published BERT weights (`audiopt.models.bert_import`) reproduce the
reference model's hidden states.

Parameter names, the importer's target layout:
  word_embeddings/embedding [V, D]        ("vocab", "embed")
  position_embeddings/embedding [P, D]    (None, "embed")
  token_type_embeddings/embedding [2, D]  (None, "embed")
  embed_norm/{scale, bias}
  layer_i/attn/{query, key, value}/kernel [D, H, Dh], bias [H, Dh]
  layer_i/attn/out/kernel [H, Dh, D], bias [D]
  layer_i/norm_attn, layer_i/mlp/wi [D, F], layer_i/mlp/wo [F, D],
  layer_i/norm_mlp
  pooler/{kernel, bias}                   only with pooling="pooler"
"""

from collections.abc import Mapping
from typing import Any, ClassVar

import flax.linen as nn
import jax
import jax.numpy as jnp

from audiopt.models import layers

Dtype = Any

# Named size presets (BERT-tiny / BERT-mini / BERT-base shapes).
SIZES: dict[str, dict[str, Any]] = {
    "tiny": dict(num_layers=2, width=64, num_heads=4, mlp_dim=256),
    "mini": dict(num_layers=4, width=256, num_heads=4, mlp_dim=1024),
    "base": dict(num_layers=12, width=768, num_heads=12, mlp_dim=3072),
}
POOLINGS = ("cls", "mean", "pooler")
_EMBED_INIT = nn.initializers.normal(stddev=0.02)


class BertMlp(nn.Module):
  """Feed-forward block: Dense(mlp_dim) -> exact GELU -> Dense(D).

  Attributes:
    mlp_dim: hidden width F.
    dtype: compute dtype.
    param_dtype: parameter dtype.
  """

  mlp_dim: int
  dtype: Dtype = jnp.float32
  param_dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    """Maps x [B, L, D] to [B, L, D]."""
    kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
    h = layers.DenseGeneral(self.mlp_dim, ("embed", "mlp"), name="wi", **kw)(x)
    h = nn.gelu(h, approximate=False)
    h = nn.with_logical_constraint(h, layers.BATCH_TIME_MLP)
    return layers.DenseGeneral(x.shape[-1], ("mlp", "embed"), name="wo",
                               **kw)(h)


class BertBlock(nn.Module):
  """One post-LN block: x = LN(x + Drop(MHSA(x))); x = LN(x + Drop(MLP(x))).

  Attributes:
    num_heads: attention heads.
    mlp_dim: MLP hidden width.
    dropout_rate: dropout on both residual branches.
    attention_dropout_rate: dropout on attention weights.
    layer_norm_epsilon: LayerNorm variance floor.
    dtype: compute dtype.
    param_dtype: parameter dtype.
  """

  num_heads: int
  mlp_dim: int
  dropout_rate: float = 0.1
  attention_dropout_rate: float = 0.1
  layer_norm_epsilon: float = 1e-12
  dtype: Dtype = jnp.float32
  param_dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, mask: jax.Array,
               train: bool = False) -> jax.Array:
    """Maps x [B, L, D] with key mask [B, L] to [B, L, D]."""
    kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
    drop = lambda y: nn.Dropout(self.dropout_rate)(y, deterministic=not train)
    norm = lambda name: layers.LayerNorm(self.layer_norm_epsilon, name=name,
                                         **kw)
    h = layers.MultiHeadSelfAttention(
        self.num_heads, dropout_rate=self.attention_dropout_rate, name="attn",
        **kw)(x, mask, train)
    x = norm("norm_attn")(x + drop(h))
    h = BertMlp(self.mlp_dim, name="mlp", **kw)(x)
    x = norm("norm_mlp")(x + drop(h))
    return nn.with_logical_constraint(x, layers.BATCH_TIME_EMBED)


class TextEncoder(nn.Module):
  """BERT-style encoder of token ids.

  Attributes:
    vocab_size: number of token ids V.
    max_len: rows P of the position table; inputs have L <= P tokens.
    num_layers: blocks.
    width: model width D.
    num_heads: attention heads (must divide D).
    mlp_dim: MLP hidden width.
    type_vocab_size: token-type (segment) ids; captions use type 0.
    dropout_rate: dropout after the embeddings and on residual branches.
    attention_dropout_rate: dropout on attention weights.
    layer_norm_epsilon: LayerNorm variance floor (BERT: 1e-12).
    pooling: "cls" (hidden state of the first token, [CLS]), "mean" (mean
      of the valid tokens' hidden states) or "pooler" (BERT's pooler:
      tanh(Dense(first token))).
    dtype: compute dtype; hidden/pooled come out in it.
    param_dtype: parameter dtype.
    remat: rematerialise each block in the backward pass.
    remat_policy: a `jax.checkpoint_policies` name: what a remat block keeps.
  """

  vocab_size: int
  max_len: int = 512
  num_layers: int = 12
  width: int = 768
  num_heads: int = 12
  mlp_dim: int = 3072
  type_vocab_size: int = 2
  dropout_rate: float = 0.1
  attention_dropout_rate: float = 0.1
  layer_norm_epsilon: float = 1e-12
  pooling: str = "cls"
  dtype: Dtype = jnp.float32
  param_dtype: Dtype = jnp.float32
  remat: bool = False
  remat_policy: str = "dots_with_no_batch_dims_saveable"

  SIZES: ClassVar[dict[str, dict[str, Any]]] = SIZES

  @property
  def output_dim(self) -> int:
    """Feature size D of `hidden` and `pooled`."""
    return self.width

  def _block_class(self) -> type[nn.Module]:
    if not self.remat:
      return BertBlock
    policy = getattr(jax.checkpoint_policies, self.remat_policy, None)
    if policy is None:
      raise ValueError(f"unknown remat_policy {self.remat_policy!r}")
    # Linen counts `self` as argument 0, so `train` is argument 3.
    return nn.remat(BertBlock, policy=policy, static_argnums=(3,))

  def _embed(self, name: str, rows: int, axes: tuple[str | None, str],
             ids: jax.Array) -> jax.Array:
    table = nn.Embed(
        rows, self.width, dtype=self.dtype, param_dtype=self.param_dtype,
        embedding_init=nn.with_logical_partitioning(_EMBED_INIT, axes),
        name=name)
    return table(ids)

  @nn.compact
  def __call__(self, ids: jax.Array, mask: jax.Array, train: bool = False,
               token_types: jax.Array | None = None
               ) -> tuple[jax.Array, jax.Array]:
    """Encodes token ids.

    Args:
      ids: [B, L] int token ids, L <= max_len.
      mask: [B, L] bool, True on real tokens (padding anywhere is ignored).
      train: enables dropout (rng "dropout").
      token_types: optional [B, L] int segment ids; zeros by default.

    Returns:
      hidden [B, L, D], zero at padded positions, and pooled [B, D] (see
      `pooling`).
    """
    if self.pooling not in POOLINGS:
      raise ValueError(f"pooling {self.pooling!r} is not one of {POOLINGS}")
    length = ids.shape[1]
    if length > self.max_len:
      raise ValueError(f"{length} tokens exceed max_len {self.max_len}")
    if token_types is None:
      token_types = jnp.zeros_like(ids)
    x = (self._embed("word_embeddings", self.vocab_size, ("vocab", "embed"),
                     ids)
         + self._embed("token_type_embeddings", self.type_vocab_size,
                       (None, "embed"), token_types)
         + self._embed("position_embeddings", self.max_len, (None, "embed"),
                       jnp.arange(length))[None])
    x = layers.LayerNorm(self.layer_norm_epsilon, dtype=self.dtype,
                         param_dtype=self.param_dtype, name="embed_norm")(x)
    x = nn.with_logical_constraint(x, layers.BATCH_TIME_EMBED)
    x = nn.Dropout(self.dropout_rate)(x, deterministic=not train)
    block_cls = self._block_class()
    for i in range(self.num_layers):
      x = block_cls(
          num_heads=self.num_heads, mlp_dim=self.mlp_dim,
          dropout_rate=self.dropout_rate,
          attention_dropout_rate=self.attention_dropout_rate,
          layer_norm_epsilon=self.layer_norm_epsilon, dtype=self.dtype,
          param_dtype=self.param_dtype, name=f"layer_{i}")(x, mask, train)
    hidden = jnp.where(mask[..., None], x, jnp.zeros((), x.dtype))
    return hidden, self._pool(hidden, mask)

  def _pool(self, hidden: jax.Array, mask: jax.Array) -> jax.Array:
    if self.pooling == "mean":
      m = mask[..., None].astype(jnp.float32)
      total = jnp.sum(hidden.astype(jnp.float32) * m, axis=1)
      pooled = total / jnp.maximum(jnp.sum(m, axis=1), 1.0)
      return pooled.astype(self.dtype)
    first = hidden[:, 0]
    if self.pooling == "cls":
      return first
    dense = layers.DenseGeneral(self.width, ("embed", None),
                                dtype=self.dtype,
                                param_dtype=self.param_dtype, name="pooler")
    return jnp.tanh(dense(first))


def build_text_encoder(size: str, *, vocab_size: int, max_len: int,
                       **overrides: Any) -> TextEncoder:
  """A `TextEncoder` of a named size.

  Args:
    size: a key of SIZES ("tiny", "mini", "base" = BERT-base).
    vocab_size: the tokenizer's vocabulary size.
    max_len: position table rows (the longest token sequence).
    **overrides: other `TextEncoder` fields (dtype, remat, pooling, ...);
      None values are ignored.

  Returns:
    An unbound `TextEncoder`.
  """
  if size not in SIZES:
    raise ValueError(f"unknown text encoder size {size!r}; valid: "
                     f"{sorted(SIZES)}")
  fields: Mapping[str, Any] = {
      **SIZES[size],
      **{k: v for k, v in overrides.items() if v is not None}}
  return TextEncoder(vocab_size=vocab_size, max_len=max_len, **fields)
