"""Device mesh, logical axis rules and batch placement.

The mesh always has the axes ("data", "fsdp", "tensor"), in that order, with
auto axis types. Models name their axes logically (see
`audiopt.models.layers`); a rule list maps those names to mesh axes, so data
parallel, FSDP and tensor parallel runs differ only in the mesh shape and the
rule preset:

  "data"         batch over (data, fsdp); every parameter replicated.
  "fsdp"         + parameters sharded over fsdp on their "embed" axis.
  "fsdp_tensor"  + "mlp", "heads", "vocab", "conv_out" over tensor.

`DEFAULT_RULES` is "fsdp_tensor": with fsdp = tensor = 1 it is plain data
parallelism. A mesh axis is used at most once per array; an activation
[batch, time, embed] therefore keeps embed unsharded, since batch already
holds fsdp (flax skips a rule whose mesh axis is taken).
"""

from collections.abc import Iterator, Mapping, Sequence
import contextlib
import math
from typing import Any

import flax.linen as nn
import jax
import numpy as np

MESH_AXES = ("data", "fsdp", "tensor")
BATCH_AXES = ("data", "fsdp")

Rules = list[tuple[str, str | tuple[str, ...] | None]]

_ACTIVATION_RULES: Rules = [
    ("batch", BATCH_AXES),
    ("time", None),
]
_UNSHARDED: Rules = [
    ("kv", None),
    ("conv_in", None),
    ("norm", None),
    ("layers", None),
]

RULE_PRESETS: dict[str, Rules] = {
    "data": _ACTIVATION_RULES + [
        ("embed", None), ("mlp", None), ("heads", None), ("vocab", None),
        ("conv_out", None)] + _UNSHARDED,
    "fsdp": _ACTIVATION_RULES + [
        ("embed", "fsdp"), ("mlp", None), ("heads", None), ("vocab", None),
        ("conv_out", None)] + _UNSHARDED,
    "fsdp_tensor": _ACTIVATION_RULES + [
        ("embed", "fsdp"), ("mlp", "tensor"), ("heads", "tensor"),
        ("vocab", "tensor"), ("conv_out", "tensor")] + _UNSHARDED,
}
DEFAULT_RULES: Rules = RULE_PRESETS["fsdp_tensor"]


def make_mesh(shape: Mapping[str, int],
              devices: Sequence[jax.Device] | None = None) -> jax.sharding.Mesh:
  """Builds a ("data", "fsdp", "tensor") mesh with auto axis types.

  Args:
    shape: axis name -> size over MESH_AXES; missing axes have size 1 and at
      most one size may be -1, meaning all remaining devices.
    devices: the devices to lay out; defaults to `jax.devices()`. Every one
      of them is used.

  Returns:
    A `jax.sharding.Mesh` of shape (data, fsdp, tensor).

  Raises:
    ValueError: unknown axis, bad size, several -1, or sizes whose product
      does not match the device count.
  """
  devices = list(jax.devices() if devices is None else devices)
  n = len(devices)
  for name in shape:
    if name not in MESH_AXES:
      raise ValueError(f"unknown mesh axis {name!r}; valid: {MESH_AXES}")
  sizes = {a: int(shape.get(a, 1)) for a in MESH_AXES}
  for name, size in sizes.items():
    if size < 1 and size != -1:
      raise ValueError(f"mesh axis {name!r} has size {size}; use a positive "
                       "size or -1")
  fill = [a for a, s in sizes.items() if s == -1]
  if len(fill) > 1:
    raise ValueError(f"only one mesh axis may be -1, got {fill}")
  known = math.prod(s for s in sizes.values() if s != -1)
  if fill:
    if n % known:
      raise ValueError(f"cannot fill mesh axis {fill[0]!r}: the other axes "
                       f"({known} devices) do not divide {n} devices")
    sizes[fill[0]] = n // known
  elif known != n:
    raise ValueError(f"mesh shape {sizes} has product {known}, but there "
                     f"are {n} devices")
  return jax.make_mesh(
      tuple(sizes[a] for a in MESH_AXES), MESH_AXES,
      axis_types=(jax.sharding.AxisType.Auto,) * len(MESH_AXES),
      devices=devices)


def get_rules(name_or_rules: str | Sequence[tuple[str, Any]]) -> Rules:
  """Returns a preset of RULE_PRESETS by name, or the given rules as a list."""
  if isinstance(name_or_rules, str):
    if name_or_rules not in RULE_PRESETS:
      raise ValueError(f"unknown rule preset {name_or_rules!r}; valid: "
                       f"{sorted(RULE_PRESETS)}")
    return list(RULE_PRESETS[name_or_rules])
  return [(k, tuple(v) if isinstance(v, list) else v)
          for k, v in name_or_rules]


def use_mesh(mesh: jax.sharding.Mesh) -> contextlib.AbstractContextManager:
  """Context manager making `mesh` the current mesh (`jax.set_mesh`)."""
  return jax.set_mesh(mesh)


@contextlib.contextmanager
def mesh_and_rules(mesh: jax.sharding.Mesh,
                   rules: Sequence[tuple[str, Any]]) -> Iterator[None]:
  """Context in which `nn.with_logical_constraint` shards over `mesh`.

  Args:
    mesh: the device mesh, set as the current mesh.
    rules: logical axis rules, set as flax's current rules.

  Yields:
    None.
  """
  with use_mesh(mesh), nn.logical_axis_rules(list(rules)):
    yield


def _is_spec_leaf(x: Any) -> bool:
  return isinstance(x, (nn.LogicallyPartitioned, nn.Partitioned,
                        jax.sharding.PartitionSpec))


def logical_to_shardings(logical_specs_tree: Any, mesh: jax.sharding.Mesh,
                         rules: Sequence[tuple[str, Any]]) -> Any:
  """Maps logical axis metadata to NamedShardings on `mesh`.

  Args:
    logical_specs_tree: a pytree whose leaves are boxed parameters
      (`nn.LogicallyPartitioned`, e.g. from `jax.eval_shape(model.init,..)`),
      logical `PartitionSpec`s, or plain arrays (replicated).
    mesh: the device mesh.
    rules: logical -> mesh axis rules (e.g. DEFAULT_RULES).

  Returns:
    The same tree structure (boxes count as leaves) of `NamedSharding`s, fit
    to pass as `jax.jit(..., out_shardings=...)` for the boxed tree.
  """
  rules = list(rules)

  def one(x: Any) -> jax.sharding.NamedSharding:
    if isinstance(x, jax.sharding.PartitionSpec):
      spec = x
    elif isinstance(x, nn.Partitioned):
      spec = nn.get_partition_spec(x)
    else:
      spec = jax.sharding.PartitionSpec()
    return nn.logical_to_mesh_sharding(spec, mesh, rules)

  return jax.tree_util.tree_map(one, logical_specs_tree, is_leaf=_is_spec_leaf)


def replicated(mesh: jax.sharding.Mesh) -> jax.sharding.NamedSharding:
  """Returns the sharding that replicates an array on every mesh device."""
  return jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec())


def batch_sharding(mesh: jax.sharding.Mesh,
                   batch_axes: Sequence[str] = BATCH_AXES
                   ) -> jax.sharding.NamedSharding:
  """Sharding of a global batch: leading axis over `batch_axes`, rest whole."""
  axes = tuple(a for a in batch_axes if a in mesh.axis_names)
  return jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec(axes))


def shard_batch(local_batch: Mapping[str, Any], mesh: jax.sharding.Mesh,
                batch_axes: Sequence[str] = BATCH_AXES
                ) -> dict[str, jax.Array]:
  """Turns each process's local numpy batch into global sharded jax.Arrays.

  Args:
    local_batch: name -> [b, ...] array of this process's examples; all
      processes pass the same keys and shapes.
    mesh: the device mesh.
    batch_axes: mesh axes that split the leading (example) axis.

  Returns:
    name -> [b * num_batch_processes, ...] global jax.Array sharded on its
    leading axis. Non-numeric entries (strings, bytes, objects such as
    "clip_id") are left out.

  Raises:
    ValueError: naming the entry that is a scalar or whose leading size
      cannot be split over the batch shards.
  """
  sharding = batch_sharding(mesh, batch_axes)
  out = {}
  for key, value in local_batch.items():
    value = np.asarray(value)
    if value.dtype.kind in "OSUV":
      continue
    if value.ndim == 0:
      raise ValueError(f"batch entry {key!r} is a scalar; it needs a leading "
                       "example axis")
    try:
      out[key] = jax.make_array_from_process_local_data(sharding, value)
    except ValueError as e:
      raise ValueError(f"cannot shard batch entry {key!r} of shape "
                       f"{value.shape} over {sharding.spec}: {e}") from e
  return out
