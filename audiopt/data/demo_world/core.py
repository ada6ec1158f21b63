"""Shared pieces of the demo world: constants, attribute specs, validation.

Every event kind and the scene traits declare their attributes as `Cat`
(one of a fixed set of values) or `Num` (a number in a range). `check_fields`
validates a dict of attributes against such a spec and completes it with
defaults; every error names the attribute and lists what is valid.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from typing import Any

import numpy as np

SAMPLE_RATE = 16000
SOURCE_NAME = "audiopt-demo"
MIN_DURATION_S = 1.0
MAX_DURATION_S = 10.0
DEFAULT_DURATION_RANGE = (2.0, 6.0)
DOMAINS = ("speech", "music", "sound", "mixed")
# Events shorter than this cannot carry a recognisable sound.
MIN_EVENT_S = 0.1


@dataclasses.dataclass(frozen=True)
class Cat:
  """A categorical attribute: one of `values`."""
  values: tuple[Any, ...]
  default: Any

  def check(self, what: str, name: str, value: Any) -> None:
    """Checks that `value` is one of `values` (same type and equal).

    Raises:
      ValueError: naming `what` and attribute `name`, listing valid values.
    """
    if not any(isinstance(value, type(v)) and value == v for v in self.values):
      raise ValueError(f"{what}: {name}={value!r} is not valid; valid values: "
                       f"{', '.join(map(repr, self.values))}")


@dataclasses.dataclass(frozen=True)
class Num:
  """A numeric attribute in [lo, hi]."""
  lo: float
  hi: float
  default: float
  integer: bool = False

  def check(self, what: str, name: str, value: Any) -> None:
    """Checks that `value` is a finite number in [lo, hi].

    Bools are rejected; with `integer`, only integers are accepted.

    Raises:
      ValueError: naming `what` and attribute `name`, giving the range.
    """
    kinds = (int, np.integer) if self.integer else (
        int, float, np.integer, np.floating)
    if (isinstance(value, bool) or not isinstance(value, kinds)
        or not math.isfinite(value) or not self.lo <= value <= self.hi):
      kind = "an integer" if self.integer else "a number"
      raise ValueError(f"{what}: {name}={value!r} must be {kind} in "
                       f"[{self.lo}, {self.hi}]")


Spec = dict[str, Cat | Num]
GAIN: Spec = {"gain_db": Num(-40.0, 12.0, 0.0)}


def check_fields(spec: Spec, values: Any, what: str) -> dict[str, Any]:
  """Checks `values` against `spec`; returns them completed with defaults.

  Raises:
    ValueError: not a dict, an unknown attribute (listing the valid ones) or
      a bad value (listing the valid values or the range).
  """
  if not isinstance(values, dict):
    raise ValueError(f"{what}: expected a dict, got {type(values).__name__}")
  for name, value in values.items():
    if name not in spec:
      raise ValueError(f"{what}: unknown attribute {name!r}; valid "
                       f"attributes: {', '.join(sorted(spec))}")
    spec[name].check(what, name, value)
  return {name: values.get(name, field.default) for name, field in spec.items()}


def check_name(what: str, value: Any, valid: Sequence[str]) -> str:
  """Returns `value` if it is one of `valid`; else raises listing them."""
  if value not in valid:
    raise ValueError(f"unknown {what} {value!r}; valid {what}s: "
                     f"{', '.join(valid)}")
  return value


def check_duration(duration_s: Any, what: str = "scene") -> float:
  """Returns the clip length `duration_s` (seconds) as a float.

  Raises:
    ValueError: not a number in [MIN_DURATION_S, MAX_DURATION_S]; the
      message names `what`.
  """
  Num(MIN_DURATION_S, MAX_DURATION_S, 0.0).check(what, "duration_s",
                                                 duration_s)
  return float(duration_s)


def pick(rng: np.random.Generator, options: Sequence[Any],
         p: Sequence[float] | None = None) -> Any:
  """One of `options`, uniformly or with weights `p` (normalised here)."""
  if p is None:
    return options[int(rng.integers(len(options)))]
  w = np.asarray(p, float)
  return options[int(rng.choice(len(options), p=w / w.sum()))]


def r2(x: float) -> float:
  """`x` as a float rounded to 2 decimals."""
  return round(float(x), 2)


@dataclasses.dataclass(frozen=True)
class Restrictions:
  """What a config leaves of the world (None: everything).

  Attributes:
    kinds: event kinds that may occur.
    instruments: instruments that may play.
    values: (kind, attribute) -> the categorical values that may be drawn;
      kind "scene" names a scene trait.
  """
  kinds: frozenset[str] | None = None
  instruments: frozenset[str] | None = None
  values: tuple[tuple[tuple[str, str], frozenset[Any]], ...] = ()

  def allowed_values(self, kind: str, attr: str) -> frozenset[Any] | None:
    """The values allowed for attribute `attr` of `kind`; None: any."""
    for key, values in self.values:
      if key == (kind, attr):
        return values
    return None


NO_RESTRICTIONS = Restrictions()


class Draw:
  """A random generator and the restrictions every sampler draws under.

  Attributes:
    rng: the numpy generator (consumed by every draw).
    restrictions: the `Restrictions`.
  """

  def __init__(self, rng: np.random.Generator,
               restrictions: Restrictions = NO_RESTRICTIONS):
    self.rng = rng
    self.restrictions = restrictions

  def pick(self, kind: str, attr: str, options: Sequence[Any],
           p: Sequence[float] | None = None) -> Any:
    """Draws attribute `attr` of `kind` from `options` (weights `p`).

    Options the restrictions exclude are left out; when none is left, the
    draw is uniform over the values the restrictions allow.
    """
    allowed = self.restrictions.allowed_values(kind, attr)
    if allowed is not None:
      keep = [i for i, o in enumerate(options) if o in allowed]
      if keep:
        options = [options[i] for i in keep]
        p = None if p is None else [p[i] for i in keep]
      else:
        options, p = sorted(allowed, key=str), None
    return pick(self.rng, options, p)

  def allows(self, kind: str) -> bool:
    """Whether the restrictions let event kind `kind` occur."""
    kinds = self.restrictions.kinds
    return kinds is None or kind in kinds

  def instruments(self, options: Sequence[str]) -> list[str]:
    """The `options` the restrictions let play, in order."""
    allowed = self.restrictions.instruments
    values = self.restrictions.allowed_values("music", "instrument")
    return [o for o in options if (allowed is None or o in allowed)
            and (values is None or o in values)]

  def uniform(self, lo: float, hi: float) -> float:
    """A float drawn uniformly from [lo, hi)."""
    return float(self.rng.uniform(lo, hi))

  def chance(self, p: float) -> bool:
    """True with probability `p`."""
    return bool(self.rng.random() < p)
