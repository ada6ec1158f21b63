"""kNN probe (audiopt.evaluate.knn) against a numpy brute-force reference."""

import numpy as np
import pytest

from audiopt.evaluate import knn
from audiopt.evaluate import probes


def _reference(train_x, train_y, test_x, *, task, num_classes, k, temperature):
  """Loops over test clips: cosine, sort, top k, exp(sim / T) weighted vote."""
  unit = lambda x: x / np.linalg.norm(x, axis=1, keepdims=True)
  a, b = unit(train_x.astype(np.float64)), unit(test_x.astype(np.float64))
  labels = (np.eye(num_classes)[train_y] if task == "multiclass"
            else train_y.astype(np.float64))
  out = np.zeros((len(test_x), num_classes))
  for i, q in enumerate(b):
    sims = a @ q
    top = np.argsort(-sims, kind="stable")[:k]
    w = np.exp(sims[top] / temperature)
    out[i] = (w[:, None] * labels[top]).sum(0) / w.sum()
  return out


@pytest.mark.parametrize("task", ["multiclass", "multilabel"])
def test_scores_match_brute_force(task):
  rng = np.random.default_rng(0)
  train_x = rng.normal(size=(300, 12)).astype(np.float32)
  test_x = rng.normal(size=(70, 12)).astype(np.float32)
  if task == "multiclass":
    train_y = rng.integers(5, size=300)
  else:
    train_y = (rng.random((300, 5)) < 0.3).astype(np.float32)
  got = knn.knn_scores(train_x, train_y, test_x, task=task, num_classes=5,
                       chunk=32)  # several chunks, the last one padded
  want = _reference(train_x, train_y, test_x, task=task, num_classes=5,
                    k=10, temperature=0.07)
  np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)
  if task == "multiclass":
    np.testing.assert_allclose(got.sum(1), 1.0, rtol=1e-5)


def test_metrics_and_k_larger_than_train_set():
  rng = np.random.default_rng(1)
  centres = rng.normal(size=(3, 8)) * 4
  y = rng.integers(3, size=200)
  x = (centres[y] + rng.normal(size=(200, 8))).astype(np.float32)
  metrics = knn.evaluate_knn(x[:150], y[:150], x[150:], y[150:],
                             task="multiclass", num_classes=3)
  assert set(metrics) == {"accuracy"} and metrics["accuracy"] > 0.95
  # k above the training size uses every training clip.
  got = knn.knn_scores(x[:4], y[:4], x[150:], task="multiclass",
                       num_classes=3, k=10, temperature=0.5)
  want = _reference(x[:4], y[:4], x[150:], task="multiclass", num_classes=3,
                    k=4, temperature=0.5)
  np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-6)
  multi = (np.eye(3)[y] + (rng.random((200, 3)) < 0.1)).clip(0, 1)
  metrics = knn.evaluate_knn(x[:150], multi[:150], x[150:], multi[150:],
                             task="multilabel", num_classes=3)
  assert set(metrics) == {"mAP", "roc_auc", "d_prime"}
  assert metrics["mAP"] > 0.8
  assert metrics["d_prime"] == pytest.approx(probes.d_prime(metrics["roc_auc"]))


def test_bad_inputs():
  x = np.ones((4, 3), np.float32)
  with pytest.raises(ValueError, match="valid tasks"):
    knn.knn_scores(x, np.zeros(4, int), x, task="ranking", num_classes=2)
  with pytest.raises(ValueError, match=r"\[M, D\]"):
    knn.knn_scores(x, np.zeros(4, int), x[:, :2], task="multiclass",
                   num_classes=2)
  with pytest.raises(ValueError, match="k must be"):
    knn.knn_scores(x, np.zeros(4, int), x, task="multiclass", num_classes=2,
                   k=0)
