"""Speech-like sound: source-filter synthesis of syllables.

A glottal pulse train follows a pitch contour (phrase declination, stress
accents, a final rise or fall, jitter); aspiration noise adds breathiness;
a one-pole tilt sets vocal effort; cascaded formant resonators, scaled by
the vocal-tract length, shape vowels, nasals and liquids; band-passed noise
makes fricatives and stop bursts.

A speaker is a fixed set of attributes: sex, an age group, base pitch,
pitch range, vocal-tract length, speaking rate, breathiness, jitter and a
native language. An utterance adds an emotion (whose prosody scales pitch,
range, rate, effort and breathiness) and an intonation. The "languages" are
invented, each with its own vowels, consonants, syllable shapes and rhythm,
so that they sound distinct without any words being intelligible.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from typing import Any, NamedTuple

import numpy as np
from scipy import signal

from audiopt.data.demo_world import core
from audiopt.data.demo_world import dsp

SEXES = ("female", "male")
AGES = ("child", "young", "adult", "elderly")
EMOTIONS = ("neutral", "happy", "sad", "angry", "fearful")
LANGUAGES = ("aralan", "bekori", "celune", "dovrik")
INTONATIONS = ("statement", "question")

# Speaker attributes (the rest of an utterance's attributes are per event).
SPEAKER_KEYS = ("speaker", "sex", "age", "pitch_hz", "pitch_range_st",
                "vtl_cm", "rate_sps", "breathiness", "jitter", "language")

ATTRIBUTES: dict[str, core.Spec] = {
    "speech": {
        "speaker": core.Num(0, 10**7, 0, integer=True),
        "sex": core.Cat(SEXES, "male"),
        "age": core.Cat(AGES, "adult"),
        "pitch_hz": core.Num(60.0, 450.0, 120.0),
        "pitch_range_st": core.Num(0.5, 12.0, 4.0),
        "vtl_cm": core.Num(9.0, 22.0, 17.0),
        "rate_sps": core.Num(1.5, 9.0, 4.5),
        "breathiness": core.Num(0.0, 1.0, 0.2),
        "jitter": core.Num(0.0, 0.1, 0.01),
        "language": core.Cat(LANGUAGES, "aralan"),
        "emotion": core.Cat(EMOTIONS, "neutral"),
        "intonation": core.Cat(INTONATIONS, "statement"),
        **core.GAIN},
}

# F1-F3 (Hz) of a 17 cm adult vocal tract.
VOWELS = {"a": (730, 1090, 2440), "i": (270, 2290, 3010),
          "u": (300, 870, 2240), "e": (530, 1840, 2480),
          "o": (570, 840, 2410), "E": (660, 1720, 2410),
          "@": (500, 1400, 2450), "y": (280, 1750, 2150)}
_VOWEL_BW = (80.0, 100.0, 140.0, 200.0)
# Consonants: (class, band edges for noise | formants for voiced ones).
_CONSONANTS = {
    "p": ("stop", (300.0, 1500.0)), "t": ("stop", (2800.0, 6500.0)),
    "k": ("stop", (1400.0, 3200.0)),
    "s": ("fricative", (4000.0, 7500.0)), "S": ("fricative", (2000.0, 4800.0)),
    "f": ("fricative", (1000.0, 7000.0)), "h": ("fricative", (400.0, 3500.0)),
    "x": ("fricative", (1200.0, 3000.0)),
    "m": ("nasal", (250.0, 1000.0, 2200.0)),
    "n": ("nasal", (250.0, 1500.0, 2500.0)),
    "l": ("liquid", (350.0, 1100.0, 2700.0)),
    "r": ("liquid", (420.0, 1300.0, 1650.0)),
    "w": ("liquid", (300.0, 700.0, 2200.0)),
    "j": ("liquid", (280.0, 2100.0, 2900.0)),
}
_CONSONANT_S = {"stop": 0.045, "fricative": 0.075, "nasal": 0.055,
                "liquid": 0.045}


class Language(NamedTuple):
  """An invented language: its sound inventory and rhythm."""
  vowels: str
  onsets: tuple[str, ...]       # consonant clusters ("" = none)
  codas: tuple[str, ...]
  stress_timed: bool            # long stressed / short unstressed syllables
  phrase_rise: float            # final rise of every phrase (x range)
  description: str              # how a listener would describe it


LANGUAGE_SPECS = {
    "aralan": Language("aiuo", ("m", "n", "l", "r", "w", "k", "t", ""),
                       ("", "", "", "", "n", "m"), False, 0.0,
                       "soft, open syllables rich in m, n and l"),
    "bekori": Language("eoa@", ("p", "t", "k", "kr", "tr", "pl", "m"),
                       ("t", "k", "p", "", ""), True, 0.0,
                       "short, abrupt syllables full of crisp p, t and k stops"),
    "celune": Language("ieyu", ("s", "S", "f", "l", "h", ""),
                       ("", "", "s", "n"), False, 0.5,
                       "hissing s and sh sounds and a lilting, rising intonation"),
    "dovrik": Language("aoEu", ("st", "sk", "x", "k", "r", "S", "tr"),
                       ("k", "t", "rk", "x", "S", ""), True, -0.2,
                       "heavy consonant clusters and guttural, throaty "
                       "sounds"),
}

# Emotion loudness: dB added to an utterance's level.
EMOTION_LEVEL_DB = {"neutral": 0.0, "happy": 1.5, "sad": -2.5, "angry": 3.0,
                    "fearful": -0.5}
# Emotion prosody: (pitch x, range x, rate x, effort, breath +, jitter x,
# tremor semitones).
_EMOTION = {
    "neutral": (1.00, 1.00, 1.00, 0.0, 0.00, 1.0, 0.0),
    "happy": (1.13, 1.55, 1.08, 0.5, 0.00, 1.0, 0.0),
    "sad": (0.91, 0.50, 0.78, -0.8, 0.25, 1.2, 0.0),
    "angry": (1.08, 1.30, 1.12, 1.0, -0.10, 1.6, 0.0),
    "fearful": (1.20, 0.90, 1.18, 0.0, 0.20, 2.5, 0.4),
}


# ----------------------------------------------------------------------------
# Speakers.


def make_speaker(d: core.Draw, speaker_id: int, *, sex: str | None = None,
                 age: str | None = None) -> dict[str, Any]:
  """Draws one speaker's attributes (`SPEAKER_KEYS`).

  Sex and age set the pitch and vocal-tract ranges; every other trait is
  drawn around them, so two speakers of one sex and age can be close.
  """
  sex = sex or d.pick("speech", "sex", SEXES)
  age = age or d.pick("speech", "age", AGES, p=(0.1, 0.3, 0.4, 0.2))
  rng = d.rng
  if age == "child":
    pitch, vtl = rng.uniform(230.0, 330.0), rng.uniform(10.5, 13.0)
  elif sex == "male":
    pitch, vtl = rng.normal(118.0, 16.0), rng.normal(17.3, 0.7)
  else:
    pitch, vtl = rng.normal(205.0, 22.0), rng.normal(14.9, 0.6)
  rate = rng.normal(4.6, 0.5)
  breath = rng.uniform(0.05, 0.45)
  jitter = rng.uniform(0.003, 0.015)
  if age == "elderly":
    pitch *= 1.08 if sex == "male" else 0.9
    rate *= 0.85
    breath += 0.2
    jitter *= 2.5
  elif age == "young":
    rate *= 1.08
  return {
      "speaker": int(speaker_id), "sex": sex, "age": age,
      "pitch_hz": round(float(np.clip(pitch, 75.0, 340.0)), 1),
      "pitch_range_st": core.r2(rng.uniform(2.0, 7.0)),
      "vtl_cm": core.r2(np.clip(vtl, 10.0, 20.0)),
      "rate_sps": core.r2(np.clip(rate, 2.8, 7.0)),
      "breathiness": core.r2(min(breath, 0.9)),
      "jitter": round(float(jitter), 4),
      "language": d.pick("speech", "language", LANGUAGES)}


@functools.lru_cache(maxsize=16)
def population(seed: int, stream: int, size: int,
               restrictions: core.Restrictions = core.NO_RESTRICTIONS
               ) -> tuple[dict[str, Any], ...]:
  """A deterministic population of `size` speakers.

  Populations of different `stream`s are disjoint: their speaker ids start
  at stream * 100000, and their traits come from independent draws.
  """
  d = core.Draw(np.random.default_rng([97, seed, stream]), restrictions)
  return tuple(make_speaker(d, stream * 100000 + k) for k in range(size))


def utterance(speaker: dict[str, Any], d: core.Draw, *,
              emotion: str | None = None, gain_db: float = 0.0
              ) -> dict[str, Any]:
  """A speech event's attributes: the speaker's plus emotion, intonation;
  the level is `gain_db` plus the emotion's loudness."""
  emotion = emotion or d.pick("speech", "emotion", EMOTIONS,
                              p=(0.4, 0.15, 0.15, 0.15, 0.15))
  return {**{k: speaker[k] for k in SPEAKER_KEYS}, "emotion": emotion,
          "intonation": d.pick("speech", "intonation", INTONATIONS,
                               p=(0.7, 0.3)),
          "gain_db": core.r2(gain_db + EMOTION_LEVEL_DB[emotion])}


# ----------------------------------------------------------------------------
# Source-filter synthesis.


def glottal_source(rng: np.random.Generator, f0: np.ndarray, sr: int, *,
                   breath: float, effort: float) -> np.ndarray:
  """Pulses at f0 [n] (Hz) with shimmer and aspiration, tilted by effort.

  Effort in [-1, 1]: higher is brighter (pressed, loud), lower darker.
  """
  n = f0.size
  phase = np.cumsum(f0) / sr + rng.random()
  pulses = np.zeros(n)
  idx = np.flatnonzero(np.diff(np.floor(phase))) + 1
  pulses[idx] = 1.0 + 0.06 * rng.standard_normal(idx.size)
  noise = breath * math.sqrt(float(np.mean(f0)) / sr) * \
      rng.standard_normal(n)
  a = float(np.clip(0.97 - 0.03 * effort, 0.92, 0.988))
  y = signal.lfilter([(1 - a) ** 2], [1.0, -2 * a, a * a], pulses + noise)
  return np.diff(y, prepend=0.0)  # lip radiation


def voiced(rng: np.random.Generator, f0: np.ndarray, env: np.ndarray,
           formants: Sequence[float], bandwidths: Sequence[float], sr: int, *,
           breath: float = 0.1, effort: float = 0.0) -> np.ndarray:
  """One voiced sound [len(f0)]: source at f0 through formant resonators."""
  source = glottal_source(rng, f0, sr, breath=breath, effort=effort) * env
  return signal.sosfilt(dsp.resonator_sos(formants, bandwidths, sr), source)


class _Syllable(NamedTuple):
  start: float
  length: float
  stressed: bool
  phrase: int
  onset: str
  vowel: str
  coda: str


def _plan(rng: np.random.Generator, dur: float, rate: float,
          lang: Language) -> list[_Syllable]:
  """Syllables in words and phrases, filling `dur` seconds."""
  out: list[_Syllable] = []
  t, phrase, base = 0.03, 0, 1.0 / rate
  while True:
    for _ in range(int(rng.integers(2, 6))):
      syllables = int(rng.integers(1, 4))
      stress = int(rng.integers(syllables))
      for s in range(syllables):
        if lang.stress_timed:
          length = base * (1.3 if s == stress else 0.78)
        else:
          length = base * rng.uniform(0.92, 1.08)
        length *= rng.uniform(0.9, 1.1)
        syl = _Syllable(t, length, s == stress, phrase,
                        core.pick(rng, lang.onsets), core.pick(rng, lang.vowels),
                        core.pick(rng, lang.codas))
        if t + length > dur - 0.03:
          length = dur - 0.03 - t
          if length >= 0.08 or not out:
            out.append(syl._replace(length=max(length, 0.05), coda=""))
          return out
        out.append(syl)
        t += length
      t += rng.uniform(0.02, 0.08)
    t += rng.uniform(0.2, 0.45)
    phrase += 1


def _pitch_contour(rng: np.random.Generator, n: int, sr: int,
                   plan: list[_Syllable], base_hz: float, range_st: float,
                   question: bool, lang: Language, jitter: float,
                   tremor_st: float) -> np.ndarray:
  """F0 [n] in Hz: declination, accents, phrase ends, jitter and tremor."""
  t = np.arange(n) / sr
  st = 0.25 * range_st * dsp.smooth(rng, n, sr, 3.0)
  for phrase in sorted({s.phrase for s in plan}):
    sylls = [s for s in plan if s.phrase == phrase]
    i0 = int(sylls[0].start * sr)
    i1 = min(n, int((sylls[-1].start + sylls[-1].length) * sr))
    if i1 <= i0:
      continue
    st[i0:i1] += np.linspace(0.4, -0.4, i1 - i0) * range_st
    if lang.phrase_rise:
      k0 = int((sylls[-1].start) * sr)
      st[k0:i1] += np.linspace(0.0, lang.phrase_rise * range_st, i1 - k0)
  for s in plan:
    if s.stressed:
      i0, i1 = int(s.start * sr), min(n, int((s.start + s.length) * sr))
      mid, width = s.start + s.length / 2, s.length / 3
      st[i0:i1] += 0.6 * range_st * np.exp(
          -0.5 * ((t[i0:i1] - mid) / width) ** 2)
  last = plan[-1]
  i0 = min(n, int((last.start + 0.2 * last.length) * sr))
  end = 1.2 * range_st + 1.0 if question else -0.5 * range_st
  st[i0:] += np.linspace(0.0, end, n - i0)
  st += 12.0 * jitter * dsp.smooth(rng, n, sr, 30.0)
  if tremor_st:
    st += tremor_st * np.sin(2 * np.pi * rng.uniform(5.0, 7.0) * t)
  return np.clip(base_hz * 2.0 ** (st / 12.0), 50.0, 700.0)


def _consonant(rng: np.random.Generator, kind: str, band: Sequence[float],
               m: int, sr: int) -> np.ndarray:
  """An unvoiced consonant [m]: a fricative hiss, or a closure and burst."""
  lo, hi = band[0], min(band[1], 0.45 * sr)
  if kind == "stop":
    out = np.zeros(m)
    b = min(m, int(0.015 * sr))
    burst = rng.standard_normal(b) * np.exp(-np.arange(b) / (0.004 * sr))
    out[m - b:] = dsp.bandpass(burst, lo, hi, sr)
    return 3.0 * out
  level = 0.35 if lo >= 2000 else 0.18
  return level * dsp.white_band(rng, m, sr, lo, hi) * np.hanning(m)


def render_speech(a: dict[str, Any], n: int, sr: int,
                  rng: np.random.Generator) -> np.ndarray:
  """Speech-like babble in the speaker's voice, language and emotion."""
  lang = LANGUAGE_SPECS[a["language"]]
  pitch_x, range_x, rate_x, effort, breath_add, jitter_x, tremor = \
      _EMOTION[a["emotion"]]
  # Each utterance acts its emotion a little differently.
  pitch_x *= math.exp(0.04 * rng.standard_normal())
  range_x *= math.exp(0.15 * rng.standard_normal())
  rate_x *= math.exp(0.05 * rng.standard_normal())
  effort += 0.2 * rng.standard_normal()
  rate = a["rate_sps"] * rate_x
  plan = _plan(rng, n / sr, rate, lang)
  f0 = _pitch_contour(rng, n, sr, plan, a["pitch_hz"] * pitch_x,
                      a["pitch_range_st"] * range_x,
                      a["intonation"] == "question", lang,
                      a["jitter"] * jitter_x, tremor)
  breath = float(np.clip(a["breathiness"] + breath_add, 0.0, 1.0))
  source = glottal_source(rng, f0, sr, breath=breath, effort=effort)
  scale = 17.0 / a["vtl_cm"]
  out = np.zeros(n + int(0.05 * sr))
  stretch = min(1.3, max(0.6, 4.5 / rate))

  def voiced_segment(i0, m, formants, level):
    if m <= 8:
      return
    env = dsp.ramps(m, sr, 0.012, 0.02)
    tail = int(0.02 * sr)
    seg = np.concatenate([source[i0:i0 + m] * env[:len(source[i0:i0 + m])],
                          np.zeros(tail)])
    bws = [b * (1.0 + 0.4 * breath) for b in _VOWEL_BW]
    y = signal.sosfilt(dsp.resonator_sos(
        [f * scale for f in formants] + [3500.0 * scale], bws, sr), seg)
    dsp.add(out, i0, y * (level / dsp.rms(y[:m])))

  for syl in plan:
    i0 = int(syl.start * sr)
    i1 = min(n, int((syl.start + syl.length) * sr))
    level = 1.0 if syl.stressed else rng.uniform(0.55, 0.8)
    onset = [c for c in _clusters(syl.onset)]
    coda = [c for c in _clusters(syl.coda)]
    durs = {c: int(_CONSONANT_S[_CONSONANTS[c][0]] * stretch * sr)
            for c in onset + coda}
    total = i1 - i0
    if sum(durs[c] for c in onset + coda) > 0.6 * total:
      coda = []
      if sum(durs[c] for c in onset) > 0.6 * total:
        onset = onset[-1:]
        if onset and durs[onset[0]] > 0.6 * total:
          onset = []
    t = i0
    v_len = total - sum(durs[c] for c in onset + coda)
    jitter = 1.0 + 0.03 * rng.standard_normal(3)
    vowel = [f * j for f, j in zip(VOWELS[syl.vowel], jitter)]
    for c in onset + ["<v>"] + coda:
      if c == "<v>":
        voiced_segment(t, v_len, vowel, level)
        t += v_len
        continue
      kind, params = _CONSONANTS[c]
      m = durs[c]
      if kind in ("nasal", "liquid"):
        voiced_segment(t, m, params, level * (0.3 if kind == "nasal" else 0.55))
      else:
        dsp.add(out, t, level * _consonant(rng, kind, params, m, sr))
      t += m
  return out[:n]


def _clusters(cluster: str) -> list[str]:
  return [c for c in cluster if c in _CONSONANTS]
