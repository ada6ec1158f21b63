"""Speech tasks: VoxCeleb1/2 speaker identification, CREMA-D, Speech Commands."""

from __future__ import annotations

import collections
import dataclasses
import os
import re

import soundfile

from audiopt.evaluate.tasks import base

SPLITS = ("train", "validation", "test")

# Speech Commands v0.02: the 35 words (folders) of the release.
SPEECH_COMMANDS_WORDS = (
    "backward", "bed", "bird", "cat", "dog", "down", "eight", "five",
    "follow", "forward", "four", "go", "happy", "house", "learn", "left",
    "marvin", "nine", "no", "off", "on", "one", "right", "seven", "sheila",
    "six", "stop", "three", "tree", "two", "up", "visual", "wow", "yes",
    "zero")
# The 12-class keyword-spotting task (as TFDS speech_commands).
SPEECH_COMMANDS_12 = ("yes", "no", "up", "down", "left", "right", "on", "off",
                      "stop", "go", "_silence_", "_unknown_")
# CREMA-D emotion codes of the file names, in class order.
CREMA_D_EMOTIONS = {"ANG": "anger", "DIS": "disgust", "FEA": "fear",
                    "HAP": "happy", "NEU": "neutral", "SAD": "sad"}
_CREMA_NAME = re.compile(r"^(\d{4})_([A-Z]{3})_([A-Z]{3})_([A-Z]{2})$")


def read_voxceleb1(root: str, *, check: str = "header") -> base.TaskSpec:
  """VoxCeleb1 speaker identification (1,251 speakers), official split.

  Layout: `iden_split.txt` ("<1|2|3> idXXXXX/<video>/<utt>.wav": 1 train, 2
  validation, 3 test) and the audio under `wav/` (vox1_dev_wav and
  vox1_test_wav unpacked together). Classes: the speakers of the training
  split; a validation or test row of another speaker is a bad row.
  """
  split_file = os.path.join(root, "iden_split.txt")
  rows, errors = [], []
  for ref, line in base.text_lines(split_file):
    parts = line.split()
    if len(parts) != 2 or parts[0] not in ("1", "2", "3"):
      errors.append(f"{ref}: expected '<1|2|3> <speaker>/<video>/<file>', "
                    f"got {line!r}")
      continue
    rel = parts[1]
    if rel.count("/") != 2:
      errors.append(f"{ref}: path {rel!r} is not <speaker>/<video>/<file>")
      continue
    rows.append((ref, SPLITS[int(parts[0]) - 1], rel))
  classes = tuple(sorted({rel.split("/")[0] for _, s, rel in rows
                          if s == "train"}))
  examples = [base.Example(
      clip_id=os.path.splitext(rel)[0], split=split,
      labels=(rel.split("/")[0],), path=os.path.join(root, "wav", rel),
      row_ref=ref) for ref, split, rel in rows]
  spec = base.TaskSpec(
      name="voxceleb1", kind=base.MULTICLASS, classes=classes,
      splits=base.examples_by_split(examples, SPLITS), root=root,
      split_sources={s: split_file for s in SPLITS})
  return base.finish(spec, check=check, label_errors=errors)


def read_voxceleb2(root: str, *, subset: str = "dev",
                   check: str = "header") -> base.TaskSpec:
  """VoxCeleb2 speaker identification on its dev speakers (5,994).

  Layout: `<subset>/aac/idXXXXX/<video>/<utt>.m4a` as released (a copy
  converted to `.wav` / `.flac` in the same tree, e.g. `<subset>/wav/`, is
  read too). VoxCeleb2 has no identification split, so one is made per
  speaker by video, deterministically: the speaker's videos sorted by name,
  the last one is "test", the one before "validation" (when the speaker has
  at least three), the rest "train". Classes: every speaker with training
  clips. m4a audio needs ffmpeg.
  """
  base_dir = os.path.join(root, subset)
  folder = next((os.path.join(base_dir, d) for d in ("aac", "wav", "flac")
                 if os.path.isdir(os.path.join(base_dir, d))), None)
  if folder is None:
    raise base.TaskDataError("voxceleb2: audio folder not found",
                             [f"{base_dir}/aac: missing"])
  files = base.audio_files(folder, (".m4a", ".wav", ".flac"))
  by_speaker: dict[str, dict[str, list[str]]] = collections.defaultdict(
      lambda: collections.defaultdict(list))
  errors = []
  for rel in files:
    parts = rel.split(os.sep)
    if len(parts) != 3 or not parts[0].startswith("id"):
      errors.append(f"{os.path.join(folder, rel)}: not "
                    "id<speaker>/<video>/<utterance>")
      continue
    by_speaker[parts[0]][parts[1]].append(rel)
  examples = []
  for speaker in sorted(by_speaker):
    videos = sorted(by_speaker[speaker])
    for i, video in enumerate(videos):
      if len(videos) >= 2 and i == len(videos) - 1:
        split = "test"
      elif len(videos) >= 3 and i == len(videos) - 2:
        split = "validation"
      else:
        split = "train"
      for rel in by_speaker[speaker][video]:
        path = os.path.join(folder, rel)
        examples.append(base.Example(
            clip_id=os.path.splitext(rel)[0].replace(os.sep, "/"), split=split,
            labels=(speaker,), path=path, row_ref=path))
  classes = tuple(sorted({e.labels[0] for e in examples if e.split == "train"}))
  spec = base.TaskSpec(
      name="voxceleb2", kind=base.MULTICLASS, classes=classes,
      splits=base.examples_by_split(examples, SPLITS), root=root,
      split_sources={s: folder for s in SPLITS})
  return base.finish(spec, check=check, label_errors=errors)


def read_crema_d(root: str, *, seed: int = 0,
                 check: str = "header") -> base.TaskSpec:
  """CREMA-D emotion recognition (6 classes), speaker-disjoint splits.

  Layout (CheyneyComputerScience/CREMA-D): `AudioWAV/<actor>_<sentence>_
  <emotion>_<level>.wav`, e.g. 1001_DFA_ANG_XX.wav. CREMA-D has no
  official split: the 91 actors are split 70/10/20 into train / validation /
  test by a permutation seeded with `seed`, so no speaker is in two splits.
  A file whose emotion code is not one of ANG DIS FEA HAP NEU SAD is a bad
  row.
  """
  folder = os.path.join(root, "AudioWAV")
  if not os.path.isdir(folder):
    raise base.TaskDataError("crema_d: audio folder not found",
                             [f"{folder}: missing"])
  examples, errors = [], []
  for name in sorted(os.listdir(folder)):
    if not name.lower().endswith(".wav"):
      continue
    path = os.path.join(folder, name)
    match = _CREMA_NAME.match(os.path.splitext(name)[0])
    if not match:
      errors.append(f"{path}: name is not <actor>_<sentence>_<emotion>_"
                    "<level>.wav")
      continue
    actor, _, emotion, _ = match.groups()
    examples.append(base.Example(
        clip_id=os.path.splitext(name)[0], split=actor,
        labels=(CREMA_D_EMOTIONS.get(emotion, emotion),), path=path,
        row_ref=path))
  assign = base.split_by_groups([e.split for e in examples],
                                {"train": 0.7, "validation": 0.1, "test": 0.2},
                                seed=seed)
  examples = [dataclasses.replace(e, split=assign[e.split]) for e in examples]
  spec = base.TaskSpec(
      name="crema_d", kind=base.MULTICLASS,
      classes=tuple(CREMA_D_EMOTIONS.values()),
      splits=base.examples_by_split(examples, SPLITS), root=root,
      split_sources={s: folder for s in SPLITS})
  return base.finish(spec, check=check, label_errors=errors)


def read_speech_commands(root: str, *, task: str = "words",
                         check: str = "header") -> base.TaskSpec:
  """Speech Commands v0.02 (speech_commands_v0.02.tar.gz).

  Layout: one folder per word of 1-second clips, `_background_noise_/`,
  `validation_list.txt` and `testing_list.txt` ("<word>/<file>.wav" per
  line). Training clips: every clip in neither list.

  Args:
    root: the unpacked archive.
    task: "words": the 35 words; "12": the keyword-spotting task (ten
      keywords, "_unknown_" for the other words and "_silence_": 1-second
      segments of the background-noise files, every tenth to validation and
      every tenth from the fifth to test).
    check: audio file check, see `base.finish`.
  """
  if task not in ("words", "12"):
    raise ValueError(f"task={task!r}; valid: 'words', '12'")
  lists = {"validation": os.path.join(root, "validation_list.txt"),
           "test": os.path.join(root, "testing_list.txt")}
  listed: dict[str, tuple[str, str]] = {}
  errors = []
  for split, path in lists.items():
    for ref, line in base.text_lines(path):
      rel = line.replace("\\", "/")
      if rel.count("/") != 1:
        errors.append(f"{ref}: {line!r} is not <word>/<file>.wav")
        continue
      if rel.split("/")[0] not in SPEECH_COMMANDS_WORDS:
        errors.append(f"{ref}: word {rel.split('/')[0]!r} is not among the "
                      "35 words of Speech Commands v0.02")
        continue
      listed[rel] = (split, ref)
  keywords = set(SPEECH_COMMANDS_12[:10])

  def label(word):
    if task == "words":
      return word
    return word if word in keywords else "_unknown_"

  examples = []
  seen = set()
  for word in SPEECH_COMMANDS_WORDS:
    folder = os.path.join(root, word)
    names = sorted(os.listdir(folder)) if os.path.isdir(folder) else []
    for name in names:
      if not name.endswith(".wav"):
        continue
      rel = f"{word}/{name}"
      seen.add(rel)
      split, ref = listed.get(rel, ("train", os.path.join(root, rel)))
      examples.append(base.Example(
          clip_id=os.path.splitext(rel)[0], split=split, labels=(label(word),),
          path=os.path.join(root, rel), row_ref=ref))
  # Listed clips that are not on disk are reported as missing files.
  for rel, (split, ref) in listed.items():
    if rel not in seen:
      examples.append(base.Example(
          clip_id=os.path.splitext(rel)[0], split=split,
          labels=(label(rel.split("/")[0]),), path=os.path.join(root, rel),
          row_ref=ref))
  if task == "12":
    examples += _silence_examples(root)
  classes = SPEECH_COMMANDS_WORDS if task == "words" else SPEECH_COMMANDS_12
  spec = base.TaskSpec(
      name="speech_commands" if task == "words" else "speech_commands_12",
      kind=base.MULTICLASS, classes=classes,
      splits=base.examples_by_split(examples, SPLITS), root=root,
      split_sources={"train": root, **lists})
  return base.finish(spec, check=check, label_errors=errors)


def _silence_examples(root: str) -> list[base.Example]:
  folder = os.path.join(root, "_background_noise_")
  out = []
  if not os.path.isdir(folder):
    return out
  index = 0
  for name in sorted(os.listdir(folder)):
    if not name.endswith(".wav"):
      continue
    path = os.path.join(folder, name)
    try:
      seconds = int(soundfile.info(path).duration)
    except Exception:  # pylint: disable=broad-except
      seconds = 1  # one example, so the file check reports the file
    for start in range(max(seconds, 1)):
      split = ("validation" if index % 10 == 0 else
               "test" if index % 10 == 5 else "train")
      out.append(base.Example(
          clip_id=f"_silence_/{os.path.splitext(name)[0]}_{start}",
          split=split, labels=("_silence_",), path=path, start_s=float(start),
          duration_s=1.0, row_ref=path))
      index += 1
  return out
