"""Labels derived from a scene: weak labels with noise, reference tags, truth.

Weak labels are what a coarse AudioSet-style annotation gives: a few broad
classes (`WEAK_LABEL_NAMES`), never the instrument, the speaker or the
event's character, and with annotation noise: each true class is dropped
with probability `drop_rate` or swapped for a wrong class with probability
`swap_rate`.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from audiopt.data.demo_world import core
from audiopt.data.demo_world import scene as scene_lib

Scene = scene_lib.Scene

WEAK_LABEL_NAMES = ("Speech", "Music", "Vehicle", "Animal", "Alarm",
                    "Natural sounds", "Human locomotion",
                    "Domestic sounds, home sounds", "Human group actions")
_WEAK = {name: i for i, name in enumerate(WEAK_LABEL_NAMES)}
KIND_WEAK = {"speech": "Speech", "music": "Music", "engine": "Vehicle",
             "dog_bark": "Animal", "birdsong": "Animal", "siren": "Alarm",
             "alarm": "Alarm", "rain": "Natural sounds",
             "wind": "Natural sounds", "footsteps": "Human locomotion",
             "knocking": "Domestic sounds, home sounds",
             "crowd": "Human group actions"}
DEFAULT_DROP_RATE = 0.1
DEFAULT_SWAP_RATE = 0.05


def true_weak_labels(scene: Scene) -> list[int]:
  """The sorted ids in `WEAK_LABEL_NAMES` true of the scene."""
  scene_lib.validate_scene(scene)
  return sorted({_WEAK[KIND_WEAK[e.kind]] for e in scene.events})


def check_noise_rates(drop_rate: Any, swap_rate: Any) -> None:
  """Checks the weak-label noise rates.

  Raises:
    ValueError: a rate is not a number in [0, 1], or their sum exceeds 1.
  """
  for name, rate in (("drop_rate", drop_rate), ("swap_rate", swap_rate)):
    core.Num(0.0, 1.0, 0.0).check("weak labels", name, rate)
  if drop_rate + swap_rate > 1.0:
    raise ValueError(f"weak labels: drop_rate + swap_rate must be <= 1, got "
                     f"{drop_rate} + {swap_rate}")


def weak_labels(scene: Scene, rng: np.random.Generator, *,
                drop_rate: float = DEFAULT_DROP_RATE,
                swap_rate: float = DEFAULT_SWAP_RATE) -> list[int]:
  """Coarse AudioSet-style labels with annotation noise.

  Each true label is independently dropped with probability `drop_rate`,
  replaced by a wrong class (neither true nor already given) with
  probability `swap_rate`, and kept otherwise.

  Args:
    scene: the scene.
    rng: random generator (consumed).
    drop_rate: probability of dropping each true label.
    swap_rate: probability of swapping each true label for a wrong class.

  Returns:
    Sorted unique ids into `WEAK_LABEL_NAMES`.
  """
  check_noise_rates(drop_rate, swap_rate)
  true = true_weak_labels(scene)
  kept, swapped = set(), set()
  for label in true:
    u = rng.random()
    if u < drop_rate:
      continue
    if u < drop_rate + swap_rate:
      wrong = [c for c in range(len(WEAK_LABEL_NAMES))
               if c not in true and c not in swapped]
      if wrong:
        swapped.add(core.pick(rng, wrong))
      continue
    kept.add(label)
  return sorted(kept | swapped)


# ----------------------------------------------------------------------------
# Reference tags: what a careful tagger would give (for checking taggers).

_SCENE_TAGS = {"street": "street", "park": "park", "forest": "forest",
               "home": "home", "office": "office", "cafe": "restaurant",
               "hall": "hall", "station": "station", "studio": "studio"}
_KIND_TAGS = {  # kind -> (sources, event types, function)
    "rain": (("rain",), ("rainfall",), ("ambience",)),
    "wind": (("wind",), ("blowing",), ("ambience",)),
    "engine": (("engine", "vehicle"), ("rumble",), ("transportation",)),
    "siren": (("siren",), ("wailing",), ("emergency",)),
    "dog_bark": (("dog", "animal"), ("barking",), ("wildlife",)),
    "birdsong": (("bird", "animal"), ("chirping",), ("wildlife",)),
    "footsteps": (("footstep",), ("walking",), ()),
    "knocking": (("door",), ("knocking",), ()),
    "alarm": (("alarm",), ("beeping",), ("warning",)),
    "crowd": (("crowd",), ("speaking",), ("ambience",)),
}


def scene_tags(scene: Scene) -> list[str]:
  """Tags as the paper's LLM tagger would give them, from the scene itself.

  Args:
    scene: the scene.

  Returns:
    5 to 10 unique lowercase one-word tags (hyphens allowed), one per aspect
    first (scene, sources, event types, production, function), then more.
  """
  scene_lib.validate_scene(scene)
  tr = scene_lib.traits_of(scene)
  groups: list[list[str]] = [
      ["outdoor" if tr["room"] == "outdoor" else "indoor",
       _SCENE_TAGS[tr["scene"]]], [], [], [], []]
  sources, types, production, function = groups[1:]
  speakers = {scene_lib.attrs(e)["speaker"] for e in scene.events
              if e.kind == "speech"}
  for event in sorted(scene.events, key=lambda e: e.start_s):
    a = scene_lib.attrs(event)
    if event.kind == "speech":
      sources += ["speech", a["sex"]]
      types.append("speaking")
      function.append("conversation" if len(speakers) > 1 else "monologue")
    elif event.kind == "music":
      sources += ["music", a["instrument"] if a["instrument"] != "voice"
                  else "singing"]
      types.append("rhythm" if a["instrument"] == "drums" else "melody")
      function.append("entertainment")
    else:
      src, kinds, func = _KIND_TAGS[event.kind]
      sources += src
      types += kinds
      function += func
  if tr["rt60_s"] > 0.3:
    production.append("reverb")
  production.append("clean" if tr["noise_db"] <= -45 else
                    "noisy" if tr["noise_db"] > -30 else "noise")
  if tr["hiss_db"] > scene_lib.AUDIBLE_HISS_DB:
    production.append("hiss")
  if tr["hum_hz"]:
    production.append("hum")
  if tr["clipping_db"] > 0:
    production.append("distortion")
  if tr["telephone"]:
    production += ["telephone-quality", "lo-fi"]
  groups = [list(dict.fromkeys(g)) for g in groups]
  ordered = [g[0] for g in groups if g] + [t for g in groups for t in g[1:]]
  tags = list(dict.fromkeys(ordered))[:10]
  for filler in ("recording", "audio", "synthetic"):
    if len(tags) >= 5:
      break
    if filler not in tags:
      tags.append(filler)
  return tags


# ----------------------------------------------------------------------------
# Ground truth.


def ground_truth(scene: Scene) -> dict[str, Any]:
  """Every attribute of the scene, JSON-ready: traits, events (kind, span,
  attributes) and summaries (kinds, speakers, emotions, instruments,
  genre)."""
  scene_lib.validate_scene(scene)
  events = [{"kind": e.kind, "start_s": e.start_s, "end_s": e.end_s,
             "attributes": scene_lib.attrs(e)} for e in scene.events]
  music = [e["attributes"] for e in events if e["kind"] == "music"]
  speech = [e["attributes"] for e in events if e["kind"] == "speech"]
  return {
      "clip_id": scene.clip_id, "duration_s": scene.duration_s,
      "domain": scene.domain, "traits": scene_lib.traits_of(scene),
      "events": events,
      "kinds": sorted({e["kind"] for e in events}),
      "speakers": sorted({a["speaker"] for a in speech}),
      "emotions": sorted({a["emotion"] for a in speech}),
      "languages": sorted({a["language"] for a in speech}),
      "instruments": sorted({a["instrument"] for a in music}),
      "genre": music[0]["genre"] if music else None,
      "weak_labels": [WEAK_LABEL_NAMES[i] for i in true_weak_labels(scene)],
  }
