"""Scenes: events with time spans, scene classes, and the production chain.

A `Scene` is the full description of a clip: its `Event`s (kind, span,
attributes) and its traits (scene class, room, microphone distance,
noise floor, hiss, mains hum, clipping, telephone channel, loudness).
Audio, captions, tags, weak labels and task targets all derive from it.

Scene classes (`SCENE_RULES`) are rules over which ambience beds, events,
speech and music occur and in what acoustics: a street has traffic and
passers-by outdoors, a cafe a crowd and background music in a medium room,
a hall organ or classical music in a large reverberant space, and so on.
Classes share kinds of events, so telling them apart takes the whole mix.

`render_scene` mixes the events at their gains, applies a synthetic room
impulse response (early reflections and a two-band exponential tail whose
length is the room's RT60; distance sets the direct-to-reverberant ratio),
adds the noise floor, mains hum and hiss, applies the telephone channel
(300-3400 Hz with 8-bit mu-law), sets the loudness, and drives the signal
into clipping when the scene says so.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from typing import Any, NamedTuple

import numpy as np

from audiopt.data.demo_world import core
from audiopt.data.demo_world import dsp
from audiopt.data.demo_world import environment
from audiopt.data.demo_world import music
from audiopt.data.demo_world import speech

EVENT_KINDS = ("speech", "music") + environment.KINDS
EVENT_ATTRIBUTES: dict[str, core.Spec] = {
    **speech.ATTRIBUTES, **music.ATTRIBUTES, **environment.ATTRIBUTES}
RENDERERS = {"speech": speech.render_speech, "music": music.render_music,
             **environment.RENDERERS}
SCENES = ("street", "park", "forest", "home", "office", "cafe", "hall",
          "station", "studio")
ROOMS = ("outdoor", "small", "medium", "large")
TRAITS: core.Spec = {
    "scene": core.Cat(SCENES, "studio"),
    "room": core.Cat(ROOMS, "small"),
    "rt60_s": core.Num(0.0, 3.0, 0.0),       # 0: no room response
    "distance": core.Cat(("close", "far"), "close"),
    "noise_db": core.Num(-90.0, 0.0, -80.0),  # noise floor re. the mix RMS
    "hiss_db": core.Num(-90.0, 0.0, -90.0),   # -90: none
    "hum_hz": core.Cat((0, 50, 60), 0),       # 0: none
    "hum_db": core.Num(-90.0, 0.0, -90.0),
    "clipping_db": core.Num(0.0, 24.0, 0.0),  # drive past full scale
    "telephone": core.Cat((False, True), False),
    "loudness_db": core.Num(-45.0, -6.0, -22.0),  # RMS, dB full scale
}
# Levels below these are inaudible and described as absent.
AUDIBLE_HISS_DB = -60.0
AUDIBLE_HUM_DB = -60.0
# Speaker population of pre-training scenes (stream 0 of `speech.population`).
DEFAULT_POPULATION = 240


# ----------------------------------------------------------------------------
# Events and scenes.


def check_kind(kind: Any) -> str:
  """Returns `kind` if it is one of `EVENT_KINDS`; else raises ValueError."""
  return core.check_name("event kind", kind, EVENT_KINDS)


def event_attribute_names(kind: str) -> tuple[str, ...]:
  """Returns the attribute names valid for events of `kind`."""
  return tuple(EVENT_ATTRIBUTES[check_kind(kind)])


@dataclasses.dataclass
class Event:
  """One sound event of a scene.

  Attributes:
    kind: one of `EVENT_KINDS`.
    start_s: onset in seconds from the clip start.
    end_s: offset in seconds, > start_s.
    attributes: kind-specific attributes (see `event_attribute_names`);
      missing ones take their defaults.
  """
  kind: str
  start_s: float
  end_s: float
  attributes: dict[str, Any] = dataclasses.field(default_factory=dict)
  # (what was checked, its attributes completed): validation runs again only
  # when the event has changed since.
  _checked: Any = dataclasses.field(default=None, init=False, repr=False,
                                    compare=False)

  def __post_init__(self):
    check_event(self)


@dataclasses.dataclass
class Scene:
  """A clip's full description, from which audio and all labels derive.

  Attributes:
    clip_id: unique clip id.
    duration_s: clip length in seconds, in [1, 10].
    domain: one of `core.DOMAINS`, as `domain_of(events)` gives.
    events: the `Event`s (any order; captions follow onset order).
    traits: scene traits (`TRAITS`); missing ones take their defaults.
  """
  clip_id: str
  duration_s: float
  domain: str
  events: list[Event]
  traits: dict[str, Any] = dataclasses.field(default_factory=dict)

  def __post_init__(self):
    validate_scene(self)


def check_event(event: Event) -> dict[str, Any]:
  """Validates an event; returns its attributes completed with defaults
  (a dict shared by later calls: do not modify it)."""
  checked = event._checked  # pylint: disable=protected-access
  if (checked is not None and checked[0] == (event.kind, event.start_s,
                                             event.end_s)
      and checked[1] == event.attributes):
    return checked[2]
  check_kind(event.kind)
  what = f"{event.kind} event"
  for name in ("start_s", "end_s"):
    core.Num(0.0, core.MAX_DURATION_S, 0.0).check(what, name,
                                                  getattr(event, name))
  if event.end_s - event.start_s < core.MIN_EVENT_S:
    raise ValueError(f"{what}: span [{event.start_s}, {event.end_s}] s is "
                     f"shorter than {core.MIN_EVENT_S} s")
  full = core.check_fields(EVENT_ATTRIBUTES[event.kind], event.attributes,
                           what)
  event._checked = ((event.kind, event.start_s, event.end_s),  # pylint: disable=protected-access
                    dict(event.attributes), full)
  return full


def attrs(event: Event) -> dict[str, Any]:
  """The event's attributes completed with defaults (validated)."""
  return check_event(event)


def traits_of(scene: Scene) -> dict[str, Any]:
  """The scene's traits completed with defaults (validated)."""
  return core.check_fields(TRAITS, scene.traits, "traits")


def domain_of(events: Sequence[Event]) -> str:
  """"speech", "music" or "sound" when all events are of that group (every
  environmental kind is "sound"); "mixed" otherwise."""
  groups = {e.kind if e.kind in ("speech", "music") else "sound"
            for e in events}
  return groups.pop() if len(groups) == 1 else "mixed"


def validate_scene(scene: Scene) -> None:
  """Checks a scene (names, ranges, spans); raises ValueError naming the fault.

  Args:
    scene: the `Scene` to check.
  """
  what = f"scene {scene.clip_id!r}"
  if not isinstance(scene.clip_id, str) or not scene.clip_id:
    raise ValueError(f"{what}: clip_id must be a non-empty string")
  if scene.domain not in core.DOMAINS:
    raise ValueError(f"{what}: unknown domain {scene.domain!r}; valid "
                     f"domains: {', '.join(core.DOMAINS)}")
  core.check_duration(scene.duration_s, what)
  if not scene.events:
    raise ValueError(f"{what}: a scene needs at least one event")
  for event in scene.events:
    if not isinstance(event, Event):
      raise ValueError(f"{what}: events must be Event, got "
                       f"{type(event).__name__}")
    check_event(event)
    if event.end_s > scene.duration_s + 1e-6:
      raise ValueError(f"{what}: {event.kind} event ends at {event.end_s} s, "
                       f"after the clip ({scene.duration_s} s)")
  if scene.domain != domain_of(scene.events):
    raise ValueError(f"{what}: domain {scene.domain!r} does not match its "
                     f"events, which make it {domain_of(scene.events)!r}")
  tr = core.check_fields(TRAITS, scene.traits, f"{what} traits")
  if (tr["room"] == "outdoor") != (tr["rt60_s"] == 0):
    raise ValueError(f"{what} traits: room={tr['room']!r} needs "
                     + ("rt60_s=0" if tr["room"] == "outdoor"
                        else "rt60_s > 0"))


# ----------------------------------------------------------------------------
# Scene classes.


class SceneRule(NamedTuple):
  """How a scene class is drawn.

  Attributes:
    rooms: (room, weight) pairs.
    beds: ambience spanning the clip: (kind, probability, fixed attributes,
      gain range dB).
    events: foreground candidates: (kind, probability, fixed attributes).
    speech: probability of speech.
    music: probability of music.
    genres: genres music is drawn from.
    music_background: music plays under the rest (radio, PA) when True.
    noise_db: range of the noise floor.
    hum: probability of mains hum.
  """
  rooms: tuple[tuple[str, float], ...]
  beds: tuple[tuple[str, float, dict[str, Any], tuple[float, float]], ...]
  events: tuple[tuple[str, float, dict[str, Any]], ...]
  speech: float
  music: float
  genres: tuple[str, ...]
  music_background: bool
  noise_db: tuple[float, float]
  hum: float


SCENE_RULES: dict[str, SceneRule] = {
    "street": SceneRule(
        (("outdoor", 1.0),),
        (("engine", 0.9, {"state": "passing"}, (-12.0, -5.0)),
         ("crowd", 0.4, {"size": "small"}, (-18.0, -11.0))),
        (("siren", 0.3, {}), ("footsteps", 0.4, {"surface": "hard"}),
         ("dog_bark", 0.2, {}), ("alarm", 0.1, {"pattern": "two-tone"})),
        0.45, 0.05, ("folk", "blues"), False, (-34.0, -18.0), 0.0),
    "park": SceneRule(
        (("outdoor", 1.0),),
        (("birdsong", 0.8, {}, (-14.0, -6.0)),
         ("wind", 0.6, {"strength": "gentle"}, (-18.0, -10.0))),
        (("dog_bark", 0.4, {}), ("footsteps", 0.4, {"surface": "gravel"}),
         ("crowd", 0.15, {"size": "small"})),
        0.5, 0.1, ("folk",), False, (-45.0, -30.0), 0.0),
    "forest": SceneRule(
        (("outdoor", 1.0),),
        (("wind", 0.8, {}, (-14.0, -6.0)),
         ("birdsong", 0.95, {}, (-10.0, -2.0))),
        (("rain", 0.3, {}), ("footsteps", 0.3, {"surface": "gravel"})),
        0.05, 0.0, (), False, (-50.0, -35.0), 0.0),
    "home": SceneRule(
        (("small", 1.0),), (),
        (("knocking", 0.3, {}), ("footsteps", 0.3, {"surface": "wood"}),
         ("dog_bark", 0.25, {}), ("alarm", 0.2, {"pattern": "beeping"}),
         ("rain", 0.15, {})),
        0.75, 0.25, ("pop", "jazz", "classical"), True, (-55.0, -35.0), 0.3),
    "office": SceneRule(
        (("medium", 1.0),), (),
        (("alarm", 0.25, {"pattern": "beeping"}),
         ("footsteps", 0.35, {"surface": "hard"}), ("knocking", 0.25, {}),
         ("crowd", 0.2, {"size": "small"})),
        0.85, 0.0, (), False, (-45.0, -30.0), 0.5),
    "cafe": SceneRule(
        (("medium", 1.0),),
        (("crowd", 0.95, {"size": "large"}, (-10.0, -4.0)),),
        (("footsteps", 0.15, {"surface": "hard"}),),
        0.6, 0.6, ("jazz", "pop", "folk"), True, (-40.0, -25.0), 0.1),
    "hall": SceneRule(
        (("large", 1.0),), (),
        (("footsteps", 0.3, {"surface": "hard"}),
         ("crowd", 0.25, {"size": "small"})),
        0.4, 0.75, ("classical", "ambient"), False, (-55.0, -40.0), 0.1),
    "station": SceneRule(
        (("large", 1.0),),
        (("crowd", 0.85, {"size": "large"}, (-12.0, -5.0)),
         ("engine", 0.5, {"vehicle": "truck"}, (-14.0, -6.0))),
        (("alarm", 0.5, {}), ("footsteps", 0.6, {"surface": "hard"})),
        0.5, 0.0, (), False, (-35.0, -20.0), 0.2),
    "studio": SceneRule(
        (("small", 1.0),), (), (), 0.5, 0.5, music.GENRE_NAMES, False,
        (-70.0, -50.0), 0.0),
}
_RT60 = {"small": (0.2, 0.45), "medium": (0.45, 0.9), "large": (0.9, 2.2)}


def _turn_spans(rng: np.random.Generator, duration: float, turns: int,
                start: float = 0.0) -> list[tuple[float, float]]:
  """Non-overlapping speaking turns covering most of [start, duration]."""
  avail_total = duration - start
  lead = rng.uniform(0.0, min(0.3, 0.1 * avail_total))
  trail = rng.uniform(0.0, min(0.3, 0.1 * avail_total))
  gaps = rng.uniform(0.15, 0.4, size=turns - 1)
  avail = avail_total - lead - trail - gaps.sum()
  min_len = 0.6
  if turns > 1 and avail < turns * min_len:
    return _turn_spans(rng, duration, turns - 1, start)
  lengths = min_len + max(0.0, avail - turns * min_len) * rng.dirichlet(
      np.full(turns, 3.0))
  spans, t = [], start + lead
  for i in range(turns):
    s, e = core.r2(t), min(duration, core.r2(t + lengths[i]))
    if e - s >= core.MIN_EVENT_S:
      spans.append((s, e))
    t += lengths[i] + (gaps[i] if i < turns - 1 else 0.0)
  return spans


def speech_events(d: core.Draw, duration: float,
                  speakers: Sequence[dict[str, Any]], *,
                  emotion: str | None = None, gain_db: float = 0.0,
                  start: float = 0.0) -> list[Event]:
  """Speaking turns of one or more speakers, alternating."""
  rng = d.rng
  turns = len(speakers)
  if turns == 2 and duration - start >= 5.0 and rng.random() < 0.5:
    turns = 3
  spans = _turn_spans(rng, duration, max(1, turns), start)
  events = []
  for i, (s, e) in enumerate(spans):
    who = speakers[i % len(speakers)]
    events.append(Event("speech", s, e, speech.utterance(
        who, d, emotion=emotion, gain_db=gain_db)))
  return events


def _pick_speakers(d: core.Draw, population: Sequence[dict[str, Any]],
                   count: int) -> list[dict[str, Any]]:
  idx = d.rng.choice(len(population), size=min(count, len(population)),
                     replace=False)
  return [population[int(i)] for i in idx]


def music_events(d: core.Draw, duration: float, *, genre: str | None = None,
                 instruments: Sequence[str] | None = None,
                 gain_db: float = 0.0, background: bool = False
                 ) -> list[Event]:
  """The parts of one piece as events; later parts may join at a bar."""
  parts = music.sample_piece(d, genre=genre, instruments=instruments)
  events = []
  start = 0.0 if background else core.r2(d.uniform(0.0, min(0.3, 0.1 *
                                                             duration)))
  for i, a in enumerate(parts):
    bar = music.bar_seconds(a)
    bar0 = 0
    if i > 0 and not background and duration >= 4.0 and d.chance(0.3):
      bar0 = int(d.rng.integers(1, 3))
    s = core.r2(start + bar0 * bar)
    if duration - s < 1.0:
      bar0, s = 0, start
    gain = gain_db - (d.uniform(1.0, 5.0) if i > 0 else 0.0)
    if a["role"] == "bass":
      gain -= 2.0
    events.append(Event("music", s, duration,
                        {**a, "bar0": bar0, "gain_db": core.r2(gain)}))
  return events


def environment_event(d: core.Draw, kind: str, duration: float,
                      gain_db: float = 0.0, **fixed: Any) -> Event:
  """One environmental `Event` of `kind` (see `environment.sample_event`).

  Args:
    d: the draw (consumed).
    kind: one of `environment.KINDS`.
    duration: the clip length (s); the event's span lies inside it.
    gain_db: the event's level.
    **fixed: attribute values to use instead of drawing them.

  Raises:
    ValueError: `kind` is not an environmental kind, or a fixed attribute
      is invalid.
  """
  start, end, a = environment.sample_event(d, kind, duration, gain_db,
                                           **fixed)
  return Event(kind, start, end, a)


def _fixed_allowed(d: core.Draw, kind: str,
                   fixed: dict[str, Any]) -> dict[str, Any]:
  """Fixed attributes the restrictions allow (the rest are drawn)."""
  out = {}
  for name, value in fixed.items():
    allowed = d.restrictions.allowed_values(kind, name)
    if allowed is None or value in allowed:
      out[name] = value
  return out


def sample_traits(d: core.Draw, scene_class: str, events: Sequence[Event],
                  *, clean: bool = False) -> dict[str, Any]:
  """Production traits for a scene class (clean: a studio-like take)."""
  rule = SCENE_RULES[scene_class]
  rng = d.rng
  room = d.pick("scene", "room", [r for r, _ in rule.rooms],
                p=[w for _, w in rule.rooms])
  if room == "outdoor":
    rt60 = 0.0
  elif scene_class == "studio":
    rt60 = core.r2(rng.uniform(0.1, 0.25))
  else:
    rt60 = core.r2(rng.uniform(*_RT60[room]))
  has_speech = any(e.kind == "speech" for e in events)
  studio = clean or scene_class == "studio"
  hum = (not studio) and d.chance(max(rule.hum, 0.05))
  hiss = (not studio) and d.chance(0.2)
  clip = (not studio) and d.chance(0.08)
  phone_p = 0.0 if studio else (0.12 if has_speech else 0.03)
  return {
      "scene": scene_class, "room": room, "rt60_s": rt60,
      "distance": d.pick("scene", "distance", ("close", "far"),
                         p=(1.0, 0.0) if studio else (0.75, 0.25)),
      "noise_db": round(d.uniform(*rule.noise_db), 1),
      "hiss_db": round(d.uniform(-40.0, -24.0), 1) if hiss else -90.0,
      "hum_hz": d.pick("scene", "hum_hz", (50, 60)) if hum else 0,
      "hum_db": round(d.uniform(-36.0, -20.0), 1) if hum else -90.0,
      "clipping_db": round(d.uniform(4.0, 14.0), 1) if clip else 0.0,
      "telephone": d.pick("scene", "telephone", (False, True),
                          p=(1 - phone_p, phone_p)),
      "loudness_db": round(d.uniform(-34.0, -14.0), 1)}


def _fallback_event(d: core.Draw, duration: float,
                    population: Sequence[dict[str, Any]]) -> list[Event]:
  """Some event the restrictions allow, for a scene that drew none."""
  if d.allows("speech"):
    return speech_events(d, duration, _pick_speakers(d, population, 1))
  if d.allows("music"):
    events = music_events(d, duration)
    if events:
      return events
  kinds = [k for k in environment.KINDS if d.allows(k)]
  if not kinds:
    raise ValueError("the restrictions leave no event kind that can sound")
  return [environment_event(d, core.pick(d.rng, kinds), duration)]


def sample_scene_events(d: core.Draw, scene_class: str, duration: float,
                        population: Sequence[dict[str, Any]]
                        ) -> list[Event]:
  """The events of one scene of class `scene_class`."""
  rule = SCENE_RULES[scene_class]
  rng = d.rng
  events: list[Event] = []
  if scene_class == "studio":
    # One clean source: a speaker or a piece of music.
    if d.allows("speech") and (not d.allows("music") or d.chance(0.5)):
      count = 1 if d.chance(0.75) else 2
      events += speech_events(d, duration,
                              _pick_speakers(d, population, count),
                              gain_db=0.0)
    elif d.allows("music"):
      events += music_events(d, duration)
    return events
  for kind, p, fixed, (lo, hi) in rule.beds:
    if d.allows(kind) and d.chance(p):
      e = environment_event(d, kind, duration, d.uniform(lo, hi),
                            **_fixed_allowed(d, kind, fixed))
      events.append(Event(kind, 0.0, duration, e.attributes))
  if rule.music and d.allows("music") and d.chance(rule.music):
    events += music_events(
        d, duration, genre=d.pick("music", "genre", rule.genres),
        gain_db=d.uniform(-16.0, -9.0) if rule.music_background else 0.0,
        background=rule.music_background)
  if rule.speech and d.allows("speech") and d.chance(rule.speech):
    count = 1 if duration < 3.0 or d.chance(0.55) else 2
    events += speech_events(d, duration, _pick_speakers(d, population, count),
                            gain_db=d.uniform(0.0, 3.0))
  for kind, p, fixed in rule.events:
    if len(events) < 8 and d.allows(kind) and d.chance(p):
      events.append(environment_event(d, kind, duration, d.uniform(-6.0, 0.0),
                                      **_fixed_allowed(d, kind, fixed)))
  del rng
  return events


def make_scene(d: core.Draw, clip_id: str, duration: float, scene_class: str,
               events: list[Event], *, clean: bool = False) -> Scene:
  """A `Scene` of `events` (sorted by onset) with traits drawn for its class.

  Args:
    d: the draw (consumed by `sample_traits`).
    clip_id: the scene's clip id.
    duration: clip length in seconds.
    scene_class: one of `SCENES`.
    events: the scene's events; the domain follows from them.
    clean: draw studio-like traits (see `sample_traits`).

  Raises:
    ValueError: the resulting scene is invalid (see `validate_scene`).
  """
  events = sorted(events, key=lambda e: e.start_s)
  return Scene(clip_id, duration, domain_of(events), events,
               sample_traits(d, scene_class, events, clean=clean))


def sample_scene(rng: np.random.Generator | core.Draw, clip_id: str, *,
                 duration_s: float | None = None,
                 scene_class: str | None = None,
                 population: Sequence[dict[str, Any]] | None = None
                 ) -> Scene:
  """Draws a random scene of any class (or of `scene_class`).

  Args:
    rng: a numpy generator, or a `core.Draw` carrying restrictions
      (consumed).
    clip_id: the scene's clip id.
    duration_s: clip length in [1, 10] s; None draws it from
      `core.DEFAULT_DURATION_RANGE`.
    scene_class: one of `SCENES`; None draws one (a studio take one time in
      four, the other classes evenly).
    population: the speakers to draw from; None: the default pre-training
      population.

  Returns:
    A valid `Scene` whose events lie within the clip.
  """
  d = rng if isinstance(rng, core.Draw) else core.Draw(rng)
  if duration_s is None:
    duration_s = core.r2(d.uniform(*core.DEFAULT_DURATION_RANGE))
  duration = core.check_duration(duration_s)
  if population is None:
    population = speech.population(0, 0, DEFAULT_POPULATION,
                                   d.restrictions)
  if scene_class is None:
    scene_class = d.pick("scene", "scene", SCENES,
                         p=[3.0 if s == "studio" else 1.0 for s in SCENES])
  core.check_name("scene", scene_class, SCENES)
  events = sample_scene_events(d, scene_class, duration, population)
  if not events:
    events = _fallback_event(d, duration, population)
  return make_scene(d, clip_id, duration, scene_class, events)


# ----------------------------------------------------------------------------
# Rendering.


def room_response(rng: np.random.Generator, rt60: float, room: str,
                  distance: str, sr: int) -> np.ndarray:
  """A synthetic room impulse response: direct sound, early reflections
  and a late tail decaying 60 dB in rt60 (highs faster than lows)."""
  length = int(min(1.2 * rt60, 2.5) * sr)
  t = np.arange(length) / sr
  low = dsp.white_band(rng, length, sr, None, 2000.0) * np.exp(
      -6.91 * t / rt60)
  high = dsp.white_band(rng, length, sr, 2000.0, None) * np.exp(
      -6.91 * t / (0.6 * rt60))
  tail = low + 0.6 * high
  onset = int({"small": 0.004, "medium": 0.01, "large": 0.02}[room] * sr)
  tail[:onset] = 0.0
  tail /= math.sqrt(float(np.sum(tail * tail))) + 1e-12
  ir = np.zeros(length)
  ir[0] = 1.0
  span = {"small": 0.02, "medium": 0.04, "large": 0.08}[room]
  for _ in range(int(rng.integers(5, 10))):
    k = int(rng.uniform(0.002, span) * sr)
    ir[min(k, length - 1)] += rng.uniform(0.2, 0.6) * rng.choice((-1, 1))
  # Direct-to-reverberant ratio: lower for longer rooms and far microphones.
  drr_db = (6.0 if distance == "close" else -4.0) - 4.0 * rt60
  return ir + dsp.db(-drr_db) * tail


def _telephone(x: np.ndarray, sr: int) -> np.ndarray:
  """A 300-3400 Hz channel with 8-bit mu-law companding."""
  y = dsp.bandpass(x, 300.0, 3400.0, sr, order=4)
  y /= np.abs(y).max() + 1e-12
  mu = 255.0
  code = np.round(np.sign(y) * np.log1p(mu * np.abs(y)) / math.log1p(mu) * 127)
  return np.sign(code) * np.expm1(np.abs(code) / 127 * math.log1p(mu)) / mu


def render_scene(scene: Scene, *, sample_rate: int = core.SAMPLE_RATE,
                 seed: int) -> np.ndarray:
  """Synthesises a scene's audio.

  Args:
    scene: the scene (validated).
    sample_rate: output rate in Hz, 8000 to 48000.
    seed: non-negative int; the same scene and seed give identical audio.

  Returns:
    float32 waveform [round(duration_s * sample_rate)], finite, within
    [-1, 1], at the scene's loudness (or driven into clipping).
  """
  validate_scene(scene)
  core.Num(8000, 48000, 0, integer=True).check("render_scene", "sample_rate",
                                               sample_rate)
  core.Num(0, 2**63 - 1, 0, integer=True).check("render_scene", "seed", seed)
  sr, tr = int(sample_rate), traits_of(scene)
  n = int(round(scene.duration_s * sr))
  mix = np.zeros(n)
  for i, event in enumerate(scene.events):
    a = attrs(event)
    i0 = int(round(event.start_s * sr))
    m = min(n, int(round(event.end_s * sr))) - i0
    y = RENDERERS[event.kind](a, m, sr, np.random.default_rng([seed, 1, i]))
    y = y[:m] * dsp.ramps(m, sr, 0.005, 0.01)
    level = dsp.active_rms(y, sr)
    if level > 1e-9:
      mix[i0:i0 + m] += y * (dsp.db(a["gain_db"]) / level)
  rng = np.random.default_rng([seed, 2])
  if tr["rt60_s"] > 0:
    ir = room_response(rng, tr["rt60_s"], tr["room"], tr["distance"], sr)
    nfft = dsp.fast_len(n + ir.size)
    mix = np.fft.irfft(np.fft.rfft(mix, nfft) * np.fft.rfft(ir, nfft),
                       nfft)[:n]
  elif tr["distance"] == "far":
    # Far outdoors: air absorption dulls the highs; one ground reflection.
    mix = dsp.one_pole(mix, 0.55)
    delay = int(rng.uniform(0.01, 0.03) * sr)
    mix[delay:] += 0.4 * mix[:n - delay].copy()
  level = dsp.rms(mix)
  outdoor = tr["room"] == "outdoor"
  # Outdoors a darker (brown-like) floor, indoors a ventilation-like one.
  floor = dsp.one_pole(dsp.white_band(rng, n, sr, 25.0, 7000.0),
                       0.9 if outdoor else 0.6)
  floor /= dsp.rms(floor)
  floor *= 1.0 + 0.2 * dsp.smooth(rng, n, sr, 0.5)
  mix += floor * level * dsp.db(tr["noise_db"])
  if tr["hum_hz"]:
    t = np.arange(n) / sr
    f = tr["hum_hz"]
    hum = (np.sin(2 * np.pi * f * t) + 0.5 * np.sin(4 * np.pi * f * t + 1.0)
           + 0.3 * np.sin(6 * np.pi * f * t + 2.0))
    mix += hum / dsp.rms(hum) * level * dsp.db(tr["hum_db"])
  if tr["hiss_db"] > -90.0:
    mix += dsp.white_band(rng, n, sr, 3000.0, None) * level * dsp.db(
        tr["hiss_db"])
  if tr["telephone"]:
    mix = _telephone(mix, sr)
  if not np.all(np.isfinite(mix)) or dsp.rms(mix) <= 1e-9:
    raise ValueError(f"scene {scene.clip_id!r} rendered silent or non-finite")
  mix *= dsp.db(tr["loudness_db"]) / dsp.rms(mix)
  peak = float(np.abs(mix).max())
  if tr["clipping_db"] > 0:
    mix = np.clip(mix * (dsp.db(tr["clipping_db"]) / peak), -1.0, 1.0)
  elif peak > 0.99:
    mix *= 0.99 / peak
  return mix.astype(np.float32)
