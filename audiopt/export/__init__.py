"""Encoder export: a checkpoint's encoder as safetensors plus a JSON config.

`export_checkpoint` (and `python -m audiopt.export`) writes
`<out>/encoder.safetensors` (the encoder's parameters, keys joined by "/")
and `<out>/encoder_config.json` (front end and encoder sections of the run's
config). `audiopt.export.encoder.load_encoder` reads them back without the
training code. This module imports the training code only inside
`export_checkpoint`, so loading an export never pulls in optax or orbax.

Benchmark adapters (the optional `torch` extra) live beside it: `hear`, the
HEAR 2021 common API module that hear-eval-kit / hear-validator import
(load_model, get_scene_embeddings, get_timestamp_embeddings), and `xares`,
an X-ARES encoder class (`AudioptEncoder`). Both wrap
`frozen_encoder.FrozenEncoder`, a torch module whose forward calls the
jitted JAX encoder of a restored run.
"""

import json
import os

import numpy as np

PARAMS_FILE = "encoder.safetensors"
CONFIG_FILE = "encoder_config.json"
FORMAT = 1


def flatten(tree, prefix: str = "") -> dict[str, np.ndarray]:
  """Flattens a nested dict of arrays into {"a/b/c": np.ndarray}."""
  flat = {}
  for key, value in tree.items():
    name = f"{prefix}{key}"
    if isinstance(value, dict) or hasattr(value, "items"):
      flat.update(flatten(value, name + "/"))
    else:
      flat[name] = np.asarray(value)
  return flat


def unflatten(flat: dict[str, np.ndarray]) -> dict:
  """Inverse of `flatten`: {"a/b": x} -> {"a": {"b": x}}."""
  tree = {}
  for name, value in flat.items():
    node = tree
    *parents, leaf = name.split("/")
    for p in parents:
      node = node.setdefault(p, {})
    node[leaf] = value
  return tree


def export_checkpoint(checkpoint: str, out: str,
                      step: int | None = None) -> dict:
  """Writes a checkpoint's encoder to `out` (a directory, created).

  Args:
    checkpoint: a run's workdir or its `checkpoints` directory.
    out: output directory for PARAMS_FILE and CONFIG_FILE.
    step: which checkpoint step; the newest when None.

  Returns:
    The JSON config written (keys format, step, frontend, encoder).
  """
  from safetensors.numpy import save_file  # pylint: disable=g-import-not-at-top
  from audiopt.train import restore  # pylint: disable=g-import-not-at-top

  restored = restore.load_checkpoint(checkpoint, step)
  params = flatten(restored.params["encoder"])
  os.makedirs(out, exist_ok=True)
  save_file({k: np.ascontiguousarray(v) for k, v in params.items()},
            os.path.join(out, PARAMS_FILE))
  config = {"format": FORMAT, "step": restored.step,
            "frontend": {"fbank": restored.config.frontend.fbank.to_dict()},
            "encoder": restored.config.encoder.to_dict()}
  with open(os.path.join(out, CONFIG_FILE), "w") as f:
    json.dump(config, f, indent=1, sort_keys=True)
  return config
