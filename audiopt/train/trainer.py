"""The one trainer: every objective and encoder trains through this loop.

`train_and_evaluate(config, workdir)` builds the mesh, the records pipeline,
the model and the optimizer from the config, initialises the train state
already sharded, restores the newest checkpoint if there is one, runs the
jitted step, checkpoints (periodically, at the end and on SIGTERM), and
finally probes the frozen encoder on the configured evaluation tasks.
"""

import dataclasses
import functools
import os
import signal
import time
from typing import Any

from absl import logging
import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from audiopt import config as config_lib
from audiopt.data import pipeline
from audiopt.data import prepare
from audiopt.models import model as model_lib
from audiopt.objectives import DatasetInfo
from audiopt.train import checkpoint as checkpoint_lib
from audiopt.train import metrics as metrics_lib
from audiopt.train import optim
from audiopt.train import sharding


@flax.struct.dataclass
class TrainState:
  """Everything a step changes: step [] int32, params and optimizer state."""

  step: jax.Array
  params: Any
  opt_state: Any


class NonFiniteError(FloatingPointError):
  """Raised when a step's loss or gradients are NaN or Inf."""


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
                      opt_state=tx.init(params))

  with sharding.mesh_and_rules(mesh, rules):
    abstract_boxed = jax.eval_shape(init_boxed, jax.random.key(0))
  logical = nn.get_partition_spec(abstract_boxed)
  shardings = nn.logical_to_mesh_sharding(logical, mesh, rules)
  abstract = jax.tree.map(
      lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s),
      nn.meta.unbox(abstract_boxed), shardings)
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
                      opt_state=tx.init(params))

  with sharding.mesh_and_rules(setup.mesh, setup.rules):
    return jax.jit(init, out_shardings=setup.state_shardings)(rng)


def make_train_step(setup: Setup):
  """Returns the jitted step (state, batch, rng) -> (state, metrics).

  The step splits the global batch into `grad_accum_steps` micro-batches,
  averages their gradients, and applies the update only when the loss and
  the gradients are finite (metrics["finite"] says whether they were), so a
  bad batch never poisons the state that gets checkpointed.
  """
  model, tx = setup.model, setup.tx
  accum = setup.config.optimizer.grad_accum_steps
  schedule = setup.schedule
  batch_spec = jax.sharding.PartitionSpec(("data", "fsdp"))

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
    updates, new_opt = tx.update(grads, state.opt_state, state.params)
    new_params = optax.apply_updates(state.params, updates)
    keep = lambda new, old: jnp.where(finite, new, old)  # noqa: E731
    new_state = TrainState(
        step=state.step + 1,
        params=jax.tree.map(keep, new_params, state.params),
        opt_state=jax.tree.map(keep, new_opt, state.opt_state))
    metrics = dict(metrics, loss=loss, grad_norm=grad_norm,
                   learning_rate=schedule(state.step), finite=finite)
    return new_state, metrics

  return jax.jit(step, in_shardings=(setup.state_shardings, None, None),
                 out_shardings=(setup.state_shardings, None),
                 donate_argnums=(0,))


def checkpoint_metadata(config, metadata: dict[str, Any]) -> dict[str, Any]:
  """The self-description stored with every checkpoint."""
  return {"config": config.to_dict(), "data": metadata,
          "frontend": config.frontend.to_dict(),
          "audiopt_format": 1}


class _Preemption:
  """Turns SIGTERM into a flag the loop checks between steps."""

  def __init__(self):
    self.requested = False
    self._previous = None

  def __enter__(self):
    try:
      self._previous = signal.signal(signal.SIGTERM, self._handle)
    except ValueError:  # not in the main thread: leave signals alone
      self._previous = None
    return self

  def _handle(self, signum, frame):
    del signum, frame
    logging.warning("SIGTERM: saving a checkpoint, then stopping")
    self.requested = True

  def __exit__(self, *exc):
    if self._previous is not None:
      signal.signal(signal.SIGTERM, self._previous)


def _check_finite(step: int, metrics, clip_ids, workdir: str) -> None:
  if bool(np.asarray(metrics["finite"])):
    return
  path = os.path.join(workdir, f"nonfinite_step_{step}.txt")
  if jax.process_index() == 0:
    with open(path, "w") as f:
      f.write("\n".join(str(c) for c in clip_ids) + "\n")
  raise NonFiniteError(
      f"step {step}: loss={float(np.asarray(metrics['loss']))} "
      f"grad_norm={float(np.asarray(metrics['grad_norm']))} is not finite; "
      f"the update was skipped and the batch's clip ids are in {path}")


def train(config, workdir: str) -> tuple[Setup, TrainState]:
  """Trains per `config`, checkpointing under `<workdir>/checkpoints`.

  Returns:
    The run's Setup and its final TrainState.
  """
  config_lib.validate(config, jax.device_count())
  os.makedirs(workdir, exist_ok=True)
  data_dir = prepare.prepare_data(config, workdir)
  source = pipeline_source(config, data_dir)
  info = DatasetInfo.from_metadata(source.metadata)
  setup = build(config, info, source.metadata)
  tc = config.train

  opts = pipeline.PipelineOptions(
      global_batch_size=tc.global_batch_size, clip_seconds=config.data.clip_seconds,
      sample_rate=config.frontend.fbank.sample_rate,
      max_tags=config.data.max_tags, max_weak_labels=config.data.max_weak_labels,
      seed=config.seed, shuffle=True, repeat=True, random_crop=True,
      num_threads=config.data.num_threads, prefetch=config.data.prefetch)
  data_iter = pipeline.make_iterator(source, opts,
                                     process_index=jax.process_index(),
                                     process_count=jax.process_count())
  ckpt = checkpoint_lib.Checkpointer(
      os.path.join(workdir, "checkpoints"), save_every=tc.checkpoint_every,
      keep=tc.keep_checkpoints, use_async=tc.async_checkpoint)
  meta = checkpoint_metadata(config, source.metadata)
  rng = jax.random.key(config.seed)
  init_rng, step_rng = jax.random.split(rng)

  latest = ckpt.latest_step()
  if latest is None:
    state = init_state(setup, init_rng)
  else:
    state = ckpt.restore(latest, setup.abstract_state, data_iter)
  start = int(state.step)
  logging.info("training steps %d..%d on mesh %s", start, tc.num_steps,
               dict(setup.mesh.shape))

  step_fn = make_train_step(setup)
  writer = metrics_lib.MetricsLogger(workdir, total_steps=tc.num_steps)
  pending = None  # (step, metrics, clip ids) checked one step late
  history = []
  try:
    with (sharding.mesh_and_rules(setup.mesh, setup.rules),
          _Preemption() as preempt):
      for step in range(start + 1, tc.num_steps + 1):
        local = next(data_iter)
        batch = sharding.shard_batch(local, setup.mesh)
        state, metrics = step_fn(state, batch, step_rng)
        if pending is not None:
          _check_finite(*pending, workdir)
        pending = (step, metrics, local["clip_id"])
        history.append(metrics)
        if step % tc.log_every == 0 or step == tc.num_steps:
          _check_finite(*pending, workdir)
          means = {k: float(np.mean([np.asarray(m[k]) for m in history]))
                   for k in history[-1] if k != "finite"}
          history = []
          writer.write(step, {**means, **writer.progress(step)})
        ckpt.save(step, state, data_iter, meta,
                  force=step == tc.num_steps or preempt.requested)
        if preempt.requested:
          break
      if pending is not None:
        _check_finite(*pending, workdir)
  finally:
    ckpt.close()
    writer.close()
  return setup, state


def pipeline_source(config, data_dir: str):
  """Opens the pre-training records named by the config."""
  from audiopt.data import records  # pylint: disable=g-import-not-at-top
  return records.open_records(data_dir, prepare.dataset_name(config),
                              config.data.train_split)


def train_and_evaluate(config, workdir: str) -> dict[str, Any]:
  """Trains, then probes the frozen encoder; returns the probe results."""
  from audiopt.evaluate import suite  # pylint: disable=g-import-not-at-top

  start = time.time()
  setup, state = train(config, workdir)
  logging.info("training took %.1f s", time.time() - start)
  if int(state.step) < config.train.num_steps:
    logging.warning("stopped at step %d of %d (preempted); evaluation skipped",
                    int(state.step), config.train.num_steps)
    return {}
  return suite.evaluate_run(config, workdir, setup, state.params)
