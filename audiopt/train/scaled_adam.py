"""ScaledAdam, the Zipformer authors' optimizer, as an optax transformation.

A port of `ScaledAdam` as reference/ZIPFORMER.md section 8 specifies it (the
class in AudenAI/Auden, from icefall). Per step, with lr from the schedule:

1. Clipping. The step-0 update is never clipped. Later steps compute
   N = sqrt(sum over tensors of sum (g * param_rms)^2, scalars counting
   sum (g * scalar_lr_scale)^2), store N in a ring buffer of
   `clipping_update_period` slots, and at steps divisible by the period (and
   at steps 10, 20 and 40 when below it) set the threshold to
   clipping_scale x the median of the buffer (at 10/20/40: x 2 again and the
   median of the `step` largest entries only, the ones recorded so far).
   Every gradient is multiplied by min(1, threshold / (N + 1e-20)).
2. Momentum: delta <- beta1 * delta; a step adds (1 - beta1) x its change to
   delta and applies delta (conventional momentum on the whole update).
3. Tensors (more than one element): Adam on g scaled to the tensor's RMS,
   delta += -lr (1 - beta1) max(param_rms, param_min_rms) g / (sqrt(v^) + eps),
   plus, every `size_update_period` steps, an Adam step on the tensor's log
   scale learned from sum(p * g) ("size update"), capped so the RMS stays
   below param_max_rms and disabled below param_min_rms.
4. Scalars (one element): plain Adam at lr * scalar_lr_scale, and the value
   is clamped to [-scalar_max, scalar_max] before delta is added.

The state is a pure pytree (no Python counters), so `update` runs under jit
on sharded parameters: per-parameter moments are shaped and sharded like the
parameters, per-tensor statistics are small replicated vectors with one entry
per pytree leaf (in `jax.tree.leaves` order).

Deviation: where the reference raises because the median of the recorded
norms is not finite, this port keeps the previous threshold.
"""

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax

# The reference's early threshold estimates, used when below the period.
_IRREGULAR_ESTIMATE_STEPS = (10, 20, 40)


class ScaledAdamState(NamedTuple):
  """State of `scaled_adam`; L is the number of parameter leaves.

  Attributes:
    count: int32 [], updates applied so far (the reference's `step`).
    delta: like params, the momentum-decayed parameter change.
    exp_avg_sq: like params, the second moment of the gradients.
    param_rms: [L] RMS of each leaf, refreshed every size_update_period
      steps (unused for scalar leaves).
    scale_exp_avg_sq: [L] second moment of the size-update gradients.
    scale_grads: [size_update_period, L] sum(p * g) of the recent steps.
    model_norms: [clipping_update_period] ring buffer of clipping norms N.
    model_norm_threshold: [] clipping threshold; inf until first estimated.
  """

  count: jax.Array
  delta: optax.Updates
  exp_avg_sq: optax.Updates
  param_rms: jax.Array
  scale_exp_avg_sq: jax.Array
  scale_grads: jax.Array
  model_norms: jax.Array
  model_norm_threshold: jax.Array


def _stats_dtype(leaves) -> jnp.dtype:
  dtype = jnp.result_type(*leaves) if leaves else jnp.float32
  return jnp.promote_types(dtype, jnp.float32)


def _rms(p: jax.Array, dtype) -> jax.Array:
  return jnp.sqrt(jnp.mean(jnp.square(p.astype(dtype))))


def _clipping_factor(grads, scalar, state, clipping_scale, scalar_lr_scale,
                     period):
  """Returns (factor c, new model_norms, new threshold): step 1 above.

  Args:
    grads: the gradient leaves.
    scalar: per leaf, whether it has one element.
    state: the `ScaledAdamState` before this update.
    clipping_scale: the threshold in medians.
    scalar_lr_scale: the weight of scalar gradients in the norm.
    period: the clipping update period (ring buffer size).
  """
  count = state.count
  dtype = state.model_norms.dtype
  sumsq = jnp.zeros((), dtype)
  for i, (g, is_scalar) in enumerate(zip(grads, scalar)):
    g = g.astype(dtype)
    if is_scalar:
      sumsq += jnp.sum(jnp.square(g)) * scalar_lr_scale**2
    else:
      sumsq += jnp.sum(jnp.square(g * state.param_rms[i]))
  norm = jnp.sqrt(sumsq)
  first = count == 0
  norms = jnp.where(first, state.model_norms,
                    state.model_norms.at[count % period].set(norm))

  irregular = functools.reduce(
      jnp.logical_or,
      [count == s for s in _IRREGULAR_ESTIMATE_STEPS if s < period],
      jnp.zeros((), bool))
  estimate = ~first & ((count % period == 0) | irregular)
  # The median of the n largest entries of the sorted buffer, with the
  # reference's index rule min(n - 1, (n // 4) * 2).
  n = jnp.where(irregular, count, period)
  index = period - n + jnp.minimum(n - 1, (n // 4) * 2)
  median = jnp.sort(norms)[jnp.clip(index, 0, period - 1)]
  new_threshold = clipping_scale * median * jnp.where(irregular, 2.0, 1.0)
  threshold = jnp.where(estimate & jnp.isfinite(median), new_threshold,
                        state.model_norm_threshold).astype(dtype)
  ratio = threshold / (norm + 1e-20)
  # NaN ratios give 1, as Python's min(1.0, nan) does in the reference.
  factor = jnp.where(first | ~(ratio < 1.0), jnp.ones((), dtype), ratio)
  return factor, norms, threshold


def scaled_adam(learning_rate: float | optax.Schedule,
                *,
                clipping_scale: float | None = 2.0,
                betas: tuple[float, float] = (0.9, 0.98),
                scalar_lr_scale: float = 0.1,
                eps: float = 1e-8,
                param_min_rms: float = 1e-5,
                param_max_rms: float = 3.0,
                scalar_max: float = 10.0,
                size_update_period: int = 4,
                clipping_update_period: int = 100
                ) -> optax.GradientTransformation:
  """ScaledAdam with the reference's effective hyper-parameters as defaults.

  Args:
    learning_rate: lr, or a schedule called with the count of updates
      already applied (see `audiopt.train.eden.eden` for the reference's).
      The reference runs at 0.045 with the Eden schedule.
    clipping_scale: the clipping threshold in medians of recent norms; None
      disables clipping.
    betas: (beta1, beta2), momentum and second-moment decays.
    scalar_lr_scale: lr factor of scalar parameters and of size updates.
    eps: Adam's denominator floor.
    param_min_rms: floor of the RMS that scales updates; tensors below it
      get no size update.
    param_max_rms: size updates never take a tensor's RMS above this.
    scalar_max: scalar parameters are clamped to [-scalar_max, scalar_max].
    size_update_period: steps between size updates (and RMS refreshes).
    clipping_update_period: slots of the norm buffer and steps between
      threshold estimates.

  Returns:
    An optax transformation whose `update(grads, state, params)` requires
    params and returns updates to add to them.
  """
  beta1, beta2 = betas
  period = size_update_period
  beta2_size = beta2**period

  def init_fn(params):
    leaves = jax.tree.leaves(params)
    dtype = _stats_dtype(leaves)
    zeros = jnp.zeros((len(leaves),), dtype)
    return ScaledAdamState(
        count=jnp.zeros((), jnp.int32),
        delta=jax.tree.map(jnp.zeros_like, params),
        exp_avg_sq=jax.tree.map(jnp.zeros_like, params),
        param_rms=jnp.stack([_rms(p, dtype) for p in leaves]) if leaves
        else zeros,
        scale_exp_avg_sq=zeros,
        scale_grads=jnp.zeros((period, len(leaves)), dtype),
        model_norms=jnp.zeros((clipping_update_period,), dtype),
        model_norm_threshold=jnp.full((), jnp.inf, dtype))

  def update_fn(updates, state, params=None):
    if params is None:
      raise ValueError(optax.NO_PARAMS_MSG)
    grads = jax.tree.leaves(updates)
    ps = jax.tree.leaves(params)
    deltas = jax.tree.leaves(state.delta)
    vs = jax.tree.leaves(state.exp_avg_sq)
    dtype = state.param_rms.dtype
    count = state.count
    scalar = [p.size == 1 for p in ps]
    lr = learning_rate(count) if callable(learning_rate) else learning_rate
    lr = jnp.asarray(lr, dtype)

    norms, threshold = state.model_norms, state.model_norm_threshold
    if clipping_scale is not None and grads:
      factor, norms, threshold = _clipping_factor(
          grads, scalar, state, clipping_scale, scalar_lr_scale,
          clipping_update_period)
      grads = [g * factor.astype(g.dtype) for g in grads]

    # Size-update statistics of all tensors, as [L] vectors.
    is_size_step = count % period == period - 1
    scale_grads = state.scale_grads
    rms, scale_sq, scale_step = state.param_rms, state.scale_exp_avg_sq, None
    if ps:
      sums = jnp.stack([jnp.sum(p.astype(dtype) * g.astype(dtype))
                        for p, g in zip(ps, grads)])
      scale_grads = scale_grads.at[count % period].set(sums)
      rms = jnp.where(is_size_step,
                      jnp.stack([_rms(p, dtype) for p in ps]), rms)
      scale_sq = jnp.where(
          is_size_step,
          beta2_size * scale_sq +
          (1 - beta2_size) * jnp.mean(jnp.square(scale_grads), axis=0),
          scale_sq)
      size_count = ((count + 1) // period).astype(dtype)
      bias_correction = 1 - beta2_size**size_count
      scale_step = (-lr * scalar_lr_scale * jnp.sqrt(bias_correction) *
                    jnp.sum(scale_grads, axis=0) / (jnp.sqrt(scale_sq) + eps))
      scale_step = jnp.where(rms < param_min_rms, 0.0, scale_step)
      scale_step = jnp.minimum(scale_step, (param_max_rms - rms) / rms)
      scale_step = jnp.where(is_size_step & (count > 0), scale_step, 0.0)

    step_count = (count + 1).astype(dtype)
    bias_correction2 = 1 - beta2**step_count
    new_deltas, new_vs, outs = [], [], []
    for i, (p, g, delta, v) in enumerate(zip(ps, grads, deltas, vs)):
      delta = beta1 * delta
      v = beta2 * v + (1 - beta2) * jnp.square(g)
      if scalar[i]:
        denom = jnp.sqrt(v / bias_correction2.astype(v.dtype)) + eps
        delta = delta + (-lr * scalar_lr_scale * (1 - beta1)).astype(
            delta.dtype) * (g / denom)
        out = jnp.clip(p, -scalar_max, scalar_max) + delta - p
      else:
        delta = delta + ((1 - beta1) * p * scale_step[i].astype(p.dtype))
        v_hat = jnp.where(bias_correction2 < 0.99,
                          v * (1 / bias_correction2).astype(v.dtype), v)
        alpha = -lr * (1 - beta1) * jnp.maximum(rms[i], param_min_rms)
        delta = delta + g / (jnp.sqrt(v_hat) + eps) * alpha.astype(g.dtype)
        out = delta
      new_deltas.append(delta)
      new_vs.append(v)
      outs.append(out)

    unflatten = jax.tree.unflatten
    new_state = ScaledAdamState(
        count=optax.safe_int32_increment(count),
        delta=unflatten(jax.tree.structure(state.delta), new_deltas),
        exp_avg_sq=unflatten(jax.tree.structure(state.exp_avg_sq), new_vs),
        param_rms=rms,
        scale_exp_avg_sq=scale_sq,
        scale_grads=scale_grads,
        model_norms=norms,
        model_norm_threshold=threshold)
    return unflatten(jax.tree.structure(updates), outs), new_state

  return optax.GradientTransformation(init_fn, update_fn)
