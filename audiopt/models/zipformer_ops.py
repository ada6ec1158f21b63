"""Stateless pieces of the Zipformer port (reference/ZIPFORMER.md section 7).

Activations (SwooshL/R), the batch-count schedules of the reference's
`ScheduledFloat`, its forward-identity gradient hooks (LimitParamValue,
ScaleGrad, penalize_abs_values_gt), torch-default initialisers, the compact
relative positional encoding, the depthwise convolution of the conv modules
and the front end, and the frame-rate changes used between stacks. All
arrays are batch-major: [B, T, C].
"""

from collections.abc import Sequence
import functools
import itertools
import math
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

Schedule = Sequence[tuple[float, float]]

# Reference schedules, as (batch_count, value) points (ZIPFORMER.md 7.9).
DROPOUT = ((0.0, 0.3), (20000.0, 0.1))
ATTENTION_SKIP = ((0.0, 0.2), (4000.0, 0.05), (16000.0, 0.0))
CONV_SKIP = ATTENTION_SKIP
FF_SKIP = ((0.0, 0.1), (4000.0, 0.01), (50000.0, 0.0))
CONST_ATTENTION = ((0.0, 0.25), (4000.0, 0.025))
POS_EMB_SKIP = ((0.0, 0.5), (4000.0, 0.0))
BYPASS_SCALE_MIN = ((0.0, 0.9), (20000.0, 0.2))
CONVNEXT_LAYERDROP = ((0.0, 0.2), (20000.0, 0.015))
# Batch count at which every schedule has reached its final value; used when
# the caller does not pass one (the reference caps its count at 100000).
SATURATED_BATCH_COUNT = 100000.0


def swoosh_l(x: jax.Array) -> jax.Array:
  """SwooshL(x) = log(1 + e^(x - 4)) - 0.08 x - 0.035, elementwise."""
  return jax.nn.softplus(x - 4.0) - 0.08 * x - 0.035


def swoosh_r(x: jax.Array) -> jax.Array:
  """SwooshR(x) = log(1 + e^(x - 1)) - 0.08 x - 0.313261687 (SwooshR(0) = 0)."""
  return jax.nn.softplus(x - 1.0) - 0.08 * x - 0.313261687


def scheduled(batch_count: jax.Array, schedule: Schedule) -> jax.Array:
  """Piecewise-linear value of `schedule` at `batch_count`, clamped at the ends.

  Args:
    batch_count: scalar float (may be traced).
    schedule: (x, y) points with increasing x.

  Returns:
    Scalar float32.
  """
  xs = jnp.asarray([p[0] for p in schedule], jnp.float32)
  ys = jnp.asarray([p[1] for p in schedule], jnp.float32)
  return jnp.interp(jnp.asarray(batch_count, jnp.float32), xs, ys)


# ---------------------------------------------------------------- gradients


@jax.custom_vjp
def limit_param_value(x: jax.Array, lo: jax.Array, hi: jax.Array,
                      active: jax.Array) -> jax.Array:
  """Identity whose gradient never pushes x further outside [lo, hi].

  Where x < lo a positive gradient is negated, then where x > hi a negative
  gradient is negated (the reference's LimitParamValue). `active` (float 0/1
  scalar) switches the hook on; the reference applies it with probability 0.6.
  """
  del lo, hi, active
  return x


def _limit_fwd(x, lo, hi, active):
  return x, (x, lo, hi, active)


def _limit_bwd(res, g):
  x, lo, hi, active = res
  on = active > 0
  g = jnp.where(on & (g > 0) & (x < lo), -g, g)
  g = jnp.where(on & (g < 0) & (x > hi), -g, g)
  return g, jnp.zeros_like(lo), jnp.zeros_like(hi), jnp.zeros_like(active)


limit_param_value.defvjp(_limit_fwd, _limit_bwd)


@functools.partial(jax.custom_vjp, nondiff_argnums=(1,))
def scale_grad(x: jax.Array, alpha: float) -> jax.Array:
  """Identity whose gradient is multiplied by `alpha`."""
  del alpha
  return x


def _scale_fwd(x, alpha):
  del alpha
  return x, None


def _scale_bwd(alpha, _, g):
  return (g * alpha,)


scale_grad.defvjp(_scale_fwd, _scale_bwd)


def _same_pad(x: jax.Array, kernel_shape: Sequence[int]) -> jax.Array:
  """Pads the spatial axes of x [B, *S, C] by k // 2 on both sides."""
  return jnp.pad(x, [(0, 0)] + [(k // 2, k // 2) for k in kernel_shape] +
                 [(0, 0)])


def _shifted_sum(x: jax.Array, kernel: jax.Array) -> jax.Array:
  spatial, kernel_shape = x.shape[1:-1], kernel.shape[:-1]
  padded = _same_pad(x, kernel_shape)
  y = jnp.zeros(x.shape, jnp.result_type(x, kernel))
  for offset in itertools.product(*(range(k) for k in kernel_shape)):
    window = tuple(slice(o, o + n) for o, n in zip(offset, spatial))
    y = y + padded[(slice(None),) + window] * kernel[offset]
  return y


@jax.custom_vjp
def depthwise_conv(x: jax.Array, kernel: jax.Array) -> jax.Array:
  """Per-channel convolution with "same" padding: prod(k) shifted products.

  Args:
    x: [B, *S, C] (the spatial axes S, e.g. time or time x frequency), any
      float dtype; kept as it is for the backward pass.
    kernel: [*k, C], odd k per spatial axis; float32 for float32 sums.

  Returns:
    [B, *S, C] in the promoted dtype of x and kernel:
    y[b, s, c] = sum_o x[b, s + o - k // 2, c] kernel[o, c], zero outside
    x. Its gradient for the kernel is a batched matrix product
    (`_kernel_grad`), not prod(k) reductions over the whole input.
  """
  return _shifted_sum(x, kernel)


def _kernel_grad(x: jax.Array, g: jax.Array,
                 kernel_shape: Sequence[int]) -> jax.Array:
  """d(sum(g * depthwise_conv(x, kernel)))/d kernel, [*k, C].

  Along the last spatial axis (length n, kernel k) the gradient is a
  correlation. Cut into blocks of L outputs, each with its window of
  L + k - 1 inputs, it becomes one matrix product per channel,
  M[c, u, r] = sum over blocks and the other positions of
  window[u] * g[r], whose diagonal sums sum_r M[c, r + o, r] are the k taps
  (L = k - 1, or the whole axis when n <= 4 (k - 1)). The taps of the other
  spatial axes are a loop over shifted inputs.
  """
  *lead_k, k = kernel_shape
  n, c = x.shape[-2], x.shape[-1]
  block = k - 1 if k > 1 and n > 4 * (k - 1) else n
  blocks = -(-n // block)
  g = jnp.pad(g, [(0, 0)] * (g.ndim - 2) + [(0, blocks * block - n), (0, 0)])
  g = g.reshape(g.shape[:-2] + (blocks, block, c))
  padded = _same_pad(x.astype(g.dtype), kernel_shape)  # n + k - 1 long
  if blocks > 1:  # windows overlap by k - 1 = L: block j and j + 1's head
    padded = jnp.pad(padded, [(0, 0)] * (x.ndim - 2) + [
        (0, (blocks + 1) * block - padded.shape[-2]), (0, 0)])
  taps = jnp.arange(k)[:, None] + jnp.arange(block)[None, :]
  grads = []
  for offset in itertools.product(*(range(j) for j in lead_k)):
    window = tuple(slice(o, o + m) for o, m in zip(offset, x.shape[1:-2]))
    shifted = padded[(slice(None),) + window]
    if blocks > 1:
      body = shifted.reshape(shifted.shape[:-2] + (blocks + 1, block, c))
      windows = jnp.concatenate([body[..., :blocks, :, :],
                                 body[..., 1:, :k - 1, :]], axis=-2)
    else:
      windows = shifted[..., None, :, :]
    axes = tuple(range(windows.ndim - 2))  # batch, other positions, blocks
    m = jax.lax.dot_general(windows, g, ((axes, axes), ((windows.ndim - 1,),
                                                        (g.ndim - 1,))))
    grads.append(m[:, taps, jnp.arange(block)].sum(-1).T)  # [k, C]
  return jnp.stack(grads).reshape(tuple(kernel_shape) + (c,))


def _depthwise_fwd(x, kernel):
  return _shifted_sum(x, kernel), (x, kernel)


def _depthwise_bwd(res, g):
  x, kernel = res
  _, x_vjp = jax.vjp(lambda x: _shifted_sum(x, kernel), x)
  return x_vjp(g)[0], _kernel_grad(x, g, kernel.shape[:-1]).astype(
      kernel.dtype)


depthwise_conv.defvjp(_depthwise_fwd, _depthwise_bwd)


@functools.partial(jax.custom_vjp, nondiff_argnums=(1, 2))
def penalize_abs_values_gt(x: jax.Array, limit: float, penalty: float,
                           active: jax.Array) -> jax.Array:
  """Identity adding `penalty * sign(x)` to the gradient where |x| > limit.

  `active` (float 0/1 scalar) switches the penalty on.
  """
  del limit, penalty, active
  return x


def _penalize_fwd(x, limit, penalty, active):
  del limit, penalty
  return x, (x, active)


def _penalize_bwd(limit, penalty, res, g):
  x, active = res
  extra = jnp.where(jnp.abs(x) > limit, penalty * jnp.sign(x), 0.0)
  return g + (active * extra).astype(g.dtype), jnp.zeros_like(active)


penalize_abs_values_gt.defvjp(_penalize_fwd, _penalize_bwd)


# ---------------------------------------------------------------- randomness


def keep_mask(rng: jax.Array, shape: Sequence[int], rate: jax.Array,
              dtype: Any) -> jax.Array:
  """A 0/1 mask that is 1 with probability 1 - rate (rate may be traced)."""
  return (jax.random.uniform(rng, shape) > rate).astype(dtype)


def dropout(rng: jax.Array, x: jax.Array, rate: jax.Array,
            shared_axes: Sequence[int] = ()) -> jax.Array:
  """Inverted dropout with a mask shared over `shared_axes` (traced rate ok)."""
  shape = [1 if i in shared_axes else n for i, n in enumerate(x.shape)]
  mask = keep_mask(rng, shape, rate, x.dtype)
  return x * mask / (1.0 - rate).astype(x.dtype)


def bernoulli(rng: jax.Array, prob: Any) -> jax.Array:
  """A float32 scalar that is 1.0 with probability `prob`, else 0.0."""
  return (jax.random.uniform(rng, ()) < prob).astype(jnp.float32)


# ---------------------------------------------------------------- init


def torch_uniform(scale: float = 1.0, fan_in_axes: int = -1):
  """Initialiser U(+-scale / sqrt(fan_in)): torch's default for Linear/Conv.

  Args:
    scale: multiplies the bound (the reference's `initial_scale`).
    fan_in_axes: number of leading kernel axes that make up fan-in: -1 means
      all but the last axis (a Dense kernel [in, out] or a Conv kernel
      [..., in, out]).
  """

  def init(key, shape, dtype=jnp.float32):
    n = len(shape) - 1 if fan_in_axes < 0 else fan_in_axes
    bound = scale / math.sqrt(max(1, math.prod(shape[:n])))
    return jax.random.uniform(key, shape, dtype, -bound, bound)

  return init


def uniform(bound: float):
  """Initialiser U(+-bound)."""

  def init(key, shape, dtype=jnp.float32):
    return jax.random.uniform(key, shape, dtype, -bound, bound)

  return init


# ---------------------------------------------------------------- positions


@functools.lru_cache(maxsize=64)
def compact_rel_positions(length: int, dim: int) -> np.ndarray:
  """CompactRelPositionalEncoding table for offsets -(T-1) .. T-1.

  Args:
    length: T, the number of frames.
    dim: encoding size (even).

  Returns:
    [2T - 1, dim] float32; row n encodes offset n - (T - 1). Columns 2k, 2k+1
    hold cos and sin of atan(compressed offset) * (k + 1); the last column is
    1.0 (a bias term).
  """
  x = np.arange(-(length - 1), length, dtype=np.float64)[:, None]
  c = math.sqrt(dim)
  compressed = c * np.sign(x) * (np.log(np.abs(x) + c) - math.log(c))
  angle = np.arctan(compressed / (dim / (2.0 * math.pi)))
  freqs = 1.0 + np.arange(dim // 2, dtype=np.float64)
  pe = np.zeros((x.shape[0], dim), np.float64)
  pe[:, 0::2] = np.cos(angle * freqs)
  pe[:, 1::2] = np.sin(angle * freqs)
  pe[:, -1] = 1.0
  return pe.astype(np.float32)


def rel_to_abs(scores: jax.Array) -> jax.Array:
  """Maps relative-offset scores [..., T, 2T-1] to [..., T, T].

  out[..., i, j] = scores[..., i, (T - 1) - i + j], i.e. the score of offset
  j - i. Done with a slice and reshapes of the flattened rows (what the
  reference's `as_strided` does) instead of a gather.
  """
  t = scores.shape[-2]
  if t == 1:
    return scores
  lead = scores.shape[:-2]
  flat = scores.reshape(lead + (t * (2 * t - 1),))
  flat = flat[..., t - 1:t - 1 + t * (2 * t - 2)]
  return flat.reshape(lead + (t, 2 * t - 2))[..., :t]


# ---------------------------------------------------------------- frame rates


def convert_num_channels(x: jax.Array, channels: int) -> jax.Array:
  """Truncates x [..., C] to `channels` or right-pads it with zeros."""
  c = x.shape[-1]
  if channels <= c:
    return x[..., :channels]
  pad = [(0, 0)] * (x.ndim - 1) + [(0, channels - c)]
  return jnp.pad(x, pad)


def pad_to_multiple(x: jax.Array, factor: int,
                    lengths: jax.Array | None) -> jax.Array:
  """Right-pads x [B, T, C] in time to a multiple of `factor`.

  Args:
    x: frames.
    factor: the downsampling factor.
    lengths: [B] valid frames per sequence, or None. With None, the pad repeats
      the last frame of the array, valid or not (the reference). With lengths,
      every frame from lengths[b] on, and the pad, repeat frame lengths[b] - 1,
      so a padded sequence is downsampled exactly as it would be alone.

  Returns:
    [B, ceil(T / factor) * factor, C].
  """
  b, t, c = x.shape
  pad = -t % factor
  if lengths is None:
    last = x[:, -1:]
  else:
    idx = jnp.clip(lengths - 1, 0, t - 1).astype(jnp.int32)
    last = jnp.take_along_axis(x, idx[:, None, None], axis=1)
    valid = jnp.arange(t)[None, :, None] < lengths[:, None, None]
    x = jnp.where(valid, x, last)
  if pad:
    x = jnp.concatenate([x, jnp.broadcast_to(last, (b, pad, c))], axis=1)
  return x


def downsample_lengths(lengths: jax.Array, factor: int) -> jax.Array:
  """Valid frames after downsampling by `factor`: ceil(lengths / factor)."""
  return (lengths + factor - 1) // factor


def lengths_to_mask(lengths: jax.Array, length: int) -> jax.Array:
  """[B] lengths -> [B, length] bool, True on frames t < lengths[b]."""
  return jnp.arange(length)[None, :] < lengths[:, None]
