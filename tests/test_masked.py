"""Masked-frame prediction: masking and loss against numpy.

It trains on 8 devices alone here and in tests/test_multitask.py (with MTC
and captioning).
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from audiopt import objectives
from audiopt.data import pipeline
from audiopt.models.outputs import EncoderOutput
from audiopt.objectives import DatasetInfo
from audiopt.objectives import masked
from audiopt.train import sharding
from audiopt.train import step as step_lib
from audiopt.train import trainer
from objective_training import tiny_config


def test_span_mask_ratio_and_spans():
  m = np.asarray(masked.span_mask(jax.random.key(0), 64, 200, 0.5, 5))
  assert abs(m.mean() - 0.5) < 0.03
  # Runs of masked steps are at least one span long (except at the ends).
  runs = []
  for row in m:
    edges = np.flatnonzero(np.diff(np.r_[0, row.astype(int), 0]))
    runs += [e - s for s, e in zip(edges[::2], edges[1::2])
             if 0 < s and e < 200]
  assert min(runs) >= 5


def _objective(hidden_dim=0, k=4):
  return objectives.build_objective(
      {"name": "masked", "frames_per_step": k, "mask_ratio": 0.4,
       "mask_span": 2, "head_hidden_dim": hidden_dim},
      objectives.DatasetInfo())


def test_mask_features_masks_whole_steps_of_valid_frames():
  obj = _objective()
  rng = np.random.default_rng(0)
  feats = jnp.asarray(rng.normal(size=(3, 30, 6)), jnp.float32)
  mask = jnp.arange(30)[None] < jnp.array([[30], [17], [9]])
  variables = obj.init(jax.random.key(0), jax.random.key(1), feats, mask,
                       method="mask_features")
  variables = jax.tree.map(lambda x: x + 2.0, variables)  # a visible vector
  out, extras = obj.apply(variables, jax.random.key(1), feats, mask,
                          method="mask_features")
  hit = np.asarray(extras[masked.MASKED_FRAMES_KEY])
  assert hit.any() and not (hit & ~np.asarray(mask)).any()
  steps = np.pad(hit, ((0, 0), (0, 2))).reshape(3, 8, 4)
  full = np.asarray(mask)
  full_steps = np.pad(full, ((0, 0), (0, 2))).reshape(3, 8, 4)
  # A step is masked on all of its valid frames or on none.
  np.testing.assert_array_equal(steps, full_steps & steps.any(-1)[..., None])
  out = np.asarray(out)
  np.testing.assert_allclose(out[hit], 2.0)
  np.testing.assert_array_equal(out[~hit], np.asarray(feats)[~hit])
  np.testing.assert_array_equal(
      np.asarray(extras[masked.TARGET_KEY]), np.asarray(feats))


def test_loss_matches_numpy():
  obj = _objective(hidden_dim=0, k=4)
  rng = np.random.default_rng(1)
  b, t, f, d = 3, 22, 5, 8
  t_out = 5  # 5 * 4 = 20 < 22: the last two frames are not predicted.
  feats = rng.normal(size=(b, t, f)).astype(np.float32) * 3 + 1
  fmask = np.arange(t)[None] < np.array([[22], [14], [9]])
  hit = rng.random((b, t)) < 0.5
  hit &= fmask
  valid = np.array([True, True, False])
  frames = rng.normal(size=(b, t_out, d)).astype(np.float32)
  enc = EncoderOutput(frames=jnp.asarray(frames),
                      mask=jnp.ones((b, t_out), bool), intermediates={})
  batch = {masked.TARGET_KEY: jnp.asarray(feats),
           masked.FEATURE_MASK_KEY: jnp.asarray(fmask),
           masked.MASKED_FRAMES_KEY: jnp.asarray(hit),
           "valid": jnp.asarray(valid)}
  variables = obj.init(jax.random.key(0), enc, batch, train=False)
  loss, metrics = obj.apply(variables, enc, batch, train=False)

  p = variables["params"]["head"]["out"]
  w, bias = np.asarray(p["kernel"].unbox()), np.asarray(p["bias"].unbox())
  pred = (frames @ w + bias).reshape(b, t_out * 4, f)
  total, count = 0.0, 0
  for i in range(b):
    x = feats[i][fmask[i]]
    norm = (feats[i] - x.mean(0)) / np.sqrt(x.var(0) + 1e-5)
    for j in range(t_out * 4):
      if valid[i] and hit[i, j]:
        total += np.mean((pred[i, j] - norm[j]) ** 2)
        count += 1
  np.testing.assert_allclose(float(loss), total / count, rtol=1e-5)
  assert float(metrics["masked_loss"]) == pytest.approx(float(loss))


def test_frames_per_step_must_match_the_encoder():
  obj = _objective(k=16)
  enc = EncoderOutput(frames=jnp.zeros((1, 49, 8)),
                      mask=jnp.ones((1, 49), bool), intermediates={})
  batch = {masked.TARGET_KEY: jnp.zeros((1, 200, 5)),
           masked.FEATURE_MASK_KEY: jnp.ones((1, 200), bool),
           masked.MASKED_FRAMES_KEY: jnp.ones((1, 200), bool)}
  with pytest.raises(ValueError, match="frames_per_step=16"):
    obj.init(jax.random.key(0), enc, batch, train=False)
  with pytest.raises(ValueError, match="mask_ratio"):
    objectives.build_objective({"name": "masked", "mask_ratio": 1.0},
                               objectives.DatasetInfo())



def test_masked_trains_on_8_devices(demo_data_dir):
  config = tiny_config(demo_data_dir, "masked", head_hidden_dim=32)
  config.optimizer.learning_rate = 1e-3
  source = trainer.pipeline_source(config, str(demo_data_dir))
  setup = step_lib.build(config, DatasetInfo.from_metadata(source.metadata),
                         source.metadata)
  state = step_lib.init_state(setup, jax.random.key(0))
  step = step_lib.make_train_step(setup)
  opts = pipeline.PipelineOptions(global_batch_size=16, clip_seconds=1.0)
  local = next(pipeline.make_iterator(source, opts))

  # Training draws new masks every step; evaluation masks with a fixed key,
  # so its loss on one batch is a clean measure of progress.
  @jax.jit
  def eval_loss(params, batch):
    return setup.model.apply({"params": params}, batch, train=False)[0]

  with sharding.mesh_and_rules(setup.mesh, setup.rules):
    batch = sharding.shard_batch(local, setup.mesh)
    before = float(eval_loss(state.params, batch))
    for _ in range(10):
      state, _ = step(state, batch, jax.random.key(1))
    after = float(eval_loss(state.params, batch))
  assert after < 0.95 * before, (before, after)
