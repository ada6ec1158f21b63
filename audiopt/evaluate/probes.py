"""Probes on frozen embeddings: pooling + linear classifier, trained in JAX.

Two probes, as the paper reports both (their rankings can flip):

* `fit_linear_probe`: a linear layer on clip vectors, e.g. `mean_pool`ed
  frames.
* `fit_attention_probe`: multi-head attention pooling (a learned query per
  head attends over the valid frames) followed by a linear layer.

Both share one training loop (`_fit`): features standardised with training
statistics, AdamW (optax), minibatches, early stopping on the validation
loss: of the task's own validation split when given (`validation=`), else
of a split carved from the training set with the seed. The seed fixes the
split, the initialisation and the batch order, so a probe is reproducible.
Inputs and outputs are numpy arrays. `score_metrics` scores any [N, C]
class scores the same way (the kNN probe in `knn.py` uses it): accuracy for
multiclass tasks, mAP, ROC-AUC and d-prime for multilabel ones.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
from scipy import stats

TASKS = ("multiclass", "multilabel")


def mean_pool(frames: np.ndarray, mask: np.ndarray) -> np.ndarray:
  """Averages the valid frames of each clip.

  Args:
    frames: [N, T, D] frame embeddings.
    mask: [N, T], true where a frame is valid.

  Returns:
    [N, D] float32 means over valid frames (zeros for a clip with none);
    padded frames never contribute, whatever their values.
  """
  frames, mask = _check_frames(frames, mask)
  valid = mask[..., None]
  total = np.where(valid, frames, 0.0).sum(axis=1, dtype=np.float64)
  count = np.maximum(mask.sum(axis=1, keepdims=True), 1)
  return (total / count).astype(np.float32)


class LinearHead(nn.Module):
  """A linear classifier on clip vectors: [B, D] -> logits [B, C]."""
  num_classes: int

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    return nn.Dense(self.num_classes, name="out")(x)


class AttentionPoolHead(nn.Module):
  """Multi-head attention pooling with learned queries, then linear.

  Maps frames [B, T, D] and a validity mask [B, T] to logits [B, C]. Each head
  has one learned query that attends over the valid frames' keys; the heads'
  pooled values are concatenated and classified by a linear layer.
  """
  num_classes: int
  num_heads: int = 4

  @nn.compact
  def __call__(self, frames: jax.Array, mask: jax.Array) -> jax.Array:
    dim = frames.shape[-1]
    head_dim = -(-dim // self.num_heads)
    shape = (self.num_heads, head_dim)
    query = self.param("query", nn.initializers.normal(1.0), shape)
    key = nn.DenseGeneral(shape, name="key")
    value = nn.DenseGeneral(shape, name="value")
    # The same function as projecting every frame to keys and values, at
    # the cost of one D-vector per head and frame instead of D x D: the
    # projections are affine, so key_t . q_h = x_t . (W_k q_h) + b_k . q_h
    # and sum_t w_t (x_t W_v + b_v) = (sum_t w_t x_t) W_v + b_v sum_t w_t.
    # W and b come out of the layers themselves (applied to the identity
    # and to zero), so parameters and initialisation are those of the
    # per-frame form.
    basis = jnp.concatenate([jnp.eye(dim, dtype=frames.dtype),
                             jnp.zeros((1, dim), frames.dtype)])
    rows = key(basis)                                       # [D + 1, H, K]
    key_bias = rows[-1]
    key_dirs = jnp.einsum("dhk,hk->dh", rows[:-1] - key_bias, query)
    logits = (jnp.einsum("btd,dh->bht", frames, key_dirs) +
              jnp.einsum("hk,hk->h", key_bias, query)[None, :, None])
    logits = logits / math.sqrt(head_dim)
    valid = mask[:, None, :]
    logits = jnp.where(valid, logits, jnp.finfo(logits.dtype).min)
    # The second mask zeroes a clip with no valid frame instead of averaging
    # its padding.
    weights = jax.nn.softmax(logits, axis=-1) * valid       # [B, H, T]
    mixed = jnp.einsum("bht,btd->bhd", weights, frames)     # [B, H, D]
    projected = value(jnp.concatenate(
        [mixed, jnp.zeros_like(mixed[:, :1])], axis=1))     # [B, H+1, H, K]
    value_bias = projected[:, -1]                           # [B, H, K]
    heads = jnp.arange(self.num_heads)
    pooled = projected[:, heads, heads]                     # head h's own
    pooled = pooled - value_bias * (1.0 - weights.sum(-1))[..., None]
    return nn.Dense(self.num_classes, name="out")(
        pooled.reshape(pooled.shape[0], -1))


@dataclasses.dataclass(frozen=True)
class Probe:
  """A trained probe.

  Attributes:
    model: the Flax head (`LinearHead` or `AttentionPoolHead`).
    params: its trained parameters.
    mean: [D] feature means of the training data (valid frames).
    std: [D] feature standard deviations of the training data.
    task: "multiclass" or "multilabel".
    num_classes: number of classes C.
    batch_size: batch size used for prediction.
    epochs: epochs trained (early stopping may end before max_epochs).
    best_epoch: the epoch whose parameters were kept (1-based).
    val_loss: validation loss at `best_epoch` (nan without a split).
  """
  model: nn.Module
  params: Any
  mean: np.ndarray
  std: np.ndarray
  task: str
  num_classes: int
  batch_size: int
  epochs: int
  best_epoch: int
  val_loss: float

  @property
  def uses_frames(self) -> bool:
    """True for an attention probe, which takes frames [N, T, D] and a mask."""
    return isinstance(self.model, AttentionPoolHead)

  def predict(self, x: np.ndarray, mask: np.ndarray | None = None
              ) -> np.ndarray:
    """Scores clips.

    Args:
      x: [N, D] clip vectors for a linear probe, or [N, T, D] frames for an
        attention probe.
      mask: [N, T] frame validity for an attention probe (None: all valid);
        must be None for a linear probe.

    Returns:
      [N, C] float32 scores: class probabilities (softmax) for multiclass,
      independent sigmoid probabilities for multilabel.
    """
    inputs = self._inputs(x, mask)
    apply = _apply_fn(self.model)
    n, b = inputs[0].shape[0], self.batch_size
    out = []
    for start in range(0, n, b):
      chunk = [a[start:start + b] for a in inputs]
      size = chunk[0].shape[0]
      if size < b:  # pad so that every call has one compiled shape
        chunk = [np.concatenate([a, np.zeros((b - size,) + a.shape[1:],
                                             a.dtype)]) for a in chunk]
      logits = apply(self.params, *chunk)[:size]
      out.append(np.asarray(jax.nn.softmax(logits) if self.task == "multiclass"
                            else jax.nn.sigmoid(logits)))
    if not out:
      return np.zeros((0, self.num_classes), np.float32)
    return np.concatenate(out).astype(np.float32)

  def _inputs(self, x, mask) -> tuple[np.ndarray, ...]:
    """Standardised model inputs from user arrays."""
    x = np.asarray(x)
    if self.uses_frames:
      if mask is None:
        mask = np.ones(x.shape[:2], bool)
      frames, mask = _check_frames(x, mask)
      _check_dim(frames.shape[-1], self.mean.size)
      return (_standardise_frames(frames, mask, self.mean, self.std), mask)
    if mask is not None:
      raise ValueError("a linear probe takes clip vectors [N, D] and no mask; "
                       "pool frames first (e.g. mean_pool)")
    if x.ndim != 2:
      raise ValueError(f"expected clip vectors [N, D], got shape {x.shape}")
    _check_dim(x.shape[-1], self.mean.size)
    return (((x - self.mean) / self.std).astype(np.float32),)


def fit_linear_probe(train_x: np.ndarray, train_y: np.ndarray, *, task: str,
                     num_classes: int, val_fraction: float = 0.1,
                     seed: int = 0, max_epochs: int = 200, lr: float = 1e-3,
                     weight_decay: float = 1e-4, patience: int = 10,
                     batch_size: int = 256,
                     validation: tuple[np.ndarray, np.ndarray] | None = None
                     ) -> Probe:
  """Trains a linear probe on clip vectors.

  Args:
    train_x: [N, D] clip vectors (e.g. mean-pooled frames).
    train_y: int class ids [N] (multiclass) or multi-hot [N, C] (multilabel).
    task: "multiclass" or "multilabel".
    num_classes: number of classes C.
    val_fraction: fraction of the training clips held out for early stopping
      (0: none; train max_epochs and keep the last parameters).
    seed: seeds the split, the initialisation and the batch order.
    max_epochs: most passes over the training clips.
    lr: AdamW learning rate.
    weight_decay: AdamW decoupled weight decay.
    patience: epochs without validation-loss improvement before stopping.
    batch_size: minibatch size.
    validation: (val_x [M, D], val_y) of a task's own validation split: early
      stopping uses it instead of a `val_fraction` of the training clips
      (which all train then).

  Returns:
    The trained `Probe`, holding the parameters of the best validation epoch.
  """
  x = np.asarray(train_x)
  if x.ndim != 2:
    raise ValueError(f"train_x must be [N, D], got shape {x.shape}")
  x = x.astype(np.float32)
  mean = x.mean(axis=0, dtype=np.float64)
  std = _safe_std(x.std(axis=0, dtype=np.float64))
  inputs = (((x - mean) / std).astype(np.float32),)
  val = None
  if validation is not None:
    val_x, val_y = validation
    val_x = np.asarray(val_x, np.float32)
    if val_x.ndim != 2:
      raise ValueError(f"validation x must be [M, D], got {val_x.shape}")
    _check_dim(val_x.shape[-1], x.shape[-1])
    val = ((((val_x - mean) / std).astype(np.float32),), val_y)
  return _fit(LinearHead(num_classes), inputs, train_y, mean, std, task=task,
              num_classes=num_classes, val_fraction=val_fraction, seed=seed,
              max_epochs=max_epochs, lr=lr, weight_decay=weight_decay,
              patience=patience, batch_size=batch_size, validation=val)


def fit_attention_probe(train_frames: np.ndarray, train_mask: np.ndarray,
                        train_y: np.ndarray, *, task: str, num_classes: int,
                        num_heads: int = 4, val_fraction: float = 0.1,
                        seed: int = 0, max_epochs: int = 200, lr: float = 1e-3,
                        weight_decay: float = 1e-4, patience: int = 10,
                        batch_size: int = 256,
                        validation: tuple[np.ndarray, np.ndarray, np.ndarray]
                        | None = None) -> Probe:
  """Trains a multi-head attention-pooling probe on frames.

  Args:
    train_frames: [N, T, D] frame embeddings.
    train_mask: [N, T], true where a frame is valid; padded frames are
      ignored by the statistics, the pooling and the classifier.
    train_y: int class ids [N] (multiclass) or multi-hot [N, C] (multilabel).
    task: "multiclass" or "multilabel".
    num_classes: number of classes C.
    num_heads: attention heads (each with its own learned query).
    val_fraction, seed, max_epochs, lr, weight_decay, patience, batch_size:
      as for `fit_linear_probe`.
    validation: (val_frames [M, T2, D], val_mask [M, T2], val_y) of a task's
      own validation split, used for early stopping instead of
      `val_fraction`.

  Returns:
    The trained `Probe`.
  """
  frames, mask = _check_frames(train_frames, train_mask)
  if not isinstance(num_heads, int) or num_heads < 1:
    raise ValueError(f"num_heads must be a positive int, got {num_heads!r}")
  count = max(int(mask.sum()), 1)
  valid = mask[..., None]
  mean = np.where(valid, frames, 0.0).sum((0, 1), dtype=np.float64) / count
  centred = np.where(valid, frames, mean) - mean
  std = _safe_std(np.sqrt((centred ** 2).sum((0, 1)) / count))
  inputs = (_standardise_frames(frames, mask, mean, std), mask)
  val = None
  if validation is not None:
    val_frames, val_mask, val_y = validation
    val_frames, val_mask = _check_frames(val_frames, val_mask)
    _check_dim(val_frames.shape[-1], frames.shape[-1])
    val = ((_standardise_frames(val_frames, val_mask, mean, std), val_mask),
           val_y)
  return _fit(AttentionPoolHead(num_classes, num_heads), inputs, train_y,
              mean, std, task=task, num_classes=num_classes,
              val_fraction=val_fraction, seed=seed, max_epochs=max_epochs,
              lr=lr, weight_decay=weight_decay, patience=patience,
              batch_size=batch_size, validation=val)


def evaluate_probe(probe: Probe, x: np.ndarray, y: np.ndarray, *,
                   mask: np.ndarray | None = None) -> dict[str, float]:
  """Scores a probe on test data.

  Args:
    probe: a trained `Probe`.
    x: test inputs as `Probe.predict` takes them ([N, D] or [N, T, D]).
    y: int class ids [N] (multiclass) or multi-hot [N, C] (multilabel).
    mask: [N, T] frame validity for an attention probe.

  Returns:
    multiclass: {"accuracy"}; multilabel: {"mAP" (macro average precision over
    classes with positives), "roc_auc" (macro over classes with positives and
    negatives), "d_prime" (sqrt(2) * Phi^-1(roc_auc))}.
  """
  return score_metrics(probe.predict(x, mask), y, probe.task,
                       probe.num_classes)


def score_metrics(scores: np.ndarray, y: np.ndarray, task: str,
                  num_classes: int) -> dict[str, float]:
  """Metrics of class scores [N, C] against targets (probes and kNN alike).

  Args:
    scores: [N, C] scores, higher meaning more likely.
    y: int class ids [N] (multiclass) or multi-hot [N, C] (multilabel).
    task: "multiclass" or "multilabel".
    num_classes: C.

  Returns:
    multiclass: {"accuracy"} of the argmax; multilabel: {"mAP", "roc_auc",
    "d_prime"} as `evaluate_probe` describes them.
  """
  scores = np.asarray(scores)
  labels = _check_labels(y, task, num_classes, scores.shape[0])
  if task == "multiclass":
    return {"accuracy": float(np.mean(scores.argmax(axis=1) == labels))}
  auc = macro_roc_auc(scores, labels)
  return {"mAP": mean_average_precision(scores, labels), "roc_auc": auc,
          "d_prime": d_prime(auc)}


# ----------------------------------------------------------------------------
# Metrics.


def average_precision(scores: np.ndarray, labels: np.ndarray) -> float:
  """Average precision of one class (step-wise, ties grouped as one threshold).

  Args:
    scores: [N] scores, higher meaning more likely positive.
    labels: [N] 0/1 (or bool) truth.

  Returns:
    sum over thresholds of (recall increase) * precision; nan without
    positives.
  """
  scores, positive = np.asarray(scores, np.float64), np.asarray(labels) > 0
  if not positive.any():
    return float("nan")
  order = np.argsort(-scores, kind="stable")
  ranked, hits = scores[order], positive[order]
  true_pos = np.cumsum(hits)
  # The last position of each run of equal scores is one threshold.
  last = np.r_[np.flatnonzero(ranked[1:] != ranked[:-1]), ranked.size - 1]
  true_pos = true_pos[last]
  precision = true_pos / (last + 1)
  recall = true_pos / true_pos[-1]
  return float(np.sum(np.diff(recall, prepend=0.0) * precision))


def roc_auc(scores: np.ndarray, labels: np.ndarray) -> float:
  """Area under the ROC curve of one class (ties count one half).

  Args:
    scores: [N] scores.
    labels: [N] 0/1 truth.

  Returns:
    The Mann-Whitney estimate of P(score of a positive > score of a
    negative); nan without both positives and negatives.
  """
  scores, positive = np.asarray(scores, np.float64), np.asarray(labels) > 0
  num_pos = int(positive.sum())
  num_neg = positive.size - num_pos
  if num_pos == 0 or num_neg == 0:
    return float("nan")
  order = np.argsort(scores, kind="stable")
  ranked = scores[order]
  starts = np.r_[0, np.flatnonzero(ranked[1:] != ranked[:-1]) + 1]
  ends = np.r_[starts[1:], ranked.size]
  ranks = np.empty(ranked.size)
  ranks[order] = np.repeat((starts + ends + 1) / 2.0, ends - starts)
  return float((ranks[positive].sum() - num_pos * (num_pos + 1) / 2) /
               (num_pos * num_neg))


def mean_average_precision(scores: np.ndarray, labels: np.ndarray) -> float:
  """Macro AP over the classes of [N, C] that have at least one positive."""
  aps = [average_precision(scores[:, c], labels[:, c])
         for c in range(labels.shape[1]) if np.any(labels[:, c] > 0)]
  return float(np.mean(aps)) if aps else float("nan")


def macro_roc_auc(scores: np.ndarray, labels: np.ndarray) -> float:
  """Macro ROC-AUC over classes of [N, C] with positives and negatives."""
  aucs = [roc_auc(scores[:, c], labels[:, c]) for c in range(labels.shape[1])]
  aucs = [a for a in aucs if not math.isnan(a)]
  return float(np.mean(aucs)) if aucs else float("nan")


def d_prime(auc: float) -> float:
  """Returns sqrt(2) * Phi^-1(auc), AUC clipped to [1e-6, 1 - 1e-6] (finite)."""
  if math.isnan(auc):
    return float("nan")
  return float(math.sqrt(2.0) * stats.norm.ppf(np.clip(auc, 1e-6, 1 - 1e-6)))


# ----------------------------------------------------------------------------
# Training.


def _fit(model: nn.Module, inputs: tuple[np.ndarray, ...], train_y: Any,
         mean: np.ndarray, std: np.ndarray, *, task: str, num_classes: int,
         val_fraction: float, seed: int, max_epochs: int, lr: float,
         weight_decay: float, patience: int, batch_size: int,
         validation: tuple[tuple[np.ndarray, ...], Any] | None = None
         ) -> Probe:
  """Trains `model` on standardised `inputs` (each [N, ...]); see fit_*.

  `validation` is (standardised inputs, labels) of a separate validation
  split; its examples are appended to the data and never trained on.
  """
  if task not in TASKS:
    raise ValueError(f"unknown task {task!r}; valid tasks: {', '.join(TASKS)}")
  n = inputs[0].shape[0]
  labels = _check_labels(train_y, task, num_classes, n)
  for name, value in (("max_epochs", max_epochs), ("batch_size", batch_size),
                      ("patience", patience)):
    if not isinstance(value, int) or value < 1:
      raise ValueError(f"{name} must be a positive int, got {value!r}")
  if not 0.0 <= val_fraction < 1.0:
    raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
  rng = np.random.default_rng(seed)
  if validation is not None:
    val_inputs, val_y = validation
    m = val_inputs[0].shape[0]
    val_labels = _check_labels(val_y, task, num_classes, m)
    # Frames of the two splits may differ in length: pad to the longer.
    inputs = tuple(_concat_padded(a, b) for a, b in zip(inputs, val_inputs))
    labels = np.concatenate([labels, val_labels])
    train_idx, val_idx = np.arange(n), np.arange(n, n + m)
    num_val = m
  else:
    perm = rng.permutation(n)
    num_val = min(int(round(n * val_fraction)), n - 1)
    val_idx, train_idx = perm[:num_val], perm[num_val:]
  batch = min(batch_size, train_idx.size)

  params = model.init(jax.random.PRNGKey(seed),
                      *[jnp.asarray(a[:1]) for a in inputs])["params"]
  run_epoch, eval_loss = _epoch_fns(model, task)
  opt_state = _optimizer(lr, weight_decay).init(params)
  data = tuple(jnp.asarray(a) for a in inputs)
  targets = jnp.asarray(labels)
  val_order = jnp.asarray(_batches(val_idx, batch))

  best_params, best_loss, best_epoch, waited, epoch = params, np.inf, 0, 0, 0
  for epoch in range(1, max_epochs + 1):
    order = _batches(rng.permutation(train_idx), batch)
    params, opt_state = run_epoch(params, opt_state, jnp.asarray(order), data,
                                  targets)
    if num_val == 0:
      best_params, best_epoch = params, epoch
      continue
    loss = float(eval_loss(params, val_order, data, targets))
    if loss < best_loss:
      best_params, best_loss, best_epoch, waited = params, loss, epoch, 0
    else:
      waited += 1
      if waited >= patience:
        break
  return Probe(model=model, params=jax.device_get(best_params),
               mean=np.asarray(mean, np.float32),
               std=np.asarray(std, np.float32), task=task,
               num_classes=num_classes, batch_size=batch, epochs=epoch,
               best_epoch=best_epoch,
               val_loss=float(best_loss) if num_val else float("nan"))


@functools.lru_cache(maxsize=32)
def _apply_fn(model: nn.Module):
  """A jitted (params, *inputs) -> logits, shared by equal models."""
  return jax.jit(lambda params, *a: model.apply({"params": params}, *a))


def _optimizer(lr: float, weight_decay: float) -> optax.GradientTransformation:
  """AdamW whose hyperparameters live in its state, not in compiled code."""
  return optax.inject_hyperparams(optax.adamw)(learning_rate=lr,
                                               weight_decay=weight_decay)


@functools.lru_cache(maxsize=32)
def _epoch_fns(model: nn.Module, task: str):
  """Jitted (run_epoch, eval_loss) functions for a model and task.

  Cached, so that probes of equal models and data shapes (e.g. on each layer
  of each checkpoint, with any learning rate) reuse one compilation. Both
  take `order` [num_batches, B] of example indices (-1 for padding) and gather
  each batch on device, so one compiled shape serves every epoch. run_epoch
  returns the updated (params, opt_state); eval_loss the mean loss.
  """
  # Only the update rule is used; the hyperparameters come from opt_state.
  optimizer = _optimizer(0.0, 0.0)

  def batch_loss(params, idx, data, targets):
    weight = (idx >= 0).astype(jnp.float32)
    idx = jnp.maximum(idx, 0)
    logits = model.apply({"params": params}, *[a[idx] for a in data])
    y = targets[idx]
    if task == "multiclass":
      losses = optax.softmax_cross_entropy_with_integer_labels(logits, y)
    else:
      losses = optax.sigmoid_binary_cross_entropy(logits, y).mean(axis=-1)
    return jnp.sum(losses * weight), jnp.sum(weight)

  def mean_loss(params, idx, data, targets):
    total, count = batch_loss(params, idx, data, targets)
    return total / jnp.maximum(count, 1.0)

  @jax.jit
  def run_epoch(params, opt_state, order, data, targets):
    def step(carry, idx):
      params, opt_state = carry
      grads = jax.grad(mean_loss)(params, idx, data, targets)
      updates, opt_state = optimizer.update(grads, opt_state, params)
      return (optax.apply_updates(params, updates), opt_state), None
    (params, opt_state), _ = jax.lax.scan(step, (params, opt_state), order)
    return params, opt_state

  @jax.jit
  def eval_loss(params, order, data, targets):
    def step(carry, idx):
      total, count = batch_loss(params, idx, data, targets)
      return (carry[0] + total, carry[1] + count), None
    (total, count), _ = jax.lax.scan(step, (0.0, 0.0), order)
    return total / jnp.maximum(count, 1.0)

  return run_epoch, eval_loss


def _concat_padded(a: np.ndarray, b: np.ndarray) -> np.ndarray:
  """Concatenates [N, T1, ...] and [M, T2, ...] along axis 0, zero-padding
  (False for masks) axis 1 of the shorter: frames and masks of two splits."""
  if a.ndim >= 2 and a.ndim == b.ndim and a.shape[1] != b.shape[1]:
    t = max(a.shape[1], b.shape[1])
    pad = lambda x: np.pad(x, [(0, 0), (0, t - x.shape[1])] +  # pylint: disable=g-long-lambda
                           [(0, 0)] * (x.ndim - 2))
    a, b = pad(a), pad(b)
  return np.concatenate([a, b])


def _batches(idx: np.ndarray, batch: int) -> np.ndarray:
  """Splits indices into [ceil(len / batch), batch] rows padded with -1."""
  rows = max(1, -(-idx.size // batch))
  out = np.full(rows * batch, -1, np.int32)
  out[:idx.size] = idx
  return out.reshape(rows, batch)


# ----------------------------------------------------------------------------
# Input checks.


def _check_frames(frames: Any, mask: Any) -> tuple[np.ndarray, np.ndarray]:
  frames, mask = np.asarray(frames), np.asarray(mask)
  if frames.ndim != 3:
    raise ValueError(f"frames must be [N, T, D], got shape {frames.shape}")
  if mask.shape != frames.shape[:2]:
    raise ValueError(f"mask must be [N, T] = {frames.shape[:2]}, got "
                     f"{mask.shape}")
  return frames.astype(np.float32, copy=False), mask.astype(bool)


def _check_dim(got: int, want: int) -> None:
  if got != want:
    raise ValueError(f"feature dimension {got} != the probe's {want}")


def _check_labels(y: Any, task: str, num_classes: int, n: int) -> np.ndarray:
  """Returns int32 ids [N] (multiclass) or float32 multi-hot [N, C]."""
  if task not in TASKS:
    raise ValueError(f"unknown task {task!r}; valid tasks: {', '.join(TASKS)}")
  if not isinstance(num_classes, (int, np.integer)) or num_classes < 1:
    raise ValueError(f"num_classes must be a positive int, got {num_classes!r}")
  y = np.asarray(y)
  if task == "multiclass":
    if y.shape != (n,) or not np.issubdtype(y.dtype, np.integer):
      raise ValueError(f"multiclass labels must be int class ids [N={n}], got "
                       f"{y.dtype} {y.shape}")
    if y.size and (y.min() < 0 or y.max() >= num_classes):
      raise ValueError(f"class ids must be in [0, {num_classes}), got "
                       f"[{y.min()}, {y.max()}]")
    return y.astype(np.int32)
  if y.shape != (n, num_classes):
    raise ValueError(f"multilabel labels must be multi-hot [N={n}, "
                     f"C={num_classes}], got {y.shape}")
  if not np.all((y == 0) | (y == 1)):
    raise ValueError("multilabel labels must be 0 or 1")
  return y.astype(np.float32)


def _safe_std(std: np.ndarray) -> np.ndarray:
  return np.where(std > 1e-8, std, 1.0)


def _standardise_frames(frames: np.ndarray, mask: np.ndarray, mean: np.ndarray,
                        std: np.ndarray) -> np.ndarray:
  """(frames - mean) / std on valid frames; padded frames set to zero."""
  # Padding is replaced before arithmetic, so inf or huge values stay inert.
  frames = np.where(mask[..., None], frames, mean)
  return ((frames - mean) / std).astype(np.float32)
