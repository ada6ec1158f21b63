"""On-disk cache of frozen embeddings, so each is computed once.

An entry is one (model, task, split, layer, settings) tuple:

  model     `model_id(params, step)`: "step<N>-<fingerprint>" of the
            parameters (a hash of per-array statistics computed on the
            device, so it is cheap, works on sharded arrays of a multi-host
            mesh and changes whenever the weights do); "init-<...>" for an
            untrained encoder.
  task      the record set or task name.
  split     e.g. "train", "test".
  layer     "last" or an encoder intermediate such as "layer_3".
  settings  whatever else changes the numbers (chunk length, front end,
            records path and write time, ...): a JSON-able dict, hashed.

Entries live at `<dir>/<model>/<task>/<split>/<layer>-<settings hash>.npz`
with the full key stored inside; they are written to a temporary file and
renamed, so a killed run never leaves a partial entry that a later run
would read. Only process 0 writes in a multi-process job.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import os
import re
from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from audiopt import atomic_files

_SAFE = re.compile(r"[^A-Za-z0-9_.=-]+")


def _safe(name: str) -> str:
  """A file-name-safe form of a key part ("/" and spaces become "_")."""
  out = _SAFE.sub("_", str(name)).strip("._")
  return out or "_"


def settings_hash(settings: Mapping[str, Any]) -> str:
  """Stable 16-hex-digit hash of a JSON-able settings dict."""
  text = json.dumps(settings, sort_keys=True, default=str)
  return hashlib.sha256(text.encode()).hexdigest()[:16]


@dataclasses.dataclass(frozen=True)
class CacheKey:
  """Identifies one cached embedding set (see the module docstring)."""

  model: str
  task: str
  split: str
  layer: str = "last"
  settings: tuple[tuple[str, str], ...] = ()

  @classmethod
  def make(cls, model: str, task: str, split: str, layer: str | None = None,
           settings: Mapping[str, Any] | None = None) -> "CacheKey":
    """A key whose settings are stored sorted, values as JSON text.

    Args:
      model, task, split: what was embedded.
      layer: the encoder layer; None means "last".
      settings: the extraction settings that change the embeddings (clip
        and chunk lengths, rates...); any JSON-able values.
    """
    items = tuple(sorted((str(k), json.dumps(v, sort_keys=True, default=str))
                         for k, v in (settings or {}).items()))
    return cls(model=model, task=task, split=split, layer=layer or "last",
               settings=items)

  def to_json(self) -> str:
    """The key as sorted JSON text (what an entry's metadata records)."""
    return json.dumps(dataclasses.asdict(self), sort_keys=True)

  @property
  def relpath(self) -> str:
    """model/task/split/<layer>-<settings hash>.npz, names made safe."""
    digest = settings_hash(dict(self.settings))
    return os.path.join(_safe(self.model), _safe(self.task),
                        _safe(self.split),
                        f"{_safe(self.layer)}-{digest}.npz")


class EmbeddingCache:
  """A directory of cached embedding dicts (name -> numpy array).

  Attributes:
    directory: root of the cache.
    hits, misses: counts since construction (for logs and tests).
  """

  def __init__(self, directory: str):
    self.directory = directory
    self.hits = 0
    self.misses = 0

  def path(self, key: CacheKey) -> str:
    """Where the entry of `key` lives under the cache directory."""
    return os.path.join(self.directory, key.relpath)

  def load(self, key: CacheKey) -> dict[str, np.ndarray] | None:
    """The cached arrays of `key`, or None (missing, unreadable or a
    different key in the file)."""
    path = self.path(key)
    if not os.path.exists(path):
      return None
    try:
      with np.load(path, allow_pickle=False) as data:
        stored = str(data["__key__"])
        if stored != key.to_json():
          return None
        return {k: data[k] for k in data.files if k != "__key__"}
    except (OSError, ValueError, KeyError, EOFError):
      return None  # a damaged entry is recomputed and overwritten

  def save(self, key: CacheKey, arrays: Mapping[str, np.ndarray]) -> str:
    """Writes `arrays` atomically (process 0 only); returns the path."""
    path = self.path(key)
    if jax.process_index() != 0:
      return path
    os.makedirs(os.path.dirname(path), exist_ok=True)
    buffer = io.BytesIO()
    np.savez(buffer, __key__=np.asarray(key.to_json()),
             **{k: np.asarray(v) for k, v in arrays.items()})
    atomic_files.write_atomic(path, buffer.getvalue())
    return path

  def get_or_compute(self, key: CacheKey,
                     compute: Callable[[], Mapping[str, np.ndarray]]
                     ) -> dict[str, np.ndarray]:
    """The cached arrays of `key`, computing and storing them on a miss."""
    got = self.load(key)
    if got is not None:
      self.hits += 1
      return got
    self.misses += 1
    arrays = {k: np.asarray(v) for k, v in compute().items()}
    self.save(key, arrays)
    return arrays


def _leaf_stats(leaves: list[jax.Array]) -> jax.Array:
  """[L, 4] statistics per array: sum, sum of squares, two fixed-weight sums."""
  out = []
  for x in leaves:
    x = jnp.ravel(x).astype(jnp.float32)
    i = jnp.arange(x.size, dtype=jnp.float32)
    out.append(jnp.stack([jnp.sum(x), jnp.sum(x * x),
                          jnp.sum(x * jnp.cos(i * 0.6180339887)),
                          jnp.sum(x * jnp.sin(i * 1.4142135623 + 0.5))]))
  return jnp.stack(out) if out else jnp.zeros((0, 4), jnp.float32)


def params_fingerprint(params: Any) -> str:
  """A 16-hex-digit content fingerprint of a parameter tree.

  Hashes the tree structure, every array's shape and dtype, and four
  statistics of its values computed on the device (replicated result), so
  it neither copies the weights to the host nor needs them addressable by
  one process. Equal parameters on the same mesh give equal fingerprints;
  any change to a weight changes them.
  """
  leaves, treedef = jax.tree.flatten(params)
  shapes = [(tuple(np.shape(x)), str(getattr(x, "dtype", type(x))))
            for x in leaves]
  sharding = getattr(leaves[0], "sharding", None) if leaves else None
  if isinstance(sharding, jax.sharding.NamedSharding):
    # Replicated on the parameters' mesh: every process can read it.
    replicated = jax.sharding.NamedSharding(sharding.mesh,
                                            jax.sharding.PartitionSpec())
    stats = jax.jit(_leaf_stats, out_shardings=replicated)(leaves)
  else:
    stats = jax.jit(_leaf_stats)(leaves)
  values = np.asarray(jax.device_get(stats), np.float32)
  digest = hashlib.sha256()
  digest.update(str(treedef).encode())
  digest.update(repr(shapes).encode())
  digest.update(values.tobytes())
  return digest.hexdigest()[:16]


def model_id(params: Any, step: int | str | None = None) -> str:
  """"step<N>-<fingerprint>" (or "<fingerprint>" without a step)."""
  fingerprint = params_fingerprint(params)
  if step is None:
    return fingerprint
  prefix = step if isinstance(step, str) else f"step{int(step)}"
  return f"{prefix}-{fingerprint}"
