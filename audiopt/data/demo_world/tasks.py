"""Held-out evaluation tasks drawn from the demo world.

Shaped like the paper's suite, each with train and test splits whose clips
come from seed streams disjoint from the pre-training corpus and from each
other:

  speaker_id    multiclass, 20 speakers of a held-out population, each
                heard with varied emotion, room and channel (VoxCeleb-like);
  emotion       multiclass, 5 emotions acted by held-out speakers; train and
                test speakers are disjoint (CREMA-D-like);
  instrument    multiclass, 9 pitched instruments playing short phrases in
                varied registers, genres and rooms (NSynth-like);
  music_tags    multilabel: genre, instruments, fast/slow, major/minor of
                full pieces (MagnaTagATune-like);
  sound_events  multilabel: which of 12 source kinds sound in a mix of one
                to four at varied levels (FSD50K-like);
  scene         multiclass, the 9 scene classes (acoustic scene
                classification);
  retrieval     caption-audio pairs (AudioCaps-like), for retrieval.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np

from audiopt.data.demo_world import core
from audiopt.data.demo_world import environment
from audiopt.data.demo_world import music
from audiopt.data.demo_world import scene as scene_lib
from audiopt.data.demo_world import speech

MULTICLASS, MULTILABEL, CAPTIONS = "multiclass", "multilabel", "captions"
SPEAKER_ID_CLASSES = 20
EMOTION_SPEAKERS = 40      # the first 28 speak in train, the rest in test
_EMOTION_TRAIN_SPEAKERS = 28
MUSIC_TAGS = (music.GENRE_NAMES + music.INSTRUMENTS +
              ("fast", "slow", "major", "minor"))
SOUND_EVENT_CLASSES = environment.KINDS + ("speech", "music")


class Task(NamedTuple):
  """A task: kind ("multiclass", "multilabel" or "captions") and classes."""
  kind: str
  classes: tuple[str, ...]
  description: str


TASKS: dict[str, Task] = {
    "speaker_id": Task(MULTICLASS, tuple(f"speaker_{k:02d}" for k in
                                         range(SPEAKER_ID_CLASSES)),
                       "speaker identification (VoxCeleb-like)"),
    "emotion": Task(MULTICLASS, speech.EMOTIONS,
                    "speech emotion, unseen speakers (CREMA-D-like)"),
    "instrument": Task(MULTICLASS, music.PITCHED,
                       "instrument recognition (NSynth-like)"),
    "music_tags": Task(MULTILABEL, MUSIC_TAGS,
                       "music tagging (MagnaTagATune-like)"),
    "sound_events": Task(MULTILABEL, SOUND_EVENT_CLASSES,
                         "sound event tagging (FSD50K-like)"),
    "scene": Task(MULTICLASS, scene_lib.SCENES,
                  "acoustic scene classification"),
    "retrieval": Task(CAPTIONS, (), "caption-audio retrieval pairs "
                      "(AudioCaps-like)"),
}
TASK_NAMES = tuple(TASKS)
PROBE_TASKS = tuple(t for t, spec in TASKS.items() if spec.kind != CAPTIONS)
SPLITS = ("train", "test")
# Population streams of `speech.population` (0 is pre-training).
_STREAMS = {"speaker_id": 1, "emotion": 2, "scene": 3, "retrieval": 4,
            "sound_events": 5}


def check_task(task: Any) -> Task:
  """Returns the `Task` named `task`; raises ValueError if it is unknown."""
  return TASKS[core.check_name("task", task, TASK_NAMES)]


def _population(task: str, seed: int, size: int):
  return speech.population(seed, _STREAMS[task], size)


def _speech_scene(d: core.Draw, clip_id: str, duration: float,
                  speaker: dict[str, Any], emotion: str | None,
                  classes: tuple[str, ...], p: tuple[float, ...]
                  ) -> scene_lib.Scene:
  """One speaker in the foreground of a scene, its ambience behind."""
  scene_class = core.pick(d.rng, classes, p)
  rule = scene_lib.SCENE_RULES[scene_class]
  events = scene_lib.speech_events(d, duration, [speaker], emotion=emotion,
                                   gain_db=0.0)
  for kind, prob, fixed, (lo, hi) in rule.beds:
    if d.chance(prob):
      e = scene_lib.environment_event(d, kind, duration, d.uniform(lo, hi),
                                      **fixed)
      events.append(scene_lib.Event(kind, 0.0, duration, e.attributes))
  return scene_lib.make_scene(d, clip_id, duration, scene_class, events)


def sample_task_clip(task: str, d: core.Draw | np.random.Generator,
                     clip_id: str, *, seed: int = 0, split: str = "train",
                     duration_s: float | None = None
                     ) -> tuple[scene_lib.Scene, list[int]]:
  """Draws a scene built for an evaluation task, and its targets.

  Args:
    task: one of `TASK_NAMES`.
    d: the draw (or a numpy generator), consumed.
    clip_id: the scene's clip id.
    seed: the world seed (fixes the task's speaker population).
    split: "train" or "test" (the emotion task's speakers differ).
    duration_s: clip length in [1, 10] s; None draws from
      `core.DEFAULT_DURATION_RANGE`.

  Returns:
    (scene, label_ids): label ids index the task's classes; one id for a
    multiclass task, the sorted present classes for a multilabel task,
    none for captions.
  """
  spec = check_task(task)
  core.check_name("split", split, SPLITS)
  d = d if isinstance(d, core.Draw) else core.Draw(d)
  rng = d.rng
  if duration_s is None:
    duration_s = core.r2(d.uniform(*core.DEFAULT_DURATION_RANGE))
  duration = core.check_duration(duration_s)
  names = spec.classes
  if task == "speaker_id":
    label = int(rng.integers(len(names)))
    speaker = _population(task, seed, SPEAKER_ID_CLASSES)[label]
    emotion = core.pick(rng, speech.EMOTIONS, (0.5, 0.125, 0.125, 0.125,
                                               0.125))
    scene = _speech_scene(
        d, clip_id, duration, speaker, emotion,
        ("studio", "home", "office", "street", "cafe", "hall"),
        (0.3, 0.2, 0.2, 0.1, 0.1, 0.1))
    return scene, [label]
  if task == "emotion":
    label = int(rng.integers(len(names)))
    people = _population(task, seed, EMOTION_SPEAKERS)
    people = (people[:_EMOTION_TRAIN_SPEAKERS] if split == "train"
              else people[_EMOTION_TRAIN_SPEAKERS:])
    speaker = people[int(rng.integers(len(people)))]
    scene = _speech_scene(d, clip_id, duration, speaker, names[label],
                          ("studio", "home", "office"), (0.6, 0.2, 0.2))
    return scene, [label]
  if task == "instrument":
    label = int(rng.integers(len(names)))
    events = scene_lib.music_events(d, duration, instruments=[names[label]])
    scene_class = core.pick(rng, ("studio", "home", "hall"), (0.6, 0.2, 0.2))
    return scene_lib.make_scene(d, clip_id, duration, scene_class, events,
                                clean=True), [label]
  if task == "music_tags":
    genre = core.pick(rng, music.GENRE_NAMES)
    events = []
    while not events:
      events = scene_lib.music_events(d, duration, genre=genre)
    scene_class = core.pick(rng, ("studio", "hall", "home", "cafe"),
                            (0.5, 0.2, 0.15, 0.15))
    scene = scene_lib.make_scene(d, clip_id, duration, scene_class, events,
                                 clean=scene_class == "studio")
    a = scene_lib.attrs(events[0])
    tags = {a["genre"], music.QUALITY[a["scale"]]}
    tags |= {scene_lib.attrs(e)["instrument"] for e in events}
    if a["tempo_bpm"] >= 120:
      tags.add("fast")
    elif a["tempo_bpm"] < 85:
      tags.add("slow")
    return scene, sorted(names.index(t) for t in tags)
  if task == "sound_events":
    count = int(rng.choice(4, p=(0.35, 0.35, 0.2, 0.1))) + 1
    kinds = [names[int(i)] for i in
             np.sort(rng.choice(len(names), size=count, replace=False))]
    events = []
    for kind in kinds:
      gain = d.uniform(-12.0, 0.0)
      if kind == "speech":
        speaker = _population(task, seed, 60)[int(rng.integers(60))]
        events += scene_lib.speech_events(d, duration, [speaker],
                                          gain_db=gain)
      elif kind == "music":
        events += scene_lib.music_events(d, duration, gain_db=gain)
      else:
        events.append(scene_lib.environment_event(d, kind, duration, gain))
    present = sorted({e.kind for e in events})
    scene_class = core.pick(rng, [s for s in scene_lib.SCENES
                                  if s != "studio"])
    return (scene_lib.make_scene(d, clip_id, duration, scene_class, events),
            [names.index(k) for k in present])
  if task == "scene":
    label = int(rng.integers(len(names)))
    scene = scene_lib.sample_scene(
        d, clip_id, duration_s=duration, scene_class=names[label],
        population=_population(task, seed, 120))
    return scene, [label]
  scene = scene_lib.sample_scene(d, clip_id, duration_s=duration,
                                 population=_population(task, seed, 120))
  return scene, []
