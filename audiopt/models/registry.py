"""Encoder registry: config -> unbound encoder module.

An encoder class registers itself with `@register_encoder("name")` and
carries a `SIZES` class attribute mapping preset names to field values.
`build_encoder` takes a config such as

  ConfigDict(dict(name="transformer", size="base", dtype="bfloat16",
                  remat=True, num_layers=6))

where every key other than `name`, `size` and `overrides` (an optional nested
mapping merged last) overrides a dataclass field of the encoder. Keys whose
value is None are ignored, so configs may list a field without setting it.
"""

from collections.abc import Callable, Mapping
import dataclasses
import importlib
from typing import Any

import flax.linen as nn
import jax.numpy as jnp

_REGISTRY: dict[str, type[nn.Module]] = {}

# Modules that register encoders on import; missing ones are skipped.
_BUILTIN_MODULES = (
    "audiopt.models.transformer",
    "audiopt.models.zipformer",
    "audiopt.models.vit",
)
_DTYPE_FIELDS = ("dtype", "param_dtype")
_RESERVED_KEYS = ("name", "size", "overrides")


def register_encoder(name: str) -> Callable[[type[nn.Module]],
                                            type[nn.Module]]:
  """Class decorator registering an encoder under `name`.

  Args:
    name: the value of `config.name` that selects the class.

  Returns:
    A decorator returning the class unchanged. It raises ValueError when
    another class already holds `name` or the class has no `SIZES` mapping.
  """

  def decorator(cls: type[nn.Module]) -> type[nn.Module]:
    if not isinstance(getattr(cls, "SIZES", None), Mapping):
      raise ValueError(f"encoder {cls.__qualname__} needs a SIZES mapping")
    old = _REGISTRY.get(name)
    if old is not None and (old.__module__, old.__qualname__) != (
        cls.__module__, cls.__qualname__):
      raise ValueError(f"encoder name {name!r} is already registered to "
                       f"{old.__module__}.{old.__qualname__}")
    _REGISTRY[name] = cls
    return cls

  return decorator


def _import_builtins() -> None:
  for module in _BUILTIN_MODULES:
    try:
      importlib.import_module(module)
    except ModuleNotFoundError as e:
      if e.name != module:
        raise


def list_encoders() -> list[str]:
  """Returns the sorted names of all registered encoders."""
  _import_builtins()
  return sorted(_REGISTRY)


def get_encoder_class(name: str) -> type[nn.Module]:
  """Returns the class registered as `name`; ValueError listing valid ones."""
  _import_builtins()
  if name not in _REGISTRY:
    raise ValueError(f"unknown encoder {name!r}; valid: {sorted(_REGISTRY)}")
  return _REGISTRY[name]


def _as_dict(cfg: Any) -> dict[str, Any]:
  if hasattr(cfg, "to_dict"):  # ml_collections ConfigDict / FrozenConfigDict.
    return cfg.to_dict()
  return dict(cfg)


def _to_dtype(key: str, value: Any) -> Any:
  try:
    return jnp.dtype(value)
  except TypeError as e:
    raise ValueError(f"encoder {key}={value!r} is not a dtype") from e


def build_encoder(cfg: Any) -> nn.Module:
  """Builds an unbound encoder from a config.

  Args:
    cfg: ConfigDict or mapping with `name`, `size` (a preset of the class's
      SIZES) and optional field overrides, flat or under `overrides`
      (e.g. num_layers, width, dtype="bfloat16", remat, scan_layers,
      dropout_rate).

  Returns:
    The encoder module, called as `encoder(features [B, T, F], mask [B, T],
    train=...) -> EncoderOutput`.

  Raises:
    ValueError: unknown name, unknown size, missing size or unknown override
      key (each message lists the valid choices).
  """
  cfg = _as_dict(cfg)
  if "name" not in cfg:
    raise ValueError(f"encoder config needs a name; valid: {list_encoders()}")
  cls = get_encoder_class(cfg["name"])
  sizes = cls.SIZES
  size = cfg.get("size")
  if size not in sizes:
    raise ValueError(f"unknown size {size!r} for encoder {cfg['name']!r}; "
                     f"valid: {sorted(sizes)}")
  overrides = {k: v for k, v in cfg.items() if k not in _RESERVED_KEYS}
  overrides.update(_as_dict(cfg.get("overrides") or {}))
  fields = sorted(f.name for f in dataclasses.fields(cls)
                  if f.init and f.name not in ("parent", "name"))
  kwargs = dict(sizes[size])
  for key, value in overrides.items():
    if value is None:  # unset: the preset's (or the class's) default
      continue
    if key not in fields:
      raise ValueError(f"unknown override {key!r} for encoder "
                       f"{cfg['name']!r}; valid: {fields}")
    kwargs[key] = _to_dtype(key, value) if key in _DTYPE_FIELDS else value
  return cls(**kwargs)
