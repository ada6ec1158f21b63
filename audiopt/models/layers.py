"""Shared building blocks whose parameters and activations carry logical axes.

Every parameter is created through `nn.with_logical_partitioning`, so an
initialised parameter tree holds `nn.LogicallyPartitioned` boxes whose names
a rule set (`audiopt.train.sharding`) maps to mesh axes. Activations are
pinned with `nn.with_logical_constraint`, a no-op unless rules and a mesh are
in context.

Logical axis names (the minimal set used by the models):

  Parameters
    "embed"     model width D (the FSDP-sharded axis).
    "mlp"       hidden width of a feed-forward block.
    "heads"     attention heads.
    "kv"        per-head feature size.
    "vocab"     an output class/token axis (used by objective heads).
    "conv_in"   input channels of a convolution kernel.
    "conv_out"  output channels of a convolution kernel.
    "norm"      LayerNorm scale/bias (kept replicated: tiny and read often).
    "layers"    the stacked-layer axis added by `nn.scan`.
  Activations only
    "batch", "time" (plus "embed", "mlp", "heads", "kv" above).

Modules take `dtype` (compute dtype, e.g. bfloat16) and `param_dtype`
(storage dtype, float32). Normalisation statistics and the attention softmax
are always computed in float32.
"""

from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

Dtype = Any
Initializer = Any

BATCH_TIME_EMBED = ("batch", "time", "embed")
BATCH_TIME_MLP = ("batch", "time", "mlp")
BATCH_TIME_HEADS_KV = ("batch", "time", "heads", "kv")


def _canonical_axes(axis: int | Sequence[int], ndim: int) -> tuple[int, ...]:
  axes = (axis,) if isinstance(axis, int) else tuple(axis)
  return tuple(a % ndim for a in axes)


class DenseGeneral(nn.Module):
  """A linear map contracting `axis` of x with a logically named kernel.

  The kernel has shape in_shape + features, where in_shape is x's shape on
  `axis`; its initialiser sees the true fan-in and fan-out.

  Attributes:
    features: output feature shape (int or tuple), appended in place of the
      contracted axes at the end of the output.
    kernel_axes: logical names of the kernel, one per contracted axis then one
      per output feature axis.
    axis: the contracted axes of x (must be its last axes).
    use_bias: adds a bias named by the output part of `kernel_axes`.
    dtype: compute dtype.
    param_dtype: parameter dtype.
    kernel_init: an initialiser factory such as
      `nn.initializers.xavier_uniform`, called with `in_axis` and `out_axis`
      keywords so that fan-in and fan-out span all contracted/output axes.
  """

  features: int | Sequence[int]
  kernel_axes: Sequence[str | None]
  axis: int | Sequence[int] = -1
  use_bias: bool = True
  dtype: Dtype = jnp.float32
  param_dtype: Dtype = jnp.float32
  kernel_init: Initializer = nn.initializers.xavier_uniform

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    """Maps x [..., *in_shape] to [..., *features]."""
    features = ((self.features,) if isinstance(self.features, int)
                else tuple(self.features))
    axes = _canonical_axes(self.axis, x.ndim)
    if axes != tuple(range(x.ndim - len(axes), x.ndim)):
      raise ValueError(f"DenseGeneral contracts trailing axes only, got {axes}")
    if len(self.kernel_axes) != len(axes) + len(features):
      raise ValueError(
          f"kernel_axes {self.kernel_axes} needs {len(axes) + len(features)}"
          " names")
    in_shape = tuple(x.shape[a] for a in axes)
    n_in = len(in_shape)
    init = self.kernel_init(
        in_axis=tuple(range(n_in)),
        out_axis=tuple(range(n_in, n_in + len(features))))
    kernel = self.param(
        "kernel", nn.with_logical_partitioning(init, tuple(self.kernel_axes)),
        in_shape + features, self.param_dtype)
    bias = None
    if self.use_bias:
      bias = self.param(
          "bias",
          nn.with_logical_partitioning(nn.initializers.zeros_init(),
                                       tuple(self.kernel_axes[n_in:])),
          features, self.param_dtype)
    x, kernel, bias = nn.dtypes.promote_dtype(x, kernel, bias,
                                              dtype=self.dtype)
    y = jax.lax.dot_general(
        x, kernel, ((axes, tuple(range(n_in))), ((), ())))
    if bias is not None:
      y = y + bias
    return y


def conv2d(x: jax.Array, kernel: jax.Array,
           strides: tuple[int, int] = (1, 1),
           padding: Sequence[tuple[int, int]] = ((0, 0), (0, 0))
           ) -> jax.Array:
  """2-D convolution of NHWC activations with an HWIO kernel.

  Lowered for the CPU it is one matrix product of the kh * kw strided views
  of x stacked on the channel axis: XLA:CPU's own convolutions, and above all
  their gradients, were the slowest ops of the transformer and Zipformer
  train steps there (the transformer's subsampling ran 2.3x faster as a
  product). Lowered for an accelerator it is XLA's convolution, which does
  not materialise the views.

  Args:
    x: [B, H, W, Cin].
    kernel: [kh, kw, Cin, Cout], in x's dtype.
    strides: (sh, sw).
    padding: zeros added before and after H, then W.

  Returns:
    [B, H', W', Cout], H' = (H + pad_h - kh) // sh + 1, W' alike.
  """
  strides = tuple(strides)
  padding = tuple(tuple(p) for p in padding)

  def as_product(x, kernel):
    (kh, kw), (sh, sw) = kernel.shape[:2], strides
    x = jnp.pad(x, ((0, 0),) + padding + ((0, 0),))
    h, w = (x.shape[1] - kh) // sh + 1, (x.shape[2] - kw) // sw + 1
    # Channel index (i * kw + j) * Cin + c: the order of the HWIO kernel.
    views = jnp.concatenate(
        [x[:, i:i + sh * (h - 1) + 1:sh, j:j + sw * (w - 1) + 1:sw, :]
         for i in range(kh) for j in range(kw)], axis=-1)
    return jnp.dot(views, kernel.reshape(-1, kernel.shape[-1]))

  def as_convolution(x, kernel):
    return jax.lax.conv_general_dilated(
        x, kernel, strides, padding,
        dimension_numbers=("NHWC", "HWIO", "NHWC"))

  return jax.lax.platform_dependent(x, kernel, cpu=as_product,
                                    default=as_convolution)


class Conv2D(nn.Module):
  """2-D convolution layer (`conv2d`) over [B, H, W, Cin] with a bias.

  Attributes:
    features: output channels Cout.
    kernel_size: (kh, kw).
    strides: (sh, sw).
    padding: zeros added before and after H, then W.
    dtype: compute dtype.
    param_dtype: parameter dtype.
    kernel_init: initialiser of the HWIO kernel [kh, kw, Cin, Cout], named
      (None, None, "conv_in", "conv_out").
    bias_init: initialiser of the bias [Cout], named ("conv_out",); a
      subclass whose bias depends on the fan-in overrides `bias_initializer`.
  """

  features: int
  kernel_size: tuple[int, int]
  strides: tuple[int, int] = (1, 1)
  padding: Sequence[tuple[int, int]] = ((0, 0), (0, 0))
  dtype: Dtype = jnp.float32
  param_dtype: Dtype = jnp.float32
  kernel_init: Initializer = nn.initializers.lecun_normal()
  bias_init: Initializer = nn.initializers.zeros_init()

  def bias_initializer(self, fan_in: int) -> Initializer:
    """The bias initialiser for a kernel of fan_in = kh * kw * Cin."""
    del fan_in
    return self.bias_init

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    """Convolves x [B, H, W, Cin] to [B, H', W', features] in `dtype`."""
    kh, kw = self.kernel_size
    kernel = self.param(
        "kernel", nn.with_logical_partitioning(
            self.kernel_init, (None, None, "conv_in", "conv_out")),
        (kh, kw, x.shape[-1], self.features), self.param_dtype)
    bias = self.param(
        "bias", nn.with_logical_partitioning(
            self.bias_initializer(kh * kw * x.shape[-1]), ("conv_out",)),
        (self.features,), self.param_dtype)
    x, kernel, bias = nn.dtypes.promote_dtype(x, kernel, bias,
                                              dtype=self.dtype)
    return conv2d(x, kernel, self.strides, self.padding) + bias


class LayerNorm(nn.Module):
  """LayerNorm over the last axis, statistics in float32.

  Attributes:
    epsilon: variance floor.
    dtype: output dtype.
    param_dtype: dtype of scale and bias, both named ("norm",).
  """

  epsilon: float = 1e-6
  dtype: Dtype = jnp.float32
  param_dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    """Normalises x [..., D]; returns [..., D] in `dtype`."""
    d = x.shape[-1]
    scale = self.param(
        "scale", nn.with_logical_partitioning(nn.initializers.ones_init(),
                                              ("norm",)),
        (d,), self.param_dtype)
    bias = self.param(
        "bias", nn.with_logical_partitioning(nn.initializers.zeros_init(),
                                             ("norm",)),
        (d,), self.param_dtype)
    x32 = x.astype(jnp.float32)
    mean = jnp.mean(x32, axis=-1, keepdims=True)
    var = jnp.mean(jnp.square(x32 - mean), axis=-1, keepdims=True)
    y = (x32 - mean) * jax.lax.rsqrt(var + self.epsilon)
    y = y * scale.astype(jnp.float32) + bias.astype(jnp.float32)
    return y.astype(self.dtype)


class Mlp(nn.Module):
  """Feed-forward block: Dense(mlp_dim) -> GELU -> dropout -> Dense(D).

  Attributes:
    mlp_dim: hidden width.
    dropout_rate: dropout on the hidden activations.
    dtype: compute dtype.
    param_dtype: parameter dtype.
  """

  mlp_dim: int
  dropout_rate: float = 0.0
  dtype: Dtype = jnp.float32
  param_dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    """Maps x [B, T, D] to [B, T, D] in `dtype`."""
    d = x.shape[-1]
    h = DenseGeneral(self.mlp_dim, ("embed", "mlp"), dtype=self.dtype,
                     param_dtype=self.param_dtype, name="wi")(x)
    h = nn.gelu(h)
    h = nn.with_logical_constraint(h, BATCH_TIME_MLP)
    h = nn.Dropout(self.dropout_rate)(h, deterministic=not train)
    y = DenseGeneral(d, ("mlp", "embed"), dtype=self.dtype,
                     param_dtype=self.param_dtype, name="wo")(h)
    return nn.with_logical_constraint(y, BATCH_TIME_EMBED)


# `attention_impl` values served by `jax.nn.dot_product_attention` with key
# lengths (its "xla" implementation is what tests compare them against).
FUSED_ATTENTION = ("cudnn",)
ATTENTION_IMPLS = ("xla",) + FUSED_ATTENTION
ATTENTION_LENGTH_MULTIPLE = 64


def prefix_masked_attention(q: jax.Array, k: jax.Array, v: jax.Array,
                            mask: jax.Array, implementation: str
                            ) -> jax.Array:
  """Scaled dot-product attention over keys masked by a valid prefix.

  Args:
    q, k, v: [B, T, H, K] queries, keys and values (unscaled).
    mask: [B, T] bool, True on valid keys, which must come first.
    implementation: "cudnn" (fused flash attention, GPU) or "xla".

  Returns:
    [B, T, H, K] in q's dtype. An example with no valid key attends to its
    first key (finite; its queries are padding for the caller to ignore).
  """
  lengths = jnp.maximum(jnp.sum(mask, axis=-1, dtype=jnp.int32), 1)
  t = q.shape[1]
  # cuDNN's flash attention takes sequence lengths in multiples of 64 only;
  # the extra keys lie past every example's length, so they get no weight.
  pad = [(0, 0), (0, -t % ATTENTION_LENGTH_MULTIPLE), (0, 0), (0, 0)]
  q, k, v = (jnp.pad(a, pad) for a in (q, k, v))
  out = jax.nn.dot_product_attention(
      q, k, v, key_value_seq_lengths=lengths, implementation=implementation)
  return out[:, :t]


class MultiHeadSelfAttention(nn.Module):
  """Masked multi-head self-attention.

  Keys at padded positions (mask False) get zero weight, so valid queries
  never see padding. Padded queries produce finite values that callers must
  ignore. Logits are computed in `dtype`, the softmax in float32.

  Attributes:
    num_heads: number of heads H.
    head_dim: per-head size; defaults to D // H.
    dropout_rate: dropout on the attention weights.
    dtype: compute dtype.
    param_dtype: parameter dtype.
    attention_impl: "xla" (einsum, softmax, einsum: runs everywhere, takes
      any key mask and attention dropout) or "cudnn" (cuDNN's fused flash
      attention through `jax.nn.dot_product_attention`: GPU only, bfloat16
      or float16, no attention dropout in training, and the key mask must be
      a valid prefix, padding at the end, as every encoder's is).
  """

  num_heads: int
  head_dim: int | None = None
  dropout_rate: float = 0.0
  dtype: Dtype = jnp.float32
  param_dtype: Dtype = jnp.float32
  attention_impl: str = "xla"

  @nn.compact
  def __call__(self, x: jax.Array, mask: jax.Array,
               train: bool = False) -> jax.Array:
    """Attends x [B, T, D] to itself with key mask [B, T]; returns [B, T, D]."""
    d = x.shape[-1]
    head_dim = self.head_dim or d // self.num_heads
    if self.head_dim is None and d % self.num_heads:
      raise ValueError(f"width {d} is not divisible by {self.num_heads} heads")
    proj = lambda name: DenseGeneral(  # pylint: disable=g-long-lambda
        (self.num_heads, head_dim), ("embed", "heads", "kv"),
        dtype=self.dtype, param_dtype=self.param_dtype, name=name)
    q = nn.with_logical_constraint(proj("query")(x), BATCH_TIME_HEADS_KV)
    k = nn.with_logical_constraint(proj("key")(x), BATCH_TIME_HEADS_KV)
    v = nn.with_logical_constraint(proj("value")(x), BATCH_TIME_HEADS_KV)
    if self.attention_impl == "xla":
      q = q * jnp.asarray(head_dim ** -0.5, q.dtype)
      logits = jnp.einsum("bqhd,bkhd->bhqk", q, k).astype(jnp.float32)
      # A finite floor keeps fully padded rows (length-0 examples) NaN-free.
      logits = jnp.where(mask[:, None, None, :], logits,
                         jnp.finfo(jnp.float32).min)
      weights = jax.nn.softmax(logits, axis=-1).astype(self.dtype)
      weights = nn.Dropout(self.dropout_rate)(weights,
                                              deterministic=not train)
      ctx = jnp.einsum("bhqk,bkhd->bqhd", weights, v)
    elif self.attention_impl in FUSED_ATTENTION:
      if train and self.dropout_rate > 0:
        raise ValueError(
            f"attention_impl={self.attention_impl!r} has no attention "
            f"dropout; set the attention dropout rate to 0 or use 'xla'")
      ctx = prefix_masked_attention(q, k, v, mask, self.attention_impl)
    else:
      raise ValueError(f"unknown attention_impl {self.attention_impl!r}; "
                       f"valid: {list(ATTENTION_IMPLS)}")
    ctx = nn.with_logical_constraint(ctx, BATCH_TIME_HEADS_KV)
    y = DenseGeneral(d, ("heads", "kv", "embed"), axis=(-2, -1),
                     dtype=self.dtype, param_dtype=self.param_dtype,
                     name="out")(ctx)
    return nn.with_logical_constraint(y, BATCH_TIME_EMBED)


def sinusoidal_positions(length: int, dim: int) -> jax.Array:
  """Fixed sin/cos absolute position table (Vaswani et al. 2017).

  Args:
    length: number of positions T.
    dim: feature size D (even).

  Returns:
    [T, D] float32; columns [0, D/2) are sines, [D/2, D) cosines, with
    wavelengths geometric from 2*pi to 10000*2*pi.
  """
  if dim % 2:
    raise ValueError(f"sinusoidal positions need an even dim, got {dim}")
  pos = jnp.arange(length, dtype=jnp.float32)[:, None]
  inv_freq = jnp.exp(-jnp.log(10000.0) *
                     jnp.arange(0, dim // 2, dtype=jnp.float32) / (dim // 2))
  angles = pos * inv_freq[None, :]
  return jnp.concatenate([jnp.sin(angles), jnp.cos(angles)], axis=-1)
