"""Music: instruments, keys, scales, chord progressions, drum kits, genres.

A piece is a set of parts (one event each) sharing genre, tempo, key, scale,
chord progression, meter and swing; each part has an instrument and a role
(lead melody, chords, bass line or drums). The chord of every bar follows
from the shared attributes alone, so parts rendered apart stay in harmony.

Instruments:

- guitar: a Karplus-Strong plucked string (strummed or arpeggiated);
- piano: two slightly detuned additive strings whose tone mellows as the
  note decays;
- organ: additive drawbar tones, sustained, with tremolo;
- flute: a near-sinusoidal tone with delayed vibrato and breath noise;
- bass: subtractive, a sawtooth whose brightness falls after the pluck;
- synth: detuned sawtooths with a filter-like brightness sweep;
- strings: a bowed sawtooth section with vibrato through a body resonance;
- marimba: three inharmonic decaying modes and a mallet click;
- voice: sung vowels from the speech module's source-filter model;
- drums: kits (acoustic, electronic, brush) of synthesised kick, snare or
  clap, hi-hats, ride and toms, playing a genre's pattern at the tempo.

Genres are rules over all of these (`GENRES`): tempo range, scales,
progressions, meters, swing, drum pattern and kit, and which instruments
take which roles with what probability.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, Callable, NamedTuple

import numpy as np
from scipy import signal

from audiopt.data.demo_world import core
from audiopt.data.demo_world import dsp
from audiopt.data.demo_world import speech

INSTRUMENTS = ("guitar", "piano", "organ", "flute", "bass", "synth",
               "strings", "marimba", "voice", "drums")
PITCHED = INSTRUMENTS[:-1]
ROLES = ("lead", "chords", "bass", "drums")
KITS = ("acoustic", "electronic", "brush")
KEY_NAMES = ("C", "C#", "D", "Eb", "E", "F", "F#", "G", "Ab", "A", "Bb", "B")
SCALES = {"major": (0, 2, 4, 5, 7, 9, 11), "minor": (0, 2, 3, 5, 7, 8, 10),
          "dorian": (0, 2, 3, 5, 7, 9, 10),
          "major_pentatonic": (0, 2, 4, 7, 9),
          "minor_pentatonic": (0, 3, 5, 7, 10),
          "blues": (0, 3, 5, 6, 7, 10)}
# The diatonic scale whose triads harmonise each melodic scale, and whether
# the music sounds major or minor.
HARMONY = {"major": "major", "minor": "minor", "dorian": "dorian",
           "major_pentatonic": "major", "minor_pentatonic": "minor",
           "blues": "major"}
QUALITY = {"major": "major", "minor": "minor", "dorian": "minor",
           "major_pentatonic": "major", "minor_pentatonic": "minor",
           "blues": "minor"}
# Progressions: scale degrees (0 = tonic) and bars per chord.
PROGRESSIONS = {
    "I-V-vi-IV": ((0, 4, 5, 3), 1), "I-IV-V-IV": ((0, 3, 4, 3), 1),
    "I-vi-IV-V": ((0, 5, 3, 4), 1), "ii-V-I-vi": ((1, 4, 0, 5), 1),
    "I-IV-V-I": ((0, 3, 4, 0), 1), "i-VI-III-VII": ((0, 5, 2, 6), 1),
    "i-iv-v-i": ((0, 3, 4, 0), 1),
    "twelve-bar": ((0, 0, 0, 0, 3, 3, 0, 0, 4, 3, 0, 4), 1),
    "I-IV-drone": ((0, 3), 2),
}


class Genre(NamedTuple):
  """A genre as rules over tempo, harmony, rhythm and instrumentation."""
  tempo: tuple[int, int]
  scales: tuple[str, ...]
  progressions: tuple[str, ...]
  meters: tuple[int, ...]
  swing: float                     # probability of a swung feel
  pattern: str | None              # drum pattern (None: no drums)
  kits: tuple[str, ...]
  parts: tuple[tuple[str, tuple[str, ...], float], ...]  # role, options, p
  rhythm: tuple[float, ...]        # melody note lengths, in beats
  comp: str                        # how chords are played: strum, arpeggio,
                                   # block, sustain, offbeat
  words: tuple[str, ...]           # how a listener describes its style


GENRES: dict[str, Genre] = {
    "rock": Genre((105, 150), ("major", "minor"),
                  ("I-V-vi-IV", "I-IV-V-IV", "i-VI-III-VII"), (4,), 0.0,
                  "rock", ("acoustic",),
                  (("chords", ("guitar",), 1.0), ("bass", ("bass",), 0.9),
                   ("drums", ("drums",), 1.0),
                   ("lead", ("voice", "guitar", "organ"), 0.45)),
                  (0.5, 1, 1, 2), "strum", ("driving", "energetic")),
    "pop": Genre((92, 126), ("major", "major_pentatonic"),
                 ("I-V-vi-IV", "I-vi-IV-V"), (4,), 0.0, "pop",
                 ("electronic", "acoustic"),
                 (("chords", ("piano", "synth", "guitar"), 1.0),
                  ("bass", ("bass",), 0.9), ("drums", ("drums",), 0.95),
                  ("lead", ("voice", "synth", "flute"), 0.6)),
                 (0.5, 1, 1, 2), "block", ("catchy", "polished")),
    "jazz": Genre((88, 160), ("dorian", "major"), ("ii-V-I-vi",), (4,), 0.9,
                  "swing", ("brush", "acoustic"),
                  (("chords", ("piano",), 1.0), ("bass", ("bass",), 1.0),
                   ("drums", ("drums",), 0.85),
                   ("lead", ("flute", "voice", "marimba"), 0.5)),
                  (0.5, 0.5, 1, 1.5), "offbeat", ("relaxed", "swinging")),
    "classical": Genre((60, 112), ("major", "minor"),
                       ("I-IV-V-I", "i-iv-v-i", "I-vi-IV-V"), (3, 4), 0.0,
                       None, (),
                       (("chords", ("piano", "strings", "organ"), 1.0),
                        ("lead", ("flute", "strings", "piano"), 0.7)),
                       (0.5, 1, 1, 2), "arpeggio", ("elegant", "formal")),
    "electronic": Genre((118, 136), ("minor", "minor_pentatonic"),
                        ("i-VI-III-VII", "i-iv-v-i"), (4,), 0.0, "four",
                        ("electronic",),
                        (("chords", ("synth",), 0.9), ("bass", ("bass",), 1.0),
                         ("drums", ("drums",), 1.0),
                         ("lead", ("synth", "voice"), 0.6)),
                        (0.25, 0.5, 0.5, 1), "offbeat",
                        ("pulsing", "hypnotic")),
    "folk": Genre((80, 122), ("major", "major_pentatonic"),
                  ("I-IV-V-I", "I-V-vi-IV"), (3, 4), 0.2, "folk",
                  ("acoustic", "brush"),
                  (("chords", ("guitar",), 1.0),
                   ("lead", ("flute", "voice", "strings"), 0.7),
                   ("drums", ("drums",), 0.25), ("bass", ("bass",), 0.3)),
                  (0.5, 1, 1.5), "arpeggio", ("warm", "earthy")),
    "blues": Genre((66, 100), ("blues", "minor_pentatonic"), ("twelve-bar",),
                   (4,), 1.0, "shuffle", ("acoustic",),
                   (("chords", ("guitar", "piano", "organ"), 1.0),
                    ("bass", ("bass",), 0.85), ("drums", ("drums",), 0.8),
                    ("lead", ("guitar", "voice", "organ"), 0.5)),
                   (1, 0.5, 1.5, 2), "strum", ("gritty", "soulful")),
    "ambient": Genre((56, 82), ("major", "minor", "major_pentatonic"),
                     ("I-IV-drone", "i-VI-III-VII"), (4,), 0.0, None, (),
                     (("chords", ("organ", "synth", "strings"), 1.0),
                      ("lead", ("flute", "marimba", "piano", "voice"), 0.6)),
                     (2, 3, 4), "sustain", ("spacious", "dreamy")),
}
GENRE_NAMES = tuple(GENRES)

ATTRIBUTES: dict[str, core.Spec] = {
    "music": {
        "instrument": core.Cat(INSTRUMENTS, "piano"),
        "role": core.Cat(ROLES, "lead"),
        "genre": core.Cat(GENRE_NAMES, "pop"),
        "tempo_bpm": core.Num(40.0, 220.0, 100.0),
        "key": core.Cat(KEY_NAMES, "C"),
        "scale": core.Cat(tuple(SCALES), "major"),
        "progression": core.Cat(tuple(PROGRESSIONS), "I-V-vi-IV"),
        "meter": core.Cat((3, 4), 4),
        "swing": core.Cat((False, True), False),
        "kit": core.Cat(KITS, "acoustic"),
        "octave": core.Num(-2, 2, 0, integer=True),
        "singer": core.Cat(speech.SEXES, "female"),
        "bar0": core.Num(0, 64, 0, integer=True),
        **core.GAIN},
}
PIECE_KEYS = ("genre", "tempo_bpm", "key", "scale", "progression", "meter",
              "swing")
# Lowest MIDI note of each role's register (before the octave shift).
_REGISTER = {"lead": 62, "chords": 50, "bass": 31}
_LEAD_REGISTER = {"flute": 72, "marimba": 64, "piano": 64, "strings": 64,
                  "synth": 62, "organ": 60, "guitar": 57}


# ----------------------------------------------------------------------------
# Sampling.


def sample_piece(d: core.Draw, *, genre: str | None = None,
                 instruments: Sequence[str] | None = None,
                 ) -> list[dict[str, Any]]:
  """Draws a piece: the attributes of each part (no time spans).

  Args:
    d: the draw.
    genre: fixes the genre; None draws one.
    instruments: fixes the instruments (roles follow the genre where it
      uses them, else lead or chords); None draws parts by the genre's rules.

  Returns:
    One attribute dict per part, sharing `PIECE_KEYS`; empty when the
    restrictions leave no instrument.
  """
  genre = genre or d.pick("music", "genre", GENRE_NAMES)
  g = GENRES[genre]
  shared = {
      "genre": genre,
      "tempo_bpm": float(d.rng.integers(g.tempo[0], g.tempo[1] + 1)),
      "key": d.pick("music", "key", KEY_NAMES),
      "scale": d.pick("music", "scale", g.scales),
      "progression": d.pick("music", "progression", g.progressions),
      "meter": d.pick("music", "meter", g.meters)}
  if g.swing in (0.0, 1.0):
    shared["swing"] = d.pick("music", "swing", (g.swing == 1.0,))
  else:
    shared["swing"] = d.pick("music", "swing", (False, True),
                             p=(1 - g.swing, g.swing))
  kit = d.pick("music", "kit", g.kits or KITS)
  parts = []
  used: set[str] = set()
  if instruments is None:
    for role, options, p in g.parts:
      if not d.chance(p):
        continue
      options = [o for o in d.instruments(options) if o not in used]
      if options:
        parts.append((role, core.pick(d.rng, options)))
        used.add(parts[-1][1])
    if not parts:
      options = d.instruments(PITCHED) or d.instruments(("drums",))
      if options:
        instrument = core.pick(d.rng, options)
        parts.append(("drums" if instrument == "drums" else "lead",
                      instrument))
  else:
    for instrument in instruments:
      core.check_name("instrument", instrument, INSTRUMENTS)
      roles = [r for r, options, _ in g.parts if instrument in options]
      if instrument in ("drums", "bass"):
        role = "drums" if instrument == "drums" else "bass"
      elif roles:
        role = roles[0]
      elif instrument in ("flute", "voice", "marimba"):
        role = "lead"
      else:
        role = core.pick(d.rng, ("lead", "chords"))
      parts.append((role, instrument))
  out = []
  for role, instrument in parts:
    octave = 0
    if role == "lead" and instrument not in ("voice", "flute"):
      octave = int(d.rng.integers(-1, 2))
    out.append({"instrument": instrument, "role": role, **shared,
                "kit": kit, "octave": octave,
                "singer": d.pick("music", "singer", speech.SEXES),
                "bar0": 0, "gain_db": 0.0})
  return out


def bar_seconds(a: dict[str, Any]) -> float:
  """Length in seconds of one bar of a part with attributes `a`."""
  return 60.0 / a["tempo_bpm"] * a["meter"]


# ----------------------------------------------------------------------------
# Harmony and note lists: (start_s, length_s, midi, velocity).


def _tonic(key: str, lowest: int) -> int:
  """The MIDI tonic of `key` in [lowest, lowest + 12)."""
  return lowest + (KEY_NAMES.index(key) - lowest) % 12


def _degree(scale: Sequence[int], k: int) -> int:
  """Semitones above the tonic of degree k of `scale` (k may be negative or
  exceed the scale)."""
  n = len(scale)
  return scale[k % n] + 12 * (k // n)


def chords(a: dict[str, Any], dur: float) -> list[tuple[float, float,
                                                        list[int]]]:
  """The chords a part hears: (start_s, length_s, semitones above the tonic).

  Times are from the part's start; the progression is counted from the
  piece's first bar, so parts starting at different bars agree.
  """
  degrees, bars_per = PROGRESSIONS[a["progression"]]
  parent = SCALES[HARMONY[a["scale"]]]
  bar = bar_seconds(a)
  seventh = a["genre"] == "jazz" or (a["genre"] == "blues")
  out, t, k = [], 0.0, a["bar0"]
  while t < dur - 1e-6:
    deg = degrees[(k // bars_per) % len(degrees)]
    tones = [_degree(parent, deg + j) for j in ((0, 2, 4, 6) if seventh
                                                 else (0, 2, 4))]
    length = bar * (bars_per - k % bars_per)
    out.append((t, min(length, dur - t), tones))
    t += length
    k += bars_per - k % bars_per
  return out


def _onsets(a: dict[str, Any], start: float, length: float,
            step_beats: float) -> list[float]:
  """Onsets every `step_beats` within [start, start + length), swung."""
  beat = 60.0 / a["tempo_bpm"]
  step = beat * step_beats
  out, k = [], 0
  while k * step < length - 1e-6:
    t = k * step
    if a["swing"] and abs(step_beats - 0.5) < 1e-9 and k % 2 == 1:
      t += step / 3.0
    out.append(start + t)
    k += 1
  return out


def _chord_notes(a, dur, rng, comp) -> list[tuple[float, float, int, float]]:
  tonic = _tonic(a["key"], _REGISTER["chords"] + 12 * a["octave"])
  beat = 60.0 / a["tempo_bpm"]
  out = []
  for t0, length, tones in chords(a, dur):
    midis = [tonic + x for x in tones]
    if comp == "sustain" or (comp == "block" and a["instrument"] in
                             ("organ", "strings", "synth")):
      out += [(t0, length, m, 0.8) for m in midis]
    elif comp == "block":
      for t in _onsets(a, t0, length, 2.0 if a["meter"] == 4 else 3.0):
        out += [(t, 2 * beat, m, rng.uniform(0.7, 0.9)) for m in midis]
    elif comp == "strum":
      for t in _onsets(a, t0, length, 1.0):
        for j, m in enumerate(midis + [midis[0] + 12]):
          out.append((t + 0.012 * j, beat, m, rng.uniform(0.6, 0.85)))
    elif comp == "offbeat":
      for t in _onsets(a, t0, length, 1.0):
        if rng.random() < 0.7:
          out += [(t + beat / 2, beat / 2, m, rng.uniform(0.6, 0.8))
                  for m in midis]
    else:  # arpeggio
      order = midis + [midis[0] + 12] + midis[1:][::-1]
      for k, t in enumerate(_onsets(a, t0, length, 0.5)):
        out.append((t, beat, order[k % len(order)], rng.uniform(0.6, 0.9)))
  return out


def _bass_notes(a, dur, rng) -> list[tuple[float, float, int, float]]:
  tonic = _tonic(a["key"], _REGISTER["bass"] + 12 * a["octave"])
  parent = SCALES[HARMONY[a["scale"]]]
  beat = 60.0 / a["tempo_bpm"]
  out = []
  for t0, length, tones in chords(a, dur):
    root = tonic + tones[0]
    if a["genre"] in ("jazz", "blues"):  # walking quarters
      walk = (tones[0], tones[1], tones[2],
              tones[2] + (2 if rng.random() < 0.5 else -1))
      for k, t in enumerate(_onsets(a, t0, length, 1.0)):
        out.append((t, beat * 0.9, tonic + walk[k % 4],
                    rng.uniform(0.75, 0.95)))
    elif a["genre"] == "electronic":
      for t in _onsets(a, t0, length, 1.0):
        out.append((t + beat / 2, beat / 2, root, rng.uniform(0.8, 1.0)))
    else:
      step = 0.5 if a["genre"] == "rock" else 1.0
      for k, t in enumerate(_onsets(a, t0, length, step)):
        fifth = root + _degree(parent, 4) - _degree(parent, 0)
        out.append((t, beat * step * 0.95,
                    fifth if k % 4 == 2 and rng.random() < 0.5 else root,
                    rng.uniform(0.75, 0.95)))
  return out


def _melody(a, dur, rng) -> list[tuple[float, float, int, float]]:
  g = GENRES[a["genre"]]
  scale = SCALES[a["scale"]]
  low = (_LEAD_REGISTER.get(a["instrument"], _REGISTER["lead"])
         if a["instrument"] != "voice" else
         (60 if a["singer"] == "female" else 50)) + 12 * a["octave"]
  tonic = _tonic(a["key"], low)
  beat = 60.0 / a["tempo_bpm"]
  timeline = chords(a, dur)
  out, t, k = [], 0.0, int(rng.integers(0, len(scale)))
  while t < dur - 0.05:
    length = beat * core.pick(rng, g.rhythm)
    if out and rng.random() < 0.1:  # a rest
      t += length
      continue
    here = next((c for c in timeline if c[0] <= t < c[0] + c[1]),
                timeline[-1])
    midi = tonic + _degree(scale, k)
    if abs(t - here[0]) < 1e-6 and rng.random() < 0.6:
      # Land on a chord tone at a chord change.
      options = [tonic + x + 12 * o for x in here[2] for o in (0, 1)]
      midi = min(options, key=lambda m: abs(m - midi))
    out.append((t, min(length, dur - t), midi, rng.uniform(0.65, 1.0)))
    t += length
    k = int(np.clip(k + core.pick(rng, (-2, -1, -1, 0, 1, 1, 2)),
                    -2, 2 * len(scale)))
  return out


# ----------------------------------------------------------------------------
# Instrument voices: note(f0_hz, m, sounding, rng, sr) -> [m].


def _pluck(f0: float, m: int, sounding: int, rng: np.random.Generator,
           sr: int) -> np.ndarray:
  """Karplus-Strong: a noise burst circulating in a lossy delay line."""
  p = max(2, int(round(sr / f0 - 0.5)))  # the averager adds half a sample
  t60 = float(np.clip(3.0 * math.sqrt(110.0 / f0), 0.6, 3.5))
  loss = 10.0 ** (-3.0 * p / (sr * t60))
  burst = rng.uniform(-1.0, 1.0, p + 2)
  burst = 0.5 * (burst[1:] + burst[:-1])  # a softer pick
  if p < 48:
    # Short delay lines: one IIR pass is cheaper than the period loop.
    x = np.zeros(max(m, p + 1))
    x[:p + 1] = burst
    den = np.zeros(p + 2)
    den[0], den[p], den[p + 1] = 1.0, -0.5 * loss, -0.5 * loss
    y = signal.lfilter([1.0], den, x)
  else:
    y = np.zeros(max(m, p + 1))
    y[:p + 1] = burst
    for s in range(p + 1, y.size, p):
      e = min(s + p, y.size)
      y[s:e] = loss * 0.5 * (y[s - p:e - p] + y[s - p - 1:e - p - 1])
  y = y[:m]
  if sounding < m:
    y[sounding:] *= np.exp(-np.arange(m - sounding) / (0.04 * sr))
  return y


_PIANO_BRIGHT = tuple(1.0 / k ** 0.7 for k in range(1, 11))
_PIANO_MELLOW = tuple(1.0 / k ** 2.0 for k in range(1, 11))


def _piano(f0, m, sounding, rng, sr):
  t = np.arange(m) / sr
  tau = float(np.clip(0.9 * math.sqrt(262.0 / f0), 0.3, 2.5))
  env = np.exp(-t / tau) * np.minimum(1.0, t / 0.003)
  env[sounding:] *= np.exp(-(t[sounding:] - sounding / sr) / 0.05)
  w = np.exp(-t / 0.15)
  bucket = int(f0 * 1.0015) + 1
  bright = dsp.cached_table(_PIANO_BRIGHT, bucket, sr)
  mellow = dsp.cached_table(_PIANO_MELLOW, bucket, sr)
  mix = 0.0
  for detune, phase in ((1.0, 0.0), (1.0015, 0.3)):  # two strings
    index = dsp.phase_index(f0 * detune, m, sr, bright.size, phase)
    mellow_part = dsp.read(mellow, index)
    mix = mix + mellow_part + w * (dsp.read(bright, index) - mellow_part)
  return env * mix


_DRAWBARS = (1.0, 0.8, 0.5, 0.45, 0.0, 0.25, 0.0, 0.15)


def _organ(f0, m, sounding, rng, sr):
  y = dsp.oscillate(dsp.cached_table(_DRAWBARS, int(f0) + 1, sr), f0, m, sr,
                    rng.random())
  return y * dsp.ramps(m, sr, 0.012, 0.05)


_FLUTE = (1.0, 0.3, 0.12, 0.05, 0.02)


def _flute(f0, m, sounding, rng, sr):
  t = np.arange(m) / sr
  vib = 1.0 + 0.006 * np.sin(2 * np.pi * rng.uniform(4.5, 5.5) * t) * \
      np.clip((t - 0.2) / 0.3, 0.0, 1.0)
  y = dsp.oscillate(dsp.cached_table(_FLUTE, int(f0 * 1.01) + 1, sr),
                    f0 * vib, m, sr)
  env = dsp.ramps(m, sr, 0.06, 0.06) * (1.0 + 0.3 * np.exp(-t / 0.05))
  breath = dsp.white_band(rng, m, sr, 1000.0, 6000.0)
  return env * (y + breath * (0.05 + 0.25 * np.exp(-t / 0.04)))


_SAW_BRIGHT = tuple(1.0 / k for k in range(1, 25))
_SAW_DULL = tuple(1.0 / k ** 2.5 for k in range(1, 25))


def _bass(f0, m, sounding, rng, sr):
  t = np.arange(m) / sr
  w = np.exp(-t / 0.07)
  bucket = int(f0) + 1
  bright = dsp.cached_table(_SAW_BRIGHT, bucket, sr)
  index = dsp.phase_index(f0, m, sr, bright.size)
  dull = dsp.read(dsp.cached_table(_SAW_DULL, bucket, sr), index)
  y = dull + w * (dsp.read(bright, index) - dull)
  env = np.exp(-t / 0.9) * dsp.ramps(m, sr, 0.004, 0.04)
  env[sounding:] *= np.exp(-(t[sounding:] - sounding / sr) / 0.03)
  return env * y


def _synth(f0, m, sounding, rng, sr, pad=False):
  """Two detuned sawtooths; the brightness sweep stands in for a filter."""
  t = np.arange(m) / sr
  w = (1.0 - np.exp(-t / 0.4)) if pad else np.exp(-t / 0.25)
  bucket = int(f0 * 1.01) + 1
  bright = dsp.cached_table(_SAW_BRIGHT, bucket, sr)
  dull = dsp.cached_table(_SAW_DULL, bucket, sr)
  y = 0.0
  for detune in (0.996, 1.004):
    index = dsp.phase_index(f0 * detune, m, sr, bright.size, rng.random())
    d = dsp.read(dull, index)
    y = y + d + w * (dsp.read(bright, index) - d)
  return y * dsp.ramps(m, sr, 0.25 if pad else 0.008, 0.08)


_STRINGS = tuple(1.0 / k ** 1.1 for k in range(1, 16))


def _strings(f0, m, sounding, rng, sr):
  """A small bowed section: two players a few cents apart, with vibrato."""
  t = np.arange(m) / sr
  vib = 1.0 + 0.004 * np.sin(2 * np.pi * rng.uniform(5.0, 6.0) * t + 6.28 *
                             rng.random())
  tab = dsp.cached_table(_STRINGS, int(f0 * 1.01) + 1, sr)
  freq = f0 * vib
  y = dsp.oscillate(tab, freq, m, sr)
  y += 0.7 * dsp.oscillate(tab, freq * 1.003, m, sr, 0.4)
  return y * dsp.ramps(m, sr, rng.uniform(0.1, 0.25), 0.12)


def _marimba(f0, m, sounding, rng, sr):
  t = np.arange(m) / sr
  y = np.zeros(m)
  scale = math.sqrt(262.0 / f0)
  for ratio, amp, tau in ((1.0, 1.0, 0.5), (3.93, 0.35, 0.12),
                          (9.2, 0.12, 0.04)):
    if ratio * f0 < 0.45 * sr:
      y += amp * np.sin(2 * np.pi * ratio * f0 * t) * np.exp(
          -t / (tau * scale))
  click = min(m, int(0.003 * sr))
  y[:click] += 0.3 * rng.standard_normal(click)
  return y


def _voice(f0, m, sounding, rng, sr, singer="female"):
  t = np.arange(m) / sr
  vib = 1.0 + 0.015 * np.sin(2 * np.pi * 5.5 * t) * np.clip(t / 0.3, 0, 1)
  vtl = 14.5 if singer == "female" else 17.0
  vowel = speech.VOWELS[core.pick(rng, "aoeui")]
  formants = [f * 17.0 / vtl for f in vowel] + [3500.0 * 17.0 / vtl]
  return speech.voiced(rng, f0 * vib, dsp.ramps(m, sr, 0.04, 0.06),
                       formants, (90.0, 110.0, 150.0, 200.0), sr,
                       breath=0.15, effort=0.3)


_VOICES: dict[str, Callable[..., np.ndarray]] = {
    "guitar": _pluck, "piano": _piano, "organ": _organ, "flute": _flute,
    "bass": _bass, "synth": _synth, "strings": _strings, "marimba": _marimba,
    "voice": _voice}
# Seconds a note rings on after its written length.
_TAIL = {"guitar": 0.35, "piano": 0.25, "organ": 0.05, "flute": 0.06,
         "bass": 0.05, "synth": 0.1, "strings": 0.15, "marimba": 0.4,
         "voice": 0.06}


def _body(y: np.ndarray, sr: int) -> np.ndarray:
  """A violin-family body: resonances near 280 Hz, 500 Hz and 3 kHz."""
  return y + 0.6 * signal.sosfilt(dsp.resonator_sos(
      (280.0, 500.0, 3000.0), (80.0, 120.0, 600.0), sr), y)


def _render_notes(a: dict[str, Any], notes, n: int, sr: int,
                  rng: np.random.Generator) -> np.ndarray:
  instrument = a["instrument"]
  voice = _VOICES[instrument]
  kwargs: dict[str, Any] = {}
  if instrument == "voice":
    kwargs["singer"] = a["singer"]
  if instrument == "synth":
    kwargs["pad"] = a["role"] == "chords"
  out = np.zeros(n)
  cache: dict[tuple[int, int, int], np.ndarray] = {}
  tail = _TAIL[instrument]
  for t0, length, midi, velocity in notes:
    i0 = int(round(t0 * sr))
    sounding = max(1, int(length * sr))
    m = min(n - i0, sounding + int(tail * sr))
    if m <= 0:
      continue
    key = (midi, m, min(sounding, m))
    y = cache.get(key)
    if y is None:
      y = voice(dsp.hz(midi), m, min(sounding, m), rng, sr, **kwargs)
      if instrument not in ("voice", "flute"):  # breath, words vary
        cache[key] = y
    dsp.add(out, i0, velocity * y)
  if instrument == "strings":
    out = _body(out, sr)
  if instrument == "organ":
    out *= 1.0 + 0.06 * np.sin(2 * np.pi * 5.8 * np.arange(n) / sr)
  return out


# ----------------------------------------------------------------------------
# Drums.

# 16 steps per 4/4 bar ("x" hit, "o" accent-free ghost), 12 per 3/4 bar.
PATTERNS = {
    "rock": {"kick": "x.......x.x.....", "snare": "....x.......x...",
             "hat": "x.x.x.x.x.x.x.x."},
    "pop": {"kick": "x.....x...x.....", "snare": "....x.......x...",
            "hat": "xxxxxxxxxxxxxxxx"},
    "four": {"kick": "x...x...x...x...", "snare": "....x.......x...",
             "open": "..x...x...x...x.", "hat": "x.x.x.x.x.x.x.x."},
    "swing": {"ride": "x...x.x.x...x.x.", "hat": "....x.......x...",
              "kick": "x.........x....."},
    "shuffle": {"kick": "x.......x.......", "snare": "....x.......x...",
                "hat": "x.x.x.x.x.x.x.x."},
    "folk": {"kick": "x.......x.......", "snare": "....x.......x...",
             "hat": "..x...x...x...x."},
    "waltz": {"kick": "x...........", "snare": "....x...x...",
              "hat": "x.x.x.x.x.x."},
}
_FILL = {"tom": "............xxxx"}


def _kit(kit: str, rng: np.random.Generator, sr: int) -> dict[str, np.ndarray]:
  """One sample per drum of a kit, slightly retuned per performance."""
  tune = rng.uniform(0.93, 1.07)

  def t_of(seconds):
    return np.arange(int(seconds * sr)) / sr

  t = t_of(0.6 if kit == "electronic" else 0.35)
  if kit == "electronic":
    kick = np.sin(2 * np.pi * np.cumsum(45.0 * tune + 60.0 * np.exp(
        -t / 0.03)) / sr) * np.exp(-t / 0.25)
  else:
    kick = np.sin(2 * np.pi * np.cumsum(50.0 * tune + 100.0 * np.exp(
        -t / 0.035)) / sr) * np.exp(-t / (0.1 if kit == "acoustic" else 0.07))
    kick[:int(0.002 * sr)] += 0.3 * rng.standard_normal(int(0.002 * sr))
  t = t_of(0.25)
  if kit == "electronic":  # a clap: three quick bursts and a tail
    env = np.exp(-t / 0.06)
    for k in range(3):
      env[int(k * 0.011 * sr):] += 0.6 * np.exp(-t[:t.size - int(
          k * 0.011 * sr)] / 0.006)
    snare = dsp.white_band(rng, t.size, sr, 900.0, 3500.0) * env
  elif kit == "brush":  # a swish
    snare = 0.5 * dsp.white_band(rng, t.size, sr, 2000.0, 7500.0) * (
        np.minimum(1.0, t / 0.03) * np.exp(-t / 0.09))
  else:
    snare = (0.8 * dsp.white_band(rng, t.size, sr, 1200.0, 7500.0) *
             np.exp(-t / 0.05) + 0.5 * np.sin(2 * np.pi * 185.0 * tune * t) *
             np.exp(-t / 0.03))
  t = t_of(0.08)
  hat = 0.4 * dsp.white_band(rng, t.size, sr, 7000.0, None, order=2) * \
      np.exp(-t / (0.01 if kit == "electronic" else 0.016))
  t = t_of(0.35)
  open_hat = 0.35 * dsp.white_band(rng, t.size, sr, 6500.0) * np.exp(-t / 0.12)
  t = t_of(0.7)
  ride = sum(np.sin(2 * np.pi * r * 420.0 * tune * t + 6.28 * rng.random())
             for r in (1.0, 1.47, 2.09, 2.56, 3.1, 3.8)) / 6.0
  ride = (0.35 * ride + 0.15 * dsp.white_band(rng, t.size, sr, 5000.0)) * \
      np.exp(-t / 0.5) * (0.6 if kit == "brush" else 1.0)
  t = t_of(0.3)
  tom = np.sin(2 * np.pi * np.cumsum(120.0 * tune * (1 + 0.3 * np.exp(
      -t / 0.05))) / sr) * np.exp(-t / 0.15)
  sounds = {"kick": kick, "snare": snare, "hat": hat, "open": open_hat,
            "ride": ride, "tom": tom}
  return {k: v * dsp.ramps(v.size, sr, 0.0005, 0.02) for k, v in
          sounds.items()}


def _render_drums(a: dict[str, Any], n: int, sr: int,
                  rng: np.random.Generator) -> np.ndarray:
  kit = _kit(a["kit"], rng, sr)
  name = GENRES[a["genre"]].pattern or "rock"
  pattern = PATTERNS["waltz" if a["meter"] == 3 else name]
  steps = 12 if a["meter"] == 3 else 16
  sixteenth = 15.0 / a["tempo_bpm"]
  humanise = 0.0 if a["kit"] == "electronic" else 0.006
  out = np.zeros(n)
  bar, t_bar = a["bar0"], 0.0
  while t_bar < n / sr:
    fill = steps == 16 and bar % 4 == 3 and rng.random() < 0.5
    grid = dict(pattern)
    if fill:
      grid = {**grid, **_FILL, "snare": grid.get("snare", "")[:12] + "...."}
    for drum, hits in grid.items():
      for s, c in enumerate(hits):
        if c != "x":
          continue
        if a["swing"] and s % 2 == 1:
          continue  # no straight sixteenths in a swung feel
        t = t_bar + s * sixteenth
        if a["swing"] and s % 4 == 2:
          t += sixteenth * 2 / 3
        t += humanise * rng.standard_normal()
        accent = 1.0 if s % 4 == 0 else 0.75
        dsp.add(out, int(round(t * sr)),
                kit[drum] * accent * rng.uniform(0.85, 1.0))
    t_bar += steps * sixteenth
    bar += 1
  return out


# ----------------------------------------------------------------------------
# Rendering.


def part_notes(a: dict[str, Any], dur: float, rng: np.random.Generator
               ) -> list[tuple[float, float, int, float]]:
  """The notes (start_s, length_s, midi, velocity) of a pitched part."""
  if a["role"] == "bass":
    return _bass_notes(a, dur, rng)
  if a["role"] == "chords":
    comp = GENRES[a["genre"]].comp
    if a["instrument"] in ("organ", "strings", "synth") and comp != "offbeat":
      comp = "sustain"
    if a["instrument"] == "guitar" and comp in ("block", "sustain",
                                                "offbeat"):
      comp = "strum"
    return _chord_notes(a, dur, rng, comp)
  return _melody(a, dur, rng)


def render_music(a: dict[str, Any], n: int, sr: int,
                 rng: np.random.Generator) -> np.ndarray:
  """One part of a piece, [n] samples from the part's start."""
  if a["instrument"] == "drums":
    return _render_drums(a, n, sr, rng)
  return _render_notes(a, part_notes(a, n / sr, rng), n, sr, rng)
