"""Zipformer's Conv2d subsampling front end (reference/ZIPFORMER.md 7.2).

fbank [B, T, F] at 100 Hz -> three 3x3 convolutions (channels 8/32/128 in the
reference) with SwooshR -> one ConvNeXt block -> Linear -> BiasNorm, giving
[B, (T - 7) // 2, D] at 50 Hz. The (time, frequency) plane is the conv's
(H, W); frequency goes F -> F -> (F-3)//2+1 -> ... (80 -> 80 -> 39 -> 19).
"""

from collections.abc import Sequence
import math
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from audiopt.models import layers
from audiopt.models import zipformer_modules as zm
from audiopt.models import zipformer_ops as ops

Dtype = Any
_CONV_ACTIVATION = ("batch", "time", None, "conv_out")


def frontend_length(length: Any) -> Any:
  """Front-end output frames for `length` input frames: (T - 7) // 2, >= 0."""
  out = (length - 7) // 2
  return max(out, 0) if isinstance(out, int) else jnp.maximum(out, 0)


class TorchConv2D(layers.Conv2D):
  """`layers.Conv2D` initialised as torch's Conv2d: U(+-1/sqrt(fan_in)).

  Both the kernel and the bias, fan_in = kh * kw * Cin.
  """

  kernel_init: layers.Initializer = ops.torch_uniform()

  def bias_initializer(self, fan_in: int) -> layers.Initializer:
    """U(+-1/sqrt(fan_in)), torch's Conv2d bias."""
    return ops.uniform(1.0 / math.sqrt(fan_in))


class ConvNeXt(nn.Module):
  """x + pw2(SwooshL(pw1(depthwise 7x7(x)))) on [B, T, F, C].

  In training the residual branch is dropped per sequence with the
  reference's layerdrop schedule.
  """

  hidden_ratio: int = 3
  kernel_size: tuple[int, int] = (7, 7)
  dtype: Dtype = jnp.float32
  param_dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, batch_count: jax.Array,
               train: bool = False) -> jax.Array:
    """Maps x [B, T, F, C] to [B, T, F, C]."""
    c = x.shape[-1]
    kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
    y = zm.DepthwiseConv(tuple(self.kernel_size), name="depthwise_conv",
                         **kw)(x)
    y = zm.Linear(c * self.hidden_ratio, (None, "mlp"),
                  name="pointwise_conv1", **kw)(y)
    y = ops.swoosh_l(y)
    y = zm.Linear(c, ("mlp", None), init_scale=0.01, name="pointwise_conv2",
                  **kw)(y)
    if train:
      rate = ops.scheduled(batch_count, ops.CONVNEXT_LAYERDROP)
      y = y * ops.keep_mask(self.make_rng("dropout"), (x.shape[0], 1, 1, 1),
                            rate, y.dtype)
    return x + y


class Conv2dSubsampling(nn.Module):
  """Conv2d subsampling (x2 in time) to `width` channels.

  Attributes:
    width: output size D (the first stack's dim).
    channels: channels of the three convolutions.
    dropout_schedule: (batch_count, rate) points of the output dropout, whose
      mask is shared over time.
    reference_padding: keep the reference's leak of padded input frames into
      the last valid frames through the ConvNeXt's 7-frame context. When
      False, frames from each sequence's length on are zeroed before the
      ConvNeXt, as the conv's own zero padding would be for that sequence
      alone.
    dtype: compute dtype.
    param_dtype: parameter dtype.
  """

  width: int
  channels: Sequence[int] = (8, 32, 128)
  dropout_schedule: ops.Schedule = ops.DROPOUT
  reference_padding: bool = False
  dtype: Dtype = jnp.float32
  param_dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, features: jax.Array, lengths: jax.Array,
               batch_count: jax.Array, train: bool = False
               ) -> tuple[jax.Array, jax.Array]:
    """Subsamples features.

    Args:
      features: [B, T, F] log-mel frames, T >= 9.
      lengths: [B] valid input frames.
      batch_count: schedule position.
      train: enables dropout, layerdrop and the gradient scale.

    Returns:
      x: [B, (T - 7) // 2, width] in `dtype`.
      lengths: [B] valid output frames, (lengths - 7) // 2 floored at 0.
    """
    kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
    c1, c2, c3 = self.channels
    x = features[..., None].astype(self.dtype)
    x = TorchConv2D(c1, (3, 3), padding=((0, 0), (1, 1)), name="conv_0",
                    **kw)(x)
    if train:
      x = ops.scale_grad(x, 0.2)
    x = nn.with_logical_constraint(ops.swoosh_r(x), _CONV_ACTIVATION)
    x = TorchConv2D(c2, (3, 3), strides=(2, 2), name="conv_1", **kw)(x)
    x = nn.with_logical_constraint(ops.swoosh_r(x), _CONV_ACTIVATION)
    x = TorchConv2D(c3, (3, 3), strides=(1, 2), name="conv_2", **kw)(x)
    x = nn.with_logical_constraint(ops.swoosh_r(x), _CONV_ACTIVATION)
    out_lengths = frontend_length(lengths)
    if not self.reference_padding:
      valid = ops.lengths_to_mask(out_lengths, x.shape[1])
      x = jnp.where(valid[:, :, None, None], x, jnp.zeros((), x.dtype))
    x = ConvNeXt(name="convnext", **kw)(x, batch_count, train)
    b, t, f, c = x.shape
    # Feature index c * F' + f (channel-major), as the reference flattens.
    x = x.transpose(0, 1, 3, 2).reshape(b, t, c * f)
    x = zm.Linear(self.width, (None, "embed"), name="out", **kw)(x)
    x = zm.BiasNorm(name="out_norm", **kw)(x, train)
    if train:
      rate = ops.scheduled(batch_count, self.dropout_schedule)
      x = ops.dropout(self.make_rng("dropout"), x, rate, shared_axes=(1,))
    return nn.with_logical_constraint(x, layers.BATCH_TIME_EMBED), out_lengths
