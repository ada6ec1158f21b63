"""Captions in the style of the paper's captioner, written from the scene.

A full caption has an overview paragraph; paragraphs on the sources in
order of onset (each speaker's voice, age, pace, language, emotion and
intonation; the piece's genre, key, scale, tempo, meter, progression and
every instrument's part; every environmental event with its character and
timing); a paragraph on the space and the production (room, distance, noise
floor, hiss, hum, clipping, telephone channel, loudness); and a closing
summary paragraph, the strong caption, that names every source again.
Wording is drawn from alternatives at every step, so no two captions share
one template. Every statement is a true property of the scene.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from audiopt.data.demo_world import music
from audiopt.data.demo_world import scene as scene_lib
from audiopt.data.demo_world import speech
from audiopt.labels import captioner

Event = scene_lib.Event
Scene = scene_lib.Scene

# Words that name each kind of source; a caption mentions every event with
# at least one of them (and `instrument_words` for music).
KIND_WORDS = {
    "speech": ("speak", "talk", "voice", "speaker"),
    "rain": ("rain",), "wind": ("wind",), "engine": ("engine", "motor"),
    "siren": ("siren",), "dog_bark": ("dog", "bark"),
    "birdsong": ("bird",), "footsteps": ("footstep",), "knocking": ("knock",),
    "alarm": ("alarm",), "crowd": ("crowd", "babble", "chatter"),
}
INSTRUMENT_WORDS = {
    "guitar": ("guitar",), "piano": ("piano",), "organ": ("organ",),
    "flute": ("flute",), "bass": ("bass",), "synth": ("synth",),
    "strings": ("string",), "marimba": ("marimba",),
    "voice": ("vocal", "sing"), "drums": ("drum",)}


def _p(rng: np.random.Generator, *options: str) -> str:
  return options[int(rng.integers(len(options)))]


def _join(items: Sequence[str]) -> str:
  items = [i for i in items if i]
  if len(items) <= 1:
    return "".join(items)
  return ", ".join(items[:-1]) + " and " + items[-1]


def _cap(text: str) -> str:
  return text[:1].upper() + text[1:]


def _an(word: str) -> str:
  return ("an " if word[:1] in "aeiou" else "a ") + word


def _seconds(x: float) -> str:
  return f"{x:.1f}"


def _when(rng, event: Event, duration: float) -> str:
  t = _seconds(event.start_s)
  if event.start_s < 0.35:
    return _p(rng, "From the very start", "Right from the beginning",
              "As the clip opens", "From the outset", "At the start")
  if event.start_s > 0.66 * duration:
    return _p(rng, f"Late in the clip, at about {t} seconds",
              f"Towards the end, around the {t}-second mark",
              f"Near the end, at roughly {t} seconds")
  return _p(rng, f"At about {t} seconds", f"Around {t} seconds in",
            f"Roughly {t} seconds into the recording",
            f"Shortly after the {t}-second mark", f"At around {t} s")


def _until(rng, event: Event, duration: float) -> str:
  if event.end_s >= duration - 0.35:
    return _p(rng, "continuing until the recording ends",
              "carrying on to the end of the clip",
              "lasting through to the end", "and it runs to the end")
  e = _seconds(event.end_s)
  return _p(rng, f"stopping at about {e} seconds",
            f"ending near the {e}-second mark",
            f"falling silent at roughly {e} seconds",
            f"until about {e} seconds")


def _background(a: dict[str, Any], scene: Scene) -> bool:
  loudest = max(scene_lib.attrs(e)["gain_db"] for e in scene.events)
  return a["gain_db"] <= loudest - 8.0


def _where(rng, a: dict[str, Any], scene: Scene) -> str:
  if not _background(a, scene):
    return ""
  return _p(rng, " in the background", " faintly in the background",
            " at a low level behind the other sounds")


# ----------------------------------------------------------------------------
# Speech.

_EMOTION_WORDS = {
    "neutral": ("calm, neutral", "even, matter-of-fact", "level, composed"),
    "happy": ("cheerful, upbeat", "happy, animated", "bright, joyful"),
    "sad": ("sad, subdued", "downcast, melancholy", "low, sorrowful"),
    "angry": ("angry, forceful", "irritated, sharp", "heated, aggressive"),
    "fearful": ("anxious, fearful", "nervous, trembling", "tense, frightened"),
}
_EMOTION_DETAIL = {
    "neutral": ("The delivery is even, with little variation in pitch or "
                "loudness.", "There is not much emotional colouring in the "
                "voice."),
    "happy": ("The pitch is lively and wide-ranging and the pace quick.",
              "The pitch leaps up on stressed syllables, sounding pleased."),
    "sad": ("The delivery is slow, with a narrow, sinking pitch and a breathy "
            "softness.", "The pace drags and the pitch stays low and flat."),
    "angry": ("The voice is loud and pressed, almost shouting, with sharp "
              "accents.", "The voice sounds strained and bright, each stress "
              "hit hard."),
    "fearful": ("The pitch quavers and trembles and the phrases are "
                "hurried.", "The voice is breathy and high, with a tremor in "
                "it."),
}


def _the(noun: str) -> str:
  for article in ("a ", "an "):
    if noun.startswith(article):
      return "the " + noun[len(article):]
  return noun


def _person(a: dict[str, Any], rng) -> str:
  man = a["sex"] == "male"
  if a["age"] == "child":
    return _p(rng, "a young boy" if man else "a young girl", "a child")
  if a["age"] == "young":
    return _p(rng, "a young man" if man else "a young woman",
              f"a young adult {'male' if man else 'female'} speaker")
  if a["age"] == "elderly":
    return _p(rng, "an elderly man" if man else "an elderly woman",
              "an older man" if man else "an older woman")
  return _p(rng, "a man" if man else "a woman",
            f"an adult {'male' if man else 'female'} speaker")


def _pitch_word(a: dict[str, Any]) -> str:
  f0 = a["pitch_hz"]
  if a["age"] == "child":
    return "high, childlike"
  edges = ((100, "deep"), (122, "low"), (145, "medium"), (math.inf,
                                                          "fairly high")) \
      if a["sex"] == "male" else ((180, "low"), (210, "medium"),
                                  (240, "high"), (math.inf, "very high"))
  return next(word for top, word in edges if f0 < top)


def _timbre(a: dict[str, Any], rng) -> str:
  norm = 17.3 if a["sex"] == "male" else 14.9
  if a["age"] == "child":
    norm = 11.8
  if a["vtl_cm"] >= norm + 0.4:
    return _p(rng, "dark, full", "rich, resonant", "deep, chesty")
  if a["vtl_cm"] <= norm - 0.4:
    return _p(rng, "bright, thin", "light, nasal", "small, bright")
  return _p(rng, "balanced", "rounded", "warm")


def _pace(rate: float) -> str:
  return ("slow" if rate < 4.0 else "moderate" if rate < 5.2 else "fast")


def _voice_quality(a: dict[str, Any], rng) -> str:
  parts = []
  if a["breathiness"] >= 0.45:
    parts.append(_p(rng, "noticeably breathy", "airy and breathy"))
  elif a["breathiness"] <= 0.15:
    parts.append(_p(rng, "clear and firm", "clean and steady"))
  if a["jitter"] >= 0.02:
    parts.append(_p(rng, "slightly shaky", "a little rough and unsteady"))
  return _join(parts)


def _language_sentence(a: dict[str, Any], rng) -> str:
  lang = speech.LANGUAGE_SPECS[a["language"]]
  name = a["language"].capitalize()
  return _p(
      rng,
      f"The speech is in an unfamiliar language that sounds like {name}, "
      f"with {lang.description}; no words are intelligible.",
      f"No words can be made out in the speech: the language, {name}-like, "
      f"is built from {lang.description}.",
      f"The speech is not English but an invented-sounding language "
      f"({name}) of {lang.description}, so the content cannot be "
      "understood.")


def _speech_sentences(rng, event: Event, scene: Scene,
                      introduced: dict[int, str]) -> list[str]:
  a = scene_lib.attrs(event)
  first = a["speaker"] not in introduced
  when = _when(rng, event, scene.duration_s)
  until = _until(rng, event, scene.duration_s)
  emotion = _p(rng, *_EMOTION_WORDS[a["emotion"]])
  if first:
    who = _person(a, rng)
    if introduced:
      subject = _p(rng, f"a second speaker, {who}, replies",
                   f"another voice, {who}, responds",
                   f"{who} joins the conversation, speaking")
    else:
      subject = _p(rng, f"{who} speaks", f"{who} begins to talk",
                   f"the speech of {who} begins",
                   f"{who} is heard speaking")
    introduced[a["speaker"]] = who
  else:
    who = _the(introduced[a["speaker"]])
    subject = _p(rng, f"{who} speaks again",
                 "the first speaker talks again" if len(introduced) > 1 else
                 "the same speaker resumes talking",
                 f"{who} resumes speaking")
  out = [f"{when}, {subject}{_where(rng, a, scene)} in {_an(emotion)} tone, "
         f"{until}."]
  if first:
    quality = _voice_quality(a, rng)
    quality = f" The voice is {quality}." if quality else ""
    out.append(_p(
        rng,
        f"The speaker has a {_pitch_word(a)} pitch, centred near "
        f"{a['pitch_hz']:.0f} Hz, with a {_timbre(a, rng)} timbre, and the "
        f"speech is at a {_pace(a['rate_sps'])} pace.{quality}",
        f"It is a {_pitch_word(a)}-pitched voice (around "
        f"{a['pitch_hz']:.0f} Hz) with a {_timbre(a, rng)} quality; the "
        f"speech moves at a {_pace(a['rate_sps'])} rate.{quality}",
        f"This speaker's pitch is {_pitch_word(a)}, near "
        f"{a['pitch_hz']:.0f} Hz, the timbre {_timbre(a, rng)}, and the "
        f"speech rate {_pace(a['rate_sps'])}.{quality}"))
    out.append(_language_sentence(a, rng))
  out.append(_p(rng, *_EMOTION_DETAIL[a["emotion"]]))
  if a["intonation"] == "question":
    out.append(_p(rng, "The phrase ends on a rising pitch, as if asking a "
                  "question.", "The intonation rises at the close, giving it "
                  "a questioning feel."))
  else:
    out.append(_p(rng, "The pitch falls at the end of the phrase, as in a "
                  "statement.", "The delivery ends on a falling, declarative "
                  "intonation."))
  return out


# ----------------------------------------------------------------------------
# Music.

_GENRE_NOUN = {"rock": "rock", "pop": "pop", "jazz": "jazz",
               "classical": "classical", "electronic": "electronic",
               "folk": "folk", "blues": "blues", "ambient": "ambient"}
_SCALE_NAME = {"major": "major", "minor": "minor", "dorian": "Dorian",
               "major_pentatonic": "major pentatonic",
               "minor_pentatonic": "minor pentatonic", "blues": "blues scale"}
_MOODS = {"major": ("bright", "cheerful", "uplifting", "happy"),
          "minor": ("melancholic", "moody", "wistful", "dark")}
_INSTRUMENT_NOUNS = {
    "guitar": ("an acoustic guitar", "a plucked guitar", "a guitar"),
    "piano": ("a piano", "an acoustic piano"),
    "organ": ("an organ", "an electric organ", "a drawbar organ"),
    "flute": ("a flute", "a breathy flute"),
    "bass": ("a bass guitar", "an electric bass", "a bass"),
    "synth": ("a synthesizer", "a synth", "an analog-style synth"),
    "strings": ("a string section", "bowed strings", "a small string "
                "ensemble"),
    "marimba": ("a marimba", "a mallet marimba"),
    "drums": ("a drum kit", "drums", "a set of drums"),
}
_KIT_WORDS = {"acoustic": "an acoustic drum kit",
              "electronic": "an electronic drum machine",
              "brush": "a drum kit played with brushes"}
_PATTERN_WORDS = {
    "rock": "a straight rock beat with a backbeat snare on two and four",
    "pop": "a steady pop groove with busy sixteenth-note hi-hats",
    "four": "a four-on-the-floor kick with offbeat open hi-hats",
    "swing": "a swung ride-cymbal pattern with the hi-hat on two and four",
    "shuffle": "a loping shuffle beat",
    "folk": "a light, simple beat",
    "waltz": "a waltz pattern, the kick on one and the snare on two and "
             "three",
}


def _key_name(key: str) -> str:
  return key.replace("#", "-sharp").replace("b", "-flat") if len(key) > 1 \
      else key


def _tempo_word(bpm: float) -> str:
  return ("slow" if bpm < 80 else "moderate" if bpm < 110 else
          "lively" if bpm < 135 else "fast")


def _instrument_noun(a: dict[str, Any], rng) -> str:
  if a["instrument"] == "voice":
    return _p(rng, f"a {a['singer']} vocalist", f"a {a['singer']} singer")
  if a["instrument"] == "drums":
    return _KIT_WORDS[a["kit"]]
  return _p(rng, *_INSTRUMENT_NOUNS[a["instrument"]])


def _part_verb(a: dict[str, Any], rng) -> str:
  inst, role = a["instrument"], a["role"]
  if inst == "drums":
    pattern = "waltz" if a["meter"] == 3 else (
        music.GENRES[a["genre"]].pattern or "rock")
    return _p(rng, f"plays {_PATTERN_WORDS[pattern]}",
              f"keeps time with {_PATTERN_WORDS[pattern]}")
  if inst == "voice":
    return _p(rng, "sings a wordless melody", "sings a melodic line of "
              "vowel sounds without words")
  if role == "bass":
    walking = a["genre"] in ("jazz", "blues")
    return _p(rng, "lays down a walking bass line" if walking else
              "plays a bass line on the chord roots",
              "walks through the changes in the low register" if walking
              else "anchors the harmony with low root notes")
  if role == "chords":
    comp = music.GENRES[a["genre"]].comp
    if inst in ("organ", "strings", "synth") and comp != "offbeat":
      return _p(rng, "sustains long chords", "holds a bed of sustained "
                "chords", "plays slow, held chords")
    if inst == "guitar" and comp in ("block", "sustain", "offbeat", "strum"):
      return _p(rng, "strums chords on every beat", "strums the chord "
                "changes")
    return {"block": "plays block chords",
            "offbeat": "comps syncopated chords on the offbeats",
            "arpeggio": "plays flowing arpeggiated chords",
            "strum": "strums chords",
            "sustain": "holds sustained chords"}[comp]
  return _p(rng, "plays the lead melody", "carries the melody",
            "plays a melodic line over the top")


def _music_sentences(rng, event: Event, scene: Scene,
                     first: bool) -> list[str]:
  a = scene_lib.attrs(event)
  noun = _instrument_noun(a, rng)
  verb = _part_verb(a, rng)
  out = []
  if first:
    genre = _GENRE_NOUN[a["genre"]]
    quality = music.QUALITY[a["scale"]]
    mood = _p(rng, *_MOODS[quality])
    style = _p(rng, *music.GENRES[a["genre"]].words)
    key = f"{_key_name(a['key'])} {_SCALE_NAME[a['scale']]}"
    bpm, tempo = a["tempo_bpm"], _tempo_word(a["tempo_bpm"])
    meter = ("in a lilting triple meter, like a waltz" if a["meter"] == 3
             else "in common 4/4 time")
    swing = " with a swung, shuffling feel" if a["swing"] else ""
    melodic = any(scene_lib.attrs(e)["instrument"] != "drums"
                  for e in scene.events if e.kind == "music")
    piece = _p(rng, f"{style} {genre} music", f"{_an(genre)} music track",
               f"live-sounding {genre} music")
    out.append(f"{_when(rng, event, scene.duration_s)}, {piece} begins"
               f"{_where(rng, a, scene)}.")
    if melodic:
      out.append(_p(
          rng,
          f"It is in {key}, which gives it {_an(mood)} character, at a {tempo} "
          f"tempo of about {bpm:.0f} beats per minute, {meter}{swing}.",
          f"Played in {key} at roughly {bpm:.0f} BPM {meter}{swing}, the "
          f"music feels {mood} and {tempo}.",
          f"The harmony follows a {a['progression']} chord progression in "
          f"{key}; the tempo is {tempo}, around {bpm:.0f} BPM, {meter}"
          f"{swing}, and the mood is {mood}."))
    else:
      out.append(f"The beat sits at about {bpm:.0f} BPM, a {tempo} tempo, "
                 f"{meter}{swing}.")
    out.append(f"{_cap(noun)} {verb}.")
  elif event.start_s >= 0.35 and a["bar0"] > 0:
    out.append(f"{_when(rng, event, scene.duration_s)}, {noun} joins in and "
               f"{verb}.")
  else:
    out.append(_p(rng, f"{_cap(noun)} {verb} alongside.",
                  f"Underneath, {noun} {verb}.",
                  f"{_cap(noun)} also {verb}."))
  return out


# ----------------------------------------------------------------------------
# Environmental sounds.

_COUNT = ("", "once", "twice", "three times", "four times", "five times",
          "six times", "seven times", "eight times", "nine times",
          "ten times", "eleven times", "twelve times")


def _sound_phrases(rng, kind: str, a: dict[str, Any]) -> tuple[str, str]:
  """(subject-verb clause, detail sentence) of an environmental event."""
  if kind == "rain":
    heavy = a["intensity"] == "heavy"
    return (_p(rng, "heavy rain pours down", "a heavy downpour of rain "
               "roars", "dense, heavy rain falls") if heavy else
            _p(rng, "light rain patters steadily", "a light rain shower "
               "falls", "gentle rain patters down"),
            _p(rng, "The rain is a broadband hiss dotted with individual "
               "drop impacts.", "Its texture is a wash of noise with crisp, "
               "scattered droplets."))
  if kind == "wind":
    strong = a["strength"] == "strong"
    return (_p(rng, "strong, gusty wind blows", "a strong wind howls and "
               "gusts") if strong else
            _p(rng, "a gentle wind blows", "a soft breeze of wind rustles"),
            _p(rng, "The wind rises and falls in slow gusts, a low rushing "
               "noise.", "It surges and fades as the gusts come and go."))
  if kind == "engine":
    vehicle = {"car": "car", "truck": "heavy truck",
               "motorcycle": "motorcycle"}[a["vehicle"]]
    state = {"idling": (f"the engine of {_an(vehicle)} idles",
                        f"{_an(vehicle)} engine idles with a steady rumble"),
             "accelerating": (f"{_an(vehicle)} engine revs up and "
                              "accelerates",
                              f"the engine of {_an(vehicle)} winds up as it "
                              "accelerates"),
             "passing": (f"{_an(vehicle)} drives past, its engine rising and "
                         "fading", f"the engine of a passing {vehicle} swells "
                         "and recedes")}[a["state"]]
    detail = {"idling": "The engine's hum is low and steady, with a "
                        "throbbing texture.",
              "accelerating": "Its low hum climbs steadily in pitch as the "
                              "revs increase.",
              "passing": "The sound grows louder as it approaches and its "
                         "pitch drops slightly as it moves away."}
    return _p(rng, *state), detail[a["state"]]
  if kind == "siren":
    how = {"wail": "wails, sweeping slowly up and down in pitch",
           "yelp": "yelps in rapid pitch sweeps",
           "hi-lo": "alternates between a high and a low tone"}[a["pattern"]]
    subject = _p(rng, f"an emergency siren {how}", f"a siren {how}")
    detail = (_p(rng, "It swells as it draws near and fades as it moves "
                 "away, its pitch dropping slightly as it passes.",
                 "The siren passes by: louder, then receding with a slight "
                 "drop in pitch.") if a["motion"] == "passing" else
              _p(rng, "Its level stays steady, suggesting a stationary "
                 "source.", "The siren holds a constant loudness "
                 "throughout."))
    return subject, detail
  if kind == "dog_bark":
    dog = (_p(rng, "a large dog", "a big dog with a deep voice")
           if a["size"] == "large" else
           _p(rng, "a small dog", "a little dog with a high-pitched yap"))
    detail = ("The bark is short and sharp, with a harsh, noisy onset."
              if a["count"] == 1 else
              _p(rng, "Each bark is a short, punchy burst with a rough, "
                 "noisy onset.", "The barks are brief bursts separated by "
                 "short pauses."))
    return f"{dog} barks {_COUNT[a['count']]}", detail
  if kind == "birdsong":
    call = {"trill": (_p(rng, "a bird trills rapidly",
                         "a small bird chirps in a rapid, high trill"),
                      "Each call is a fast run of descending chirps."),
            "whistle": (_p(rng, "a bird whistles a few clear notes",
                           "a bird calls with pure, whistled tones"),
                        "The whistled tones glide between pitches."),
            "warble": (_p(rng, "a bird warbles", "a bird twitters and "
                          "warbles"),
                       "Its call is a quick, twittering warble of shifting "
                       "high pitches.")}[a["song"]]
    calls = "a single call" if a["count"] == 1 else f"{a['count']} calls"
    return call[0], f"{call[1]} The bird is heard in {calls}."
  if kind == "footsteps":
    surface = {"hard": "a hard floor", "wood": "a wooden floor",
               "gravel": "gravel"}[a["surface"]]
    pace = "slowly" if a["pace"] == "slow" else "briskly"
    detail = {"hard": "Each footstep is a crisp click of heel then toe.",
              "wood": "Each footstep lands with a hollow, resonant thud on "
                      "the boards.",
              "gravel": "Each footstep crunches in the loose gravel."}
    return (_p(rng, f"footsteps walk {pace} across {surface}",
               f"someone walks {pace} on {surface}, footsteps clearly "
               "audible"), detail[a["surface"]])
  if kind == "knocking":
    force = "firmly" if a["force"] == "hard" else "softly"
    return (_p(rng, f"someone knocks {force} on a door {_COUNT[a['count']]}",
               f"there is a {a['force']} knocking on a wooden door, "
               f"{_COUNT[a['count']]}"),
            "The knocks are quick, resonant wooden thuds.")
  if kind == "alarm":
    hz = a["pitch_hz"]
    subject = {"beeping": _p(rng, "an electronic alarm beeps repeatedly",
                             "an alarm emits a series of sharp beeps"),
               "two-tone": _p(rng, "a two-tone alarm sounds",
                              "an alarm cycles between a high and a low "
                              "tone"),
               "ringing": _p(rng, "an alarm bell rings",
                             "a bell-like alarm rings in bursts")}
    detail = {"beeping": f"The beeps are steady tones at about {hz:.0f} Hz.",
              "two-tone": f"The tones sit at roughly {hz:.0f} and "
                          f"{0.75 * hz:.0f} Hz.",
              "ringing": f"A clapper strikes the bell rapidly; its metallic "
                         f"ring is centred near {hz:.0f} Hz."}
    return subject[a["pattern"]], detail[a["pattern"]]
  large = a["size"] == "large"
  return (_p(rng, "a large crowd chatters", "the babble of a big crowd fills "
             "the space") if large else
          _p(rng, "a small group of people chatter", "the chatter of a few "
             "people is heard"),
          _p(rng, "The overlapping voices merge into an indistinct babble.",
             "No single conversation can be followed in the babble."))


def _sound_sentences(rng, event: Event, scene: Scene) -> list[str]:
  a = scene_lib.attrs(event)
  subject, detail = _sound_phrases(rng, event.kind, a)
  return [f"{_when(rng, event, scene.duration_s)}, {subject}"
          f"{_where(rng, a, scene)}, {_until(rng, event, scene.duration_s)}.",
          detail]


# ----------------------------------------------------------------------------
# Scene and production.

_SCENE_WORDS = {
    "street": ("on a busy city street", "outdoors beside a street"),
    "park": ("in a park", "in an open park"),
    "forest": ("in a forest", "out in the woods"),
    "home": ("inside a home, in a room such as a living room or kitchen",
             "in a domestic room at home"),
    "office": ("in an office", "inside an office space"),
    "cafe": ("in a busy cafe or restaurant", "inside a cafe"),
    "hall": ("in a large hall, such as a church or concert hall",
             "inside a large, echoing hall"),
    "station": ("in a train station or similar large public concourse",
                "inside a busy station hall"),
    "studio": ("in a studio or recording booth", "in a quiet studio"),
}


def _room_sentence(rng, tr: dict[str, Any]) -> str:
  if tr["room"] == "outdoor":
    room = _p(rng, "The sound is dry, with no room reflections, consistent "
              "with an open outdoor space.", "There is no reverberation; "
              "the open acoustics point to an outdoor setting.")
  elif tr["room"] == "small":
    room = (_p(rng, "The acoustics are dry and close, a small, treated "
               "room with only a hint of reverberation.",
               "Only a very short room sound follows each sound, like a "
               "small booth.") if tr["rt60_s"] < 0.28 else
            _p(rng, "A short reverberation trails each sound, typical of a "
               "small indoor room.", "The acoustics are those of a small "
               "room: a brief reverberant tail follows every sound."))
  elif tr["room"] == "medium":
    room = _p(rng, "A moderate reverberation fills the space, as in a "
              "medium-sized room.", "The room sound is noticeable but not "
              "long, like a medium-sized interior.")
  else:
    room = _p(rng, f"A long, diffuse reverberant tail of about "
              f"{tr['rt60_s']:.1f} seconds suggests a large, spacious "
              "interior.", "Sounds linger in a long, hall-like reverberation, "
              "indicating a large indoor space.")
  if tr["distance"] == "far":
    room += " " + _p(rng, "The sources sound distant from the microphone, a "
                     "little dull and washed out.", "The microphone seems "
                     "far from the sources, which sound remote and softened.")
  return room


def _production_sentences(rng, tr: dict[str, Any]) -> list[str]:
  out = []
  if tr["noise_db"] <= -45:
    out.append(_p(rng, "The background is clean and quiet.",
                  "There is hardly any background noise."))
  elif tr["noise_db"] <= -30:
    out.append(_p(rng, "A low, steady background noise sits beneath the "
                  "main sounds.", "A faint noise floor is audible in quiet "
                  "moments."))
  else:
    out.append(_p(rng, "A persistent layer of background noise is clearly "
                  "audible and partly masks quieter details.",
                  "Noticeable background noise runs throughout, lowering "
                  "the clarity of the recording."))
  if tr["hiss_db"] > scene_lib.AUDIBLE_HISS_DB:
    out.append(_p(rng, "A steady high-frequency hiss, like tape or preamp "
                  "noise, is present.", "There is an audible hiss over the "
                  "whole recording."))
  if tr["hum_hz"] and tr["hum_db"] > scene_lib.AUDIBLE_HUM_DB:
    out.append(_p(rng, f"A low electrical hum at {tr['hum_hz']} Hz, from "
                  "the mains, drones underneath.", f"A {tr['hum_hz']} Hz "
                  "mains hum is audible, a buzzing low drone."))
  if tr["clipping_db"] > 0:
    out.append(_p(rng, "The level is pushed too hard: the loudest moments "
                  "are clipped and distorted.", "Peaks are clipped, adding "
                  "harsh distortion to the louder passages."))
  if tr["telephone"]:
    out.append(_p(rng, "The audio is band-limited like a telephone line, "
                  "thin and lacking both deep bass and crisp treble.",
                  "A narrow, telephone-like frequency band gives the sound "
                  "a thin, lo-fi quality."))
  loud = tr["loudness_db"]
  if tr["clipping_db"] > 0 or loud > -19:
    out.append(_p(rng, "Overall the recording is loud.",
                  "The overall level is high."))
  elif loud < -28:
    out.append(_p(rng, "Overall the recording is quiet, at a low level.",
                  "The overall level is low and quiet."))
  return out


# ----------------------------------------------------------------------------
# Overview and summary.


def _speaker_phrase(scene: Scene, rng) -> str:
  seen: dict[int, dict[str, Any]] = {}
  for e in scene.events:
    if e.kind == "speech":
      a = scene_lib.attrs(e)
      seen.setdefault(a["speaker"], a)
  people = [_person(a, rng) for a in seen.values()]
  if len(people) == 1:
    return _p(rng, f"{people[0]} speaking", f"speech from {people[0]}",
              f"the speech of {people[0]}")
  return _p(rng, f"{_join(people)} talking in turn",
            f"speech from {_join(people)}, talking in turn",
            f"a conversation between {_join(people)}")


def _ensemble(scene: Scene) -> list[dict[str, Any]]:
  return [scene_lib.attrs(e) for e in sorted(scene.events,
                                             key=lambda e: e.start_s)
          if e.kind == "music"]


def _music_phrase(scene: Scene, rng) -> str:
  parts = _ensemble(scene)
  a = parts[0]
  names = []
  for p in parts:
    inst = p["instrument"]
    names.append({"voice": f"{p['singer']} vocals", "drums": "drums",
                  "strings": "strings", "bass": "bass"}.get(inst, inst))
  genre = _GENRE_NOUN[a["genre"]]
  mood = _p(rng, *_MOODS[music.QUALITY[a["scale"]]])
  where = _where(rng, a, scene)
  players = _join(names)
  key = f"{_key_name(a['key'])} {_SCALE_NAME[a['scale']]}"
  return _p(rng,
            f"{mood} {genre} music on {players}{where}",
            f"{genre} music played on {players}{where}",
            f"music in {key}, {_an(genre)} track with {players}{where}",
            f"{players} playing {mood} {genre} music{where}",
            f"{players} performing {genre} music in {key}{where}")


_SUMMARY_NOUNS = {
    "rain": lambda a, rng: f"{a['intensity']} rain",
    "wind": lambda a, rng: f"{a['strength']} wind",
    "engine": lambda a, rng: {"idling": f"an idling {a['vehicle']} engine",
                              "accelerating": f"an accelerating "
                                              f"{a['vehicle']} engine",
                              "passing": f"a passing {a['vehicle']} engine"
                              }[a["state"]],
    "siren": lambda a, rng: ("a passing siren" if a["motion"] == "passing"
                             else _p(rng, "a siren", "an emergency siren")),
    "dog_bark": lambda a, rng: f"a {a['size']} dog barking",
    "birdsong": lambda a, rng: _p(rng, "birdsong", "bird calls",
                                  "a chirping bird"),
    "footsteps": lambda a, rng: f"footsteps on {a['surface']}" if a[
        "surface"] == "gravel" else f"footsteps on a {a['surface']} floor",
    "knocking": lambda a, rng: "knocking on a door",
    "alarm": lambda a, rng: {"beeping": "a beeping alarm",
                             "two-tone": "a two-tone alarm",
                             "ringing": "a ringing alarm bell"}[a["pattern"]],
    "crowd": lambda a, rng: ("the babble of a large crowd" if a["size"] ==
                             "large" else "a small crowd chattering"),
}


def _summary_sources(scene: Scene, rng) -> list[str]:
  """One phrase per distinct source, in order of onset."""
  out, done = [], set()
  for e in sorted(scene.events, key=lambda e: e.start_s):
    a = scene_lib.attrs(e)
    if e.kind == "speech":
      if "speech" not in done:
        done.add("speech")
        out.append(_speaker_phrase(scene, rng))
    elif e.kind == "music":
      if "music" not in done:
        done.add("music")
        out.append(_music_phrase(scene, rng))
    else:
      phrase = _SUMMARY_NOUNS[e.kind](a, rng) + _where(rng, a, scene)
      if phrase not in out:
        out.append(phrase)
  return out


def _emotion_summary(scene: Scene) -> str:
  emotions = list(dict.fromkeys(scene_lib.attrs(e)["emotion"]
                                for e in scene.events if e.kind == "speech"))
  if not emotions:
    return ""
  words = [_EMOTION_WORDS[x][0].split(", ")[1] if x != "neutral" else
           "neutral" for x in emotions]
  return f" in {_join(words)} tones"


def _production_summary(tr: dict[str, Any], rng) -> str:
  bits = []
  if tr["room"] == "outdoor":
    bits.append(_p(rng, "dry open-air acoustics", "no reverberation"))
  elif tr["room"] == "large":
    bits.append(_p(rng, "long hall reverberation", "a spacious reverb"))
  elif tr["room"] == "medium":
    bits.append("moderate room reverberation")
  else:
    bits.append(_p(rng, "a small-room sound", "close, dry room acoustics"))
  if tr["distance"] == "far":
    bits.append("distant sources")
  bits.append("little background noise" if tr["noise_db"] <= -45 else
              "a low noise floor" if tr["noise_db"] <= -30 else
              "noticeable background noise")
  if tr["hiss_db"] > scene_lib.AUDIBLE_HISS_DB:
    bits.append("audible hiss")
  if tr["hum_hz"] and tr["hum_db"] > scene_lib.AUDIBLE_HUM_DB:
    bits.append(f"a {tr['hum_hz']} Hz mains hum")
  if tr["clipping_db"] > 0:
    bits.append("clipping distortion")
  if tr["telephone"]:
    bits.append("telephone-band filtering")
  return _join(bits)


def summary_paragraph(scene: Scene, rng: np.random.Generator) -> str:
  """The closing paragraph (the strong caption, after its lead-in)."""
  tr = scene_lib.traits_of(scene)
  sources = _summary_sources(scene, rng)
  if any(e.kind == "speech" for e in scene.events):
    i = next(i for i, s in enumerate(sources) if "speaking" in s or
             "talking" in s or "speech" in s or "conversation" in s)
    sources[i] += _emotion_summary(scene)
  what = _join(sources)
  where = _p(rng, *_SCENE_WORDS[tr["scene"]])
  production = _production_summary(tr, rng)
  lead = _p(rng, "In summary, ", "Overall, ", "To sum up, ", "In short, ")
  return lead + _p(
      rng,
      f"the clip is a recording {where} of {what}, with {production}.",
      f"this is {what}, recorded {where}, with {production}.",
      f"the audio captures {what} {where}; it has {production}.")


def overview(scene: Scene, rng: np.random.Generator) -> str:
  """The opening paragraph: the clip's length, setting and sources.

  Args:
    scene: the scene.
    rng: random generator choosing among phrasings (consumed).
  """
  tr = scene_lib.traits_of(scene)
  sources = _summary_sources(scene, rng)
  d = scene.duration_s
  where = _p(rng, *_SCENE_WORDS[tr["scene"]])
  return _p(
      rng,
      f"The recording is a roughly {d:.0f}-second clip made {where}, "
      f"featuring {_join(sources)}.",
      f"This {d:.1f}-second audio clip, captured {where}, contains "
      f"{_join(sources)}.",
      f"Over about {d:.0f} seconds, the audio presents {_join(sources)}; "
      f"the setting sounds like it is {where}.",
      f"The clip opens {where} and lasts about {d:.0f} seconds; in it one "
      f"hears {_join(sources)}.")


def caption_scene(scene: Scene, rng: np.random.Generator) -> tuple[str, str]:
  """Writes a captioner-style description of a scene.

  Args:
    scene: the scene.
    rng: random generator choosing among phrasings (consumed).

  Returns:
    (full_caption, strong_caption): the full caption's paragraphs are the
    overview, the sources in order of onset, the space and production, and
    a closing summary after a blank line; the strong caption is that summary
    as `captioner.strong_caption` extracts it.
  """
  scene_lib.validate_scene(scene)
  tr = scene_lib.traits_of(scene)
  paragraphs = [overview(scene, rng)]
  introduced: dict[int, str] = {}
  music_seen = False
  order = sorted(range(len(scene.events)),
                 key=lambda i: (scene.events[i].start_s, i))
  speech_par: list[str] = []
  music_par: list[str] = []
  sound_par: list[str] = []
  for i in order:
    event = scene.events[i]
    if event.kind == "speech":
      speech_par += _speech_sentences(rng, event, scene, introduced)
    elif event.kind == "music":
      music_par += _music_sentences(rng, event, scene, not music_seen)
      music_seen = True
    else:
      sound_par += _sound_sentences(rng, event, scene)
  body = [" ".join(p) for p in (speech_par, music_par, sound_par) if p]
  # Captioners vary the order in which they treat the layers of a scene.
  if len(body) > 1 and rng.random() < 0.5:
    body = body[1:] + body[:1]
  paragraphs += body
  paragraphs.append(" ".join([_room_sentence(rng, tr)] +
                             _production_sentences(rng, tr)))
  paragraphs.append(summary_paragraph(scene, rng))
  full = "\n\n".join(paragraphs)
  return full, captioner.strong_caption(full)


def mentions(text: str, event: Event) -> bool:
  """Whether `text` names the source of `event`."""
  text = text.lower()
  words = (INSTRUMENT_WORDS[scene_lib.attrs(event)["instrument"]]
           if event.kind == "music" else KIND_WORDS[event.kind])
  return any(w in text for w in words)

