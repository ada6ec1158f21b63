r"""Golden parameter sharding of the base configs under each rule preset.

  python -m audiopt.tools.golden_sharding --write    # regenerate the files
  python -m audiopt.tools.golden_sharding            # compare, exit 1 on diff

For every preset (data, fsdp, fsdp_tensor) and base-size encoder (transformer
base, ViT-B, Zipformer-M) with the MTC objective on a 30522-tag vocabulary,
the parameters' PartitionSpecs come from `jax.eval_shape` of the sharded init
on 8 CPU devices (nothing is initialised) and are stored as JSON under
tests/data/golden_sharding/<encoder>_<preset>.json. The fsdp_tensor mesh has
tensor=4, so the 30522-wide head shows the replication fallback.
"""

import json
import os
import sys
from typing import Any

DEVICES = 8
ENCODERS = (("transformer", "base"), ("vit", "b"), ("zipformer", "m"))
MESHES = {
    "data": {"data": 8, "fsdp": 1, "tensor": 1},
    "fsdp": {"data": 2, "fsdp": 4, "tensor": 1},
    "fsdp_tensor": {"data": 1, "fsdp": 2, "tensor": 4},
}
NUM_TAGS = 30522
GOLDEN_DIR = os.path.join(
    os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(
        __file__)))), "tests", "data", "golden_sharding")


def golden_name(encoder: str, preset: str) -> str:
  """File name of one golden: "<encoder>_<preset>.json"."""
  return f"{encoder}_{preset}.json"


def _spec_json(spec) -> list[Any]:
  return [list(e) if isinstance(e, tuple) else e for e in spec]


def compute(encoder: str, size: str, preset: str, devices=None
            ) -> dict[str, Any]:
  """The sharding description of one config on `DEVICES` devices.

  Returns:
    {"config", "mesh", "replicated_fraction", "params": {path: {"shape",
    "dtype", "spec"}}}; spec entries are None, an axis name or a list of
    names.
  """
  import jax  # pylint: disable=g-import-not-at-top
  from audiopt import aot  # pylint: disable=g-import-not-at-top
  from audiopt.objectives import DatasetInfo  # pylint: disable=g-import-not-at-top
  from audiopt.train import sharding  # pylint: disable=g-import-not-at-top
  from configs import mtc  # pylint: disable=g-import-not-at-top
  config = mtc.get_config(f"encoder={encoder},size={size}")
  config.sharding = preset
  for axis, n in MESHES[preset].items():
    config.mesh[axis] = n
  info = DatasetInfo(num_tags=NUM_TAGS, num_weak_labels=527)
  devices = devices if devices is not None else jax.devices()[:DEVICES]
  setup = aot.build_setup(config, info, devices=devices)
  params = setup.abstract_state.params
  fraction, _ = sharding.replicated_fraction(params)
  return {
      "config": f"configs/mtc.py:encoder={encoder},size={size}",
      "num_tags": NUM_TAGS,
      "mesh": MESHES[preset],
      "replicated_fraction": round(fraction, 6),
      "params": {
          jax.tree_util.keystr(path): {
              "shape": list(x.shape), "dtype": str(x.dtype),
              "spec": _spec_json(x.sharding.spec)}
          for path, x in jax.tree_util.tree_leaves_with_path(params)},
  }


def diff(want: dict[str, Any], got: dict[str, Any], limit: int = 20
         ) -> list[str]:
  """Human-readable differences between two `compute` results (empty: same)."""
  out = []
  for key in ("config", "num_tags", "mesh"):
    if want.get(key) != got.get(key):
      out.append(f"{key}: golden {want.get(key)!r}, now {got.get(key)!r}")
  wp, gp = want["params"], got["params"]
  for path in sorted(set(wp) | set(gp)):
    if path not in gp:
      out.append(f"{path}: in the golden, no longer a parameter")
    elif path not in wp:
      out.append(f"{path}: new parameter {gp[path]}")
    elif wp[path] != gp[path]:
      out.append(f"{path}: golden {wp[path]}, now {gp[path]}")
  if abs(want.get("replicated_fraction", 0) -
         got.get("replicated_fraction", 0)) > 1e-6:
    out.append(f"replicated_fraction: golden {want['replicated_fraction']}, "
               f"now {got['replicated_fraction']}")
  return out[:limit] + ([f"... {len(out) - limit} more"]
                        if len(out) > limit else [])


def main(argv: list[str]) -> int:
  """Writes (--write) or checks every golden; returns the exit status."""
  write = "--write" in argv
  os.environ.setdefault("JAX_PLATFORMS", "cpu")
  flags_env = os.environ.get("XLA_FLAGS", "")
  if "xla_force_host_platform_device_count" not in flags_env:
    os.environ["XLA_FLAGS"] = (
        f"{flags_env} --xla_force_host_platform_device_count={DEVICES}"
    ).strip()
  status = 0
  for encoder, size in ENCODERS:
    for preset in MESHES:
      path = os.path.join(GOLDEN_DIR, golden_name(encoder, preset))
      got = compute(encoder, size, preset)
      if write:
        os.makedirs(GOLDEN_DIR, exist_ok=True)
        with open(path, "w") as f:
          json.dump(got, f, indent=1, sort_keys=True)
          f.write("\n")
        print(f"wrote {path} ({len(got['params'])} parameters, "
              f"{got['replicated_fraction']:.2%} of bytes replicated)")
        continue
      with open(path) as f:
        lines = diff(json.load(f), got)
      if lines:
        status = 1
        print(f"{path} differs:\n  " + "\n  ".join(lines))
      else:
        print(f"{path}: same")
  return status


if __name__ == "__main__":
  sys.exit(main(sys.argv[1:]))
