"""Conv2d subsampling front (x4 in time), as in icefall/ESPnet conformers.

Two 3x3 stride-2 VALID convolutions with ReLU over the (time, mel) plane,
then a linear map of the flattened (frequency, channel) features to the model
width. With 10 ms fbank frames (100 Hz) the output hop is 40 ms (25 Hz).

Output length, for T input frames (each conv maps n -> (n - 3) // 2 + 1):

  T' = ((T - 1) // 2 - 1) // 2        e.g. T = 1000 -> 249, T = 7 -> 1.

The same formula applies to the frequency axis (80 mel bins -> 19). Inputs
need T >= 7 frames. Every valid output frame t' < T'(length) sees only input
frames < length, so padding never leaks into valid frames.
"""

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from audiopt.models import layers

Dtype = Any


def subsampled_length(length: Any) -> Any:
  """Output frame count of `Conv2dSubsampling` for `length` input frames.

  Args:
    length: int or integer array of input frame counts.

  Returns:
    ((length - 1) // 2 - 1) // 2, floored at 0, same type as `length`.
  """
  out = ((length - 1) // 2 - 1) // 2
  if isinstance(out, int):
    return max(out, 0)
  return jnp.maximum(out, 0)


class Conv2dSubsampling(nn.Module):
  """Conv2d(3x3, /2) -> ReLU -> Conv2d(3x3, /2) -> ReLU -> Linear(width).

  Attributes:
    width: output feature size D.
    channels: conv channels C (icefall uses D; 256 keeps the front small).
    dtype: compute dtype.
    param_dtype: parameter dtype.
  """

  width: int
  channels: int = 256
  dtype: Dtype = jnp.float32
  param_dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, features: jax.Array,
               mask: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Subsamples features.

    Args:
      features: [B, T, F] log-mel frames.
      mask: [B, T] bool, True on valid frames; assumed to be a prefix
        (padding only at the end), as lengths are read from its sum.

    Returns:
      x: [B, T', D] in `dtype`, zero on padded frames.
      mask: [B, T'] bool, with T' = ((T - 1) // 2 - 1) // 2.
    """
    if features.shape[1] < 7:
      raise ValueError(f"Conv2dSubsampling needs >= 7 frames, got "
                       f"{features.shape[1]}")
    x = features[..., None]  # [B, T, F, 1]: time and mel are the 2-D plane.
    for i in range(2):
      x = layers.Conv2D(
          self.channels, (3, 3), strides=(2, 2), dtype=self.dtype,
          param_dtype=self.param_dtype,
          kernel_init=nn.initializers.kaiming_uniform(),
          name=f"conv_{i}")(x)
      x = nn.relu(x)
      x = nn.with_logical_constraint(x, ("batch", "time", None, "conv_out"))
    b, t, f, c = x.shape
    x = x.reshape(b, t, f * c)
    x = layers.DenseGeneral(self.width, (None, "embed"), dtype=self.dtype,
                            param_dtype=self.param_dtype, name="out")(x)
    lengths = subsampled_length(jnp.sum(mask.astype(jnp.int32), axis=-1))
    out_mask = jnp.arange(t)[None, :] < lengths[:, None]
    x = jnp.where(out_mask[..., None], x, jnp.zeros((), x.dtype))
    return nn.with_logical_constraint(x, layers.BATCH_TIME_EMBED), out_mask
