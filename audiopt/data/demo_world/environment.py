"""Environmental sound: weather, vehicles, animals, people and devices.

Each kind has an attribute spec, a sampler (`sample_attributes`) and a
renderer. The models are small physical or perceptual sketches:

- rain: a broadband hiss plus Poisson drop impacts ringing through
  resonators of a few drop sizes;
- wind: low-passed noise whose level and brightness follow slow gusts;
- engine: a harmonic hum at the firing rate plus pulsing rumble (car, truck,
  motorcycle; idling, accelerating, or passing with Doppler);
- siren: a wail, yelp or hi-lo pitch pattern, stationary or passing;
- dog_bark: short voiced bursts with a pitch arch (small or large dog);
- birdsong: trills of down-chirps, whistled glides or warbles;
- footsteps: heel and toe impacts at a walking pace on hard floor, wood or
  gravel;
- knocking: groups of knocks on a resonant door;
- alarm: electronic beeps, a two-tone cycle, or a ringing bell;
- crowd: babble of many overlapping talkers (small group or large crowd).
"""

from __future__ import annotations

import functools
import math
from typing import Any

import numpy as np
from scipy import signal

from audiopt.data.demo_world import core
from audiopt.data.demo_world import dsp
from audiopt.data.demo_world import speech

KINDS = ("rain", "wind", "engine", "siren", "dog_bark", "birdsong",
         "footsteps", "knocking", "alarm", "crowd")

ATTRIBUTES: dict[str, core.Spec] = {
    "rain": {"intensity": core.Cat(("light", "heavy"), "light"), **core.GAIN},
    "wind": {"strength": core.Cat(("gentle", "strong"), "gentle"),
             **core.GAIN},
    "engine": {"vehicle": core.Cat(("car", "truck", "motorcycle"), "car"),
               "state": core.Cat(("idling", "accelerating", "passing"),
                                 "idling"), **core.GAIN},
    "siren": {"pattern": core.Cat(("wail", "yelp", "hi-lo"), "wail"),
              "motion": core.Cat(("stationary", "passing"), "stationary"),
              **core.GAIN},
    "dog_bark": {"size": core.Cat(("small", "large"), "large"),
                 "count": core.Num(1, 12, 3, integer=True), **core.GAIN},
    "birdsong": {"song": core.Cat(("trill", "whistle", "warble"), "trill"),
                 "count": core.Num(1, 12, 2, integer=True), **core.GAIN},
    "footsteps": {"surface": core.Cat(("hard", "wood", "gravel"), "hard"),
                  "pace": core.Cat(("slow", "brisk"), "slow"), **core.GAIN},
    "knocking": {"count": core.Num(2, 8, 3, integer=True),
                 "force": core.Cat(("soft", "hard"), "hard"), **core.GAIN},
    "alarm": {"pattern": core.Cat(("beeping", "two-tone", "ringing"),
                                  "beeping"),
              "pitch_hz": core.Num(300.0, 4000.0, 2500.0), **core.GAIN},
    "crowd": {"size": core.Cat(("small", "large"), "small"), **core.GAIN},
}

# (min length s, probability the event spans the whole clip)
_SPANS = {"rain": (1.0, 0.7), "wind": (1.0, 0.7), "engine": (1.0, 0.5),
          "siren": (1.5, 0.4), "birdsong": (0.8, 0.3), "footsteps": (1.0, 0.3),
          "alarm": (0.8, 0.3), "crowd": (1.0, 0.8)}


def _span(rng: np.random.Generator, duration: float, min_len: float,
          p_full: float) -> tuple[float, float]:
  """A random [start, end] of at least `min_len` (or the clip) seconds."""
  min_len = min(min_len, duration)
  if rng.random() < p_full:
    return 0.0, duration
  length = rng.uniform(min_len, duration)
  start = rng.uniform(0.0, duration - length)
  return core.r2(start), min(duration, core.r2(start + length))


def sample_event(d: core.Draw, kind: str, duration: float,
                 gain_db: float = 0.0, **fixed: Any
                 ) -> tuple[float, float, dict[str, Any]]:
  """Draws (start_s, end_s, attributes) of one event of `kind`.

  Args:
    d: the draw.
    kind: one of `KINDS`.
    duration: the clip length (s); the span lies inside it.
    gain_db: the event's level.
    **fixed: attribute values to use instead of drawing them.
  """
  core.check_name("environmental kind", kind, KINDS)
  rng = d.rng
  a: dict[str, Any] = {"gain_db": core.r2(gain_db)}

  def cat(name, options, p=None):
    a[name] = fixed[name] if name in fixed else d.pick(kind, name, options, p)

  if kind == "dog_bark":
    spacing = rng.uniform(0.35, 0.6)
    count = int(min(rng.integers(1, 6), max(1, (duration - 0.05) // spacing)))
    length = min(duration, count * spacing)
    start = core.r2(rng.uniform(0.0, duration - length))
    end = min(duration, core.r2(start + length))
    cat("size", ("small", "large"))
    a["count"] = count
  elif kind == "knocking":
    count = int(rng.integers(2, 6))
    length = min(duration, count * 0.18 + rng.uniform(0.1, 0.4))
    start = core.r2(rng.uniform(0.0, duration - length))
    end = min(duration, core.r2(start + length))
    a["count"] = count
    cat("force", ("soft", "hard"))
  else:
    start, end = _span(rng, duration, *_SPANS[kind])
    if kind == "rain":
      cat("intensity", ("light", "heavy"))
    elif kind == "wind":
      cat("strength", ("gentle", "strong"))
    elif kind == "engine":
      cat("vehicle", ("car", "truck", "motorcycle"))
      states = ("idling", "accelerating", "passing") if end - start >= 2.0 \
          else ("idling",)
      cat("state", states)
    elif kind == "siren":
      cat("pattern", ("wail", "yelp", "hi-lo"))
      cat("motion", ("stationary", "passing") if end - start >= 2.5
          else ("stationary",))
    elif kind == "birdsong":
      cat("song", ("trill", "whistle", "warble"))
      a["count"] = int(max(1, min(12, round((end - start) /
                                            rng.uniform(0.7, 1.4)))))
    elif kind == "footsteps":
      cat("surface", ("hard", "wood", "gravel"))
      cat("pace", ("slow", "brisk"))
    elif kind == "alarm":
      cat("pattern", ("beeping", "two-tone", "ringing"))
      a["pitch_hz"] = float(rng.integers(8, 36) * 100)
    elif kind == "crowd":
      cat("size", ("small", "large"))
  for name, value in fixed.items():
    a[name] = value
  return start, end, a


# ----------------------------------------------------------------------------
# Renderers: (attributes, n, sr, rng) -> [n].


def render_rain(a, n, sr, rng):
  """Rain: hiss plus drops ringing at three pitches; [n] float64."""
  heavy = a["intensity"] == "heavy"
  hiss = dsp.white_band(rng, n, sr, 400.0, min(9000.0, 0.45 * sr))
  hiss = dsp.one_pole(hiss, 0.3) * (1.0 + 0.25 * dsp.smooth(rng, n, sr, 1.5))
  drops = np.zeros(n)
  for _ in range(3):  # drop sizes, each ringing at its own pitch
    count = rng.poisson((120.0 if heavy else 25.0) * n / sr / 3)
    train = np.zeros(n)
    np.add.at(train, rng.integers(0, n, count), rng.lognormal(0.0, 0.5, count))
    drops += dsp.resonate(train, rng.uniform(1500.0, 6000.0),
                          rng.uniform(0.001, 0.003), sr)
  drops /= dsp.rms(drops)
  return (1.0 if heavy else 0.4) * hiss / dsp.rms(hiss) + 0.8 * drops


def render_wind(a, n, sr, rng):
  """Wind: band noise swelling with gusts, howling when strong; [n] float64."""
  strong = a["strength"] == "strong"
  gust = dsp.smooth(rng, n, sr, 0.7 if strong else 0.4)
  level = np.exp((0.7 if strong else 0.4) * gust)
  low = dsp.white_band(rng, n, sr, 40.0, 300.0)
  mid = dsp.white_band(rng, n, sr, 300.0, 1500.0 if strong else 900.0)
  # Gusts brighten: more mid band when the wind is up.
  w = 0.5 + 0.5 * np.tanh(gust)
  howl = 0.0
  if strong:
    f = 350.0 + 120.0 * gust
    howl = 0.15 * np.sin(2 * np.pi * np.cumsum(f) / sr) * w
  return level * (low + (0.3 + 0.7 * w) * mid + howl)


_VEHICLE = {"car": (25.0, 40.0, 0.7), "truck": (14.0, 24.0, 0.5),
            "motorcycle": (40.0, 70.0, 0.95)}


@functools.lru_cache(maxsize=128)
def _engine_table(vehicle: str, top: float, sr: int) -> np.ndarray:
  """One firing cycle of an engine: many harmonics with fixed random phases
  (a vehicle type's timbre), peak 1."""
  rolloff = _VEHICLE[vehicle][2]
  count = max(1, int(min(2500.0, 0.45 * sr) / top))
  phases = np.random.default_rng([5, count]).uniform(0, 2 * np.pi, count)
  tab = dsp.table([1.0 / k ** rolloff for k in range(1, count + 1)], top, sr,
                  phases=phases)
  tab /= np.abs(tab).max() + 1e-9
  tab.setflags(write=False)
  return tab


def render_engine(a, n, sr, rng):
  """Engine: a harmonic hum at the firing rate plus rumble; [n] float64."""
  lo, hi, _ = _VEHICLE[a["vehicle"]]
  base = rng.uniform(lo, hi)
  x = np.arange(n) / n
  level = np.ones(n)
  if a["state"] == "accelerating":
    freq = base * (1.0 + 1.6 * x * x * (3 - 2 * x))
  elif a["state"] == "passing":
    center = rng.uniform(0.35, 0.65)
    freq = base * 1.6 * (1.0 - 0.06 * np.tanh((x - center) / 0.08))
    level = 0.12 + np.exp(-((x - center) / 0.22) ** 2)
  else:
    freq = base * (1.0 + 0.03 * dsp.smooth(rng, n, sr, 2.0))
  top = 2.0 ** (math.ceil(6.0 * math.log2(float(freq.max()))) / 6.0)
  tab = _engine_table(a["vehicle"], top, sr)
  hum = dsp.oscillate(tab, freq, n, sr)
  rumble = dsp.white_band(rng, n, sr, 30.0, 600.0 if a["vehicle"] != "truck"
                          else 350.0)
  rumble *= 1.0 + 0.6 * np.sin(2 * np.pi * np.cumsum(freq) / sr)
  return level * (hum + 0.6 * rumble)


def render_siren(a, n, sr, rng):
  """Siren: a wail, yelp or hi-lo tone, Doppler when passing; [n] float64."""
  t = np.arange(n) / sr
  lo, hi = rng.uniform(550.0, 750.0), rng.uniform(1250.0, 1550.0)
  if a["pattern"] == "hi-lo":
    period = rng.uniform(0.9, 1.3)
    up = np.clip(np.minimum(t % period, period / 2 - t % period) / 0.01,
                 0.0, 1.0)
    freq = lo + 0.7 * (hi - lo) * up
  else:
    period = (rng.uniform(3.0, 5.0) if a["pattern"] == "wail"
              else rng.uniform(0.25, 0.4))
    freq = lo + (hi - lo) * (0.5 - 0.5 * np.cos(
        2 * np.pi * t / period + rng.uniform(0, 2 * np.pi)))
  level = np.ones(n)
  if a["motion"] == "passing":
    center, dur = rng.uniform(0.4, 0.6) * n / sr, n / sr
    freq = freq * (1.0 - 0.03 * np.tanh((t - center) / 0.5))
    level = 0.15 + np.exp(-(((t - center) / (0.25 * dur)) ** 2))
  tab = dsp.cached_table((1.0, 0.0, 1 / 3, 0.0, 1 / 5), 1650, sr)
  return level * dsp.oscillate(tab, freq, n, sr)


def render_dog_bark(a, n, sr, rng):
  """Dog barks: `count` voiced bursts with a pitch arch; [n] float64."""
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
    dsp.add(out, start, speech.voiced(rng, f0, env, formants,
                                      (150.0, 200.0, 300.0), sr, breath=0.6,
                                      effort=0.8))
  return out[:n]


def render_birdsong(a, n, sr, rng):
  """Birdsong: up to `count` trill, whistle or warble phrases; [n] float64."""
  out = np.zeros(n)
  slot = n / a["count"]
  pitch = rng.uniform(0.85, 1.2)
  for i in range(a["count"]):
    phrase = min(int(slot * 0.8), int(rng.uniform(0.4, 1.1) * sr))
    if phrase < 32:
      continue
    t = np.arange(phrase) / sr
    if a["song"] == "trill":
      rate = rng.uniform(14.0, 24.0)
      x = (t * rate) % 1.0
      freq = (4200.0 - 1400.0 * x) * pitch
      env = np.clip(np.minimum(x, 0.6 - x) / 0.1, 0.0, 1.0)
    elif a["song"] == "whistle":
      notes = int(rng.integers(2, 5))
      levels = rng.uniform(2000.0, 3500.0, notes) * pitch
      k = np.minimum((t / (t[-1] + 1e-9) * notes).astype(int), notes - 1)
      freq = np.convolve(levels[k], np.ones(160) / 160, mode="same")
      x = (t / (t[-1] + 1e-9) * notes) % 1.0
      env = np.clip(np.minimum(x, 0.85 - x) / 0.08, 0.0, 1.0)
    else:  # warble
      freq = (3800.0 + 900.0 * dsp.smooth(rng, phrase, sr, 25.0)) * pitch
      env = np.clip(0.6 + 0.6 * dsp.smooth(rng, phrase, sr, 12.0), 0.0, 1.0)
    freq = np.clip(freq, 500.0, 0.45 * sr)
    phase = 2 * np.pi * np.cumsum(freq) / sr
    y = (np.sin(phase) + 0.15 * np.sin(2 * phase)) * env
    y *= dsp.ramps(phrase, sr, 0.01, 0.02)
    start = int(i * slot + rng.uniform(0.0, max(0.0, slot - phrase - 1)))
    dsp.add(out, start, y)
  return out


def _impact(rng, surface: str, sr: int, strength: float) -> np.ndarray:
  """One footfall."""
  if surface == "gravel":
    m = int(rng.uniform(0.06, 0.1) * sr)
    grains = (rng.random(m) < 0.08) * rng.standard_normal(m)
    y = dsp.bandpass(grains + 0.2 * rng.standard_normal(m), 900.0, 6000.0, sr)
    return strength * y * np.hanning(m) * 3.0
  m = int(0.12 * sr)
  click = np.zeros(m)
  c = int(0.004 * sr)
  click[:c] = rng.standard_normal(c) * np.exp(-np.arange(c) / (0.001 * sr))
  if surface == "wood":
    body = dsp.resonate(click, rng.uniform(180.0, 260.0), 0.03, sr) * 4.0
    body += dsp.resonate(click, rng.uniform(500.0, 700.0), 0.012, sr)
    return strength * body
  thud = dsp.resonate(click, 80.0, 0.02, sr) * 3.0
  return strength * (dsp.bandpass(click, 2000.0, None, sr) + thud)


def render_footsteps(a, n, sr, rng):
  """Footsteps: heel and toe impacts (gravel: one) at `pace`; [n] float64."""
  rate = (rng.uniform(1.4, 1.8) if a["pace"] == "slow"
          else rng.uniform(2.0, 2.5))
  out = np.zeros(n + int(0.15 * sr))
  t = rng.uniform(0.0, 0.3)
  k = 0
  while t < n / sr - 0.05:
    strength = rng.uniform(0.8, 1.0) * (1.0 if k % 2 == 0 else 0.85)
    i0 = int(t * sr)
    dsp.add(out, i0, _impact(rng, a["surface"], sr, strength))
    if a["surface"] != "gravel":  # the toe lands after the heel
      dsp.add(out, i0 + int(0.035 * sr),
              0.4 * _impact(rng, a["surface"], sr, strength))
    t += (1.0 / rate) * rng.uniform(0.94, 1.06)
    k += 1
  return out[:n]


def render_knocking(a, n, sr, rng):
  """Knocking: `count` knocks ringing three door modes; [n] float64."""
  out = np.zeros(n + int(0.2 * sr))
  gap = rng.uniform(0.13, 0.2)
  hard = a["force"] == "hard"
  modes = [rng.uniform(110.0, 150.0), rng.uniform(220.0, 280.0),
           rng.uniform(400.0, 480.0)]
  for k in range(a["count"]):
    m = int(0.006 * sr)
    click = np.zeros(int(0.2 * sr))
    click[:m] = rng.standard_normal(m) * np.exp(-np.arange(m) / (0.0015 * sr))
    y = sum(dsp.resonate(click, f, d, sr) * w for f, d, w in
            zip(modes, (0.05, 0.03, 0.015), (3.0, 2.0, 1.0)))
    y += (0.8 if hard else 0.2) * dsp.bandpass(click, 1500.0, None, sr)
    dsp.add(out, int((0.02 + k * gap * rng.uniform(0.95, 1.05)) * sr),
            y * (1.0 if hard else 0.5))
  return out[:n]


def render_alarm(a, n, sr, rng):
  """Alarm at `pitch_hz`: beeps, two tones or a ringing bell; [n] float64."""
  t = np.arange(n) / sr
  f = a["pitch_hz"]
  tab = dsp.cached_table((1.0, 0.0, 0.3, 0.0, 0.1), int(f) + 1, sr)
  if a["pattern"] == "beeping":
    period = rng.uniform(0.3, 0.6)
    on = period * rng.uniform(0.4, 0.6)
    x = t % period
    gate = np.clip(np.minimum(x, on - x) / 0.005, 0.0, 1.0)
    return gate * dsp.oscillate(tab, f, n, sr)
  if a["pattern"] == "two-tone":
    period = rng.uniform(0.8, 1.2)
    x = t % period
    high = np.clip(np.minimum(x, period / 2 - x) / 0.01, 0.0, 1.0)
    return dsp.oscillate(tab, 0.75 * f + 0.25 * f * high, n, sr)
  # A ringing bell: a clapper strikes about 20 times a second, in bursts.
  strikes = np.zeros(n)
  burst, pause = rng.uniform(0.8, 1.5), rng.uniform(0.3, 0.8)
  hit = 0.0
  while hit < n / sr:
    if hit % (burst + pause) < burst:
      strikes[int(hit * sr)] = rng.uniform(0.8, 1.0)
    hit += 1 / rng.uniform(18.0, 22.0)
  y = sum(dsp.resonate(strikes, r * f, 0.08 / r, sr) * w for r, w in
          ((1.0, 1.0), (2.76, 0.5), (5.4, 0.25)) if r * f < 0.45 * sr)
  return y


def render_crowd(a, n, sr, rng):
  """Babble: many talkers' syllable streams, voiced and unvoiced.

  Each talker's syllable envelope and pitch live at a 200 Hz control rate;
  its glottal pulses are placed one by one where its phase crosses an
  integer, so a large crowd costs little more than a small one.
  """
  talkers = int(rng.integers(3, 6)) if a["size"] == "small" else int(
      rng.integers(10, 16))
  ctrl = 200.0
  nc = int(n / sr * ctrl) + 2
  tc = np.arange(nc) / ctrl
  source = np.zeros(n)
  hiss_env = np.zeros(nc)
  for _ in range(talkers):
    rate = rng.uniform(3.5, 5.5) * (1 + 0.3 * dsp.smooth(rng, nc, ctrl, 2.0))
    syll = 0.5 + 0.5 * np.sin(2 * np.pi * np.cumsum(rate) / ctrl)
    talk = (dsp.smooth(rng, nc, ctrl, 0.5) > -0.3).astype(float)
    env = (syll ** 2) * talk * rng.uniform(0.5, 1.0)
    f0 = rng.uniform(90.0, 240.0) * (1.0 + 0.08 * dsp.smooth(rng, nc, ctrl,
                                                             3.0))
    phase = np.cumsum(f0) / ctrl + rng.random()
    times = np.interp(np.arange(math.ceil(phase[0]), int(phase[-1])),
                      phase, tc)
    idx = np.minimum((times * sr).astype(np.intp), n - 1)
    np.add.at(source, idx, np.interp(times, tc, env))
    hiss_env += np.roll(env, int(rng.integers(0, 20))) * rng.uniform(0.0, 0.4)
  # An average vocal tract: broad resonances of many vowels at once.
  voiced_part = signal.sosfilt(dsp.resonator_sos(
      (550.0, 1500.0, 2500.0), (250.0, 400.0, 500.0), sr),
      dsp.one_pole(source, 0.9))
  unvoiced = dsp.white_band(rng, n, sr, 2000.0, 7000.0) * np.interp(
      np.arange(n) / sr, tc, hiss_env)
  return voiced_part / dsp.rms(voiced_part) + 0.15 * unvoiced / (
      dsp.rms(unvoiced))


RENDERERS = {"rain": render_rain, "wind": render_wind,
             "engine": render_engine, "siren": render_siren,
             "dog_bark": render_dog_bark, "birdsong": render_birdsong,
             "footsteps": render_footsteps, "knocking": render_knocking,
             "alarm": render_alarm, "crowd": render_crowd}

