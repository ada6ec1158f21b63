"""Multi-task objective: a weighted sum of objectives sharing one encoder.

  L = sum_i w_i * L_i

`objective.tasks` lists the tasks, either as a string

  "mtc:1.0,captioning:0.5"        (a task without ":w" has weight 1)

which is the paper's L_MTC + lambda * L_caption with lambda = 0.5, or (when
the objective config is a plain dict, e.g. in code) as a list whose items
are such strings, (name, weight) pairs, or dicts
{"name": ..., "weight": ..., **overrides}. Every task is built by its own
registered builder from a copy of the objective section with `name`
replaced (and the overrides applied), so all tasks read the same keys
(for example `dropout_rate`). Task names must be distinct.

Metrics are prefixed per task ("mtc/mtc_loss", "mtc/loss", ...). Predict
methods (`tag_scores`, `audio_embedding`, ...) go to the first task that has
them; `mask_features` goes to the task that defines it (at most one), so
"mtc:1,masked:1" trains MTC on the masked input, data2vec-style.
"""

from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp

from audiopt.objectives import base


def parse_tasks(spec: Any) -> list[tuple[str, float, dict[str, Any]]]:
  """Parses `objective.tasks` into [(name, weight, overrides)].

  Args:
    spec: "name:w,name:w" or a sequence of "name:w" strings, (name, w) pairs
      or {"name", "weight", **overrides} dicts.

  Returns:
    One (name, weight, overrides) per task, in order.

  Raises:
    ValueError: empty list, bad weight, duplicate or nested multitask name.
  """
  items = ([s for s in spec.split(",") if s.strip()] if isinstance(spec, str)
           else list(spec or ()))
  tasks = []
  for item in items:
    overrides = {}
    if isinstance(item, str):
      name, _, weight = item.partition(":")
      weight = weight.strip() or "1"
    elif isinstance(item, Mapping):
      overrides = {k: v for k, v in item.items() if k not in ("name", "weight")}
      name, weight = item.get("name", ""), item.get("weight", 1.0)
    else:
      name, weight = item
    name = str(name).strip()
    try:
      weight = float(weight)
    except ValueError as e:
      raise ValueError(f"objective.tasks: weight {weight!r} of task {name!r} "
                       "is not a number") from e
    if not name or name == "multitask":
      raise ValueError(f"objective.tasks: bad task name {name!r}")
    if weight < 0:
      raise ValueError(f"objective.tasks: task {name!r} has negative weight "
                       f"{weight}")
    tasks.append((name, weight, overrides))
  if not tasks:
    raise ValueError("objective.tasks is empty; e.g. 'mtc:1.0,captioning:0.5'")
  names = [n for n, _, _ in tasks]
  if len(set(names)) != len(names):
    raise ValueError(f"objective.tasks names a task twice: {names}")
  return tasks


class MultiTask(base.Objective):
  """Weighted sum of objectives on the same encoder output.

  Attributes:
    tasks: task name -> objective (parameters live under "tasks_<name>").
    weights: task name -> weight w_i.
  """

  tasks: Mapping[str, base.Objective]
  weights: Mapping[str, float]

  def _first_with(self, method: str):
    for task in self.tasks.values():
      if hasattr(task, method):
        return task
    raise AttributeError(f"no task of {list(self.tasks)} has {method!r}")

  def mask_features(self, rng: jax.Array, feats: jax.Array, mask: jax.Array
                    ) -> tuple[jax.Array, dict[str, jax.Array]]:
    """The masking task's input masking; identity when no task masks."""
    maskers = [t for t in self.tasks.values() if hasattr(t, "mask_features")]
    if not maskers:
      return feats, {}
    return maskers[0].mask_features(rng, feats, mask)

  def __call__(self, encoded, batch, *, train: bool):
    total = jnp.zeros((), jnp.float32)
    metrics = {}
    for name, task in self.tasks.items():
      loss, task_metrics = task(encoded, batch, train=train)
      total = total + self.weights[name] * loss
      metrics[f"{name}/loss"] = loss
      metrics.update({f"{name}/{k}": v for k, v in task_metrics.items()})
    return total, metrics

  # Predict methods for evaluators, forwarded to the first task having them.
  def tag_scores(self, encoded, **kwargs):
    """See `mtc.MultiLabelTagClassification.tag_scores`."""
    return self._first_with("tag_scores").tag_scores(encoded, **kwargs)

  def audio_embedding(self, encoded, **kwargs):
    """See `contrastive.ContrastiveObjective.audio_embedding`."""
    return self._first_with("audio_embedding").audio_embedding(
        encoded, **kwargs)

  def text_embedding(self, ids, mask, **kwargs):
    """See `contrastive.ContrastiveObjective.text_embedding`."""
    return self._first_with("text_embedding").text_embedding(ids, mask,
                                                             **kwargs)

  def generate_captions(self, encoded, **kwargs):
    """See `captioning.Captioning.generate_captions`."""
    return self._first_with("generate_captions").generate_captions(
        encoded, **kwargs)

  def predict_tags(self, encoded, **kwargs):
    """See `par.ParallelTagDecoding.predict_tags`."""
    return self._first_with("predict_tags").predict_tags(encoded, **kwargs)

  def reconstruct(self, encoded, **kwargs):
    """See `masked.MaskedFramePrediction.reconstruct`."""
    return self._first_with("reconstruct").reconstruct(encoded, **kwargs)


def _as_dict(cfg: Any) -> dict[str, Any]:
  return cfg.to_dict() if hasattr(cfg, "to_dict") else dict(cfg)


@base.register_objective("multitask")
def _build(cfg, info: base.DatasetInfo) -> MultiTask:
  parsed = parse_tasks(cfg.get("tasks", ""))
  tasks, weights = {}, {}
  for name, weight, overrides in parsed:
    child = _as_dict(cfg)
    child.update(overrides)
    child["name"] = name
    child.pop("tasks", None)
    tasks[name] = base.build_objective(child, info)
    weights[name] = weight
  if sum(hasattr(t, "mask_features") for t in tasks.values()) > 1:
    raise ValueError("objective.tasks: at most one task may mask the input")
  return MultiTask(tasks=tasks, weights=weights)

