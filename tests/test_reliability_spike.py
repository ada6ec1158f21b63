"""Loss-spike policy: updates far above the recent mean loss are skipped."""

import jax
import jax.numpy as jnp
import numpy as np

from audiopt.data import pipeline
from audiopt.objectives import DatasetInfo
from audiopt.train import metrics as metrics_lib
from audiopt.train import sharding
from audiopt.train import step as step_lib
from audiopt.train import trainer
from conftest import quick_demo_config as quick_config


def _spike_state(window, losses, count):
  return {"losses": jnp.asarray(losses, jnp.float32),
          "count": jnp.asarray(count, jnp.int32),
          "skipped": jnp.zeros((), jnp.int32)}


def test_spike_check_waits_for_a_full_window_then_skips_spikes():
  state = _spike_state(3, [1.0, 0.0, 0.0], 1)
  apply, state = step_lib.spike_check(state, jnp.float32(100.0), True, 2.0)
  assert bool(apply) and int(state["skipped"]) == 0  # window not yet full
  apply, state = step_lib.spike_check(state, jnp.float32(1.0), True, 2.0)
  assert bool(apply) and int(state["count"]) == 3
  mean = float(np.mean(state["losses"]))  # (1 + 100 + 1) / 3
  apply, after = step_lib.spike_check(state, jnp.float32(2.1 * mean), True,
                                      2.0)
  assert not bool(apply) and int(after["skipped"]) == 1
  np.testing.assert_array_equal(after["losses"], state["losses"])
  apply, after = step_lib.spike_check(state, jnp.float32(1.9 * mean), True,
                                      2.0)
  assert bool(apply) and int(after["skipped"]) == 0
  # A non-finite loss is no spike (the finite check handles it) and is kept
  # out of the ring.
  apply, after = step_lib.spike_check(state, jnp.float32(np.nan), False, 2.0)
  assert not bool(apply) and int(after["skipped"]) == 0
  assert int(after["count"]) == 3


def _setup(data_dir, enabled):
  config = quick_config(data_dir)
  config.train.loss_spike.enabled = enabled
  config.train.loss_spike.factor = 2.0
  config.train.loss_spike.window = 4
  source = trainer.pipeline_source(config, str(data_dir))
  setup = step_lib.build(config, DatasetInfo.from_metadata(source.metadata),
                         source.metadata)
  opts = pipeline.PipelineOptions(global_batch_size=16, clip_seconds=2.0)
  local = next(pipeline.make_iterator(source, opts))
  return setup, local


def test_jitted_step_skips_a_spike_and_counts_it(demo_data_dir):
  setup, local = _setup(demo_data_dir, enabled=True)
  step_fn = step_lib.make_train_step(setup)
  with sharding.mesh_and_rules(setup.mesh, setup.rules):
    batch = sharding.shard_batch(local, setup.mesh)
    for mean_loss, applied in ((1e-4, False), (1e4, True)):
      state = step_lib.init_state(setup, jax.random.key(0))
      # Parameters and optimizer moments (the first step's learning rate
      # may be 0, so the moments are what any applied update changes).
      before = jax.tree.map(np.asarray, (state.params, state.opt_state))
      state = state.replace(spike=_spike_state(4, [mean_loss] * 4, 4))
      state, metrics = step_fn(state, batch, jax.random.key(1))
      assert bool(metrics["finite"])
      assert int(metrics["spike_skipped"]) == (0 if applied else 1)
      same = all(np.array_equal(a, np.asarray(b)) for a, b in
                 zip(jax.tree.leaves(before),
                     jax.tree.leaves((state.params, state.opt_state))))
      assert same != applied
      assert int(state.step) == 1


def test_disabled_policy_adds_no_state_and_trains(demo_data_dir, tmp_path):
  setup, _ = _setup(demo_data_dir, enabled=False)
  assert setup.abstract_state.spike is None
  config = quick_config(demo_data_dir, num_steps=3, checkpoint_every=3)
  config.train.loss_spike.enabled = True
  config.train.loss_spike.window = 2
  trainer.train(config, str(tmp_path))
  rows = metrics_lib.read_jsonl(str(tmp_path / "metrics.jsonl"))
  assert [r["step"] for r in rows] == [1, 2, 3]
  assert all("spike_skipped" in r for r in rows)
