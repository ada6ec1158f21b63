"""Published BERT weights (Hugging Face layout) -> `TextEncoder` params.

A Hugging Face BERT checkpoint (`model.safetensors` of bert-base-uncased or
of any `BertModel.save_pretrained`) names its tensors

  [bert.]embeddings.{word,position,token_type}_embeddings.weight   [N, D]
  [bert.]embeddings.LayerNorm.{weight,bias}
  [bert.]encoder.layer.N.attention.self.{query,key,value}.{weight,bias}
  [bert.]encoder.layer.N.attention.output.dense.{weight,bias}
  [bert.]encoder.layer.N.attention.output.LayerNorm.{weight,bias}
  [bert.]encoder.layer.N.intermediate.dense.{weight,bias}
  [bert.]encoder.layer.N.output.dense.{weight,bias}
  [bert.]encoder.layer.N.output.LayerNorm.{weight,bias}
  [bert.]pooler.dense.{weight,bias}

with Linear weights [out, in]. They become the Flax kernels [in, out]
(attention projections split into [D, H, Dh] / [H, Dh, D]). The position
table keeps its first `max_len` rows. Pre-training heads (`cls.*`), buffers
(`position_ids`, `token_type_ids`) and the pooler (unless
pooling="pooler") are skipped; any other key is an error.
"""

from collections.abc import Mapping
import json
import math
import os
import re
from typing import Any

import flax.linen as nn
import flax.traverse_util
import jax
import jax.numpy as jnp
import numpy as np
import safetensors.numpy

from audiopt.models import text_encoder

Path = tuple[str, ...]

_IGNORED = re.compile(
    r"^(cls\..*|pooler\..*|embeddings\.(position_ids|token_type_ids))$")
_LAYER = re.compile(r"^layer_(\d+)$")
_BLOCK_KEYS: dict[Path, str] = {
    ("attn", "query"): "attention.self.query",
    ("attn", "key"): "attention.self.key",
    ("attn", "value"): "attention.self.value",
    ("attn", "out"): "attention.output.dense",
    ("norm_attn",): "attention.output.LayerNorm",
    ("mlp", "wi"): "intermediate.dense",
    ("mlp", "wo"): "output.dense",
    ("norm_mlp",): "output.LayerNorm",
}
_TOP_KEYS: dict[Path, str] = {
    ("word_embeddings",): "embeddings.word_embeddings",
    ("position_embeddings",): "embeddings.position_embeddings",
    ("token_type_embeddings",): "embeddings.token_type_embeddings",
    ("embed_norm",): "embeddings.LayerNorm",
    ("pooler",): "pooler.dense",
}
_LEAF_NAMES = {"kernel": "weight", "embedding": "weight", "scale": "weight",
               "bias": "bias"}
_MAX_LISTED = 20


class BertImportError(ValueError):
  """A checkpoint that does not fit the model; names the offending keys."""


def hf_key(path: Path) -> str:
  """The Hugging Face key (without "bert.") of the Flax param at `path`."""
  *modules, leaf = path
  match = _LAYER.match(modules[0])
  if match:
    prefix = f"encoder.layer.{match.group(1)}.{_BLOCK_KEYS[tuple(modules[1:])]}"
  else:
    prefix = _TOP_KEYS[tuple(modules)]
  return f"{prefix}.{_LEAF_NAMES[leaf]}"


def _hf_shape(path: Path, shape: tuple[int, ...]) -> tuple[int, ...]:
  """The shape the Hugging Face tensor of a Flax param of `shape` has."""
  if path[-1] == "kernel":
    n_in = 2 if path[-2] == "out" else 1
    return (math.prod(shape[n_in:]), math.prod(shape[:n_in]))
  if path[-1] == "bias":
    return (math.prod(shape),)
  return shape


def _to_flax(path: Path, value: np.ndarray,
             shape: tuple[int, ...]) -> np.ndarray:
  if path[-1] == "kernel":
    return value.T.reshape(shape)
  if path[-2] == "position_embeddings":
    return value[:shape[0]]
  return value.reshape(shape)


def _fits(path: Path, got: tuple[int, ...], want: tuple[int, ...]) -> bool:
  if path[-2] == "position_embeddings":
    return len(got) == 2 and got[0] >= want[0] and got[1] == want[1]
  return got == want


def load_safetensors(path: str) -> dict[str, np.ndarray]:
  """Reads a .safetensors file, or a directory holding `model.safetensors`
  or a sharded `model.safetensors.index.json`, into name -> array."""
  path = os.fspath(path)
  if not os.path.isdir(path):
    return dict(safetensors.numpy.load_file(path))
  single = os.path.join(path, "model.safetensors")
  if os.path.exists(single):
    return dict(safetensors.numpy.load_file(single))
  index = os.path.join(path, "model.safetensors.index.json")
  if not os.path.exists(index):
    raise FileNotFoundError(f"no model.safetensors or "
                            f"model.safetensors.index.json in {path}")
  with open(index) as f:
    shards = sorted(set(json.load(f)["weight_map"].values()))
  state = {}
  for shard in shards:
    state.update(safetensors.numpy.load_file(os.path.join(path, shard)))
  return state


def _normalise_keys(state: Mapping[str, Any]) -> dict[str, Any]:
  """Drops a "bert." prefix; renames TF-era LayerNorm gamma/beta."""
  out = {}
  for key, value in state.items():
    key = key.removeprefix("bert.")
    key = re.sub(r"LayerNorm\.gamma$", "LayerNorm.weight", key)
    key = re.sub(r"LayerNorm\.beta$", "LayerNorm.bias", key)
    out[key] = value
  return out


def _listed(keys: list[str]) -> str:
  more = len(keys) - _MAX_LISTED
  return ", ".join(keys[:_MAX_LISTED]) + (f" (+{more} more)" if more > 0
                                          else "")


def param_shapes(model: text_encoder.TextEncoder) -> dict[Path, tuple]:
  """Flax param path -> shape of `model`'s parameters (nothing computed)."""
  length = min(2, model.max_len)
  variables = jax.eval_shape(
      model.init, jax.random.key(0), jnp.zeros((1, length), jnp.int32),
      jnp.ones((1, length), bool))
  flat = flax.traverse_util.flatten_dict(nn.unbox(variables["params"]))
  return {path: tuple(x.shape) for path, x in flat.items()}


def import_bert_safetensors(path_or_state_dict: str | Mapping[str, Any],
                            config: text_encoder.TextEncoder
                            ) -> dict[str, Any]:
  """Maps a Hugging Face BERT checkpoint onto a `TextEncoder`'s params.

  Args:
    path_or_state_dict: a .safetensors file, a `save_pretrained` directory,
      or a mapping name -> array (numpy, jax or CPU torch tensors).
    config: the `TextEncoder` the params are for; its vocab_size, width,
      heads, layers and MLP width must match the checkpoint, its max_len may
      be shorter than the checkpoint's position table.

  Returns:
    The "params" collection: a nested dict of numpy arrays in
    `config.param_dtype`, with the structure of `config.init(...)["params"]`
    (unboxed).

  Raises:
    BertImportError: listing missing keys, mis-shaped keys (with both
      shapes) and unexpected keys.
  """
  if isinstance(path_or_state_dict, (str, os.PathLike)):
    state = load_safetensors(path_or_state_dict)
  else:
    state = dict(path_or_state_dict)
  state = _normalise_keys(state)
  dtype = jnp.dtype(config.param_dtype)
  flat, missing, misshaped, used = {}, [], [], set()
  for path, shape in param_shapes(config).items():
    key = hf_key(path)
    if key not in state:
      missing.append(key)
      continue
    used.add(key)
    value = np.asarray(state[key])
    want = _hf_shape(path, shape)
    if not _fits(path, value.shape, want):
      misshaped.append(f"{key} {tuple(value.shape)} != expected {want}")
      continue
    flat[path] = _to_flax(path, value.astype(np.float32), shape).astype(dtype)
  unexpected = sorted(k for k in state
                      if k not in used and not _IGNORED.match(k))
  problems = []
  if missing:
    problems.append(f"missing keys: {_listed(sorted(missing))}")
  if misshaped:
    problems.append(f"mis-shaped keys: {_listed(misshaped)}")
  if unexpected:
    problems.append(f"unexpected keys: {_listed(unexpected)}")
  if problems:
    raise BertImportError("BERT checkpoint does not fit the TextEncoder "
                          f"(num_layers={config.num_layers}, "
                          f"width={config.width}): " + "; ".join(problems))
  return flax.traverse_util.unflatten_dict(flat)
