"""Zipformer building blocks in Flax Linen (reference/ZIPFORMER.md 7.3-7.8).

Parameter names follow the reference modules so that
`audiopt.models.zipformer_import` maps them one to one. Every parameter and
activation carries logical axis names (see `audiopt.models.layers`).
Projections whose output concatenates several tensors (attention q|k|p,
non-linear attention s|v|y, convolution v|gate) leave that axis unnamed, since
sharding it would cut across the pieces.

All modules run batch-major ([B, T, C]) and take `batch_count` (a float32
scalar driving the reference's training schedules) and `train` (a Python
bool). In eval mode they are deterministic and `batch_count` is unused.
"""

from collections.abc import Sequence
import functools
import math
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from audiopt.models import layers
from audiopt.models import zipformer_ops as ops

Dtype = Any
Axes = tuple[str | None, ...]

# Masked attention scores are set to this, not -inf, as in the reference.
_MASK_SCORE = -1000.0


def _param(module: nn.Module, name: str, init: Any, shape: Sequence[int],
           axes: Axes) -> jax.Array:
  return module.param(name, nn.with_logical_partitioning(init, axes),
                      tuple(shape), module.param_dtype)


def _constrain(x: jax.Array) -> jax.Array:
  return nn.with_logical_constraint(x, layers.BATCH_TIME_EMBED)


class Linear(nn.Module):
  """y = x W + b over the last axis, initialised as torch's (Scaled)Linear.

  Attributes:
    features: output size.
    kernel_axes: logical names of the [in, out] kernel; the bias takes the
      second.
    use_bias: adds a bias.
    init_scale: None for torch.nn.Linear's init (W and b ~ U(+-1/sqrt(in)));
      a float s for the reference's ScaledLinear(initial_scale=s)
      (W ~ U(+-s/sqrt(in)), b ~ U(+-0.1 s)).
    dtype: compute dtype.
    param_dtype: parameter dtype.
  """

  features: int
  kernel_axes: Axes
  use_bias: bool = True
  init_scale: float | None = None
  dtype: Dtype = jnp.float32
  param_dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    """Maps x [..., in] to [..., features] in `dtype`."""
    fan_in = x.shape[-1]
    scale = 1.0 if self.init_scale is None else self.init_scale
    kernel = _param(self, "kernel", ops.torch_uniform(scale),
                    (fan_in, self.features), self.kernel_axes)
    y = jnp.dot(x.astype(self.dtype), kernel.astype(self.dtype))
    if self.use_bias:
      bound = (1.0 / math.sqrt(fan_in) if self.init_scale is None
               else 0.1 * self.init_scale)
      bias = _param(self, "bias", ops.uniform(bound), (self.features,),
                    self.kernel_axes[1:])
      y = y + bias.astype(self.dtype)
    return y


class BiasNorm(nn.Module):
  """y = x * mean_c((x - b)^2)^(-1/2) * exp(log_scale); no epsilon.

  Statistics are computed in float32. In training, log_scale is held to
  [-1.5, 1.5] through its gradient (with probability 0.6 per call).
  """

  dtype: Dtype = jnp.float32
  param_dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    """Normalises x [..., C]; returns [..., C] in `dtype`."""
    c = x.shape[-1]
    bias = _param(self, "bias", nn.initializers.normal(1e-4), (c,), ("norm",))
    log_scale = _param(self, "log_scale", nn.initializers.constant(1.0), (),
                       ())
    if train:
      active = ops.bernoulli(self.make_rng("dropout"), 0.6)
      log_scale = ops.limit_param_value(
          log_scale, jnp.float32(-1.5), jnp.float32(1.5), active)
    x32 = x.astype(jnp.float32)
    var = jnp.mean(jnp.square(x32 - bias.astype(jnp.float32)), axis=-1,
                   keepdims=True)
    y = x32 * jax.lax.rsqrt(var) * jnp.exp(log_scale.astype(jnp.float32))
    return y.astype(self.dtype)


class Bypass(nn.Module):
  """out = x0 + (x - x0) * s, with a learnt per-channel s (init 0.5).

  In training, s is held to [scale_min(batch_count), 1] through its gradient
  (probability 0.6 per call) and, when `skip_schedule` or a `skip_rate` is
  given, zeroed per sequence with that rate (layer skip).

  Attributes:
    skip_schedule: (batch_count, rate) points of per-sequence layer skip;
      a `skip_rate` passed to the call takes precedence.
    dtype: compute dtype.
    param_dtype: parameter dtype.
  """

  skip_schedule: ops.Schedule | None = None
  dtype: Dtype = jnp.float32
  param_dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x0: jax.Array, x: jax.Array, batch_count: jax.Array,
               train: bool = False,
               skip_rate: jax.Array | None = None) -> jax.Array:
    """Combines x0 and x [B, T, C] into [B, T, C].

    Args:
      x0: [B, T, C] the input the bypass falls back to.
      x: [B, T, C] the module output.
      batch_count: schedule position.
      train: enables the scale limit and the layer skip.
      skip_rate: optional scalar layer-skip rate, used instead of
        `skip_schedule` (a scanned stack passes each layer's rate).

    Returns:
      [B, T, C] in `dtype`.
    """
    s = _param(self, "bypass_scale", nn.initializers.constant(0.5),
               (x.shape[-1],), ("norm",))
    if train:
      rng = self.make_rng("dropout")
      lo = ops.scheduled(batch_count, ops.BYPASS_SCALE_MIN)
      s = ops.limit_param_value(s, lo, jnp.float32(1.0),
                                ops.bernoulli(rng, 0.6))
      rate = skip_rate
      if rate is None and self.skip_schedule is not None:
        rate = ops.scheduled(batch_count, self.skip_schedule)
      if rate is not None:
        s = s * ops.keep_mask(jax.random.fold_in(rng, 1), (x.shape[0], 1, 1),
                              rate, s.dtype)
    return x0 + (x - x0) * s.astype(self.dtype)


class SimpleDownsample(nn.Module):
  """Downsamples time by `factor` with a softmax-weighted sum of each group.

  The weights are softmax(bias), bias [factor] initialised to zeros (a plain
  average). There is no projection.
  """

  factor: int
  dtype: Dtype = jnp.float32
  param_dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, lengths: jax.Array | None) -> jax.Array:
    """Maps x [B, T, C] to [B, ceil(T / factor), C].

    Args:
      x: frames.
      lengths: [B] valid frames, so the last group of each sequence repeats
        its own last valid frame; None to repeat the array's last frame as
        the reference does (padding then leaks into the last valid group).
    """
    bias = _param(self, "bias", nn.initializers.zeros_init(), (self.factor,),
                  (None,))
    x = ops.pad_to_multiple(x, self.factor, lengths)
    b, t, c = x.shape
    x = x.reshape(b, t // self.factor, self.factor, c)
    w = jax.nn.softmax(bias.astype(jnp.float32)).astype(x.dtype)
    return jnp.einsum("btkc,k->btc", x, w)


class FeedForward(nn.Module):
  """Linear(C, F) -> SwooshL -> dropout (mask shared over time) -> Linear(F, C).

  Attributes:
    hidden: F.
    dropout_schedule: (batch_count, rate) points of the hidden dropout.
    dtype: compute dtype.
    param_dtype: parameter dtype.
  """

  hidden: int
  dropout_schedule: ops.Schedule = ops.DROPOUT
  dtype: Dtype = jnp.float32
  param_dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, batch_count: jax.Array,
               train: bool = False) -> jax.Array:
    """Maps x [B, T, C] to [B, T, C]."""
    kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
    h = Linear(self.hidden, ("embed", "mlp"), name="in_proj", **kw)(x)
    h = nn.with_logical_constraint(ops.swoosh_l(h), layers.BATCH_TIME_MLP)
    if train:
      rate = ops.scheduled(batch_count, self.dropout_schedule)
      h = ops.dropout(self.make_rng("dropout"), h, rate, shared_axes=(1,))
    return Linear(x.shape[-1], ("mlp", "embed"), init_scale=0.1,
                  name="out_proj", **kw)(h)


class AttentionWeights(nn.Module):
  """Relative-position multi-head attention weights (no 1/sqrt(d) factor).

  scores[b,h,i,j] = q_i . k_j + p_i . P[j - i], where P = linear_pos(pos_emb)
  holds a pos_head_dim vector per head and relative offset. Padded keys get
  score -1000 before the softmax.

  Attributes:
    num_heads: H.
    query_head_dim: per-head query/key size.
    pos_head_dim: per-head positional query size.
    dtype: compute dtype of the projections.
    param_dtype: parameter dtype.
  """

  num_heads: int
  query_head_dim: int
  pos_head_dim: int
  dtype: Dtype = jnp.float32
  param_dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, pos_emb: jax.Array, mask: jax.Array,
               batch_count: jax.Array, train: bool = False) -> jax.Array:
    """Computes weights.

    Args:
      x: [B, T, C] layer input.
      pos_emb: [2T - 1, pos_dim] relative positional encoding.
      mask: [B, T] bool, True on valid frames.
      batch_count: schedule position.
      train: enables the pos-emb skip and the score penalty.

    Returns:
      [B, H, T, T] float32 weights, rows summing to 1 over keys j.
    """
    b, t, _ = x.shape
    h, dq, dp = self.num_heads, self.query_head_dim, self.pos_head_dim
    kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
    proj = Linear((2 * dq + dp) * h, ("embed", None), init_scale=dq ** -0.25,
                  name="in_proj", **kw)(x)
    q = proj[..., :dq * h].reshape(b, t, h, dq)
    k = proj[..., dq * h:2 * dq * h].reshape(b, t, h, dq)
    p = proj[..., 2 * dq * h:].reshape(b, t, h, dp)
    q = nn.with_logical_constraint(q, layers.BATCH_TIME_HEADS_KV)
    k = nn.with_logical_constraint(k, layers.BATCH_TIME_HEADS_KV)
    scores = jnp.einsum("bihd,bjhd->bhij", q, k).astype(jnp.float32)
    pos = Linear(h * dp, (None, None), use_bias=False, init_scale=0.05,
                 name="linear_pos", **kw)(pos_emb).reshape(2 * t - 1, h, dp)
    rel = jnp.einsum("bihd,nhd->bhin", p, pos).astype(jnp.float32)
    pos_scores = ops.rel_to_abs(rel)
    if train:
      rng = self.make_rng("dropout")
      skip = ops.scheduled(batch_count, ops.POS_EMB_SKIP)
      pos_scores = pos_scores * (1.0 - ops.bernoulli(rng, skip))
    scores = scores + pos_scores
    if train:
      scores = ops.penalize_abs_values_gt(
          scores, 25.0, 1e-4,
          ops.bernoulli(jax.random.fold_in(rng, 1), 0.1))
    scores = jnp.where(mask[:, None, None, :], scores, _MASK_SCORE)
    weights = jax.nn.softmax(scores, axis=-1)
    return nn.with_logical_constraint(weights,
                                      ("batch", "heads", None, None))


class SelfAttention(nn.Module):
  """Applies precomputed weights: Linear(C, H*dv) -> W @ v -> Linear(H*dv, C).

  Attributes:
    value_head_dim: dv.
    dtype: compute dtype.
    param_dtype: parameter dtype.
  """

  value_head_dim: int
  dtype: Dtype = jnp.float32
  param_dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, weights: jax.Array,
               mask: jax.Array) -> jax.Array:
    """Maps x [B, T, C] (weights [B, H, T, T], mask [B, T]) to [B, T, C]."""
    b, t, c = x.shape
    h, dv = weights.shape[1], self.value_head_dim
    kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
    v = Linear(h * dv, ("embed", "heads"), name="in_proj", **kw)(x)
    v = v.reshape(b, t, h, dv)
    # Padded keys already have weight 0; zeroing them also stops inf/NaN.
    v = jnp.where(mask[:, :, None, None], v, jnp.zeros((), v.dtype))
    o = jnp.einsum("bhij,bjhd->bihd", weights.astype(v.dtype), v)
    o = nn.with_logical_constraint(o, layers.BATCH_TIME_HEADS_KV)
    return Linear(c, ("heads", "embed"), init_scale=0.05, name="out_proj",
                  **kw)(o.reshape(b, t, h * dv))


class NonlinAttention(nn.Module):
  """Linear(C, 3h) -> (s, v, y); out = Linear(h, C)((W0 @ (v tanh s)) * y).

  Attributes:
    hidden: h (3C/4 in the reference).
    dtype: compute dtype.
    param_dtype: parameter dtype.
  """

  hidden: int
  dtype: Dtype = jnp.float32
  param_dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, weights: jax.Array,
               mask: jax.Array) -> jax.Array:
    """Maps x [B, T, C] with one head's weights [B, T, T] to [B, T, C]."""
    kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
    proj = Linear(3 * self.hidden, ("embed", None), name="in_proj", **kw)(x)
    s, v, y = jnp.split(proj, 3, axis=-1)
    v = v * jnp.tanh(s)
    v = jnp.where(mask[..., None], v, jnp.zeros((), v.dtype))
    v = jnp.einsum("bij,bjd->bid", weights.astype(v.dtype), v) * y
    v = nn.with_logical_constraint(v, layers.BATCH_TIME_MLP)
    return Linear(x.shape[-1], ("mlp", "embed"), init_scale=0.05,
                  name="out_proj", **kw)(v)


class DepthwiseConv(nn.Module):
  """Per-channel convolution over the spatial axes, "same" padding, with bias.

  Parameters are laid out as torch's Conv{1,2}d(C, C, k, groups=C) weights in
  Flax order (kernel [*k, 1, C], bias [C]) and initialised like them. The
  product is `zipformer_ops.depthwise_conv` (shifted multiply-adds, its
  kernel gradient a matrix product), not a grouped convolution: XLA turns
  the kernel gradient of a grouped convolution into a dense [*k, C, C] one,
  C times the work, which on CPU made the 1-D convolutions inside `nn.scan`
  ten times slower than the rest of the Zipformer step and the front end's
  7x7 one a third of the whole step. Products are summed in float32.

  Attributes:
    kernel_size: odd kernel size per spatial axis (padding k // 2 on both
      sides); an int is one axis (time).
    dtype: output dtype.
    param_dtype: parameter dtype.
  """

  kernel_size: int | tuple[int, ...]
  dtype: Dtype = jnp.float32
  param_dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    """Convolves x [B, *S, C] over S; returns [B, *S, C] in `dtype`."""
    ks = ((self.kernel_size,) if isinstance(self.kernel_size, int)
          else tuple(self.kernel_size))
    if any(k % 2 == 0 for k in ks):
      raise ValueError(f"depthwise kernel size must be odd, got {ks}")
    if x.ndim != len(ks) + 2:
      raise ValueError(f"kernel {ks} needs input [B, *{len(ks)} axes, C], "
                       f"got shape {x.shape}")
    c = x.shape[-1]
    kernel = self.param(
        "kernel", nn.with_logical_partitioning(
            ops.torch_uniform(), (None,) * (len(ks) + 1) + ("conv_out",)),
        ks + (1, c), self.param_dtype)
    bias = self.param(
        "bias", nn.with_logical_partitioning(
            ops.uniform(1.0 / math.sqrt(math.prod(ks))), ("conv_out",)),
        (c,), self.param_dtype)
    y = ops.depthwise_conv(x, kernel[..., 0, :].astype(jnp.float32))
    y = y + bias.astype(jnp.float32)
    return y.astype(self.dtype)


class ConvolutionModule(nn.Module):
  """Linear(C, 2C) -> v sigmoid(g) -> depthwise conv -> SwooshR -> Linear(C, C).

  Padded frames are zeroed before the convolution.

  Attributes:
    kernel_size: odd depthwise kernel size k (padding k // 2).
    dtype: compute dtype.
    param_dtype: parameter dtype.
  """

  kernel_size: int
  dtype: Dtype = jnp.float32
  param_dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, mask: jax.Array) -> jax.Array:
    """Maps x [B, T, C] with mask [B, T] to [B, T, C]."""
    c, k = x.shape[-1], self.kernel_size
    kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
    proj = Linear(2 * c, ("embed", None), name="in_proj", **kw)(x)
    v, g = jnp.split(proj, 2, axis=-1)
    v = v * jax.nn.sigmoid(g)
    v = jnp.where(mask[..., None], v, jnp.zeros((), v.dtype))
    v = DepthwiseConv(k, name="depthwise_conv", **kw)(v)
    v = nn.with_logical_constraint(ops.swoosh_r(v), layers.BATCH_TIME_MLP)
    return Linear(c, ("mlp", "embed"), init_scale=0.05, name="out_proj",
                  **kw)(v)


class ZipformerLayer(nn.Module):
  """One Zipformer2EncoderLayer (ZIPFORMER.md 7.5), with its training skips.

  Attributes:
    num_heads: attention heads H.
    query_head_dim: per-head query/key size.
    pos_head_dim: per-head positional size.
    value_head_dim: per-head value size.
    feedforward_dim: F; the three feed-forwards use 3F/4, F and 5F/4.
    kernel_size: depthwise convolution kernel.
    skip_schedule: (batch_count, rate) points of the layer skip (bypass).
    dropout_schedule: feed-forward hidden dropout schedule.
    dtype: compute dtype.
    param_dtype: parameter dtype.
  """

  num_heads: int
  query_head_dim: int
  pos_head_dim: int
  value_head_dim: int
  feedforward_dim: int
  kernel_size: int
  skip_schedule: ops.Schedule | None = None
  dropout_schedule: ops.Schedule = ops.DROPOUT
  dtype: Dtype = jnp.float32
  param_dtype: Dtype = jnp.float32

  def _keep(self, x: jax.Array, *, schedule: ops.Schedule,
            batch_count: jax.Array, train: bool) -> jax.Array | float:
    """A per-sequence [B, 1, 1] keep mask of a module-skip schedule."""
    if not train:
      return 1.0
    rate = ops.scheduled(batch_count, schedule)
    return ops.keep_mask(self.make_rng("dropout"), (x.shape[0], 1, 1), rate,
                         x.dtype)

  @nn.compact
  def __call__(self, x: jax.Array, pos_emb: jax.Array, mask: jax.Array,
               batch_count: jax.Array, train: bool = False,
               skip_rate: jax.Array | None = None) -> jax.Array:
    """Maps x [B, T, C] (pos_emb [2T-1, P], mask [B, T]) to [B, T, C].

    `skip_rate`, a scalar, replaces `skip_schedule` as the layer-skip rate
    (a scanned stack computes each layer's rate outside the scan).
    """
    c, f = x.shape[-1], self.feedforward_dim
    kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
    ff_kw = dict(dropout_schedule=self.dropout_schedule, **kw)
    keep = functools.partial(self._keep, x, batch_count=batch_count,
                             train=train)
    ff1 = FeedForward((f * 3) // 4, name="feed_forward1", **ff_kw)
    ff2 = FeedForward(f, name="feed_forward2", **ff_kw)
    ff3 = FeedForward((f * 5) // 4, name="feed_forward3", **ff_kw)
    nonlin = NonlinAttention(3 * c // 4, name="nonlin_attention", **kw)
    attn1 = SelfAttention(self.value_head_dim, name="self_attn1", **kw)
    attn2 = SelfAttention(self.value_head_dim, name="self_attn2", **kw)
    conv1 = ConvolutionModule(self.kernel_size, name="conv_module1", **kw)
    conv2 = ConvolutionModule(self.kernel_size, name="conv_module2", **kw)

    x0 = x
    # One set of weights from the layer input, shared by all three attentions.
    w = AttentionWeights(self.num_heads, self.query_head_dim,
                         self.pos_head_dim, name="self_attn_weights",
                         **kw)(x, pos_emb, mask, batch_count, train)
    x = _constrain(x + ff1(x, batch_count, train))
    attn_keep = keep(schedule=ops.ATTENTION_SKIP)
    w0 = w[:, 0]
    if train:
      # Uniform weights over the valid keys, with the scheduled probability.
      const = (w0 > 0).astype(w0.dtype)
      const = const / jnp.sum(const, axis=-1, keepdims=True)
      use = ops.bernoulli(self.make_rng("dropout"),
                          ops.scheduled(batch_count, ops.CONST_ATTENTION))
      w0 = jnp.where(use > 0, const, w0)
    x = _constrain(x + nonlin(x, w0, mask) * attn_keep)
    x = _constrain(x + attn1(x, w, mask) * attn_keep)
    x = _constrain(x + conv1(x, mask) * keep(schedule=ops.CONV_SKIP))
    x = _constrain(x + ff2(x, batch_count, train) * keep(schedule=ops.FF_SKIP))
    x = Bypass(name="bypass_mid", **kw)(x0, x, batch_count, train)
    x = _constrain(x + attn2(x, w, mask) * attn_keep)
    x = _constrain(x + conv2(x, mask) * keep(schedule=ops.CONV_SKIP))
    x = _constrain(x + ff3(x, batch_count, train) * keep(schedule=ops.FF_SKIP))
    x = BiasNorm(name="norm", **kw)(x, train)
    x = Bypass(self.skip_schedule, name="bypass", **kw)(x0, x, batch_count,
                                                         train, skip_rate)
    return _constrain(x)
