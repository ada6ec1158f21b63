"""Tests of the frozen-embedding probes (audiopt.evaluate.probes)."""

import math

import numpy as np
import pytest

from audiopt.evaluate import probes

_FAST = dict(lr=1e-2, max_epochs=60, patience=5)
# Tests share data shapes (400 training clips of 16 dims, 4 or 5 classes) so
# that they share compiled training steps.


def _blobs(n, dim, classes, seed, spread=4.0):
  """Separable Gaussian clusters: x [n, dim], class ids [n]."""
  rng = np.random.default_rng(seed)
  centres = rng.normal(size=(classes, dim)) * spread
  y = rng.integers(classes, size=n)
  return (centres[y] + rng.normal(size=(n, dim))).astype(np.float32), y


def _multilabel(n, dim, classes, seed):
  """x [n, dim] and multi-hot y [n, classes] from linear rules."""
  rng = np.random.default_rng(seed)
  x = rng.normal(size=(n, dim)).astype(np.float32)
  w = rng.normal(size=(dim, classes))
  return x, (x @ w > 0.5).astype(np.float32)


def _frames(n, t, dim, classes, seed, pad_value=0.0):
  """Frames whose valid part carries the class; padding set to pad_value."""
  rng = np.random.default_rng(seed)
  y = rng.integers(classes, size=n)
  centres = rng.normal(size=(classes, dim)) * 3.0
  frames = (centres[y][:, None, :] +
            rng.normal(size=(n, t, dim)) * 1.5).astype(np.float32)
  lengths = rng.integers(2, t + 1, size=n)
  mask = np.arange(t)[None, :] < lengths[:, None]
  frames[~mask] = pad_value
  return frames, mask, y


def test_mean_pool_averages_valid_frames_only():
  frames = np.arange(24, dtype=np.float32).reshape(2, 4, 3)
  mask = np.array([[1, 1, 0, 0], [0, 0, 0, 0]], bool)
  huge = frames.copy()
  huge[~mask] = np.inf
  pooled = probes.mean_pool(huge, mask)
  np.testing.assert_allclose(pooled[0], frames[0, :2].mean(0))
  np.testing.assert_array_equal(pooled[1], 0.0)
  assert pooled.shape == (2, 3) and pooled.dtype == np.float32


def test_linear_probe_separates_multiclass_blobs():
  x, y = _blobs(600, 16, 4, seed=0)
  probe = probes.fit_linear_probe(x[:400], y[:400], task="multiclass",
                                  num_classes=4, **_FAST)
  metrics = probes.evaluate_probe(probe, x[400:], y[400:])
  assert metrics["accuracy"] > 0.95
  scores = probe.predict(x[400:])
  assert scores.shape == (200, 4)
  np.testing.assert_allclose(scores.sum(1), 1.0, rtol=1e-5)


def test_linear_probe_default_settings_learn():
  x, y = _blobs(600, 16, 4, seed=1)
  probe = probes.fit_linear_probe(x[:400], y[:400], task="multiclass",
                                  num_classes=4)
  assert probes.evaluate_probe(probe, x[400:], y[400:])["accuracy"] > 0.9
  assert 1 <= probe.best_epoch <= probe.epochs <= 200


def test_linear_probe_learns_multilabel():
  x, y = _multilabel(800, 16, 5, seed=2)
  probe = probes.fit_linear_probe(x[:400], y[:400], task="multilabel",
                                  num_classes=5, **_FAST)
  metrics = probes.evaluate_probe(probe, x[400:], y[400:])
  assert metrics["mAP"] > 0.9
  assert metrics["roc_auc"] > 0.95
  assert metrics["d_prime"] == pytest.approx(
      probes.d_prime(metrics["roc_auc"]))
  assert metrics["d_prime"] > 2.0


def test_random_labels_give_chance_level():
  rng = np.random.default_rng(3)
  x = rng.normal(size=(1200, 16)).astype(np.float32)
  y = rng.integers(4, size=1200)
  probe = probes.fit_linear_probe(x[:400], y[:400], task="multiclass",
                                  num_classes=4, **_FAST)
  accuracy = probes.evaluate_probe(probe, x[400:], y[400:])["accuracy"]
  assert abs(accuracy - 0.25) < 0.06
  y_multi = (rng.random((1200, 5)) < 0.3).astype(np.float32)
  probe = probes.fit_linear_probe(x[:400], y_multi[:400], task="multilabel",
                                  num_classes=5, **_FAST)
  metrics = probes.evaluate_probe(probe, x[400:], y_multi[400:])
  assert abs(metrics["roc_auc"] - 0.5) < 0.06
  assert abs(metrics["mAP"] - y_multi[400:].mean()) < 0.08
  assert abs(metrics["d_prime"]) < 0.3


def test_attention_probe_learns_and_ignores_padding():
  frames, mask, y = _frames(500, 10, 8, 3, seed=4)
  probe = probes.fit_attention_probe(frames[:350], mask[:350], y[:350],
                                     task="multiclass", num_classes=3,
                                     num_heads=2, **_FAST)
  test = frames[350:], mask[350:]
  assert probes.evaluate_probe(probe, *test[:1], y[350:],
                               mask=test[1])["accuracy"] > 0.9
  # Padded frames holding huge values change nothing, in training or
  # prediction.
  huge = frames.copy()
  huge[~mask] = 1e30
  scores = probe.predict(*test)
  np.testing.assert_array_equal(scores, probe.predict(huge[350:], mask[350:]))
  probe_huge = probes.fit_attention_probe(huge[:350], mask[:350], y[:350],
                                          task="multiclass", num_classes=3,
                                          num_heads=2, **_FAST)
  np.testing.assert_array_equal(scores, probe_huge.predict(*test))


def test_attention_probe_multilabel():
  rng = np.random.default_rng(5)
  frames = rng.normal(size=(400, 6, 8)).astype(np.float32)
  mask = np.ones((400, 6), bool)
  mask[:, 4:] = rng.random((400, 2)) < 0.5
  y = (probes.mean_pool(frames, mask)[:, :3] > 0).astype(np.float32)
  probe = probes.fit_attention_probe(frames[:300], mask[:300], y[:300],
                                     task="multilabel", num_classes=3,
                                     **_FAST)
  metrics = probes.evaluate_probe(probe, frames[300:], y[300:],
                                  mask=mask[300:])
  assert metrics["mAP"] > 0.85


def test_fixed_seed_gives_identical_probes():
  x, y = _blobs(400, 16, 4, seed=6, spread=0.5)
  fit = lambda seed: probes.fit_linear_probe(  # pylint: disable=g-long-lambda
      x, y, task="multiclass", num_classes=4, seed=seed, **_FAST)
  a, b, c = fit(0), fit(0), fit(1)
  np.testing.assert_array_equal(a.predict(x), b.predict(x))
  assert (a.epochs, a.best_epoch, a.val_loss) == (b.epochs, b.best_epoch,
                                                  b.val_loss)
  assert not np.array_equal(a.predict(x), c.predict(x))


def test_early_stopping_stops_before_max_epochs():
  rng = np.random.default_rng(7)
  x = rng.normal(size=(400, 16)).astype(np.float32)
  y = rng.integers(4, size=400)  # random: validation loss soon rises
  probe = probes.fit_linear_probe(x, y, task="multiclass", num_classes=4,
                                  lr=5e-2, max_epochs=500, patience=3)
  assert probe.epochs < 500
  assert probe.best_epoch == probe.epochs - 3
  no_val = probes.fit_linear_probe(x, y, task="multiclass", num_classes=4,
                                   max_epochs=4, val_fraction=0.0)
  assert no_val.epochs == no_val.best_epoch == 4
  assert math.isnan(no_val.val_loss)


def test_bad_inputs_raise():
  x, y = _blobs(20, 4, 2, seed=8)
  with pytest.raises(ValueError, match="valid tasks: multiclass, multilabel"):
    probes.fit_linear_probe(x, y, task="regression", num_classes=2)
  with pytest.raises(ValueError, match=r"class ids must be in \[0, 2\)"):
    probes.fit_linear_probe(x, y + 5, task="multiclass", num_classes=2)
  with pytest.raises(ValueError, match="multi-hot"):
    probes.fit_linear_probe(x, y, task="multilabel", num_classes=2)
  with pytest.raises(ValueError, match="mask must be"):
    probes.fit_attention_probe(x[:, None, :], np.ones((20, 2)), y,
                               task="multiclass", num_classes=2)
  probe = probes.fit_linear_probe(x, y, task="multiclass", num_classes=2,
                                  max_epochs=1)
  with pytest.raises(ValueError, match="no mask"):
    probe.predict(x[:, None, :], np.ones((20, 1), bool))
  with pytest.raises(ValueError, match="feature dimension"):
    probe.predict(x[:, :3])


def test_metrics_on_hand_computed_cases():
  scores = np.array([0.9, 0.8, 0.7, 0.6])
  labels = np.array([1, 0, 1, 0])
  assert probes.average_precision(scores, labels) == pytest.approx(
      (1 / 1 + 2 / 3) / 2)
  assert probes.roc_auc(scores, labels) == pytest.approx(3 / 4)
  # Ties: one threshold for equal scores; half a win per tied pair.
  assert probes.average_precision([0.5, 0.5], [1, 0]) == pytest.approx(0.5)
  assert probes.roc_auc([0.5, 0.5], [1, 0]) == pytest.approx(0.5)
  assert probes.roc_auc([0.2, 0.5, 0.5, 0.9], [0, 1, 0, 1]) == pytest.approx(
      (1 + 0.5 + 1 + 1) / 4)
  assert probes.average_precision([0.2, 0.5, 0.5, 0.9],
                                  [0, 1, 0, 1]) == pytest.approx(
                                      0.5 * 1.0 + 0.5 * (2 / 3))
  assert math.isnan(probes.average_precision([0.1, 0.2], [0, 0]))
  assert math.isnan(probes.roc_auc([0.1, 0.2], [1, 1]))
  # Macro averages skip classes without positives (AP) or negatives (AUC).
  s = np.array([[0.9, 0.1, 0.3], [0.1, 0.8, 0.6]])
  l = np.array([[1, 0, 1], [0, 0, 1]])
  assert probes.mean_average_precision(s, l) == pytest.approx(1.0)
  assert probes.macro_roc_auc(s, l) == pytest.approx(1.0)
  assert probes.d_prime(0.5) == pytest.approx(0.0)
  assert probes.d_prime(0.76) == pytest.approx(math.sqrt(2) * 0.7063, 1e-3)
  assert math.isfinite(probes.d_prime(1.0))


def test_metrics_match_sklearn_when_installed():
  metrics = pytest.importorskip("sklearn.metrics")
  rng = np.random.default_rng(9)
  for _ in range(20):
    labels = rng.random(50) < 0.3
    scores = np.round(rng.random(50) + labels * 0.3, 1)  # with ties
    if labels.any() and not labels.all():
      assert probes.average_precision(scores, labels) == pytest.approx(
          metrics.average_precision_score(labels, scores))
      assert probes.roc_auc(scores, labels) == pytest.approx(
          metrics.roc_auc_score(labels, scores))


def test_given_validation_split_drives_early_stopping():
  x, y = _blobs(600, 16, 4, seed=10, spread=0.5)
  val = (x[400:500], y[400:500])
  a = probes.fit_linear_probe(x[:400], y[:400], task="multiclass",
                              num_classes=4, validation=val, **_FAST)
  b = probes.fit_linear_probe(x[:400], y[:400], task="multiclass",
                              num_classes=4, validation=val, **_FAST)
  np.testing.assert_array_equal(a.predict(x[500:]), b.predict(x[500:]))
  # The kept epoch is the one with the lowest loss on the given split.
  assert a.val_loss == pytest.approx(
      _loss(a, x[400:500], y[400:500]), rel=1e-4)
  frames, mask, fy = _frames(500, 10, 8, 3, seed=11)
  short = frames[350:450, :6], mask[350:450, :6], fy[350:450]
  probe = probes.fit_attention_probe(frames[:350], mask[:350], fy[:350],
                                     task="multiclass", num_classes=3,
                                     num_heads=2, validation=short, **_FAST)
  assert probes.evaluate_probe(probe, frames[450:], fy[450:],
                               mask=mask[450:])["accuracy"] > 0.8


def _loss(probe, x, y):
  p = probe.predict(x)
  return float(-np.mean(np.log(p[np.arange(len(y)), y])))


def test_score_metrics_is_what_probes_report():
  scores = np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4]])
  assert probes.score_metrics(scores, np.array([0, 1, 1]), "multiclass",
                              2) == {"accuracy": pytest.approx(2 / 3)}
  got = probes.score_metrics(scores, np.array([[1, 0], [0, 1], [1, 1]]),
                             "multilabel", 2)
  assert set(got) == {"mAP", "roc_auc", "d_prime"}
