"""Embedded demo corpus: procedurally synthesised clips with true labels.

A clip starts as a `Scene`: a list of `Event`s (a kind, a time span and
attributes) plus scene traits (indoor or outdoor acoustics, background noise,
telephone channel). Audio (`render_scene`), captions (`caption_scene`), tags
(`scene_tags`), weak labels (`weak_labels`) and evaluation targets
(`sample_task_clip`) are all derived from the scene, so every label is a true
property of the audio. Everything is numpy and seeded: the same seed gives
bit-identical audio and text (with the same numpy build).

Synthesis in brief: speech is a glottal pulse train with a pitch contour
through vowel formant resonators whose frequencies scale with vocal-tract
length; guitar is Karplus-Strong; organ and piano are wavetable additive
synthesis; drums are kick, snare and hi-hat hits on a tempo grid; rain, siren,
dog barks, alarm beeps and engine hum are noise and oscillator models. The mix
then gets an exponential-decay room response indoors, background noise and,
optionally, a band-limited mu-law telephone channel.

Grow the world by adding an event kind: its attribute spec in
`_EVENT_ATTRIBUTES`, a sampler branch, a renderer in `_RENDERERS`, caption
phrases, tags and weak labels.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterator, Sequence
from typing import Any, Callable

import numpy as np

SAMPLE_RATE = 16000
SOURCE_NAME = "audiopt-demo"
MIN_DURATION_S = 1.0
MAX_DURATION_S = 10.0
DEFAULT_DURATION_RANGE = (2.0, 6.0)
DOMAINS = ("speech", "music", "sound", "mixed")
EVENT_KINDS = ("speech", "music", "rain", "siren", "dog_bark", "alarm",
               "engine")
SOUND_KINDS = ("rain", "siren", "dog_bark", "alarm", "engine")
INSTRUMENTS = ("guitar", "organ", "piano", "drums")
MELODIC_INSTRUMENTS = ("guitar", "organ", "piano")
KEY_NAMES = ("C", "C#", "D", "Eb", "E", "F", "F#", "G", "Ab", "A", "Bb", "B")
# Events shorter than this cannot carry a recognisable sound.
_MIN_EVENT_S = 0.1


# ----------------------------------------------------------------------------
# Attribute specifications and validation.


@dataclasses.dataclass(frozen=True)
class _Cat:
  """A categorical attribute: one of `values`."""
  values: tuple[Any, ...]
  default: Any

  def check(self, what: str, name: str, value: Any) -> None:
    if not any(isinstance(value, type(v)) and value == v for v in self.values):
      raise ValueError(f"{what}: {name}={value!r} is not valid; valid values: "
                       f"{', '.join(map(repr, self.values))}")


@dataclasses.dataclass(frozen=True)
class _Num:
  """A numeric attribute in [lo, hi]."""
  lo: float
  hi: float
  default: float
  integer: bool = False

  def check(self, what: str, name: str, value: Any) -> None:
    kinds = (int, np.integer) if self.integer else (
        int, float, np.integer, np.floating)
    if (isinstance(value, bool) or not isinstance(value, kinds)
        or not math.isfinite(value) or not self.lo <= value <= self.hi):
      kind = "an integer" if self.integer else "a number"
      raise ValueError(f"{what}: {name}={value!r} must be {kind} in "
                       f"[{self.lo}, {self.hi}]")


_GAIN = {"gain_db": _Num(-40.0, 6.0, 0.0)}
_EVENT_ATTRIBUTES: dict[str, dict[str, _Cat | _Num]] = {
    "speech": {
        "speaker": _Num(0, 9, 0, integer=True),
        "sex": _Cat(("female", "male"), "male"),
        "pitch_hz": _Num(60.0, 400.0, 120.0),
        "vtl_cm": _Num(10.0, 22.0, 17.0),
        "rate_sps": _Num(2.0, 8.0, 4.5),
        "intonation": _Cat(("statement", "question"), "statement"),
        **_GAIN},
    "music": {
        "instrument": _Cat(INSTRUMENTS, "piano"),
        "tempo_bpm": _Num(40.0, 220.0, 100.0),
        "key": _Cat(KEY_NAMES, "C"),
        "mode": _Cat(("major", "minor"), "major"),
        **_GAIN},
    "rain": {"intensity": _Cat(("light", "heavy"), "light"), **_GAIN},
    "siren": {"pattern": _Cat(("wail", "yelp"), "wail"),
              "motion": _Cat(("stationary", "passing"), "stationary"),
              **_GAIN},
    "dog_bark": {"size": _Cat(("small", "large"), "large"),
                 "count": _Num(1, 12, 3, integer=True), **_GAIN},
    "alarm": {"pattern": _Cat(("beeping", "two-tone"), "beeping"),
              "pitch_hz": _Num(400.0, 4000.0, 2500.0), **_GAIN},
    "engine": {"state": _Cat(("idling", "accelerating"), "idling"), **_GAIN},
}
_TRAITS: dict[str, _Cat | _Num] = {
    "setting": _Cat(("indoor", "outdoor"), "outdoor"),
    "rt60_s": _Num(0.0, 2.0, 0.0),        # 0: no room response
    "noise_db": _Num(-80.0, 0.0, -60.0),  # background noise re. the mix RMS
    "telephone": _Cat((False, True), False),
    "peak": _Num(0.05, 1.0, 0.8),         # peak amplitude of the clip
}


def _check_fields(spec: dict[str, _Cat | _Num], values: dict[str, Any],
                  what: str) -> dict[str, Any]:
  """Checks `values` against `spec`; returns them completed with defaults."""
  if not isinstance(values, dict):
    raise ValueError(f"{what}: expected a dict, got {type(values).__name__}")
  for name, value in values.items():
    if name not in spec:
      raise ValueError(f"{what}: unknown attribute {name!r}; valid "
                       f"attributes: {', '.join(sorted(spec))}")
    spec[name].check(what, name, value)
  return {name: values.get(name, field.default) for name, field in spec.items()}


def _check_kind(kind: Any) -> None:
  if kind not in EVENT_KINDS:
    raise ValueError(f"unknown event kind {kind!r}; valid kinds: "
                     f"{', '.join(EVENT_KINDS)}")


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

  def __post_init__(self):
    _check_event(self)


@dataclasses.dataclass
class Scene:
  """A clip's full description, from which audio and all labels derive.

  Attributes:
    clip_id: unique clip id.
    duration_s: clip length in seconds, in [1, 10].
    domain: one of `DOMAINS`.
    events: the `Event`s (any order; captions follow onset order).
    traits: scene traits (`setting`, `rt60_s`, `noise_db`, `telephone`,
      `peak`); missing ones take their defaults.
  """
  clip_id: str
  duration_s: float
  domain: str
  events: list[Event]
  traits: dict[str, Any] = dataclasses.field(default_factory=dict)

  def __post_init__(self):
    validate_scene(self)


def event_attribute_names(kind: str) -> tuple[str, ...]:
  """Returns the attribute names valid for events of `kind`."""
  _check_kind(kind)
  return tuple(_EVENT_ATTRIBUTES[kind])


def _check_event(event: Event) -> dict[str, Any]:
  """Validates an event; returns its attributes completed with defaults."""
  _check_kind(event.kind)
  what = f"{event.kind} event"
  for name in ("start_s", "end_s"):
    _Num(0.0, MAX_DURATION_S, 0.0).check(what, name, getattr(event, name))
  if event.end_s - event.start_s < _MIN_EVENT_S:
    raise ValueError(f"{what}: span [{event.start_s}, {event.end_s}] s is "
                     f"shorter than {_MIN_EVENT_S} s")
  return _check_fields(_EVENT_ATTRIBUTES[event.kind], event.attributes, what)


def validate_scene(scene: Scene) -> None:
  """Checks a scene (names, ranges, spans); raises ValueError naming the fault.

  Args:
    scene: the `Scene` to check.
  """
  what = f"scene {scene.clip_id!r}"
  if not isinstance(scene.clip_id, str) or not scene.clip_id:
    raise ValueError(f"{what}: clip_id must be a non-empty string")
  if scene.domain not in DOMAINS:
    raise ValueError(f"{what}: unknown domain {scene.domain!r}; valid "
                     f"domains: {', '.join(DOMAINS)}")
  _Num(MIN_DURATION_S, MAX_DURATION_S, 0.0).check(what, "duration_s",
                                                  scene.duration_s)
  if not scene.events:
    raise ValueError(f"{what}: a scene needs at least one event")
  for event in scene.events:
    if not isinstance(event, Event):
      raise ValueError(f"{what}: events must be Event, got "
                       f"{type(event).__name__}")
    _check_event(event)
    if event.end_s > scene.duration_s + 1e-6:
      raise ValueError(f"{what}: {event.kind} event ends at {event.end_s} s, "
                       f"after the clip ({scene.duration_s} s)")
  if scene.domain != domain_of(scene.events):
    raise ValueError(f"{what}: domain {scene.domain!r} does not match its "
                     f"events, which make it {domain_of(scene.events)!r}")
  _check_fields(_TRAITS, scene.traits, f"{what} traits")


def domain_of(events: Sequence[Event]) -> str:
  """Returns the domain of a non-empty event list.

  Args:
    events: the events.

  Returns:
    "speech", "music" or "sound" when all events are speech, music or
    environmental sounds; "mixed" otherwise.
  """
  groups = {e.kind if e.kind in ("speech", "music") else "sound"
            for e in events}
  return groups.pop() if len(groups) == 1 else "mixed"


def _attrs(event: Event) -> dict[str, Any]:
  return _check_event(event)


def _traits(scene: Scene) -> dict[str, Any]:
  return _check_fields(_TRAITS, scene.traits, "traits")


# ----------------------------------------------------------------------------
# Scene sampling.


def _pick(rng: np.random.Generator, options: Sequence[Any]) -> Any:
  return options[int(rng.integers(len(options)))]


def _r2(x: float) -> float:
  return round(float(x), 2)


def _span(rng: np.random.Generator, duration: float, min_len: float,
          p_full: float) -> tuple[float, float]:
  """A random [start, end] of at least `min_len` (or the clip) seconds."""
  min_len = min(min_len, duration)
  if rng.random() < p_full:
    return 0.0, duration
  length = rng.uniform(min_len, duration)
  start = rng.uniform(0.0, duration - length)
  return _r2(start), min(duration, _r2(start + length))


def _sample_speaker(rng: np.random.Generator, speaker: int,
                    sex: str | None) -> dict[str, Any]:
  """A speaker: sex sets the pitch range and the vocal-tract length."""
  sex = sex or _pick(rng, ("female", "male"))
  if sex == "male":
    pitch, vtl = rng.uniform(85.0, 150.0), rng.uniform(16.0, 18.5)
  else:
    pitch, vtl = rng.uniform(165.0, 260.0), rng.uniform(13.5, 15.5)
  return {"speaker": speaker, "sex": sex, "pitch_hz": round(pitch, 1),
          "vtl_cm": _r2(vtl), "rate_sps": _r2(rng.uniform(3.0, 6.0))}


def _turn_spans(rng: np.random.Generator, duration: float,
                turns: int) -> list[tuple[float, float]]:
  """Non-overlapping speaking turns covering most of the clip."""
  lead = rng.uniform(0.0, min(0.3, 0.1 * duration))
  trail = rng.uniform(0.0, min(0.3, 0.1 * duration))
  gaps = rng.uniform(0.15, 0.4, size=turns - 1)
  avail = duration - lead - trail - gaps.sum()
  min_len = 0.6
  if turns > 1 and avail < turns * min_len:
    return _turn_spans(rng, duration, turns - 1)
  lengths = min_len + (avail - turns * min_len) * rng.dirichlet(
      np.full(turns, 3.0))
  spans, t = [], lead
  for i in range(turns):
    spans.append((_r2(t), min(duration, _r2(t + lengths[i]))))
    t += lengths[i] + (gaps[i] if i < turns - 1 else 0.0)
  return spans


def _speech_events(rng: np.random.Generator, duration: float, *,
                   num_speakers: int | None = None, sex: str | None = None,
                   gain_db: float = 0.0) -> list[Event]:
  """One or two speakers taking turns."""
  if num_speakers is None:
    num_speakers = 1 if duration < 3.0 or rng.random() < 0.6 else 2
  speakers = [_sample_speaker(rng, 0, sex)]
  if num_speakers == 2:
    other = {"male": "female", "female": "male"}[speakers[0]["sex"]]
    speakers.append(_sample_speaker(
        rng, 1, other if rng.random() < 0.7 else speakers[0]["sex"]))
  turns = 1 if num_speakers == 1 else (
      3 if duration >= 5.0 and rng.random() < 0.5 else 2)
  spans = _turn_spans(rng, duration, turns)
  return [Event("speech", s, e, {
      **speakers[i % len(speakers)],
      "intonation": "question" if rng.random() < 0.3 else "statement",
      "gain_db": gain_db}) for i, (s, e) in enumerate(spans)]


def _music_events(rng: np.random.Generator, duration: float, *,
                  instruments: Sequence[str] | None = None,
                  gain_db: float = 0.0) -> list[Event]:
  """An ensemble of one or two instruments sharing tempo, key and mode."""
  if instruments is None:
    melodic = _pick(rng, MELODIC_INSTRUMENTS)
    u = rng.random()
    if u < 0.45:
      instruments = [melodic]
    elif u < 0.55:
      instruments = ["drums"]
    elif u < 0.85:
      instruments = [melodic, "drums"]
    else:
      instruments = [melodic, _pick(
          rng, [i for i in MELODIC_INSTRUMENTS if i != melodic])]
  shared = {"tempo_bpm": float(rng.integers(70, 151)),
            "key": _pick(rng, KEY_NAMES),
            "mode": _pick(rng, ("major", "minor"))}
  events = []
  for i, instrument in enumerate(instruments):
    start = rng.uniform(0.0, min(0.3, 0.1 * duration))
    if i > 0 and duration >= 3.0 and rng.random() < 0.4:
      start = rng.uniform(0.5, duration / 2)
    gain = gain_db - (rng.uniform(1.0, 4.0) if i > 0 else 0.0)
    events.append(Event("music", _r2(start), duration, {
        "instrument": instrument, **shared, "gain_db": _r2(gain)}))
  return events


def _sound_event(rng: np.random.Generator, kind: str, duration: float,
                 gain_db: float) -> Event:
  """One environmental event with a plausible span and attributes."""
  attrs: dict[str, Any] = {"gain_db": _r2(gain_db)}
  if kind == "rain":
    start, end = _span(rng, duration, 1.0, p_full=0.7)
    attrs["intensity"] = _pick(rng, ("light", "heavy"))
  elif kind == "engine":
    start, end = _span(rng, duration, 1.0, p_full=0.6)
    long_enough = end - start >= 1.5
    attrs["state"] = ("accelerating" if long_enough and rng.random() < 0.5
                      else "idling")
  elif kind == "siren":
    start, end = _span(rng, duration, 1.5, p_full=0.4)
    attrs["pattern"] = _pick(rng, ("wail", "yelp"))
    attrs["motion"] = ("passing" if end - start >= 2.5 and rng.random() < 0.5
                       else "stationary")
  elif kind == "dog_bark":
    spacing = rng.uniform(0.35, 0.55)
    count = int(min(rng.integers(1, 6), max(1, (duration - 0.05) // spacing)))
    length = min(duration, count * spacing)
    start = _r2(rng.uniform(0.0, duration - length))
    start, end = start, min(duration, _r2(start + length))
    attrs.update(size=_pick(rng, ("small", "large")), count=count)
  elif kind == "alarm":
    start, end = _span(rng, duration, 1.0, p_full=0.3)
    attrs["pattern"] = _pick(rng, ("beeping", "two-tone"))
    attrs["pitch_hz"] = float(rng.integers(15, 36) * 100)
  else:
    _check_kind(kind)
    raise ValueError(f"{kind!r} is not an environmental kind; valid: "
                     f"{', '.join(SOUND_KINDS)}")
  return Event(kind, start, end, attrs)


def _sound_events(rng: np.random.Generator, duration: float,
                  kinds: Sequence[str], *, background: bool = False
                  ) -> list[Event]:
  """Environmental events; `background` lowers them under a foreground."""
  events = []
  for kind in kinds:
    gain = 0.0
    if background:
      gain = (rng.uniform(-14.0, -9.0) if kind in ("rain", "engine")
              else rng.uniform(-6.0, 0.0))
    elif kind in ("rain", "engine") and len(kinds) > 1:
      gain = rng.uniform(-8.0, -3.0)
    events.append(_sound_event(rng, kind, duration, gain))
  return events


def _random_kinds(rng: np.random.Generator, lo: int, hi: int) -> list[str]:
  count = int(rng.integers(lo, hi + 1))
  idx = np.sort(rng.choice(len(SOUND_KINDS), size=count, replace=False))
  return [SOUND_KINDS[i] for i in idx]


def _sample_traits(rng: np.random.Generator,
                   events: Sequence[Event]) -> dict[str, Any]:
  """Scene traits consistent with the events (sirens and rain are outside)."""
  kinds = {e.kind for e in events}
  instruments = {e.attributes.get("instrument") for e in events}
  if kinds & {"rain", "siren", "engine"}:
    setting = "outdoor"
  elif "organ" in instruments:
    setting = "indoor"
  else:
    setting = _pick(rng, ("indoor", "outdoor"))
  u = rng.random()
  if u < 0.4:
    noise_db = rng.uniform(-60.0, -45.0)
  elif u < 0.75:
    noise_db = rng.uniform(-38.0, -26.0)
  else:
    noise_db = rng.uniform(-20.0, -12.0)
  p_phone = 0.15 if "speech" in kinds else 0.04
  return {"setting": setting,
          "rt60_s": _r2(rng.uniform(0.25, 1.2)) if setting == "indoor" else 0.0,
          "noise_db": round(noise_db, 1),
          "telephone": bool(rng.random() < p_phone),
          "peak": _r2(rng.uniform(0.3, 0.95))}


def _check_duration(duration_s: Any) -> float:
  _Num(MIN_DURATION_S, MAX_DURATION_S, 0.0).check("scene", "duration_s",
                                                  duration_s)
  return float(duration_s)


def _make_scene(rng: np.random.Generator, clip_id: str, duration: float,
                domain: str, events: list[Event]) -> Scene:
  events = sorted(events, key=lambda e: e.start_s)
  return Scene(clip_id, duration, domain, events, _sample_traits(rng, events))


def sample_scene(rng: np.random.Generator, clip_id: str, *,
                 duration_s: float | None = None) -> Scene:
  """Draws a random scene: speech, music, environmental sound or a mix.

  Args:
    rng: the random generator (consumed).
    clip_id: the scene's clip id.
    duration_s: clip length in [1, 10] s; None draws it from
      `DEFAULT_DURATION_RANGE`.

  Returns:
    A valid `Scene` whose events lie within the clip.
  """
  if duration_s is None:
    duration_s = _r2(rng.uniform(*DEFAULT_DURATION_RANGE))
  duration = _check_duration(duration_s)
  domain = DOMAINS[int(rng.choice(4, p=(0.3, 0.25, 0.25, 0.2)))]
  if domain == "speech":
    events = _speech_events(rng, duration)
  elif domain == "music":
    events = _music_events(rng, duration)
  elif domain == "sound":
    events = _sound_events(rng, duration, _random_kinds(rng, 1, 3))
  else:
    u = rng.random()
    if u < 0.4:
      events = _speech_events(rng, duration) + _sound_events(
          rng, duration, _random_kinds(rng, 1, 2), background=True)
    elif u < 0.7:
      events = _speech_events(rng, duration) + _music_events(
          rng, duration, instruments=[_pick(rng, INSTRUMENTS)],
          gain_db=_r2(rng.uniform(-14.0, -9.0)))
    else:
      events = _music_events(rng, duration) + _sound_events(
          rng, duration, _random_kinds(rng, 1, 1), background=True)
  return _make_scene(rng, clip_id, duration, domain, events)


# ----------------------------------------------------------------------------
# Signal-processing helpers (numpy only).


def _fast_len(n: int) -> int:
  """The smallest 2^a 3^b 5^c >= n (a fast FFT length)."""
  best = 1 << max(0, n - 1).bit_length()
  f5 = 1
  while f5 < best:
    f35 = f5
    while f35 < best:
      f = f35
      while f < n:
        f *= 2
      best = min(best, f)
      f35 *= 3
    f5 *= 5
  return best


def _filter(x: np.ndarray, response: Callable[[np.ndarray], np.ndarray],
            sr: int, pad: int = 512) -> np.ndarray:
  """Filters x [N] by a frequency response H(f_hz); returns [N + pad]."""
  nfft = _fast_len(x.size + pad)
  spec = np.fft.rfft(x, nfft) * response(np.fft.rfftfreq(nfft, 1.0 / sr))
  return np.fft.irfft(spec, nfft)[:x.size + pad]


def _band(freqs: np.ndarray, lo: float | None, hi: float | None,
          order: int = 4) -> np.ndarray:
  """Butterworth-like magnitude of a band-pass (None: that edge open)."""
  gain = np.ones_like(freqs)
  if lo:
    gain /= np.sqrt(1.0 + (lo / np.maximum(freqs, 1e-3)) ** (2 * order))
  if hi:
    gain /= np.sqrt(1.0 + (freqs / hi) ** (2 * order))
  return gain


def _noise(rng: np.random.Generator, n: int, sr: int, *, tilt: float = 0.0,
           lo: float | None = None, hi: float | None = None) -> np.ndarray:
  """Unit-RMS Gaussian noise [n] with spectrum f^tilt, band-limited."""
  nfft = _fast_len(n)
  k = nfft // 2 + 1
  spec = rng.standard_normal(k) + 1j * rng.standard_normal(k)
  freqs = np.fft.rfftfreq(nfft, 1.0 / sr)
  spec *= np.maximum(freqs, 20.0) ** tilt * _band(freqs, lo, hi)
  y = np.fft.irfft(spec, nfft)[:n]
  return y / (np.sqrt(np.mean(y * y)) + 1e-12)


def _smooth(rng: np.random.Generator, n: int, sr: int,
            rate_hz: float) -> np.ndarray:
  """A smooth random curve [n], about N(0, 1), varying at `rate_hz`."""
  knots = int(n / sr * rate_hz) + 2
  return np.interp(np.arange(n) * (rate_hz / sr), np.arange(knots),
                   rng.standard_normal(knots))


def _table(amps: Sequence[float], f_max: float, sr: int,
           phases: Sequence[float] | None = None,
           size: int = 2048) -> np.ndarray:
  """One period [size] of a harmonic wave, harmonics kept below 0.45 sr."""
  keep = max(1, min(len(amps), int(0.45 * sr / max(f_max, 1.0))))
  k = np.arange(1, keep + 1)[:, None]
  ph = np.zeros((keep, 1)) if phases is None else np.asarray(
      phases[:keep])[:, None]
  grid = np.arange(size)[None, :] / size
  return (np.asarray(amps[:keep])[:, None] *
          np.sin(2 * np.pi * k * grid + ph)).sum(0)


def _oscillate(table: np.ndarray, freq_hz: np.ndarray | float, n: int,
               sr: int, phase0: float = 0.0) -> np.ndarray:
  """Reads a wavetable at a (possibly time-varying) frequency; returns [n]."""
  if np.ndim(freq_hz) == 0:
    phase = phase0 + np.arange(n) * (float(freq_hz) / sr)
  else:
    phase = phase0 + np.cumsum(freq_hz) / sr
  pos = (phase % 1.0) * table.size
  i = np.minimum(pos.astype(np.intp), table.size - 1)
  wrapped = np.append(table, table[0])
  return wrapped[i] + (pos - i) * (wrapped[i + 1] - wrapped[i])


def _ramps(n: int, sr: int, attack_s: float, release_s: float) -> np.ndarray:
  """A linear attack/release envelope [n]."""
  env = np.ones(n)
  a = min(n, max(1, int(attack_s * sr)))
  r = min(n, max(1, int(release_s * sr)))
  env[:a] *= np.linspace(0.0, 1.0, a, endpoint=False)
  env[n - r:] *= np.linspace(1.0, 0.0, r)
  return env


def _add(out: np.ndarray, start: int, y: np.ndarray) -> None:
  """Adds y into out at `start`, clipped to out's length."""
  m = min(y.size, out.size - start)
  if m > 0:
    out[start:start + m] += y[:m]


def _resonators(freqs: np.ndarray, formants: Sequence[float],
                bandwidths: Sequence[float], sr: int) -> np.ndarray:
  """Complex response of cascaded two-pole resonators, unit gain at DC."""
  z1 = np.exp(-2j * np.pi * freqs / sr)
  h = np.ones_like(z1)
  for f, bw in zip(formants, bandwidths):
    if f >= 0.48 * sr:
      continue
    r = math.exp(-math.pi * bw / sr)
    c = 2 * r * math.cos(2 * math.pi * f / sr)
    h *= (1 - c + r * r) / (1 - c * z1 + r * r * z1 * z1)
  return h


def _voiced(rng: np.random.Generator, f0: np.ndarray, env: np.ndarray,
            formants: Sequence[float], bandwidths: Sequence[float], sr: int,
            *, breath: float = 0.1, tail_s: float = 0.03) -> np.ndarray:
  """Source-filter voicing: glottal pulses at f0 [m] through formants.

  Args:
    rng: random generator.
    f0: fundamental frequency per sample [m] (Hz).
    env: source amplitude envelope [m].
    formants: resonance frequencies (Hz).
    bandwidths: resonance bandwidths (Hz), one per formant.
    sr: sample rate.
    breath: RMS of the aspiration noise relative to the pulse train.
    tail_s: length of the resonance tail kept after the source ends.

  Returns:
    The voiced sound [m + tail].
  """
  m = f0.size
  phase = np.cumsum(f0) / sr + rng.random()
  pulses = np.zeros(m)
  idx = np.flatnonzero(np.diff(np.floor(phase))) + 1
  pulses[idx] = 1.0 + 0.05 * rng.standard_normal(idx.size)
  noise_rms = breath * math.sqrt(float(np.mean(f0)) / sr)
  source = (pulses + noise_rms * rng.standard_normal(m)) * env

  def response(freqs):
    z1 = np.exp(-2j * np.pi * freqs / sr)
    # Glottal spectral tilt (-12 dB/oct) and lip radiation (+6 dB/oct).
    tilt = ((1 - 0.97) / (1 - 0.97 * z1)) ** 2 * (1 - z1)
    return tilt * _resonators(freqs, formants, bandwidths, sr)

  return _filter(source, response, sr, pad=int(tail_s * sr))


# ----------------------------------------------------------------------------
# Speech.

# F1-F3 (Hz) of a 17 cm adult vocal tract (Peterson-Barney averages).
_VOWELS = ((730, 1090, 2440), (270, 2290, 3010), (300, 870, 2240),
           (530, 1840, 2480), (570, 840, 2410), (660, 1720, 2410),
           (490, 1350, 1690))
_VOWEL_BW = (80.0, 100.0, 140.0, 200.0)
_FRICATIVE_BANDS = ((3500.0, 7500.0), (2000.0, 5000.0), (1200.0, 6500.0))


def _syllable_plan(rng: np.random.Generator, dur: float,
                   rate: float) -> list[tuple[float, float, bool, int]]:
  """Syllables (start_s, length_s, stressed, phrase) in words and phrases."""
  plan: list[tuple[float, float, bool, int]] = []
  t, phrase = 0.03, 0
  while True:
    for _ in range(int(rng.integers(2, 6))):
      syllables = int(rng.integers(1, 4))
      stress = int(rng.integers(syllables))
      for s in range(syllables):
        length = rng.uniform(0.75, 1.25) / rate
        if t + length > dur - 0.03:
          length = dur - 0.03 - t
          if length >= 0.08 or not plan:
            plan.append((t, max(length, 0.05), s == stress, phrase))
          return plan
        plan.append((t, length, s == stress, phrase))
        t += length
      t += rng.uniform(0.02, 0.1)
    t += rng.uniform(0.2, 0.4)
    phrase += 1


def _pitch_contour(rng: np.random.Generator, n: int, sr: int,
                   plan: list[tuple[float, float, bool, int]], base: float,
                   intonation: str) -> np.ndarray:
  """F0 [n]: declination per phrase, stress accents, a final rise or fall."""
  t = np.arange(n) / sr
  f0 = base * (1.0 + 0.03 * _smooth(rng, n, sr, 4.0))
  for phrase in {p for *_, p in plan}:
    sylls = [(s, l) for s, l, _, p in plan if p == phrase]
    i0, i1 = int(sylls[0][0] * sr), min(n, int(sum(sylls[-1]) * sr))
    f0[i0:i1] *= np.linspace(1.08, 0.92, max(0, i1 - i0))
  for start, length, stressed, _ in plan:
    if stressed:
      i0, i1 = int(start * sr), min(n, int((start + length) * sr))
      mid, width = start + length / 2, length / 4
      f0[i0:i1] *= 1 + 0.12 * np.exp(-0.5 * ((t[i0:i1] - mid) / width) ** 2)
  start, length = plan[-1][:2]
  i0 = min(n, int((start + 0.2 * length) * sr))
  end = 1.5 if intonation == "question" else 0.85
  f0[i0:] *= np.linspace(1.0, end, n - i0)
  return np.clip(f0, 50.0, 600.0)


def _consonant(rng: np.random.Generator, m: int, sr: int) -> np.ndarray:
  """An unvoiced onset [m]: a fricative hiss or a stop closure and burst."""
  if rng.random() < 0.35:
    out = np.zeros(m)
    b = min(m, int(0.012 * sr))
    out[m - b:] = rng.standard_normal(b) * np.exp(-np.arange(b) / (0.003 * sr))
    return _filter(out, lambda f: _band(f, 500.0, 0.45 * sr, 2), sr, 0)
  lo, hi = _pick(rng, _FRICATIVE_BANDS)
  return _noise(rng, m, sr, lo=lo, hi=min(hi, 0.45 * sr)) * np.hanning(m)


def _render_speech(a: dict[str, Any], n: int, sr: int,
                   rng: np.random.Generator) -> np.ndarray:
  """Speech-like babble: formant-filtered syllables with a pitch contour."""
  plan = _syllable_plan(rng, n / sr, a["rate_sps"])
  f0 = _pitch_contour(rng, n, sr, plan, a["pitch_hz"], a["intonation"])
  scale = 17.0 / a["vtl_cm"]
  out = np.zeros(n + int(0.05 * sr))
  for start, length, stressed, _ in plan:
    i0, i1 = int(start * sr), min(n, int((start + length) * sr))
    onset = 0
    if rng.random() < 0.55 and i1 - i0 > int(0.12 * sr):
      onset = int(rng.uniform(0.04, 0.08) * sr)
    v0 = i0 + onset
    formants = [f * scale * (1 + 0.03 * rng.standard_normal())
                for f in (*_pick(rng, _VOWELS), 3500.0)]
    env = _ramps(i1 - v0, sr, 0.02, 0.05)
    y = _voiced(rng, f0[v0:i1], env, formants, _VOWEL_BW, sr)
    y *= 1.0 if stressed else rng.uniform(0.55, 0.8)
    _add(out, v0, y)
    if onset:
      level = math.sqrt(float(np.mean(y * y)))
      _add(out, i0, 0.4 * level * _consonant(rng, onset, sr))
  return out[:n]


# ----------------------------------------------------------------------------
# Music.

_SCALES = {"major": (0, 2, 4, 5, 7, 9, 11), "minor": (0, 2, 3, 5, 7, 8, 10)}
_PROGRESSION = (0, 3, 4, 5, 1)  # scale degrees: I, IV, V, vi, ii
_ORGAN_DRAWBARS = (1.0, 0.8, 0.5, 0.45, 0.0, 0.25, 0.0, 0.15)


def _hz(midi: float) -> float:
  return 440.0 * 2.0 ** ((midi - 69) / 12)


def _degree(mode: str, k: int) -> int:
  """Semitones above the tonic of scale degree k (k may exceed 6)."""
  return _SCALES[mode][k % 7] + 12 * (k // 7)


def _tonic(key: str, lowest: int) -> int:
  """The MIDI tonic of `key` in [lowest, lowest + 12)."""
  return lowest + (KEY_NAMES.index(key) - lowest) % 12


def _chords(rng: np.random.Generator, a: dict[str, Any], dur: float,
            lowest: int, beats: Sequence[float]
            ) -> list[tuple[float, float, list[int]]]:
  """A chord progression (start_s, length_s, MIDI triad) starting on I."""
  beat = 60.0 / a["tempo_bpm"]
  tonic = _tonic(a["key"], lowest)
  out, t, degree = [], 0.0, 0
  while t < dur - 0.05:
    length = beat * _pick(rng, beats)
    out.append((t, min(length, dur - t),
                [tonic + _degree(a["mode"], degree + k) for k in (0, 2, 4)]))
    t += length
    degree = _pick(rng, _PROGRESSION)
  return out


def _melody(rng: np.random.Generator, a: dict[str, Any], dur: float,
            lowest: int, beats: Sequence[float]
            ) -> list[tuple[float, float, int]]:
  """A scale-wise random walk (start_s, length_s, MIDI) from the tonic."""
  beat = 60.0 / a["tempo_bpm"]
  tonic = _tonic(a["key"], lowest)
  out, t, degree = [], 0.0, 0
  while t < dur - 0.05:
    length = beat * _pick(rng, beats)
    out.append((t, min(length, dur - t), tonic + _degree(a["mode"], degree)))
    t += length
    degree = int(np.clip(degree + _pick(rng, (-2, -1, -1, 0, 1, 1, 2)), 0, 9))
  return out


def _pluck(rng: np.random.Generator, f0: float, m: int, sr: int,
           t60_s: float = 2.0) -> np.ndarray:
  """A Karplus-Strong plucked string [m]; loops once per period."""
  p = max(2, int(round(sr / f0 - 0.5)))  # the averager adds half a sample
  y = np.zeros(max(m, p + 1))
  burst = rng.uniform(-1.0, 1.0, p + 2)
  y[:p + 1] = 0.5 * (burst[1:] + burst[:-1])
  loss = 10.0 ** (-3.0 * p / (sr * t60_s))
  for s in range(p + 1, y.size, p):
    e = min(s + p, y.size)
    y[s:e] = loss * 0.5 * (y[s - p:e - p] + y[s - p - 1:e - p - 1])
  return y[:m]


def _render_guitar(a: dict[str, Any], n: int, sr: int,
                   rng: np.random.Generator) -> np.ndarray:
  """Arpeggiated chords on a plucked string, eighth notes that ring on."""
  out = np.zeros(n)
  eighth = 30.0 / a["tempo_bpm"]
  for t0, length, chord in _chords(rng, a, n / sr, 45, (2, 4)):
    tones = chord + [chord[0] + 12]
    for k in range(max(1, int(round(length / eighth)))):
      i0 = int((t0 + k * eighth) * sr)
      m = min(n - i0, int((eighth + 0.35) * sr))
      if m <= 0:
        continue
      y = _pluck(rng, _hz(tones[(0, 1, 2, 3, 2, 1)[k % 6]]), m, sr)
      _add(out, i0, y * rng.uniform(0.7, 1.0) * _ramps(m, sr, 0.001, 0.05))
  return out


def _render_organ(a: dict[str, Any], n: int, sr: int,
                  rng: np.random.Generator) -> np.ndarray:
  """Sustained drawbar-organ chords with a bass note and slight tremolo."""
  out = np.zeros(n)
  for t0, length, chord in _chords(rng, a, n / sr, 53, (4, 4, 2)):
    i0 = int(t0 * sr)
    m = min(n - i0, int(length * sr))
    if m <= 0:
      continue
    seg = np.zeros(m)
    for midi in chord + [chord[0] - 12]:
      f = _hz(midi)
      seg += _oscillate(_table(_ORGAN_DRAWBARS, f, sr), f, m, sr, rng.random())
    _add(out, i0, seg * _ramps(m, sr, 0.015, 0.06))
  t = np.arange(n) / sr
  return out * (1.0 + 0.05 * np.sin(2 * np.pi * 5.5 * t))


def _piano_note(f0: float, m: int, sounding: int, sr: int) -> np.ndarray:
  """A decaying piano-like note [m]: bright attack mellowing; damped at end."""
  amps_bright = [1.0 / k ** 0.7 for k in range(1, 11)]
  amps_mellow = [1.0 / k ** 2.0 for k in range(1, 11)]
  t = np.arange(m) / sr
  tau = float(np.clip(0.9 * math.sqrt(262.0 / f0), 0.3, 2.5))
  env = np.exp(-t / tau) * np.minimum(1.0, t / 0.003)
  env[sounding:] *= np.exp(-(t[sounding:] - sounding / sr) / 0.03)
  w = np.exp(-t / 0.15)
  # Two slightly detuned strings per note.
  tables = [_table(amps_bright, f0, sr), _table(amps_mellow, f0, sr)]
  bright, mellow = (_oscillate(tab, f0, m, sr) +
                    _oscillate(tab, f0 * 1.0015, m, sr, 0.3) for tab in tables)
  return env * (w * bright + (1 - w) * mellow)


def _render_piano(a: dict[str, Any], n: int, sr: int,
                  rng: np.random.Generator) -> np.ndarray:
  """A right-hand melody over left-hand bass notes, one per chord."""
  out = np.zeros(n)
  notes = [(t0, length, midi, rng.uniform(0.6, 1.0))
           for t0, length, midi in _melody(rng, a, n / sr, 60, (0.5, 1, 1, 2))]
  notes += [(t0, length, chord[0], 0.6)
            for t0, length, chord in _chords(rng, a, n / sr, 40, (4,))]
  for t0, length, midi, velocity in notes:
    i0 = int(t0 * sr)
    sounding = int(length * sr)
    m = min(n - i0, sounding + int(0.1 * sr))
    if m > 0:
      _add(out, i0, velocity * _piano_note(_hz(midi), m, min(sounding, m), sr))
  return out


def _drum_hits(rng: np.random.Generator, sr: int) -> dict[str, np.ndarray]:
  """One kick, snare and hi-hat sample each."""
  t = np.arange(int(0.35 * sr)) / sr
  kick = np.sin(2 * np.pi * np.cumsum(45.0 + 110.0 * np.exp(-t / 0.04)) / sr)
  kick *= np.exp(-t / 0.12) * _ramps(t.size, sr, 0.0005, 0.03)
  t = np.arange(int(0.22 * sr)) / sr
  snare = (0.8 * _noise(rng, t.size, sr, lo=1000.0, hi=min(8000.0, 0.45 * sr))
           * np.exp(-t / 0.05) + 0.5 * np.sin(2 * np.pi * 190.0 * t) *
           np.exp(-t / 0.04))
  t = np.arange(int(0.06 * sr)) / sr
  hat = _noise(rng, t.size, sr, lo=min(6000.0, 0.35 * sr)) * np.exp(-t / 0.012)
  snare *= _ramps(snare.size, sr, 0.0005, 0.03)
  return {"kick": kick, "snare": snare, "hat": 0.5 * hat}


def _render_drums(a: dict[str, Any], n: int, sr: int,
                  rng: np.random.Generator) -> np.ndarray:
  """A backbeat: hi-hat eighths, kick on 1 and 3, snare on 2 and 4."""
  hits = _drum_hits(rng, sr)
  out = np.zeros(n)
  eighth = 30.0 / a["tempo_bpm"]
  extra_kick = _pick(rng, (None, 3, 5))
  for k in range(int(n / sr / eighth) + 1):
    i0 = int(k * eighth * sr)
    pos = k % 8
    _add(out, i0, hits["hat"] * (0.9 if pos % 2 == 0 else 0.6))
    if pos in (0, 4) or pos == extra_kick:
      _add(out, i0, hits["kick"] * rng.uniform(0.85, 1.0))
    if pos in (2, 6):
      _add(out, i0, hits["snare"] * rng.uniform(0.85, 1.0))
  return out


_INSTRUMENT_RENDERERS = {"guitar": _render_guitar, "organ": _render_organ,
                         "piano": _render_piano, "drums": _render_drums}


def _render_music(a: dict[str, Any], n: int, sr: int,
                  rng: np.random.Generator) -> np.ndarray:
  return _INSTRUMENT_RENDERERS[a["instrument"]](a, n, sr, rng)


# ----------------------------------------------------------------------------
# Environmental sounds.


def _render_rain(a: dict[str, Any], n: int, sr: int,
                 rng: np.random.Generator) -> np.ndarray:
  """Broadband hiss plus Poisson droplet impacts (decaying sinusoids)."""
  heavy = a["intensity"] == "heavy"
  hiss = _noise(rng, n, sr, tilt=-0.3, lo=400.0, hi=min(9000.0, 0.45 * sr))
  hiss *= 1.0 + 0.25 * _smooth(rng, n, sr, 1.5)
  nfft = _fast_len(n + int(0.02 * sr))
  kt = np.arange(int(0.015 * sr)) / sr
  spec = 0
  # Drops of a few sizes: each size rings at its own pitch.
  for _ in range(5):
    count = rng.poisson((120.0 if heavy else 25.0) * n / sr / 5)
    train = np.zeros(n)
    np.add.at(train, rng.integers(0, n, count), rng.lognormal(0.0, 0.5, count))
    f = min(rng.uniform(1500.0, 6000.0), 0.4 * sr)
    decay_s = rng.uniform(0.001, 0.003)
    kernel = np.sin(2 * np.pi * f * kt) * np.exp(-kt / decay_s)
    spec = spec + np.fft.rfft(train, nfft) * np.fft.rfft(kernel, nfft)
  drops = np.fft.irfft(spec, nfft)[:n]
  drops /= np.sqrt(np.mean(drops * drops)) + 1e-12
  return (1.0 if heavy else 0.4) * hiss + 0.8 * drops


def _render_siren(a: dict[str, Any], n: int, sr: int,
                  rng: np.random.Generator) -> np.ndarray:
  """A pitch sweep (slow wail or fast yelp); passing adds Doppler and swell."""
  t = np.arange(n) / sr
  lo, hi = rng.uniform(550.0, 750.0), rng.uniform(1250.0, 1550.0)
  period = rng.uniform(3.0, 5.0) if a["pattern"] == "wail" else rng.uniform(
      0.25, 0.4)
  freq = lo + (hi - lo) * (0.5 - 0.5 * np.cos(
      2 * np.pi * t / period + rng.uniform(0, 2 * np.pi)))
  level = np.ones(n)
  if a["motion"] == "passing":
    center, dur = rng.uniform(0.4, 0.6) * n / sr, n / sr
    freq *= 1.0 - 0.03 * np.tanh((t - center) / 0.5)
    level = 0.15 + np.exp(-(((t - center) / (0.25 * dur)) ** 2))
  table = _table([1.0, 0.0, 1 / 3, 0.0, 1 / 5], hi * 1.03, sr)
  return level * _oscillate(table, freq, n, sr)


def _render_dog_bark(a: dict[str, Any], n: int, sr: int,
                     rng: np.random.Generator) -> np.ndarray:
  """`count` barks: short voiced bursts with a pitch arch and breathy noise."""
  large = a["size"] == "large"
  base = rng.uniform(280.0, 420.0) if large else rng.uniform(600.0, 850.0)
  formants = np.array((500.0, 1300.0, 2600.0) if large else
                      (900.0, 2200.0, 3600.0)) * rng.uniform(0.95, 1.05)
  out = np.zeros(n + int(0.03 * sr))
  slot = n / a["count"]
  for i in range(a["count"]):
    length = rng.uniform(0.14, 0.24) if large else rng.uniform(0.09, 0.15)
    m = max(16, int(min(length * sr, 0.8 * slot)))
    start = int(i * slot + rng.uniform(0.0, max(0.0, slot - m - 1)))
    x = np.linspace(0.0, 1.0, m)
    f0 = base * (1.0 + 0.35 * np.sin(np.pi * x)) * (1.0 - 0.2 * x)
    env = (1.0 - np.exp(-x * m / (0.004 * sr))) * np.exp(-3.0 * x)
    _add(out, start, _voiced(rng, f0, env, formants, (150.0, 200.0, 300.0), sr,
                             breath=0.6))
  return out[:n]


def _render_alarm(a: dict[str, Any], n: int, sr: int,
                  rng: np.random.Generator) -> np.ndarray:
  """Regular electronic beeps, or a tone alternating high and low."""
  t = np.arange(n) / sr
  hz = a["pitch_hz"]
  table = _table([1.0, 0.0, 0.3, 0.0, 0.1], hz, sr)
  if a["pattern"] == "beeping":
    period = rng.uniform(0.3, 0.6)
    on = period * rng.uniform(0.4, 0.6)
    x = t % period
    gate = np.clip(np.minimum(x, on - x) / 0.005, 0.0, 1.0)
    return gate * _oscillate(table, hz, n, sr)
  period = rng.uniform(0.8, 1.2)
  x = t % period
  # Glide between the tones in 10 ms, so that the switch does not click.
  high = np.clip(np.minimum(x, period / 2 - x) / 0.01, 0.0, 1.0)
  freq = 0.75 * hz + 0.25 * hz * high
  return _oscillate(table, freq, n, sr)


def _render_engine(a: dict[str, Any], n: int, sr: int,
                   rng: np.random.Generator) -> np.ndarray:
  """A harmonic hum at the firing rate plus pulsing low rumble."""
  base = rng.uniform(25.0, 45.0)
  x = np.arange(n) / n
  if a["state"] == "accelerating":
    freq = base * (1.0 + 1.6 * x * x * (3 - 2 * x))
  else:
    freq = base * (1.0 + 0.03 * _smooth(rng, n, sr, 2.0))
  top = float(freq.max())
  count = max(1, int(min(2000.0, 0.45 * sr) / top))
  table = _table([1.0 / k ** 0.7 for k in range(1, count + 1)], top, sr,
                 phases=rng.uniform(0, 2 * np.pi, count))
  phase = np.cumsum(freq) / sr
  hum = _oscillate(table, freq, n, sr)
  rumble = _noise(rng, n, sr, tilt=-0.5, lo=30.0, hi=600.0)
  rumble *= 1.0 + 0.6 * np.sin(2 * np.pi * phase)
  return hum / (np.abs(table).max() + 1e-9) + 0.6 * rumble


_RENDERERS = {"speech": _render_speech, "music": _render_music,
              "rain": _render_rain, "siren": _render_siren,
              "dog_bark": _render_dog_bark, "alarm": _render_alarm,
              "engine": _render_engine}


# ----------------------------------------------------------------------------
# Scene rendering: mix, room, noise, channel.


def _active_rms(y: np.ndarray, sr: int) -> float:
  """RMS over the louder half of 50 ms frames (ignores gaps between sounds)."""
  frame = max(1, int(0.05 * sr))
  count = max(1, y.size // frame)
  power = np.mean(y[:count * frame].reshape(count, -1) ** 2, axis=1)
  power = np.sort(power)[count // 2:]
  return math.sqrt(float(power.mean())) + 1e-12


def _reverb(x: np.ndarray, rt60: float, sr: int,
            rng: np.random.Generator) -> np.ndarray:
  """Adds a synthetic exponential-decay room response (60 dB in rt60 s)."""
  length = int(min(1.5 * rt60, 2.0) * sr)
  t = np.arange(length) / sr
  ir = rng.standard_normal(length) * np.exp(-6.91 * t / rt60)
  ir[:int(rng.uniform(0.005, 0.02) * sr)] = 0.0
  ir /= np.sqrt(np.sum(ir * ir)) + 1e-12
  nfft = _fast_len(x.size + length)
  freqs = np.fft.rfftfreq(nfft, 1.0 / sr)
  # Air and wall absorption dull the tail.
  wet = np.fft.irfft(np.fft.rfft(x, nfft) * np.fft.rfft(ir, nfft) *
                     _band(freqs, None, 5000.0, 1), nfft)[:x.size]
  direct_to_reverb_db = 8.0 - 10.0 * rt60
  return x + 10.0 ** (-direct_to_reverb_db / 20) * wet


def _telephone(x: np.ndarray, sr: int) -> np.ndarray:
  """A 300-3400 Hz channel with 8-bit mu-law companding."""
  y = _filter(x, lambda f: _band(f, 300.0, 3400.0, 6), sr)[:x.size]
  y /= np.abs(y).max() + 1e-12
  mu = 255.0
  code = np.round(np.sign(y) * np.log1p(mu * np.abs(y)) / math.log1p(mu) * 127)
  return np.sign(code) * np.expm1(np.abs(code) / 127 * math.log1p(mu)) / mu


def render_scene(scene: Scene, *, sample_rate: int = SAMPLE_RATE,
                 seed: int) -> np.ndarray:
  """Synthesises a scene's audio.

  Args:
    scene: the scene (validated).
    sample_rate: output rate in Hz, 8000 to 48000.
    seed: non-negative int; the same scene and seed give identical audio.

  Returns:
    float32 waveform [round(duration_s * sample_rate)], finite, peak equal to
    the scene's `peak` trait (within [-1, 1]).
  """
  validate_scene(scene)
  _Num(8000, 48000, 0, integer=True).check("render_scene", "sample_rate",
                                           sample_rate)
  _Num(0, 2**63 - 1, 0, integer=True).check("render_scene", "seed", seed)
  sr, traits = int(sample_rate), _traits(scene)
  n = int(round(scene.duration_s * sr))
  mix = np.zeros(n)
  for i, event in enumerate(scene.events):
    a = _attrs(event)
    i0 = int(round(event.start_s * sr))
    m = min(n, int(round(event.end_s * sr))) - i0
    y = _RENDERERS[event.kind](a, m, sr, np.random.default_rng([seed, 1, i]))
    y = y[:m] * _ramps(m, sr, 0.005, 0.01)
    mix[i0:i0 + m] += y * (10.0 ** (a["gain_db"] / 20) / _active_rms(y, sr))
  rng = np.random.default_rng([seed, 2])
  if traits["rt60_s"] > 0:
    mix = _reverb(mix, traits["rt60_s"], sr, rng)
  outdoor = traits["setting"] == "outdoor"
  noise = _noise(rng, n, sr, tilt=-0.8 if outdoor else -0.5, lo=30.0,
                 hi=min(7000.0, 0.45 * sr))
  noise *= 1.0 + 0.2 * _smooth(rng, n, sr, 0.5)
  mix += noise * math.sqrt(float(np.mean(mix * mix))) * 10.0 ** (
      traits["noise_db"] / 20)
  if traits["telephone"]:
    mix = _telephone(mix, sr)
  peak = np.abs(mix).max()
  if not np.isfinite(peak) or peak <= 0:
    raise ValueError(f"scene {scene.clip_id!r} rendered silent or non-finite")
  return np.clip(mix * (traits["peak"] / peak), -1.0, 1.0).astype(np.float32)


# ----------------------------------------------------------------------------
# Captions.

_COUNT_WORDS = ("", "once", "twice", "three times", "four times", "five times",
                "six times", "seven times", "eight times", "nine times",
                "ten times", "eleven times", "twelve times")
_PERSON = {"male": ("man", "his"), "female": ("woman", "her")}
_PITCH_WORDS = ((105, "deep"), (135, "low"), (165, "moderately low"),
                (190, "mid-range"), (225, "moderately high"),
                (math.inf, "high"))
_INSTRUMENT_NOUNS = {
    "guitar": ("a plucked guitar", "an acoustic guitar",
               "a fingerpicked guitar"),
    "organ": ("an organ", "an electric organ", "a church-style organ"),
    "piano": ("a piano", "an acoustic piano", "a solo piano"),
    "drums": ("a drum kit", "a simple drum kit", "a set of drums"),
}
_INSTRUMENT_VERBS = {
    "guitar": ("plays arpeggiated chords",
               "picks out broken chords, each string ringing and decaying",
               "plays a gently plucked arpeggio pattern"),
    "organ": ("holds sustained chords", "plays long chords with a steady tone",
              "sustains a slow chord progression"),
    "piano": ("plays a melody over low bass notes",
              "plays a simple melody with a bass line",
              "plays a melodic line whose notes ring and slowly decay"),
    "drums": ("keeps a steady beat with kick, snare and hi-hat",
              "plays a straight backbeat of kick, snare and hi-hat",
              "lays down a simple rock-style beat"),
}
_MOODS = {"major": ("bright", "cheerful", "uplifting"),
          "minor": ("melancholic", "wistful", "somber")}


def _join(items: Sequence[str]) -> str:
  items = list(items)
  if len(items) <= 1:
    return "".join(items)
  return ", ".join(items[:-1]) + " and " + items[-1]


def _cap(text: str) -> str:
  return text[:1].upper() + text[1:]


def _key_name(key: str) -> str:
  return key.replace("#", "-sharp").replace("b", "-flat") if len(key) > 1 \
      else key


def _tempo_word(bpm: float) -> str:
  return ("slow" if bpm < 80 else "moderate" if bpm < 110 else
          "lively" if bpm < 135 else "fast")


def _when(rng: np.random.Generator, event: Event, duration: float) -> str:
  t = f"{event.start_s:.1f}"
  if event.start_s < 0.35:
    return _pick(rng, ("From the very start", "Right from the beginning",
                       "As the clip opens", "From the outset"))
  if event.start_s > 0.66 * duration:
    return _pick(rng, (f"Late in the clip, at about {t} seconds",
                       f"Towards the end, around the {t}-second mark"))
  return _pick(rng, (f"At about {t} seconds", f"Around {t} seconds in",
                     f"Roughly {t} seconds into the recording",
                     f"Shortly after the {t}-second mark"))


def _until(rng: np.random.Generator, event: Event, duration: float) -> str:
  if event.end_s >= duration - 0.35:
    return _pick(rng, ("continuing until the recording ends",
                       "carrying on to the end of the clip",
                       "lasting through to the end"))
  e = f"{event.end_s:.1f}"
  return _pick(rng, (f"stopping at about {e} seconds",
                     f"ending near the {e}-second mark",
                     f"falling silent at roughly {e} seconds"))


def _where(a: dict[str, Any], scene: Scene) -> str:
  """" in the background" for an event 8 dB or more below the loudest."""
  loudest = max(_attrs(e)["gain_db"] for e in scene.events)
  return " in the background" if a["gain_db"] <= loudest - 8.0 else ""


def _speakers(scene: Scene) -> dict[int, str]:
  """Speaker id -> sex, in order of first appearance."""
  out: dict[int, str] = {}
  for event in sorted(scene.events, key=lambda e: e.start_s):
    if event.kind == "speech":
      a = _attrs(event)
      out.setdefault(a["speaker"], a["sex"])
  return out


def _speech_sentences(rng: np.random.Generator, event: Event, scene: Scene,
                      introduced: set[int]) -> list[str]:
  """Describes one speaking turn (voice and delivery on first appearance)."""
  a = _attrs(event)
  person, pronoun = _PERSON[a["sex"]]
  first = a["speaker"] not in introduced
  if not first:
    subject = _pick(rng, (f"the {person} speaks again",
                          f"the {person} resumes talking",
                          f"the first {person} returns, speaking"))
  elif not introduced:
    subject = _pick(rng, (f"a {person} speaks", f"a {a['sex']} speaker talks",
                          f"an adult {a['sex']} voice begins to speak"))
  else:
    subject = _pick(rng, (f"a second speaker, a {person}, replies",
                          f"another speaker, this time a {person}, responds",
                          f"a {person} joins, speaking in turn"))
  introduced.add(a["speaker"])
  out = [f"{_when(rng, event, scene.duration_s)}, {subject}"
         f"{_where(a, scene)}, {_until(rng, event, scene.duration_s)}."]
  if first:
    f0 = a["pitch_hz"]
    pitch = next(word for top, word in _PITCH_WORDS if f0 < top)
    # A long vocal tract lowers the formants: a darker timbre.
    timbre = _pick(rng, ("full, chesty", "dark, warm") if a["vtl_cm"] >= 16.0
                   else ("light, clear", "bright, airy"))
    out.append(_pick(rng, (
        f"{_cap(pronoun)} voice is {pitch}, centred around {f0:.0f} Hz, with "
        f"a {timbre} resonance.",
        f"The voice sits at a {pitch} pitch of roughly {f0:.0f} Hz and has a "
        f"{timbre} timbre.")))
    rate = a["rate_sps"]
    pace = ("slow and deliberate" if rate < 3.8 else
            "measured and conversational" if rate < 5.0 else "brisk and rapid")
    out.append(_pick(rng, (
        f"The delivery is {pace}, made of vowel-like syllables grouped into "
        "short phrases, though no words are intelligible.",
        f"It sounds like speech at a {pace} pace, yet it carries no "
        "recognisable words, only babble-like syllables.")))
  if a["intonation"] == "question":
    out.append(_pick(rng, (
        f"{_cap(pronoun)} pitch rises at the close, giving the phrase a "
        "questioning inflection.",
        "The utterance ends on a rising tone, as if asking a question.")))
  else:
    out.append(_pick(rng, (
        "The pitch drifts downward over each phrase and falls at the end, as "
        "in a statement.",
        f"{_cap(pronoun)} intonation is declarative, settling lower at the "
        "end of the phrase.")))
  return out


def _music_sentences(rng: np.random.Generator, event: Event, scene: Scene,
                     first: bool) -> list[str]:
  """Describes one instrument; the first also gives key, mood and tempo."""
  a = _attrs(event)
  noun = _pick(rng, _INSTRUMENT_NOUNS[a["instrument"]])
  verb = _pick(rng, _INSTRUMENT_VERBS[a["instrument"]])
  if not first:
    verb = ("joins in and " if event.start_s >= 0.35 else
            "accompanies it and ") + verb
  out = [f"{_when(rng, event, scene.duration_s)}, {noun}{_where(a, scene)} "
         f"{verb}, {_until(rng, event, scene.duration_s)}."]
  if first:
    bpm, tempo = a["tempo_bpm"], _tempo_word(a["tempo_bpm"])
    melodic = any(_attrs(e)["instrument"] != "drums"
                  for e in scene.events if e.kind == "music")
    if melodic:
      key = f"{_key_name(a['key'])} {a['mode']}"
      mood = _pick(rng, _MOODS[a["mode"]])
      out.append(_pick(rng, (
          f"The music is in {key}, giving it a {mood} character, at a {tempo} "
          f"tempo of about {bpm:.0f} beats per minute.",
          f"Played in {key} at roughly {bpm:.0f} BPM, the piece feels {mood} "
          f"and {tempo}.")))
    else:
      out.append(f"The beat sits at about {bpm:.0f} BPM, a {tempo} tempo.")
  return out


def _sound_sentences(rng: np.random.Generator, event: Event,
                     scene: Scene) -> list[str]:
  """Describes one environmental event and its character."""
  a, kind = _attrs(event), event.kind
  if kind == "rain":
    subject = _pick(rng, ("light rain patters steadily", "a light shower of "
                          "rain falls", "gentle rain patters down")
                    if a["intensity"] == "light" else
                    ("heavy rain pours down", "a heavy downpour of rain roars",
                     "dense, heavy rain falls"))
    detail = _pick(rng, ("The rain forms a broadband hiss dotted with "
                         "individual droplet impacts.",
                         "Its texture is a continuous wash of noise with "
                         "scattered, crisp drops."))
  elif kind == "siren":
    subject = _pick(rng, ("an emergency siren wails", "a siren wails, sweeping "
                          "slowly up and down in pitch", "a wailing siren "
                          "sounds") if a["pattern"] == "wail" else
                    ("a siren yelps in rapid sweeps", "a fast yelping siren "
                     "sounds", "an emergency siren yelps urgently"))
    detail = _pick(rng, ("It grows louder as it approaches and fades as it "
                         "moves away, its pitch dropping slightly as it "
                         "passes.", "The siren swells as it draws near, then "
                         "recedes with a slight drop in pitch.")
                   if a["motion"] == "passing" else
                   ("Its level stays steady, suggesting a stationary source.",
                    "The siren holds a constant loudness throughout."))
  elif kind == "dog_bark":
    dog = _pick(rng, ("a large dog", "a big dog with a deep voice")
                if a["size"] == "large" else
                ("a small dog", "a little dog with a high-pitched yap"))
    subject = f"{dog} barks {_COUNT_WORDS[a['count']]}"
    detail = ("The bark is short and sharp, with a harsh, noisy onset."
              if a["count"] == 1 else
              _pick(rng, ("Each bark is short and sharp, with a harsh, noisy "
                          "onset.", "The barks are brief, punchy bursts "
                          "separated by short pauses.")))
  elif kind == "alarm":
    hz = a["pitch_hz"]
    if a["pattern"] == "beeping":
      subject = _pick(rng, ("an electronic alarm beeps repeatedly",
                            "an alarm beeps in a regular pattern",
                            "an alarm emits a series of sharp beeps"))
      tone = "piercing tones" if hz >= 1500 else "steady tones"
      detail = f"The beeps are {tone} at about {hz:.0f} Hz."
    else:
      subject = _pick(rng, ("an alarm alternates between two tones",
                            "a two-tone alarm sounds",
                            "an alarm cycles between a high and a low tone"))
      detail = (f"The tones sit at roughly {hz:.0f} and {0.75 * hz:.0f} Hz.")
  else:
    if a["state"] == "idling":
      subject = _pick(rng, ("an engine idles", "a motor idles with a low, "
                            "steady rumble", "an idling engine rumbles"))
      detail = "The engine's hum is low and steady, with a throbbing texture."
    else:
      subject = _pick(rng, ("an engine revs up", "an engine accelerates, its "
                            "rumble rising in pitch", "a motor winds up as it "
                            "accelerates"))
      detail = "Its low hum climbs steadily in pitch as the revs increase."
  return [f"{_when(rng, event, scene.duration_s)}, {subject}"
          f"{_where(a, scene)}, {_until(rng, event, scene.duration_s)}.",
          detail]


_SOUND_NOUNS = {"rain": "rain", "siren": "a siren", "dog_bark": "a barking dog",
                "alarm": "an alarm", "engine": "an engine"}


def _ensemble(scene: Scene) -> tuple[list[str], str]:
  """(distinct instruments in onset order, "a piano and drums")."""
  names = list(dict.fromkeys(
      _attrs(e)["instrument"]
      for e in sorted(scene.events, key=lambda e: e.start_s)
      if e.kind == "music"))
  return names, _join([n if n == "drums" else
                       ("an " if n == "organ" else "a ") + n for n in names])


def _source_nouns(scene: Scene) -> list[str]:
  """Noun phrases of the scene's distinct sources, in order of onset."""
  out: list[str] = []
  for event in sorted(scene.events, key=lambda e: e.start_s):
    if event.kind == "speech":
      speakers = list(_speakers(scene).values())
      noun = (f"a {speakers[0]} speaker" if len(speakers) == 1 else
              f"two speakers, {_speaker_pair(speakers)}")
    elif event.kind == "music":
      noun = _ensemble(scene)[1]
    else:
      noun = _SOUND_NOUNS[event.kind]
    if noun not in out:
      out.append(noun)
  return out


def _gerunds(scene: Scene, rng: np.random.Generator) -> list[str]:
  """Summary clauses ("a man speaking", ...) covering every event."""
  out: list[str] = []
  speakers = list(_speakers(scene).values())
  done = set()
  for event in sorted(scene.events, key=lambda e: e.start_s):
    a = _attrs(event)
    if event.kind == "speech" and "speech" not in done:
      done.add("speech")
      if len(speakers) == 1:
        out.append(_pick(rng, (f"a {_PERSON[speakers[0]][0]} speaking",
                               f"a {speakers[0]} voice speaking")))
      else:
        out.append(f"{_speaker_pair(speakers)} talking in turn")
    elif event.kind == "music" and "music" not in done:
      done.add("music")
      names, ensemble = _ensemble(scene)
      if names == ["drums"]:
        piece = f"a steady beat at about {a['tempo_bpm']:.0f} BPM"
      else:
        piece = (f"a {_pick(rng, _MOODS[a['mode']])} piece in "
                 f"{_key_name(a['key'])} {a['mode']}")
      out.append(f"{ensemble} playing {piece}{_where(a, scene)}")
    elif event.kind == "rain":
      out.append(f"{a['intensity']} rain falling{_where(a, scene)}")
    elif event.kind == "siren":
      how = "wailing" if a["pattern"] == "wail" else "yelping"
      out.append(f"a siren {how}" + (" as it passes by"
                                     if a["motion"] == "passing" else ""))
    elif event.kind == "dog_bark":
      out.append(f"a {a['size']} dog barking")
    elif event.kind == "alarm":
      out.append("an alarm beeping" if a["pattern"] == "beeping"
                 else "a two-tone alarm sounding")
    elif event.kind == "engine":
      out.append(f"an engine {a['state']}{_where(a, scene)}")
  return out


def _speaker_pair(sexes: Sequence[str]) -> str:
  """"a man and a woman", "two women", ... for two speakers."""
  if sexes[0] == sexes[1]:
    return "two men" if sexes[0] == "male" else "two women"
  return f"a {_PERSON[sexes[0]][0]} and a {_PERSON[sexes[1]][0]}"


def _acoustics(scene: Scene, rng: np.random.Generator) -> list[str]:
  """Sentences on the room, background noise and channel."""
  tr = _traits(scene)
  if tr["rt60_s"] <= 0:
    room = _pick(rng, ("The sound is dry with no room reflections, "
                       "consistent with an open outdoor space.",
                       "There is no audible reverberation; the open, dry "
                       "acoustics point to an outdoor setting."))
  elif tr["rt60_s"] < 0.6:
    room = _pick(rng, ("A short, noticeable reverberation trails each sound, "
                       "typical of a small indoor room.",
                       "The acoustics are those of a modest room: a brief "
                       "reverberant tail follows every sound."))
  else:
    room = _pick(rng, ("A long, diffuse reverberant tail suggests a large hall "
                       "or other spacious interior.",
                       "Sounds linger in a lengthy, hall-like reverberation, "
                       "indicating a large indoor space."))
  if tr["noise_db"] <= -42:
    noise = _pick(rng, ("The recording is clean, with no noticeable "
                        "background noise.", "The background is quiet and "
                        "free of hiss."))
  elif tr["noise_db"] <= -24:
    noise = _pick(rng, ("A faint background hiss sits beneath the main "
                        "sounds.", "A low level of steady background noise "
                        "is just audible."))
  else:
    noise = _pick(rng, ("A persistent layer of background noise is clearly "
                        "audible and partly masks quieter details.",
                        "Noticeable background noise runs throughout, "
                        "lowering the clarity of the recording."))
  out = [room, noise]
  if tr["telephone"]:
    out.append(_pick(rng, ("The audio is band-limited like a telephone line, "
                           "thin and lacking both deep bass and crisp treble, "
                           "with slight companding distortion.",
                           "A narrow, telephone-like frequency band gives the "
                           "sound a thin, lo-fi quality.")))
  elif rng.random() < 0.5:
    out.append("The full frequency range is intact.")
  return out


def _summary(scene: Scene, rng: np.random.Generator) -> str:
  """The strong caption: one or two sentences covering every event."""
  tr = _traits(scene)
  what = _join(_gerunds(scene, rng))
  if tr["rt60_s"] <= 0:
    room = _pick(rng, ("dry, open-air acoustics", "dry outdoor acoustics"))
  elif tr["rt60_s"] < 0.6:
    room = _pick(rng, ("short room reverberation", "a small-room echo"))
  else:
    room = _pick(rng, ("a long, hall-like reverberation",
                       "spacious hall reverb"))
  noise = ("no audible noise" if tr["noise_db"] <= -42 else
           "a faint background hiss" if tr["noise_db"] <= -24 else
           "noticeable background noise")
  phone = (_pick(rng, (" over a band-limited telephone channel",
                       " through a narrow, telephone-quality channel"))
           if tr["telephone"] else "")
  setting = tr["setting"]
  return _pick(rng, (
      f"An {setting} recording of {what}{phone}, with {room} and "
      f"{noise}.",
      f"{_cap(what)}, captured {setting}s{phone}; the sound has {room} and "
      f"{noise}.",
      f"In this {setting} clip, {what} can be heard{phone}, with {room} and "
      f"{noise}."))


def _overview(scene: Scene, rng: np.random.Generator) -> str:
  tr = _traits(scene)
  sources = _join(_source_nouns(scene))
  d = scene.duration_s
  return _pick(rng, (
      f"The recording is a roughly {d:.0f}-second {tr['setting']} clip "
      f"featuring {sources}.",
      f"This {d:.1f}-second audio clip captures {sources} in an "
      f"{tr['setting']} setting.",
      f"Over about {d:.0f} seconds, the audio presents {sources}, recorded "
      f"{tr['setting']}s."))


def caption_scene(scene: Scene, rng: np.random.Generator) -> tuple[str, str]:
  """Writes a captioner-style description of a scene.

  Args:
    scene: the scene.
    rng: random generator choosing among phrasings (consumed).

  Returns:
    (full_caption, strong_caption): the full caption is an overview, the
    events in onset order with their attributes, a paragraph on acoustics and
    channel, and a closing summary paragraph after a blank line; the strong
    caption is that summary paragraph.
  """
  validate_scene(scene)
  sentences = [_overview(scene, rng)]
  introduced: set[int] = set()
  music_seen = False
  order = sorted(range(len(scene.events)),
                 key=lambda i: (scene.events[i].start_s, i))
  for i in order:
    event = scene.events[i]
    if event.kind == "speech":
      sentences += _speech_sentences(rng, event, scene, introduced)
    elif event.kind == "music":
      sentences += _music_sentences(rng, event, scene, not music_seen)
      music_seen = True
    else:
      sentences += _sound_sentences(rng, event, scene)
  summary = _summary(scene, rng)
  full = "\n\n".join([" ".join(sentences), " ".join(_acoustics(scene, rng)),
                      summary])
  return full, summary


# ----------------------------------------------------------------------------
# Tags.

_KIND_TAGS = {  # kind -> (sources, event types, function)
    "rain": (("rain",), ("rainfall",), ("ambience",)),
    "siren": (("siren",), ("wailing",), ("emergency",)),
    "dog_bark": (("dog", "animal"), ("barking",), ("pet",)),
    "alarm": (("alarm",), ("beeping",), ("warning",)),
    "engine": (("engine", "vehicle"), ("rumble",), ("transportation",)),
}


def scene_tags(scene: Scene) -> list[str]:
  """Tags as the paper's LLM tagger gives them, derived from the scene.

  Args:
    scene: the scene.

  Returns:
    5 to 10 unique lowercase one-word tags (hyphens allowed), covering scene,
    sources, event types, production traits and function where possible.
  """
  validate_scene(scene)
  tr = _traits(scene)
  groups: list[list[str]] = [[tr["setting"]], [], [], [], []]
  sources, types, production, function = groups[1:]
  speakers = _speakers(scene)
  for event in sorted(scene.events, key=lambda e: e.start_s):
    a = _attrs(event)
    if event.kind == "speech":
      sources += ["speech", a["sex"]]
      types.append("speaking")
      function.append("conversation" if len(speakers) > 1 else "monologue")
    elif event.kind == "music":
      sources += ["music", a["instrument"]]
      if a["instrument"] == "drums":
        types.append("rhythm")
      else:
        types += ["melody", a["mode"]]
      if a["tempo_bpm"] >= 120:
        types.append("upbeat")
      function.append("entertainment")
    else:
      src, kinds, func = _KIND_TAGS[event.kind]
      if event.kind == "siren" and a["pattern"] == "yelp":
        kinds = ("yelping",)
      sources += src
      types += kinds
      function += func
  if tr["rt60_s"] > 0:
    production.append("reverberant")
  production.append("clean" if tr["noise_db"] <= -42 else
                    "noisy" if tr["noise_db"] > -24 else "hiss")
  if tr["telephone"]:
    production += ["telephone", "lo-fi"]
  groups = [list(dict.fromkeys(g)) for g in groups]
  # One tag per aspect first, then the rest aspect by aspect.
  ordered = [g[0] for g in groups if g] + [t for g in groups for t in g[1:]]
  tags = list(dict.fromkeys(ordered))[:10]
  for filler in ("recording", "synthetic", "audio"):
    if len(tags) >= 5:
      break
    if filler not in tags:
      tags.append(filler)
  return tags


# ----------------------------------------------------------------------------
# Weak labels.

WEAK_LABEL_NAMES = ("Speech", "Male speech", "Female speech", "Music",
                    "Musical instrument", "Guitar", "Keyboard (musical)",
                    "Drum", "Vehicle", "Engine", "Animal", "Dog", "Alarm",
                    "Siren", "Water", "Rain")
_WEAK = {name: i for i, name in enumerate(WEAK_LABEL_NAMES)}
_KIND_WEAK = {"rain": ("Water", "Rain"), "siren": ("Alarm", "Siren"),
              "dog_bark": ("Animal", "Dog"), "alarm": ("Alarm",),
              "engine": ("Vehicle", "Engine")}
_INSTRUMENT_WEAK = {"guitar": "Guitar", "organ": "Keyboard (musical)",
                    "piano": "Keyboard (musical)", "drums": "Drum"}


def true_weak_labels(scene: Scene) -> list[int]:
  """Returns the sorted ids in `WEAK_LABEL_NAMES` true of the scene."""
  validate_scene(scene)
  names: set[str] = set()
  for event in scene.events:
    a = _attrs(event)
    if event.kind == "speech":
      names |= {"Speech", "Male speech" if a["sex"] == "male"
                else "Female speech"}
    elif event.kind == "music":
      names |= {"Music", "Musical instrument",
                _INSTRUMENT_WEAK[a["instrument"]]}
    else:
      names |= set(_KIND_WEAK[event.kind])
  return sorted(_WEAK[n] for n in names)


def weak_labels(scene: Scene, rng: np.random.Generator, *,
                drop_rate: float = 0.1, swap_rate: float = 0.05) -> list[int]:
  """Coarse AudioSet-style labels with annotation noise.

  Each true label is independently dropped with probability `drop_rate`,
  replaced by a wrong class (one neither true nor already given) with
  probability `swap_rate`, and kept otherwise.

  Args:
    scene: the scene.
    rng: random generator (consumed).
    drop_rate: probability of dropping each true label.
    swap_rate: probability of swapping each true label to a wrong class.

  Returns:
    Sorted unique ids into `WEAK_LABEL_NAMES`.
  """
  for name, rate in (("drop_rate", drop_rate), ("swap_rate", swap_rate)):
    _Num(0.0, 1.0, 0.0).check("weak_labels", name, rate)
  if drop_rate + swap_rate > 1.0:
    raise ValueError("weak_labels: drop_rate + swap_rate must be <= 1")
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
        swapped.add(_pick(rng, wrong))
      continue
    kept.add(label)
  return sorted(kept | swapped)


# ----------------------------------------------------------------------------
# Evaluation tasks and corpus generators.

EVAL_TASKS: dict[str, tuple[str, tuple[str, ...]]] = {
    "speaker_sex": ("multiclass", ("female", "male")),
    "instrument": ("multiclass", INSTRUMENTS),
    "sound_event": ("multilabel", SOUND_KINDS),
}


def _check_task(task: Any) -> tuple[str, tuple[str, ...]]:
  if task not in EVAL_TASKS:
    raise ValueError(f"unknown task {task!r}; valid tasks: "
                     f"{', '.join(EVAL_TASKS)}")
  return EVAL_TASKS[task]


def sample_task_clip(task: str, rng: np.random.Generator, clip_id: str, *,
                     duration_s: float | None = None
                     ) -> tuple[Scene, list[int]]:
  """Draws a scene built for an evaluation task, and its targets.

  Args:
    task: a key of `EVAL_TASKS`.
    rng: random generator (consumed).
    clip_id: the scene's clip id.
    duration_s: clip length in [1, 10] s; None draws from
      `DEFAULT_DURATION_RANGE`.

  Returns:
    (scene, label_ids): label ids index the task's class names; one id for a
    multiclass task, the sorted present classes for a multilabel task.
  """
  _, names = _check_task(task)
  if duration_s is None:
    duration_s = _r2(rng.uniform(*DEFAULT_DURATION_RANGE))
  duration = _check_duration(duration_s)
  if task == "speaker_sex":
    labels = [int(rng.integers(len(names)))]
    events = _speech_events(rng, duration, num_speakers=1,
                            sex=names[labels[0]])
    domain = "speech"
  elif task == "instrument":
    labels = [int(rng.integers(len(names)))]
    events = _music_events(rng, duration, instruments=[names[labels[0]]])
    domain = "music"
  else:
    kinds = _random_kinds(rng, 1, 3)
    labels = [names.index(k) for k in kinds]
    events = _sound_events(rng, duration, kinds)
    domain = "sound"
  return _make_scene(rng, clip_id, duration, domain, events), labels


def _check_generator_args(num_clips: Any, seed: Any,
                          duration_range: Sequence[float]
                          ) -> tuple[float, float]:
  _Num(0, 10**9, 0, integer=True).check("generator", "num_clips", num_clips)
  _Num(0, 2**63 - 1, 0, integer=True).check("generator", "seed", seed)
  lo, hi = duration_range
  _check_duration(lo)
  _check_duration(hi)
  if lo > hi:
    raise ValueError(f"duration_range {duration_range} has min > max")
  return float(lo), float(hi)


def _duration(rng: np.random.Generator, lo: float, hi: float) -> float:
  return float(np.clip(_r2(rng.uniform(lo, hi)), lo, hi))


def _record(scene: Scene, rng: np.random.Generator) -> dict[str, Any]:
  """Renders and labels a scene into a record dict (see `generate_corpus`)."""
  audio = render_scene(scene, seed=int(rng.integers(2**32)))
  full, strong = caption_scene(scene, rng)
  return {"clip_id": scene.clip_id, "audio": audio,
          "duration": audio.size / SAMPLE_RATE, "source": SOURCE_NAME,
          "domain": scene.domain, "caption": strong, "caption_full": full,
          "tag_words": scene_tags(scene),
          "weak_labels": weak_labels(scene, rng)}


def generate_corpus(num_clips: int, seed: int, *,
                    duration_range: tuple[float, float] = DEFAULT_DURATION_RANGE
                    ) -> Iterator[dict[str, Any]]:
  """Yields a deterministic pre-training corpus of synthetic clips.

  Clip i depends only on (seed, i), so a longer corpus extends a shorter one.

  Args:
    num_clips: number of clips.
    seed: non-negative int.
    duration_range: (min, max) clip length in seconds, within [1, 10].

  Yields:
    Record dicts: "clip_id" (str), "audio" (float32 [N] at 16 kHz),
    "duration" (N / 16000), "source" ("audiopt-demo"), "domain", "caption"
    (strong caption), "caption_full", "tag_words" (list[str]) and
    "weak_labels" (list[int] into `WEAK_LABEL_NAMES`).
  """
  lo, hi = _check_generator_args(num_clips, seed, duration_range)
  for i in range(num_clips):
    rng = np.random.default_rng([0, seed, i])
    clip_id = f"demo{seed}-{i:06d}"
    scene = sample_scene(rng, clip_id, duration_s=_duration(rng, lo, hi))
    yield _record(scene, rng)


def generate_task(task: str, num_clips: int, seed: int, *,
                  duration_range: tuple[float, float] = DEFAULT_DURATION_RANGE
                  ) -> Iterator[dict[str, Any]]:
  """Yields a deterministic evaluation set for one of `EVAL_TASKS`.

  Args:
    task: a key of `EVAL_TASKS`.
    num_clips: number of clips.
    seed: non-negative int.
    duration_range: (min, max) clip length in seconds, within [1, 10].

  Yields:
    Record dicts as `generate_corpus` gives, plus "label_ids" (list[int] into
    the task's class names).
  """
  _check_task(task)
  lo, hi = _check_generator_args(num_clips, seed, duration_range)
  stream = 1 + list(EVAL_TASKS).index(task)
  for i in range(num_clips):
    rng = np.random.default_rng([stream, seed, i])
    scene, labels = sample_task_clip(task, rng, f"{task}{seed}-{i:06d}",
                                     duration_s=_duration(rng, lo, hi))
    yield {**_record(scene, rng), "label_ids": labels}
