"""The objective interface: how a pre-training objective plugs into the trainer.

An objective is a Flax module that owns its heads and its loss. The trainer
never knows which objective it trains: it calls the model, which calls

  objective(encoded, batch, train=...) -> (loss [], metrics {name: []})

where `encoded` is the encoder's `EncoderOutput` (frames [B, T', D] and their
mask) and `batch` is the device batch of `audiopt.data.pipeline` (for example
`tags` [B, max_tags] int32 padded with -1, `valid` [B] bool). Objectives also
expose predict methods that evaluators call through `model.apply(...,
method=...)`; see each objective's docstring.

Objectives are registered by name so that configs can pick them:

  @register_objective("mtc")
  def _build(cfg, info) -> Objective: ...

`info` is a `DatasetInfo` with the vocabulary sizes of the training data.
"""

import dataclasses
from typing import Any, Callable, Mapping

import flax.linen as nn
import jax
import jax.numpy as jnp

Batch = Mapping[str, jax.Array]
Metrics = dict[str, jax.Array]


@dataclasses.dataclass(frozen=True)
class DatasetInfo:
  """What an objective may need to know about its training data.

  Attributes:
    num_tags: size of the UTS tag vocabulary (ids in the `tags` field).
    num_weak_labels: size of the weak label set (ids in `weak_labels`).
    tag_names: the tag vocabulary, id order.
    weak_label_names: the weak label names, id order.
  """

  num_tags: int = 0
  num_weak_labels: int = 0
  tag_names: tuple[str, ...] = ()
  weak_label_names: tuple[str, ...] = ()

  @classmethod
  def from_metadata(cls, metadata: Mapping[str, Any]) -> "DatasetInfo":
    """Builds the info from a record set's metadata dict."""
    tags = tuple(metadata.get("tag_names", ()))
    weak = tuple(metadata.get("weak_label_names", ()))
    return cls(num_tags=len(tags), num_weak_labels=len(weak),
               tag_names=tags, weak_label_names=weak)


class Objective(nn.Module):
  """Base class of objectives: heads on encoder frames plus a loss."""

  def __call__(self, encoded, batch: Batch, *, train: bool
               ) -> tuple[jax.Array, Metrics]:
    """Returns (scalar loss, metrics of scalars) for one batch."""
    raise NotImplementedError


_REGISTRY: dict[str, Callable[[Any, DatasetInfo], Objective]] = {}


def register_objective(name: str):
  """Decorator registering `builder(cfg, info) -> Objective` under `name`."""

  def wrap(builder):
    if name in _REGISTRY:
      raise ValueError(f"objective {name!r} registered twice")
    _REGISTRY[name] = builder
    return builder

  return wrap


def list_objectives() -> list[str]:
  """Returns the registered objective names, sorted."""
  return sorted(_REGISTRY)


def build_objective(cfg, info: DatasetInfo) -> Objective:
  """Builds the objective `cfg.name` from its config section.

  Args:
    cfg: the `objective` config section; `cfg.name` picks the objective.
    info: vocabulary sizes of the training data.

  Returns:
    An `Objective` module.
  """
  name = cfg["name"]
  if name not in _REGISTRY:
    raise ValueError(f"config objective.name={name!r} is not an objective; "
                     f"valid: {list_objectives()}")
  return _REGISTRY[name](cfg, info)


def ids_to_multi_hot(ids: jax.Array, num_classes: int) -> jax.Array:
  """Turns padded class ids [B, L] (pad -1) into a multi-hot [B, C] float32."""
  one_hot = jax.nn.one_hot(ids, num_classes, dtype=jnp.float32)  # -1 -> zeros
  return jnp.clip(one_hot.sum(axis=1), 0.0, 1.0)


def masked_mean(values: jax.Array, mask: jax.Array) -> jax.Array:
  """Mean of `values` [B] over rows where `mask` [B] is True (0 if none)."""
  mask = mask.astype(values.dtype)
  return (values * mask).sum() / jnp.maximum(mask.sum(), 1.0)


def mean_over_frames(x: jax.Array, mask: jax.Array) -> jax.Array:
  """Averages x [B, T, C] over the valid frames of mask [B, T] -> [B, C]."""
  m = mask.astype(x.dtype)[..., None]
  return (x * m).sum(axis=1) / jnp.maximum(m.sum(axis=1), 1.0)
