"""A few sharded train steps of any objective on the quick demo records."""

import jax

from audiopt.data import pipeline
from audiopt.objectives import DatasetInfo
from audiopt.train import sharding
from audiopt.train import step as step_lib
from audiopt.train import trainer
from conftest import quick_demo_config


def tiny_config(data_dir, objective: str, **objective_keys):
  """The quick demo config on a 2 x 4 mesh with `objective` selected."""
  config = quick_demo_config(data_dir)
  config.mesh.data, config.mesh.fsdp = 2, 4
  config.optimizer.learning_rate = 3e-3
  config.objective.name = objective
  for key, value in objective_keys.items():
    config.objective[key] = value
  return config


def train_losses(config, data_dir, *, steps: int = 4, tokenizer=None,
                 clip_seconds: float = 1.0) -> tuple[list[float], dict]:
  """Runs `steps` steps on one fixed batch of 16.

  Args:
    config: an experiment config (see `tiny_config`).
    data_dir: the demo records' data_dir.
    steps: train steps.
    tokenizer: optional `caption -> (ids, mask)` for caption batches.
    clip_seconds: clip length of the batch.

  Returns:
    The loss of every step and the metrics of the last one (as floats).
  """
  source = trainer.pipeline_source(config, str(data_dir))
  setup = step_lib.build(config, DatasetInfo.from_metadata(source.metadata),
                         source.metadata)
  assert setup.mesh.devices.size == 8
  state = step_lib.init_state(setup, jax.random.key(0))
  step = step_lib.make_train_step(setup)
  opts = pipeline.PipelineOptions(global_batch_size=16,
                                  clip_seconds=clip_seconds,
                                  tokenizer=tokenizer)
  local = next(pipeline.make_iterator(source, opts))
  losses = []
  with sharding.mesh_and_rules(setup.mesh, setup.rules):
    batch = sharding.shard_batch(local, setup.mesh)
    for _ in range(steps):
      state, metrics = step(state, batch, jax.random.key(1))
      losses.append(float(metrics["loss"]))
  return losses, {k: float(v) for k, v in metrics.items()}
