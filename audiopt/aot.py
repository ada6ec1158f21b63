r"""Ahead-of-time compilation of the train step for a mesh, before booking it.

  python -m audiopt.aot --config=configs/mtc.py --mesh=data:4,fsdp:8 \
      --platform=cpu --config.encoder.dtype=bfloat16

On `--platform=cpu` the process fakes as many CPU devices as the mesh has
(`--xla_force_host_platform_device_count`), builds the real train step
(`audiopt.train.step`: model, objective, optimizer, donated state) on that
mesh from abstract shapes only (nothing is initialised), lowers and compiles
it, and prints the compiled program's memory per device
(`compiled.memory_analysis()`) and FLOPs per device (`cost_analysis()`).
`--topology=v5e:4x4 --platform=tpu` asks `jax.experimental.topologies` for
a TPU topology description instead (needs libtpu on this machine).

The numbers are those of the program XLA compiled for the platform used: a
CPU compile's memory is an estimate of an accelerator's (different fusion,
no GPU/TPU-specific layouts or collectives buffers), good for "does it
fit" with a margin, not to the last GiB. `--json=PATH` writes them too.
"""

import json
import math
import os
from typing import Any

from absl import app
from absl import flags
from absl import logging
from ml_collections import config_flags

_CONFIG = config_flags.DEFINE_config_file(
    "config", None, "Experiment config file (configs/*.py[:arg]).",
    lock_config=True)
_MESH = flags.DEFINE_string(
    "mesh", None, "Mesh shape as axis:size pairs, e.g. data:4,fsdp:8,tensor:2 "
    "(missing axes are 1); default: the config's mesh on --num_devices.")
_SHARDING = flags.DEFINE_string(
    "sharding", None, "Rule preset (data, fsdp, fsdp_tensor); default: the "
    "config's.")
_PLATFORM = flags.DEFINE_enum("platform", "cpu", ["cpu", "tpu", "gpu"],
                              "Platform to compile for.")
_TOPOLOGY = flags.DEFINE_string(
    "topology", None, "TPU topology name for jax.experimental.topologies "
    "(e.g. v5e:4x4); needs libtpu. Without it, CPU devices are faked.")
_NUM_DEVICES = flags.DEFINE_integer(
    "num_devices", None, "Fake CPU device count when --mesh has a -1 axis "
    "or is not given.")
_NUM_TAGS = flags.DEFINE_integer("num_tags", 2000,
                                 "Tag vocabulary size of the records.")
_NUM_WEAK = flags.DEFINE_integer("num_weak_labels", 527,
                                 "Weak label set size of the records.")
_MAX_REPLICATED = flags.DEFINE_float(
    "max_replicated_fraction", None, "Fail when a larger share of parameter "
    "bytes stays replicated (FSDP runs); default: report only.")
_JSON = flags.DEFINE_string("json", None, "Also write the report here.")


def parse_mesh(text: str) -> dict[str, int]:
  """Parses "data:4,fsdp:8" into {"data": 4, "fsdp": 8}.

  Raises:
    ValueError: naming the malformed item or the unknown axis.
  """
  from audiopt.train import sharding  # pylint: disable=g-import-not-at-top
  out = {}
  for item in filter(None, (t.strip() for t in text.split(","))):
    name, sep, size = item.partition(":")
    if not sep or not size.strip().lstrip("-").isdigit():
      raise ValueError(f"--mesh item {item!r} is not axis:size")
    if name not in sharding.MESH_AXES:
      raise ValueError(f"--mesh axis {name!r} unknown; valid: "
                       f"{sharding.MESH_AXES}")
    out[name] = int(size)
  return out


def build_setup(config, info, metadata: dict[str, Any] | None = None,
                devices=None):
  """`step.build` (shardings already fit to the array shapes).

  Returns:
    The `audiopt.train.step.Setup`.
  """
  from audiopt.train import step as step_lib  # pylint: disable=g-import-not-at-top
  return step_lib.build(config, info, metadata or {}, devices=devices)


def abstract_batch(config, mesh) -> dict[str, Any]:
  """The global batch of `config` as sharded ShapeDtypeStructs.

  Returns:
    name -> ShapeDtypeStruct: audio float32 / audio_mask bool [B, S], tags
    [B, max_tags], weak_labels [B, max_weak_labels], label_ids [B, 1],
    caption_ids / caption_mask [B, text.max_len], valid bool [B]; B the
    global batch, S the clip samples.
  """
  import jax  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top
  from audiopt.train import sharding  # pylint: disable=g-import-not-at-top
  b = config.train.global_batch_size
  s = int(config.data.clip_seconds * config.frontend.fbank.sample_rate)
  spec = {
      "audio": ((b, s), np.float32), "audio_mask": ((b, s), np.bool_),
      "tags": ((b, config.data.max_tags), np.int32),
      "weak_labels": ((b, config.data.max_weak_labels), np.int32),
      "label_ids": ((b, 1), np.int32),
      "caption_ids": ((b, config.text.max_len), np.int32),
      "caption_mask": ((b, config.text.max_len), np.bool_),
      "valid": ((b,), np.bool_),
  }
  shard = sharding.batch_sharding(mesh)
  return {k: jax.ShapeDtypeStruct(shape, dtype, sharding=shard)
          for k, (shape, dtype) in spec.items()}


def compile_train_step(config, info, devices=None) -> tuple[Any, Any]:
  """Lowers and compiles the train step from abstract shapes only.

  Args:
    config: the experiment config (mesh sizes must fit `devices`).
    info: `DatasetInfo` giving the head sizes.
    devices: mesh devices (real, faked CPU, or a topology's); default all.

  Returns:
    (the `Setup`, the `jax.stages.Compiled` step).
  """
  import jax  # pylint: disable=g-import-not-at-top
  from audiopt.train import sharding  # pylint: disable=g-import-not-at-top
  from audiopt.train import step as step_lib  # pylint: disable=g-import-not-at-top
  setup = build_setup(config, info, devices=devices)
  step = step_lib.make_train_step(setup)
  batch = abstract_batch(config, setup.mesh)
  rng = jax.ShapeDtypeStruct((), jax.random.key(0).dtype,
                             sharding=sharding.replicated(setup.mesh))
  with sharding.mesh_and_rules(setup.mesh, setup.rules):
    compiled = step.lower(setup.abstract_state, batch, rng).compile()
  return setup, compiled


def memory_bytes(compiled) -> dict[str, int]:
  """Per-device memory of a compiled program, from XLA's memory analysis.

  Returns:
    {"argument", "output", "alias", "temp", "generated_code": bytes, and
    "peak_bytes" = argument + output - alias + temp}, or {} when the
    backend gives no memory analysis.
  """
  mem = compiled.memory_analysis()
  if mem is None:
    return {}
  memory = {}
  for key in ("argument_size_in_bytes", "output_size_in_bytes",
              "alias_size_in_bytes", "temp_size_in_bytes",
              "generated_code_size_in_bytes"):
    memory[key.removesuffix("_size_in_bytes")] = int(getattr(mem, key))
  memory["peak_bytes"] = (memory["argument"] + memory["output"] -
                          memory["alias"] + memory["temp"])
  return memory


def report(setup, compiled) -> dict[str, Any]:
  """Memory per device, FLOPs and parameter counts of a compiled step.

  Returns:
    A JSON-able dict: mesh, devices, global_batch, params, param_bytes,
    replicated_param_fraction, memory (argument/output/alias/temp/
    generated-code bytes and `peak_bytes` = argument + output - alias +
    temp, per device), flops and bytes_accessed per device (XLA cost
    analysis; NaN when the backend gives none).
  """
  import jax  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top
  from audiopt.train import sharding  # pylint: disable=g-import-not-at-top
  params = setup.abstract_state.params
  leaves = jax.tree.leaves(params)
  memory = memory_bytes(compiled)
  cost = compiled.cost_analysis()
  cost = (cost[0] if isinstance(cost, list) else cost) or {}
  fraction, _ = sharding.replicated_fraction(params)
  return {
      "mesh": {k: int(v) for k, v in setup.mesh.shape.items()},
      "platform": setup.mesh.devices.flat[0].platform,
      "devices": int(setup.mesh.size),
      "sharding": setup.config.sharding,
      "encoder": f"{setup.config.encoder.name}/{setup.config.encoder.size}",
      "dtype": setup.config.encoder.dtype,
      "objective": setup.config.objective.name,
      "global_batch": int(setup.config.train.global_batch_size),
      "clip_seconds": float(setup.config.data.clip_seconds),
      "params": int(sum(math.prod(x.shape) for x in leaves)),
      "param_bytes": int(sum(math.prod(x.shape) * np.dtype(x.dtype).itemsize
                             for x in leaves)),
      "replicated_param_fraction": fraction,
      "memory": memory,
      "flops": float(cost.get("flops", float("nan"))),
      "bytes_accessed": float(cost.get("bytes accessed", float("nan"))),
  }


def format_report(r: dict[str, Any]) -> str:
  """Human-readable lines of a `report` dict."""
  gib = 2.0**30
  mem = r["memory"]
  lines = [
      f"{r['encoder']} {r['objective']} {r['dtype']} on {r['platform']} mesh "
      f"{r['mesh']} ({r['devices']} devices, preset {r['sharding']}), "
      f"global batch {r['global_batch']} x {r['clip_seconds']:g} s",
      f"  params {r['params']:,} ({r['param_bytes'] / gib:.2f} GiB); "
      f"replicated share of parameter bytes {r['replicated_param_fraction']:.1%}",
  ]
  if mem:
    lines.append(
        f"  memory per device: peak {mem['peak_bytes'] / gib:.2f} GiB "
        f"(arguments {mem['argument'] / gib:.2f}, outputs "
        f"{mem['output'] / gib:.2f}, aliased {mem['alias'] / gib:.2f}, "
        f"temporaries {mem['temp'] / gib:.2f})")
  else:
    lines.append("  memory per device: not reported by this backend")
  lines.append(f"  per device: {r['flops'] / 1e12:.3f} TFLOP per step, "
               f"{r['bytes_accessed'] / gib:.2f} GiB accessed")
  return "\n".join(lines)


def _devices(platform: str, topology: str | None, count: int):
  """The devices to compile for; fakes `count` CPU devices when needed."""
  if topology:
    from jax.experimental import topologies  # pylint: disable=g-import-not-at-top
    return topologies.get_topology_desc(topology, platform).devices
  if platform != "cpu":
    import jax  # pylint: disable=g-import-not-at-top
    return jax.devices(platform)
  flags_env = os.environ.get("XLA_FLAGS", "")
  os.environ["XLA_FLAGS"] = (
      f"{flags_env} --xla_force_host_platform_device_count={count}").strip()
  os.environ["JAX_PLATFORMS"] = "cpu"
  import jax  # pylint: disable=g-import-not-at-top
  devices = jax.devices("cpu")
  if len(devices) != count:
    raise ValueError(f"asked for {count} fake CPU devices but JAX has "
                     f"{len(devices)}: was the backend started before "
                     "audiopt.aot set XLA_FLAGS?")
  return devices


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  config = _CONFIG.value
  with config.unlocked():
    if _MESH.value:
      mesh = parse_mesh(_MESH.value)
      for axis in ("data", "fsdp", "tensor"):
        config.mesh[axis] = mesh.get(axis, 1)
    if _SHARDING.value:
      config.sharding = _SHARDING.value
    if not config.data.name:  # nothing is read; validate() wants a name
      config.data.name = "aot_no_records"
  sizes = [config.mesh[a] for a in ("data", "fsdp", "tensor")]
  if -1 in sizes:
    if not _NUM_DEVICES.value:
      raise app.UsageError("the mesh has a -1 axis: give --num_devices or "
                           "every size in --mesh")
    count = _NUM_DEVICES.value
  else:
    count = math.prod(sizes)
  devices = _devices(_PLATFORM.value, _TOPOLOGY.value, count)
  from audiopt import config as config_lib  # pylint: disable=g-import-not-at-top
  from audiopt.objectives import DatasetInfo  # pylint: disable=g-import-not-at-top
  from audiopt.train import sharding  # pylint: disable=g-import-not-at-top
  config_lib.validate(config, len(devices))
  info = DatasetInfo(num_tags=_NUM_TAGS.value,
                     num_weak_labels=_NUM_WEAK.value,
                     tag_names=tuple(f"tag{i}" for i in range(_NUM_TAGS.value)),
                     weak_label_names=tuple(f"weak{i}"
                                            for i in range(_NUM_WEAK.value)))
  setup, compiled = compile_train_step(config, info, devices=devices)
  r = report(setup, compiled)
  print(format_report(r))
  if _JSON.value:
    with open(_JSON.value, "w") as f:
      json.dump(r, f, indent=2)
  if _MAX_REPLICATED.value is not None:
    sharding.check_replication(setup.abstract_state.params,
                               _MAX_REPLICATED.value, action="error")
  logging.info("compiled for %d devices", len(devices))


if __name__ == "__main__":
  flags.mark_flags_as_required(["config"])
  app.run(main)
