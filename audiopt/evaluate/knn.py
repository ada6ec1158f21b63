"""k-nearest-neighbour probe on frozen clip embeddings (X-ARES style).

No training: every test clip takes the k training clips most similar to it
(cosine similarity of the clip vectors, e.g. mean-pooled frames) and lets
them vote, each with weight exp(similarity / temperature):

  multiclass: score[c] = sum of the weights of neighbours of class c,
              divided by the sum of the weights; the prediction is the
              argmax; metric accuracy.
  multilabel: score = weighted average of the neighbours' multi-hot label
              vectors; metrics mAP, macro ROC-AUC and d-prime (as the
              linear probes report them).

Defaults k = 10, temperature = 0.07. Equal similarities are broken by the
lower training index, so scores are deterministic. Computed on the default
JAX device in chunks of test clips of one compiled shape.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from audiopt.evaluate import probes

K = 10
TEMPERATURE = 0.07


def _unit(x: np.ndarray) -> np.ndarray:
  x = np.asarray(x, np.float32)
  return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


@functools.lru_cache(maxsize=16)
def _score_fn(k: int, temperature: float):
  """jit((queries [n, D], keys [N, D], labels [N, C]) -> scores [n, C])."""

  @jax.jit
  def scores(queries, keys, labels):
    sims = queries @ keys.T                                   # [n, N]
    # top_k orders equal values by index, like a stable sort.
    top, idx = jax.lax.top_k(sims, k)                         # [n, k]
    weights = jnp.exp((top - top[:, :1]) / temperature)       # max-shifted
    votes = jnp.einsum("nk,nkc->nc", weights, labels[idx])
    return votes / jnp.sum(weights, axis=1, keepdims=True)

  return scores


def knn_scores(train_x: np.ndarray, train_y: np.ndarray, test_x: np.ndarray,
               *, task: str, num_classes: int, k: int = K,
               temperature: float = TEMPERATURE, chunk: int = 512
               ) -> np.ndarray:
  """Weighted-vote kNN scores of test clips.

  Args:
    train_x: [N, D] training clip vectors.
    train_y: int class ids [N] (multiclass) or multi-hot [N, C] (multilabel).
    test_x: [M, D] test clip vectors.
    task: "multiclass" or "multilabel".
    num_classes: C.
    k: neighbours (at most N are used).
    temperature: softmax-style temperature of the vote weights.
    chunk: test clips per device call.

  Returns:
    [M, C] float32 scores in [0, 1] (each row sums to 1 for multiclass).
  """
  train_x, test_x = np.asarray(train_x), np.asarray(test_x)
  if train_x.ndim != 2 or test_x.ndim != 2 or (
      train_x.shape[1] != test_x.shape[1]):
    raise ValueError(f"clip vectors must be [N, D] and [M, D], got "
                     f"{train_x.shape} and {test_x.shape}")
  if not isinstance(k, int) or k < 1:
    raise ValueError(f"k must be a positive int, got {k!r}")
  if not temperature > 0:
    raise ValueError(f"temperature must be > 0, got {temperature}")
  n = train_x.shape[0]
  if n == 0:
    raise ValueError("kNN needs at least one training clip")
  labels = probes._check_labels(train_y, task, num_classes, n)  # pylint: disable=protected-access
  if task == "multiclass":
    labels = np.eye(num_classes, dtype=np.float32)[labels]
  fn = _score_fn(min(k, n), float(temperature))
  keys = jnp.asarray(_unit(train_x))
  labels = jnp.asarray(labels)
  queries = _unit(test_x)
  size = max(1, min(chunk, queries.shape[0]))
  out = []
  for start in range(0, queries.shape[0], size):
    q = queries[start:start + size]
    m = q.shape[0]
    if m < size:  # one compiled shape for every chunk
      q = np.concatenate([q, np.zeros((size - m, q.shape[1]), np.float32)])
    out.append(np.asarray(fn(jnp.asarray(q), keys, labels))[:m])
  if not out:
    return np.zeros((0, num_classes), np.float32)
  return np.concatenate(out).astype(np.float32)


def evaluate_knn(train_x: np.ndarray, train_y: np.ndarray, test_x: np.ndarray,
                 test_y: np.ndarray, *, task: str, num_classes: int,
                 k: int = K, temperature: float = TEMPERATURE
                 ) -> dict[str, float]:
  """kNN metrics on a test set.

  Returns:
    multiclass: {"accuracy"}; multilabel: {"mAP", "roc_auc", "d_prime"}.
  """
  scores = knn_scores(train_x, train_y, test_x, task=task,
                      num_classes=num_classes, k=k, temperature=temperature)
  return probes.score_metrics(scores, test_y, task, num_classes)
