"""Multi-task objective: parsing, the weighted sum, a sharded run."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from audiopt import objectives
from audiopt.models.outputs import EncoderOutput
from audiopt.objectives import masked
from audiopt.objectives import multitask
from audiopt.objectives import text_inputs
from audiopt.train import trainer
from objective_training import tiny_config, train_losses


def test_parse_tasks_forms():
  assert multitask.parse_tasks("mtc:1.0, captioning:0.5") == [
      ("mtc", 1.0, {}), ("captioning", 0.5, {})]
  assert multitask.parse_tasks("mtc") == [("mtc", 1.0, {})]
  assert multitask.parse_tasks(
      [("mtc", 2), {"name": "masked", "weight": 0.1, "mask_ratio": 0.3}]) == [
          ("mtc", 2.0, {}), ("masked", 0.1, {"mask_ratio": 0.3})]
  for bad, match in [("", "empty"), ("mtc:x", "not a number"),
                     ("mtc,mtc:2", "twice"), ("multitask:1", "bad task"),
                     ("mtc:-1", "negative")]:
    with pytest.raises(ValueError, match=match):
      multitask.parse_tasks(bad)


def test_loss_is_the_weighted_sum_of_the_tasks():
  info = objectives.DatasetInfo(num_tags=6, num_weak_labels=3)
  obj = objectives.build_objective(
      {"name": "multitask", "dropout_rate": 0.0,
       "tasks": "mtc:1.0,masked:0.25", "head_hidden_dim": 0}, info)
  rng = np.random.default_rng(0)
  b, t_out, d = 2, 3, 4
  enc = EncoderOutput(frames=jnp.asarray(rng.normal(size=(b, t_out, d)),
                                         jnp.float32),
                      mask=jnp.ones((b, t_out), bool), intermediates={})
  batch = {"tags": jnp.array([[0, 2], [5, -1]], jnp.int32),
           masked.TARGET_KEY: jnp.asarray(rng.normal(size=(b, 12, 3)),
                                          jnp.float32),
           masked.FEATURE_MASK_KEY: jnp.ones((b, 12), bool),
           masked.MASKED_FRAMES_KEY: jnp.asarray(rng.random((b, 12)) < 0.5)}
  variables = obj.init(jax.random.key(0), enc, batch, train=False)
  assert set(variables["params"]) == {"tasks_mtc", "tasks_masked"}
  loss, metrics = obj.apply(variables, enc, batch, train=False)
  for name, weight in (("mtc", 1.0), ("masked", 0.25)):
    alone = objectives.build_objective(
        {"name": name, "dropout_rate": 0.0, "head_hidden_dim": 0}, info)
    want, _ = alone.apply({"params": variables["params"][f"tasks_{name}"]},
                          enc, batch, train=False)
    np.testing.assert_allclose(float(metrics[f"{name}/loss"]), float(want),
                               rtol=1e-6)
  np.testing.assert_allclose(
      float(loss), float(metrics["mtc/loss"]) +
      0.25 * float(metrics["masked/loss"]), rtol=1e-6)
  assert "mtc/mtc_loss" in metrics and "masked/masked_fraction" in metrics
  scores = obj.apply(variables, enc, method="tag_scores")
  assert scores.shape == (b, 6)


def test_mask_features_go_to_the_masking_task():
  info = objectives.DatasetInfo(num_tags=6)
  feats = jnp.ones((2, 12, 3))
  mask = jnp.ones((2, 12), bool)
  only_mtc = objectives.build_objective(
      {"name": "multitask", "tasks": "mtc"}, info)
  out, extras = only_mtc.apply({}, jax.random.key(0), feats, mask,
                               method="mask_features")
  assert out is feats and not extras
  with_masked = objectives.build_objective(
      {"name": "multitask", "tasks": "mtc,masked", "mask_ratio": 0.5}, info)
  variables = with_masked.init(jax.random.key(0), jax.random.key(1), feats,
                               mask, method="mask_features")
  _, extras = with_masked.apply(variables, jax.random.key(1), feats, mask,
                                method="mask_features")
  assert masked.MASKED_FRAMES_KEY in extras


def test_mtc_masked_captioning_trains_on_8_devices(demo_data_dir):
  # The paper's MTC + lambda * captioning, plus masked prediction: the
  # masked task's hook masks the input of all three.
  config = tiny_config(demo_data_dir, "multitask",
                       tasks="mtc:1.0,captioning:0.5,masked:0.25",
                       decoder_size="tiny", ar_fraction=0.5,
                       head_hidden_dim=32)
  config.frontend.use_spec_augment = False
  config.text.vocab_size, config.text.max_len = 300, 24
  source = trainer.pipeline_source(config, str(demo_data_dir))
  _, encode = text_inputs.caption_tokenizer(
      config, lambda: (r["caption"] for r in source))
  losses, metrics = train_losses(config, demo_data_dir, tokenizer=encode)
  assert losses[-1] < losses[0], losses
  assert metrics["loss"] == pytest.approx(
      metrics["mtc/loss"] + 0.5 * metrics["captioning/loss"] +
      0.25 * metrics["masked/loss"], rel=1e-5)
  assert 0.2 < metrics["masked/masked_fraction"] < 0.8
