"""PyTorch Zipformer weights (icefall/Auden layout) <-> the Flax params tree.

A `ZipformerEncoderModel` state dict names parameters like

  encoder_embed.conv.{0,4,7}.weight            [O, I, 3, 3]
  encoder_embed.convnext.pointwise_conv1.weight [O, I, 1, 1]
  encoder.encoders.0.layers.1.feed_forward2.in_proj.weight       [F, C]
  encoder.encoders.3.encoder.layers.0.conv_module1.depthwise_conv.weight
                                                [C, 1, k]
  encoder.encoders.3.downsample.bias, encoder.downsample_output.bias

and the Flax tree of `audiopt.models.zipformer.Zipformer` mirrors those names
("encoders_0/layers_1/feed_forward2/in_proj/kernel"). Linear weights are
transposed to [in, out], Conv2d weights to HWIO, depthwise Conv1d weights to
[k, 1, C]. Two kinds of keys carry nothing the Flax model uses and are
skipped: the buffer `model_batch_count` and each layer's unused
`bypass_scale` (the reference's "TODO: remove it"; 5,760 values in
Zipformer-M).

A `scan_layers=True` model stacks each stack's layers under "layers" (see
`audiopt.models.zipformer.stack_layers`): `import_state_dict` returns that
layout for such a config, and `export_state_dict` takes either layout.
"""

from collections.abc import Mapping
import functools
import json
import os
import re
import struct
from typing import Any

import flax.linen as nn
import flax.traverse_util
import jax
import jax.numpy as jnp
import numpy as np

from audiopt.models import zipformer

Path = tuple[str, ...]

_FRONT_CONVS = {"conv_0": "conv.0", "conv_1": "conv.4", "conv_2": "conv.7"}
_IGNORED = re.compile(
    r"^(model_batch_count|"
    r"encoder\.encoders\.\d+\.(encoder\.)?layers\.\d+\.bypass_scale)$")
_UNUSED_LAYER_SCALE = re.compile(r"^(encoders_\d+)(/encoder)?/(layers_\d+)$")
_ANCHOR = "encoder_embed.conv.0.weight"
_MAX_LISTED = 20


class StateDictMismatchError(ValueError):
  """A state dict that does not fit the model; names the offending keys."""


def torch_key(path: Path) -> str:
  """The state-dict key of the Flax parameter at `path`."""
  parts = []
  for name in path:
    if name in _FRONT_CONVS and path[0] == "encoder_embed":
      parts.append(_FRONT_CONVS[name])
    elif name == "kernel":
      parts.append("weight")
    else:
      parts.append(re.sub(r"^(encoders|layers)_(\d+)$", r"\1.\2", name))
  key = ".".join(parts)
  return key if path[0] == "encoder_embed" else "encoder." + key


def _is_pointwise(path: Path) -> bool:
  return len(path) > 1 and path[-2].startswith("pointwise_conv")


def to_torch_layout(path: Path, value: np.ndarray) -> np.ndarray:
  """Converts a Flax parameter to the reference's layout."""
  if path[-1] != "kernel":
    return value
  if value.ndim == 2:
    w = value.T
    return w[:, :, None, None] if _is_pointwise(path) else w
  if value.ndim == 3:  # depthwise Conv1d: [k, 1, C] -> [C, 1, k]
    return value.transpose(2, 1, 0)
  return value.transpose(3, 2, 0, 1)  # Conv2d: HWIO -> OIHW


def to_flax_layout(path: Path, value: np.ndarray) -> np.ndarray:
  """Converts a reference tensor to the Flax layout (inverse of the above)."""
  if path[-1] != "kernel":
    return value
  if _is_pointwise(path) and value.ndim == 4:
    return value[:, :, 0, 0].T
  if value.ndim == 2:
    return value.T
  if value.ndim == 3:
    return value.transpose(2, 1, 0)
  return value.transpose(2, 3, 1, 0)


def _torch_shape(path: Path, shape: tuple[int, ...]) -> tuple[int, ...]:
  return to_torch_layout(path, np.empty(shape, np.uint8)).shape


def _build(config: Any) -> nn.Module:
  if isinstance(config, nn.Module):
    return config
  from audiopt.models import registry  # pylint: disable=g-import-not-at-top
  return registry.build_encoder(config)


def _scanned(model: nn.Module) -> bool:
  return bool(getattr(model, "scan_layers", False))


def param_shapes(config: Any,
                 feature_dim: int = 80) -> dict[Path, tuple[int, ...]]:
  """Shapes of the Flax parameters, by path, without allocating them.

  Always in the unscanned layout ("layers_j" per layer), which maps one to
  one onto the state dict, even for a `scan_layers=True` config.

  Args:
    config: a Zipformer module or an encoder config for
      `registry.build_encoder` (e.g. {"name": "zipformer", "size": "m"}).
    feature_dim: mel bins of the input features.
  """
  model = _build(config)
  if _scanned(model):
    model = model.clone(scan_layers=False)
  x = jax.ShapeDtypeStruct((1, 64, feature_dim), jnp.float32)
  m = jax.ShapeDtypeStruct((1, 64), jnp.bool_)
  shapes = jax.eval_shape(functools.partial(model.init, train=False),
                          jax.random.key(0), x, m)
  flat = flax.traverse_util.flatten_dict(nn.meta.unbox(shapes["params"]))
  return {k: tuple(v.shape) for k, v in flat.items()}


def _find_prefix(keys: list[str]) -> str:
  hits = [k[:-len(_ANCHOR)] for k in keys if k.endswith(_ANCHOR)]
  return hits[0] if len(hits) == 1 else ""


def _listing(title: str, items: list[str]) -> str:
  shown = items[:_MAX_LISTED]
  more = f"\n    ... and {len(items) - len(shown)} more" if len(items) > len(
      shown) else ""
  return f"  {title} ({len(items)}):\n    " + "\n    ".join(shown) + more


def import_state_dict(state_dict: Mapping[str, Any], config: Any, *,
                      feature_dim: int = 80, prefix: str | None = None,
                      dtype: Any = np.float32) -> dict[str, Any]:
  """Converts a reference state dict to Flax params.

  Args:
    state_dict: key -> array (numpy, or anything `np.asarray` takes) in the
      icefall/Auden `ZipformerEncoderModel` naming.
    config: a Zipformer module or an encoder config (see `param_shapes`).
    feature_dim: mel bins the model is built for.
    prefix: the encoder's key prefix in a composite checkpoint (e.g.
      "encoder." or "module.encoder."); None finds it from the key
      "...encoder_embed.conv.0.weight". Keys outside the prefix (other
      modules of a composite model) are ignored.
    dtype: dtype of the returned arrays.

  Returns:
    The nested params dict for `model.apply({"params": params}, ...)`, with
    layers stacked when the config sets `scan_layers`.

  Raises:
    StateDictMismatchError: keys missing from the state dict, keys the model
      does not have (other than the known-unused ones), or tensors of the
      wrong shape; the message names every such key.
  """
  keys = list(state_dict)
  if prefix is None:
    prefix = _find_prefix(keys)
  own = {k[len(prefix):]: k for k in keys if k.startswith(prefix)}
  model = _build(config)
  expected = param_shapes(model, feature_dim)
  params, missing, misshaped, used = {}, [], [], set()
  for path, shape in expected.items():
    key = torch_key(path)
    if key not in own:
      missing.append(prefix + key)
      continue
    used.add(key)
    value = np.asarray(state_dict[own[key]])
    want = _torch_shape(path, shape)
    if value.shape != want:
      misshaped.append(f"{prefix + key}: got {value.shape}, expected {want}")
      continue
    params[path] = np.asarray(to_flax_layout(path, value), dtype=dtype)
  unexpected = sorted(prefix + k for k in own
                      if k not in used and not _IGNORED.match(k))
  if missing or unexpected or misshaped:
    parts = [f"state dict does not match the Zipformer config "
             f"(prefix {prefix!r}):"]
    if missing:
      parts.append(_listing("missing", missing))
    if unexpected:
      parts.append(_listing("unexpected", unexpected))
    if misshaped:
      parts.append(_listing("mis-shaped", misshaped))
    raise StateDictMismatchError("\n".join(parts))
  params = flax.traverse_util.unflatten_dict(params)
  return zipformer.stack_layers(params) if _scanned(model) else params


def export_state_dict(params: Mapping[str, Any], *,
                      include_unused: bool = True) -> dict[str, np.ndarray]:
  """Converts Flax params to the reference's state-dict naming and layout.

  Args:
    params: the Zipformer params tree (boxed or plain; scanned or not).
    include_unused: also emit each layer's unused `bypass_scale` (filled with
      its initial 0.5), so that the reference loads the result with
      strict=True.

  Returns:
    key -> float32 numpy array.
  """
  flat = flax.traverse_util.flatten_dict(
      zipformer.unstack_layers(nn.meta.unbox(dict(params))))
  out = {}
  for path, value in flat.items():
    out[torch_key(path)] = np.asarray(
        to_torch_layout(path, np.asarray(value, np.float32)))
    if include_unused and path[-2:] == ("bypass", "bypass_scale"):
      layer = "/".join(path[:-2])
      if _UNUSED_LAYER_SCALE.match(layer):
        key = torch_key(path[:-2] + ("bypass_scale",))
        out[key] = np.full(np.shape(value), 0.5, np.float32)
  return out


# ---------------------------------------------------------------- files

_SAFETENSORS_DTYPES = {
    "F64": np.float64, "F32": np.float32, "F16": np.float16,
    "I64": np.int64, "I32": np.int32, "I16": np.int16, "I8": np.int8,
    "U8": np.uint8, "BOOL": np.bool_,
}


def _safetensors_dtype(name: str) -> Any:
  if name == "BF16":
    import ml_dtypes  # pylint: disable=g-import-not-at-top
    return ml_dtypes.bfloat16
  if name not in _SAFETENSORS_DTYPES:
    raise ValueError(f"unsupported safetensors dtype {name}")
  return _SAFETENSORS_DTYPES[name]


def read_safetensors(path: str) -> dict[str, np.ndarray]:
  """Reads a .safetensors file into numpy arrays (no torch needed)."""
  with open(path, "rb") as f:
    (n,) = struct.unpack("<Q", f.read(8))
    header = json.loads(f.read(n))
    data = f.read()
  out = {}
  for key, info in header.items():
    if key == "__metadata__":
      continue
    begin, end = info["data_offsets"]
    arr = np.frombuffer(data[begin:end], dtype=_safetensors_dtype(
        info["dtype"]))
    out[key] = arr.reshape(info["shape"]).copy()
  return out


def _tensor_to_numpy(t: Any) -> np.ndarray:
  import torch  # pylint: disable=g-import-not-at-top
  t = t.detach().cpu()
  if t.dtype == torch.bfloat16:
    t = t.float()
  return t.numpy()


def load_torch_checkpoint(path: str) -> dict[str, np.ndarray]:
  """Reads a state dict from a .safetensors or a torch .pt/.pth file.

  Args:
    path: the file. A .pt file may hold the state dict itself or a dict with
      it under "state_dict" or "model" (icefall checkpoints); reading one
      needs torch installed.

  Returns:
    key -> numpy array (bfloat16 tensors of a .pt file become float32).
  """
  if os.path.splitext(path)[1].lower() == ".safetensors":
    return read_safetensors(path)
  try:
    import torch  # pylint: disable=g-import-not-at-top
  except ImportError as e:
    raise ImportError(f"reading {path} needs torch; install it or convert "
                      "the checkpoint to .safetensors") from e
  obj = torch.load(path, map_location="cpu", weights_only=True)
  for key in ("state_dict", "model"):
    if isinstance(obj, Mapping) and isinstance(obj.get(key), Mapping):
      obj = obj[key]
      break
  if not isinstance(obj, Mapping):
    raise ValueError(f"{path} holds a {type(obj).__name__}, not a state dict")
  return {k: _tensor_to_numpy(v) for k, v in obj.items()
          if isinstance(v, torch.Tensor)}
