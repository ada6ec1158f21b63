"""The train step and everything it is built from, free of I/O.

`build(config, info, metadata)` turns a config into a `Setup`: the mesh, the
logical-axis rules, the model, the optimizer and the sharded abstract train
state. `init_state` initialises the state directly in its shardings and
`make_train_step` returns the jitted step. The trainer's loop, ahead-of-time
compilation and the benchmarks all use these, so what they measure is what
trains.
"""

import dataclasses
from typing import Any

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

from audiopt.models import model as model_lib
from audiopt.objectives import DatasetInfo
from audiopt.train import optim
from audiopt.train import sharding


@flax.struct.dataclass
class TrainState:
  """Everything a step changes: step [] int32, params and optimizer state.

  `spike` is the loss-spike policy's state when `train.loss_spike.enabled`
  (see `init_spike`), else None (no leaves, so older checkpoints restore).
  """

  step: jax.Array
  params: Any
  opt_state: Any
  spike: Any = None


def init_spike(config) -> dict[str, jax.Array] | None:
  """The loss-spike state of `config.train.loss_spike`, or None if disabled.

  Returns {"losses": [window] float32 ring of the last applied losses,
  "count": [] int32 losses seen, "skipped": [] int32 updates skipped}.
  """
  spike = config.train.loss_spike
  if not spike.enabled:
    return None
  return {"losses": jnp.zeros((spike.window,), jnp.float32),
          "count": jnp.zeros((), jnp.int32),
          "skipped": jnp.zeros((), jnp.int32)}


def spike_check(spike: dict[str, jax.Array], loss: jax.Array, finite,
                factor: float) -> tuple[jax.Array, dict[str, jax.Array]]:
  """Decides whether `loss` is a spike and updates the ring of losses.

  Args:
    spike: the state of `init_spike`.
    loss: [] the step's loss.
    finite: [] bool, whether loss and gradients are finite.
    factor: a loss above factor x the running mean is a spike.

  Returns:
    ([] bool: apply the update, the new spike state). Until the window is
    full nothing counts as a spike; spikes and non-finite losses stay out of
    the ring, so one spike does not raise the bar for the next.
  """
  window = spike["losses"].shape[0]
  full = spike["count"] >= window
  mean = jnp.mean(spike["losses"])
  is_spike = full & finite & (loss > factor * mean)
  apply = finite & ~is_spike
  slot = spike["count"] % window
  losses = jnp.where(apply, spike["losses"].at[slot].set(loss),
                     spike["losses"])
  return apply, {"losses": losses,
                 "count": spike["count"] + apply.astype(jnp.int32),
                 "skipped": spike["skipped"] + is_spike.astype(jnp.int32)}


@dataclasses.dataclass
class Setup:
  """The built pieces of a run, for the trainer and for tools around it."""

  config: Any
  mesh: jax.sharding.Mesh
  rules: Any
  model: model_lib.AudioModel
  info: DatasetInfo
  tx: optax.GradientTransformation
  schedule: optax.Schedule
  state_shardings: Any
  abstract_state: Any
  metadata: dict[str, Any]


# Under FSDP, a larger share of parameter bytes on every device is logged.
_MAX_REPLICATED_FRACTION = 0.02


def build(config, info: DatasetInfo, metadata: dict[str, Any], *,
          devices=None) -> Setup:
  """Builds mesh, model, optimizer and the sharded abstract train state.

  Args:
    config: the experiment config.
    info: vocabulary sizes of the training records.
    metadata: the training records' metadata (stored in checkpoints).
    devices: devices of the mesh; all devices when None.
  """
  mesh = sharding.make_mesh({a: config.mesh[a]
                             for a in ("data", "fsdp", "tensor")},
                            devices=devices)
  rules = sharding.RULE_PRESETS[config.sharding]
  model = model_lib.build_model(config, info)
  tx, schedule = optim.build_optimizer(config.optimizer, config.train.num_steps)
  num_samples = int(config.data.clip_seconds * config.frontend.fbank.sample_rate)

  def init_boxed(rng):
    batch = model_lib.dummy_batch(1, num_samples)
    params = model.init({"params": rng}, batch, train=False)["params"]
    return TrainState(step=jnp.zeros((), jnp.int32), params=params,
                      opt_state=tx.init(params), spike=init_spike(config))

  with sharding.mesh_and_rules(mesh, rules):
    abstract_boxed = jax.eval_shape(init_boxed, jax.random.key(0))
  logical = nn.get_partition_spec(abstract_boxed)
  unboxed = nn.meta.unbox(abstract_boxed)
  # A mesh axis that does not divide a dimension (a 30522-tag head under
  # tensor=4) replicates that dimension, with a warning, instead of failing.
  shardings = sharding.fit_shardings(
      unboxed, nn.logical_to_mesh_sharding(logical, mesh, rules))
  abstract = jax.tree.map(
      lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s),
      unboxed, shardings)
  if config.mesh.fsdp > 1:
    sharding.check_replication(abstract.params, _MAX_REPLICATED_FRACTION,
                               action="warn")
  return Setup(config=config, mesh=mesh, rules=rules, model=model, info=info,
               tx=tx, schedule=schedule, state_shardings=shardings,
               abstract_state=abstract, metadata=metadata)


def init_state(setup: Setup, rng: jax.Array) -> TrainState:
  """Initialises the train state directly in its shardings (no host copy)."""
  model, tx = setup.model, setup.tx
  num_samples = int(setup.config.data.clip_seconds *
                    setup.config.frontend.fbank.sample_rate)

  def init(rng):
    batch = model_lib.dummy_batch(1, num_samples)
    params = nn.meta.unbox(
        model.init({"params": rng}, batch, train=False)["params"])
    return TrainState(step=jnp.zeros((), jnp.int32), params=params,
                      opt_state=tx.init(params),
                      spike=init_spike(setup.config))

  with sharding.mesh_and_rules(setup.mesh, setup.rules):
    return jax.jit(init, out_shardings=setup.state_shardings)(rng)


def make_train_step(setup: Setup):
  """Returns the jitted step (state, batch, rng) -> (state, metrics).

  The step splits the global batch into `grad_accum_steps` micro-batches,
  averages their gradients, and applies the update only when the loss and
  the gradients are finite (metrics["finite"] says whether they were), so a
  bad batch never poisons the state that gets checkpointed. With
  `train.loss_spike.enabled` it also skips updates whose loss exceeds
  factor x the mean of the recent applied losses (metrics["spike_skipped"]:
  updates skipped so far), all on device.
  """
  model, tx = setup.model, setup.tx
  accum = setup.config.optimizer.grad_accum_steps
  schedule = setup.schedule
  batch_spec = jax.sharding.PartitionSpec(("data", "fsdp"))
  spike_factor = float(setup.config.train.loss_spike.factor)

  # icefall's adjusted batch count: batches of 600 s of audio seen so far.
  audio_seconds = (setup.config.train.global_batch_size *
                   setup.config.data.clip_seconds)

  def loss_fn(params, batch, rng, step):
    aug_rng, drop_rng = jax.random.split(rng)
    loss, metrics = model.apply(
        {"params": params}, batch, train=True,
        batch_count=step.astype(jnp.float32) * audio_seconds / 600.0,
        rngs={"augment": aug_rng, "dropout": drop_rng})
    return loss, metrics

  grad_fn = jax.value_and_grad(loss_fn, has_aux=True)

  def step(state: TrainState, batch, rng):
    rng = jax.random.fold_in(rng, state.step)
    if accum == 1:
      (loss, metrics), grads = grad_fn(state.params, batch, rng, state.step)
    else:
      # Micro-batch i takes rows i, i+k, i+2k...: every device keeps its rows.
      micro = jax.tree.map(
          lambda x: jax.lax.with_sharding_constraint(
              x.reshape((-1, accum) + x.shape[1:]).swapaxes(0, 1),
              jax.sharding.NamedSharding(
                  setup.mesh, jax.sharding.PartitionSpec(None, *batch_spec))),
          batch)

      def body(carry, xs):
        i, mb = xs
        (l, m), g = grad_fn(state.params, mb, jax.random.fold_in(rng, i),
                            state.step)
        return jax.tree.map(jnp.add, carry, (l, m, g)), None

      (loss0, metrics0), grads0 = grad_fn(
          state.params, jax.tree.map(lambda x: x[0], micro), rng, state.step)
      rest = jax.tree.map(lambda x: x[1:], micro)
      (loss, metrics, grads), _ = jax.lax.scan(
          body, (loss0, metrics0, grads0), (jnp.arange(1, accum), rest))
      loss, metrics, grads = jax.tree.map(lambda x: x / accum,
                                          (loss, metrics, grads))
    grad_norm = optax.global_norm(grads)
    finite = jnp.isfinite(loss) & jnp.isfinite(grad_norm)
    apply, spike = finite, None
    if state.spike is not None:
      apply, spike = spike_check(state.spike, loss, finite, spike_factor)
    updates, new_opt = tx.update(grads, state.opt_state, state.params)
    new_params = optax.apply_updates(state.params, updates)
    keep = lambda new, old: jnp.where(apply, new, old)  # noqa: E731
    new_state = TrainState(
        step=state.step + 1,
        params=jax.tree.map(keep, new_params, state.params),
        opt_state=jax.tree.map(keep, new_opt, state.opt_state),
        spike=spike)
    metrics = dict(metrics, loss=loss, grad_norm=grad_norm,
                   learning_rate=schedule(state.step), finite=finite)
    if spike is not None:
      metrics["spike_skipped"] = spike["skipped"]
    return new_state, metrics

  return jax.jit(step, in_shardings=(setup.state_shardings, None, None),
                 out_shardings=(setup.state_shardings, None),
                 donate_argnums=(0,))
