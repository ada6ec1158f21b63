"""Device mesh, logical axis rules and batch placement.

The mesh always has the axes ("data", "fsdp", "tensor"), in that order, with
auto axis types. Models name their axes logically (see
`audiopt.models.layers`); a rule list maps those names to mesh axes, so data
parallel, FSDP and tensor parallel runs differ only in the mesh shape and the
rule preset:

  "data"         batch over (data, fsdp); every parameter replicated.
  "fsdp"         + parameters sharded over fsdp on their "embed" axis.
  "fsdp_tensor"  + "mlp", "heads", "vocab", "conv_out" over tensor.

An axis whose size the mesh axes do not divide (a 30522-wide vocabulary
under tensor=4) cannot be sharded evenly: `fit_shardings` drops those mesh
axes for that dimension, with a log line, instead of failing at init.
`replicated_fraction` / `check_replication` measure how many parameter bytes
stay whole on every device, the number FSDP exists to keep small.

`DEFAULT_RULES` is "fsdp_tensor": with fsdp = tensor = 1 it is plain data
parallelism. A mesh axis is used at most once per array; an activation
[batch, time, embed] therefore keeps embed unsharded, since batch already
holds fsdp (flax skips a rule whose mesh axis is taken).
"""

from collections.abc import Iterator, Mapping, Sequence
import contextlib
import math
from typing import Any

from absl import logging
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


def _axes_of(entry: str | tuple[str, ...] | None) -> tuple[str, ...]:
  if entry is None:
    return ()
  return (entry,) if isinstance(entry, str) else tuple(entry)


def fit_spec(shape: Sequence[int], spec: jax.sharding.PartitionSpec,
             mesh_shape: Mapping[str, int], name: str = "array"
             ) -> jax.sharding.PartitionSpec:
  """Drops mesh axes that do not divide their array dimension.

  For each dimension the longest prefix of its mesh axes whose size product
  divides the dimension is kept; the dropped axes are logged (warning).

  Args:
    shape: the array's shape.
    spec: its PartitionSpec (may be shorter than the rank).
    mesh_shape: mesh axis name -> size.
    name: how the log line names the array.

  Returns:
    A PartitionSpec of the same length as `spec` that divides `shape`.
  """
  out = []
  for dim, entry in enumerate(spec):
    axes = _axes_of(entry)
    keep = []
    for axis in axes:
      if shape[dim] % (math.prod(mesh_shape[a] for a in keep) *
                       mesh_shape[axis]):
        break
      keep.append(axis)
    if len(keep) < len(axes):
      dropped = axes[len(keep):]
      logging.warning(
          "%s: dimension %d of size %d is not divisible by mesh axes %s "
          "(size %d); it is replicated over %s instead", name, dim,
          shape[dim], axes, math.prod(mesh_shape[a] for a in axes), dropped)
    if not keep:
      out.append(None)
    elif isinstance(entry, str) or len(keep) == 1:
      out.append(keep[0])
    else:
      out.append(tuple(keep))
  return jax.sharding.PartitionSpec(*out)


def fit_shardings(abstract_tree: Any, shardings_tree: Any) -> Any:
  """Makes every NamedSharding of a tree divide its array's shape.

  Args:
    abstract_tree: arrays or `jax.ShapeDtypeStruct`s (anything with .shape).
    shardings_tree: the same structure of `NamedSharding`s, e.g. from
      `logical_to_shardings`.

  Returns:
    The shardings tree with indivisible mesh axes dropped (see `fit_spec`),
    so `jax.jit(init, out_shardings=...)` cannot fail on an odd-sized axis.
  """
  def one(path, x, s):
    spec = fit_spec(x.shape, s.spec, s.mesh.shape,
                    name=jax.tree_util.keystr(path))
    return s if spec == s.spec else jax.sharding.NamedSharding(s.mesh, spec)

  return jax.tree_util.tree_map_with_path(one, abstract_tree, shardings_tree)


def _is_replicated(s: jax.sharding.Sharding) -> bool:
  if not isinstance(s, jax.sharding.NamedSharding):
    return s.is_fully_replicated
  return all(s.mesh.shape[a] == 1 for e in s.spec for a in _axes_of(e))


def replicated_fraction(abstract_tree: Any, shardings_tree: Any = None
                        ) -> tuple[float, list[tuple[str, int]]]:
  """Share of the bytes of a tree that every device holds in full.

  Args:
    abstract_tree: arrays or ShapeDtypeStructs; when `shardings_tree` is None
      each leaf's own `.sharding` is used.
    shardings_tree: optional NamedShardings of the same structure.

  Returns:
    (fraction of bytes replicated on the mesh in [0, 1], the replicated
    leaves as (path, bytes), largest first). An empty tree gives 0.0.
  """
  leaves = jax.tree_util.tree_leaves_with_path(abstract_tree)
  shardings = ([x.sharding for _, x in leaves] if shardings_tree is None
               else jax.tree_util.tree_leaves(shardings_tree))
  total, replicated_leaves = 0, []
  for (path, x), s in zip(leaves, shardings, strict=True):
    nbytes = math.prod(x.shape) * np.dtype(x.dtype).itemsize
    total += nbytes
    if _is_replicated(s):
      replicated_leaves.append((jax.tree_util.keystr(path), nbytes))
  replicated_leaves.sort(key=lambda t: -t[1])
  done = sum(b for _, b in replicated_leaves)
  return (done / total if total else 0.0), replicated_leaves


def check_replication(abstract_params: Any, max_fraction: float,
                      action: str = "error", shardings_tree: Any = None
                      ) -> float:
  """Fails or warns when too many parameter bytes stay replicated.

  Meant for FSDP runs (fsdp > 1): under the "data" preset every parameter
  is replicated by design.

  Args:
    abstract_params: parameter arrays or ShapeDtypeStructs (with shardings,
      or see `shardings_tree`).
    max_fraction: the largest allowed replicated share of parameter bytes.
    action: "error" raises, "warn" logs a warning, "off" only measures.
    shardings_tree: optional shardings of the same structure.

  Returns:
    The replicated fraction.

  Raises:
    ValueError: with action "error", when the fraction exceeds
      `max_fraction` (the message lists the largest replicated parameters);
      or an unknown action.
  """
  if action not in ("error", "warn", "off"):
    raise ValueError(f"replication check action {action!r}; valid: "
                     "['error', 'off', 'warn']")
  fraction, leaves = replicated_fraction(abstract_params, shardings_tree)
  if action != "off" and fraction > max_fraction:
    top = ", ".join(f"{p} ({b / 2**10:,.1f} KiB)" for p, b in leaves[:5])
    msg = (f"{fraction:.1%} of parameter bytes are replicated on every "
           f"device (allowed: {max_fraction:.1%}); largest: {top}")
    if action == "error":
      raise ValueError(msg)
    logging.warning("%s", msg)
  return fraction
