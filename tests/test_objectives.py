"""Objective losses against independent numpy formulations."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from audiopt import objectives
from audiopt.models.outputs import EncoderOutput


def _np_bce_sum(logits, targets):
  # log(1 + e^-x) for positives, log(1 + e^x) for negatives, stably.
  return (np.maximum(logits, 0) - logits * targets
          + np.log1p(np.exp(-np.abs(logits)))).sum(-1)


def test_mtc_loss_matches_numpy():
  rng = np.random.default_rng(0)
  b, t, d, k = 4, 7, 16, 10
  frames = rng.normal(size=(b, t, d)).astype(np.float32)
  mask = np.arange(t)[None] < np.array([[7], [5], [1], [3]])
  tags = np.array([[0, 3, -1], [9, -1, -1], [-1, -1, -1], [1, 2, 3]], np.int32)
  valid = np.array([True, True, True, False])
  obj = objectives.build_objective(
      {"name": "mtc", "target": "tags", "dropout_rate": 0.1},
      objectives.DatasetInfo(num_tags=k))
  enc = EncoderOutput(frames=jnp.asarray(frames), mask=jnp.asarray(mask),
                      intermediates={})
  batch = {"tags": jnp.asarray(tags), "valid": jnp.asarray(valid)}
  variables = obj.init(jax.random.key(0), enc, batch, train=False)
  loss, metrics = obj.apply(variables, enc, batch, train=False)

  w = np.asarray(variables["params"]["head"]["kernel"].unbox())
  bias = np.asarray(variables["params"]["head"]["bias"].unbox())
  frame_logits = frames @ w + bias
  m = mask[..., None].astype(np.float32)
  logits = (frame_logits * m).sum(1) / m.sum(1)
  targets = np.zeros((b, k), np.float32)
  for i, row in enumerate(tags):
    targets[i, row[row >= 0]] = 1
  per_clip = _np_bce_sum(logits, targets)
  expected = per_clip[valid].mean()
  np.testing.assert_allclose(float(loss), expected, rtol=1e-5)
  assert float(metrics["mtc_loss"]) == pytest.approx(float(loss))


def test_mtc_weak_target_and_errors():
  info = objectives.DatasetInfo(num_tags=5, num_weak_labels=3)
  obj = objectives.build_objective({"name": "mtc", "target": "weak_labels"},
                                   info)
  assert obj.num_classes == 3
  with pytest.raises(ValueError, match="objective.target"):
    objectives.build_objective({"name": "mtc", "target": "captions"}, info)
  with pytest.raises(ValueError, match="valid"):
    objectives.build_objective({"name": "nope"}, info)
