"""The one trainer: every objective and encoder trains through this loop.

`train_and_evaluate(config, workdir)` builds the mesh, the records pipeline,
the model and the optimizer from the config, initialises the train state
already sharded, restores the newest checkpoint if there is one, runs the
jitted step, checkpoints (periodically, at the end and on SIGTERM), and
finally probes the frozen encoder on the configured evaluation tasks.
"""

import os
import signal
import time
from typing import Any

from absl import logging
import jax
import numpy as np

from audiopt import atomic_files
from audiopt import config as config_lib
from audiopt.data import pipeline
from audiopt.data import prepare
from audiopt.objectives import DatasetInfo
from audiopt.objectives import text_inputs
from audiopt.train import checkpoint as checkpoint_lib
from audiopt.train import metrics as metrics_lib
from audiopt.train import sharding
from audiopt.train.step import Setup, TrainState, build, init_state, make_train_step


class NonFiniteError(FloatingPointError):
  """Raised when a step's loss or gradients are NaN or Inf."""


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
  text = _run_tokenizer(config, workdir, source)
  info = DatasetInfo.from_metadata(source.metadata)
  setup = build(config, info, source.metadata)
  tc = config.train

  opts = pipeline.PipelineOptions(
      global_batch_size=tc.global_batch_size, clip_seconds=config.data.clip_seconds,
      sample_rate=config.frontend.fbank.sample_rate,
      max_tags=config.data.max_tags, max_weak_labels=config.data.max_weak_labels,
      seed=config.seed, shuffle=True, repeat=True, random_crop=True,
      num_threads=config.data.num_threads, prefetch=config.data.prefetch,
      tokenizer=text[1] if text else None)
  data_iter = pipeline.make_iterator(source, opts,
                                     process_index=jax.process_index(),
                                     process_count=jax.process_count())
  ckpt = checkpoint_lib.Checkpointer(
      os.path.join(workdir, "checkpoints"), save_every=tc.checkpoint_every,
      keep=tc.keep_checkpoints, use_async=tc.async_checkpoint)
  meta = checkpoint_metadata(config, source.metadata)
  if text:
    meta["tokenizer"] = text[0].to_json()
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
          if "spike_skipped" in means:  # a running count: its latest value
            means["spike_skipped"] = float(history[-1]["spike_skipped"])
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


def _run_tokenizer(config, workdir: str, source):
  """(TextTokenizer, caption encoder) of a text objective's run, else None.

  A tokenizer trained on the captions is saved as `<workdir>/tokenizer.json`
  and `config.text.tokenizer` points at it, so a resumed run, the checkpoint's
  config and evaluation all read the same vocabulary.
  """
  saved = os.path.join(workdir, "tokenizer.json")
  if not config.text.tokenizer and os.path.exists(saved):
    config.text.tokenizer = saved
  text = text_inputs.caption_tokenizer(
      config, lambda: (r["caption"] for r in source))
  if text is None:
    return None
  tok, encode = text
  if not config.text.tokenizer:
    if jax.process_index() == 0:
      with atomic_files.atomic_path(saved) as tmp:
        tok.save(tmp)
    config.text.tokenizer = saved
  return tok, encode


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
