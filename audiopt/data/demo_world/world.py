"""The `data.demo` config section: what world to generate, checked by name.

`WorldConfig.from_config(cfg)` reads the section and fails on anything it
does not know, listing the valid names: event kinds (`events`),
instruments (`instruments`) and categorical attributes and their values
(`attributes`, "kind.attribute=value|value,..."; kind "scene" names a scene
trait). These three narrow the pre-training world (for example a corpus
without dogs, or only calm speech); the held-out tasks always draw from the
whole world, so that an encoder is probed on what it may not have heard.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from audiopt.data.demo_world import core
from audiopt.data.demo_world import labels
from audiopt.data.demo_world import music
from audiopt.data.demo_world import scene as scene_lib


def _split(text: Any, what: str) -> list[str]:
  if not isinstance(text, str):
    raise ValueError(f"{what}: expected a comma-separated string, got "
                     f"{type(text).__name__}")
  return [t.strip() for t in text.replace(";", ",").split(",") if t.strip()]


def _checked_names(text: Any, key: str, what: str, valid
                   ) -> frozenset[str] | None:
  """Names in a comma-separated config value, each checked; None if none."""
  names = _split(text, key)
  for name in names:
    core.check_name(what, name, valid)
  return frozenset(names) if names else None


def categorical_attributes(kind: str) -> dict[str, core.Cat]:
  """The categorical attributes of an event kind, or of "scene" traits."""
  spec = scene_lib.TRAITS if kind == "scene" else scene_lib.EVENT_ATTRIBUTES[
      scene_lib.check_kind(kind)]
  return {k: v for k, v in spec.items() if isinstance(v, core.Cat)}


def parse_restrictions(events: str = "", instruments: str = "",
                       attributes: str = "") -> core.Restrictions:
  """Checks and parses the restriction strings of a config.

  Args:
    events: comma-separated event kinds ("" = all).
    instruments: comma-separated instruments ("" = all).
    attributes: comma-separated "kind.attribute=v1|v2" entries.

  Returns:
    The `core.Restrictions`.

  Raises:
    ValueError: an unknown event kind, instrument, attribute or value,
      naming it and listing the valid ones.
  """
  kinds = _checked_names(events, "data.demo.events", "event kind",
                         scene_lib.EVENT_KINDS)
  allowed_instruments = _checked_names(instruments, "data.demo.instruments",
                                       "instrument", music.INSTRUMENTS)
  values: dict[tuple[str, str], frozenset[Any]] = {}
  valid_kinds = scene_lib.EVENT_KINDS + ("scene",)
  for entry in _split(attributes, "data.demo.attributes"):
    key, eq, rhs = entry.partition("=")
    kind, dot, attr = key.strip().partition(".")
    if not eq or not dot or not rhs.strip():
      raise ValueError(f"data.demo.attributes: {entry!r} is not "
                       "'kind.attribute=value|value'")
    core.check_name("kind", kind, valid_kinds)
    cats = categorical_attributes(kind)
    if attr not in cats:
      raise ValueError(f"data.demo.attributes: unknown attribute {attr!r} "
                       f"of {kind!r}; valid attributes: "
                       f"{', '.join(sorted(cats))}")
    by_text = {str(v): v for v in cats[attr].values}
    chosen = set()
    for text in rhs.split("|"):
      text = text.strip()
      if text not in by_text:
        raise ValueError(f"data.demo.attributes: unknown value {text!r} of "
                         f"{kind}.{attr}; valid values: "
                         f"{', '.join(by_text)}")
      chosen.add(by_text[text])
    values[(kind, attr)] = frozenset(chosen) | values.get((kind, attr),
                                                          frozenset())
  return core.Restrictions(kinds=kinds, instruments=allowed_instruments,
                           values=tuple(sorted(values.items(),
                                               key=lambda kv: kv[0])))


@dataclasses.dataclass(frozen=True)
class WorldConfig:
  """Everything that shapes the generated world (hashable, picklable).

  Attributes:
    seed: the world seed; pre-training clips, task clips and speaker
      populations all derive from it through disjoint streams.
    duration_range: (min, max) seconds of pre-training clips.
    task_duration_range: (min, max) seconds of task clips.
    drop_rate: weak-label drop rate.
    swap_rate: weak-label swap rate.
    restrictions: what the pre-training world may contain.
  """
  seed: int = 1234
  duration_range: tuple[float, float] = core.DEFAULT_DURATION_RANGE
  task_duration_range: tuple[float, float] = core.DEFAULT_DURATION_RANGE
  drop_rate: float = labels.DEFAULT_DROP_RATE
  swap_rate: float = labels.DEFAULT_SWAP_RATE
  restrictions: core.Restrictions = core.NO_RESTRICTIONS

  def __post_init__(self):
    core.Num(0, 2**31 - 1, 0, integer=True).check("data.demo", "seed",
                                                  self.seed)
    for name in ("duration_range", "task_duration_range"):
      lo, hi = getattr(self, name)
      core.check_duration(lo, f"data.demo {name}")
      core.check_duration(hi, f"data.demo {name}")
      if lo > hi:
        raise ValueError(f"data.demo: {name} {lo}..{hi} has min > max")
    labels.check_noise_rates(self.drop_rate, self.swap_rate)

  @classmethod
  def from_config(cls, cfg: Any) -> "WorldConfig":
    """Reads and checks a `data.demo` config section (see module doc)."""
    return cls(
        seed=int(cfg.seed),
        duration_range=(float(cfg.min_seconds), float(cfg.max_seconds)),
        task_duration_range=(float(cfg.task_min_seconds),
                             float(cfg.task_max_seconds)),
        drop_rate=float(cfg.weak_drop_rate),
        swap_rate=float(cfg.weak_swap_rate),
        restrictions=parse_restrictions(cfg.events, cfg.instruments,
                                        cfg.attributes))
