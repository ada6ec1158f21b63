"""What every task reader returns: a `TaskSpec` of `Example`s, checked.

A reader turns a local copy of a public data set, laid out as its official
release, into one `TaskSpec`: the class list, the kind of task
("multiclass", "multilabel" or "captions"), and the examples of each split
(or cross-validation fold), each naming its audio (a file, optionally a
segment of it, or an in-memory waveform from a TFDS builder) and its labels
or captions.

Before returning, every reader calls `finish`, which fails on bad input:

* audio files that are missing, empty or unreadable: one `TaskDataError`
  listing all of them (not just the first);
* a split (or fold) without examples: `TaskDataError` naming the split and
  the file that defines it;
* a label outside the task's classes: `TaskDataError` naming the file and
  row ("path:line") of each such label.

`TaskDataError.problems` holds every problem as one string.
"""

from __future__ import annotations

import concurrent.futures
import csv
import dataclasses
import os
import shutil
import subprocess
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any

import numpy as np
import soundfile

from audiopt.audio import io as audio_io

MULTICLASS = "multiclass"
MULTILABEL = "multilabel"
CAPTIONS = "captions"
KINDS = (MULTICLASS, MULTILABEL, CAPTIONS)

# Extensions libsndfile decodes (header checked with soundfile.info); other
# audio (m4a, mp4, webm) is checked with ffprobe when it is installed and is
# decoded with ffmpeg.
SNDFILE_EXTENSIONS = (".wav", ".flac", ".ogg", ".mp3", ".au", ".aiff", ".aif",
                      ".snd")
_MAX_LISTED = 20


class TaskDataError(ValueError):
  """A task folder that cannot be evaluated as it is.

  Attributes:
    problems: every problem found, one string each (file paths, or
      "file:line" of bad rows).
  """

  def __init__(self, summary: str, problems: Sequence[str]):
    self.problems = list(problems)
    listed = "\n  ".join(self.problems[:_MAX_LISTED])
    more = len(self.problems) - _MAX_LISTED
    tail = f"\n  ... and {more} more" if more > 0 else ""
    super().__init__(f"{summary}:\n  {listed}{tail}" if self.problems
                     else summary)


@dataclasses.dataclass(frozen=True)
class Example:
  """One clip of a task.

  Attributes:
    clip_id: unique within the task.
    split: the split (or fold) it belongs to.
    labels: class names (one for multiclass, any number for multilabel).
    captions: reference captions (captioning / retrieval tasks).
    path: the audio file, or None for in-memory audio.
    audio: [N] float32 waveform when the audio is in memory (TFDS).
    sample_rate: the rate of `audio`.
    start_s: the clip's offset in the file, seconds.
    duration_s: the clip's length, seconds; None: to the end of the file.
    row_ref: "file:line" (or the file) that defined the example.
  """

  clip_id: str
  split: str
  labels: tuple[str, ...] = ()
  captions: tuple[str, ...] = ()
  path: str | None = None
  audio: np.ndarray | None = dataclasses.field(default=None, repr=False,
                                               compare=False)
  sample_rate: int | None = None
  start_s: float = 0.0
  duration_s: float | None = None
  row_ref: str = ""


@dataclasses.dataclass
class TaskSpec:
  """A task: classes, kind and the examples of each split.

  Attributes:
    name: task name, e.g. "esc50".
    kind: "multiclass", "multilabel" or "captions".
    classes: class names in id order (empty for caption tasks).
    splits: split name -> examples, in a fixed order.
    folds: the split names that are cross-validation folds (ESC-50, GTZAN
      without split lists); empty for train/validation/test tasks.
    root: the folder (or TFDS data_dir) read.
    split_sources: split name -> the file that defines it (for messages).
    stream: for TFDS tasks, `split -> iterator of (Example, [N] float32
      waveform, sample rate)` reading the audio in order; None: the audio
      is read from `Example.path` / `Example.audio`.
  """

  name: str
  kind: str
  classes: tuple[str, ...]
  splits: dict[str, list[Example]]
  folds: tuple[str, ...] = ()
  root: str = ""
  split_sources: dict[str, str] = dataclasses.field(default_factory=dict)
  stream: Callable[[str], Iterator[tuple[Example, np.ndarray, int]]] | None = (
      dataclasses.field(default=None, repr=False))

  @property
  def num_classes(self) -> int:
    """Number of classes (the width of a probe's output)."""
    return len(self.classes)

  @property
  def class_index(self) -> dict[str, int]:
    """Class name -> id."""
    return {c: i for i, c in enumerate(self.classes)}

  def examples(self, split: str | Sequence[str]) -> list[Example]:
    """The examples of one split, or of several concatenated in order."""
    names = [split] if isinstance(split, str) else list(split)
    unknown = [s for s in names if s not in self.splits]
    if unknown:
      raise KeyError(f"task {self.name!r} has no split(s) {unknown}; "
                     f"splits: {list(self.splits)}")
    return [e for s in names for e in self.splits[s]]

  def targets(self, split: str | Sequence[str]) -> np.ndarray:
    """Probe targets: int32 ids [N] (multiclass) or multi-hot [N, C]."""
    examples = self.examples(split)
    index = self.class_index
    if self.kind == MULTICLASS:
      return np.asarray([index[e.labels[0]] for e in examples], np.int32)
    if self.kind == MULTILABEL:
      out = np.zeros((len(examples), len(self.classes)), np.float32)
      for row, e in enumerate(examples):
        out[row, [index[l] for l in e.labels]] = 1.0
      return out
    raise ValueError(f"task {self.name!r} is a caption task: no class targets")

  def fold_splits(self) -> list[tuple[list[str], str]]:
    """Cross-validation rounds: [(training folds, test fold)], one per fold."""
    if not self.folds:
      raise ValueError(f"task {self.name!r} has no folds; splits: "
                       f"{list(self.splits)}")
    return [([f for f in self.folds if f != test], test) for test in self.folds]

  def iter_audio(self, split: str | Sequence[str], sample_rate: int = 16000
                 ) -> Iterator[tuple[Example, np.ndarray]]:
    """Yields (example, [N] float32 mono waveform at `sample_rate`) in order."""
    names = [split] if isinstance(split, str) else list(split)
    self.examples(names)  # checks the names
    for name in names:
      if self.stream is not None:
        for example, wav, rate in self.stream(name):
          yield example, _to_rate(wav, rate, sample_rate)
      else:
        for example in self.splits[name]:
          yield example, load_audio(example, sample_rate)


def _to_rate(wav: np.ndarray, rate: int, sample_rate: int) -> np.ndarray:
  wav = np.asarray(wav, np.float32)
  if wav.ndim == 2:
    wav = wav.mean(axis=-1)
  return audio_io.resample(wav, rate, sample_rate)


def load_audio(example: Example, sample_rate: int = 16000) -> np.ndarray:
  """The example's waveform: [N] float32 mono at `sample_rate`.

  Files libsndfile cannot read (m4a, mp4, webm) are decoded with ffmpeg.

  Raises:
    audiopt.audio.io.AudioDecodeError: unreadable or empty audio.
  """
  if example.audio is not None:
    wav = _to_rate(example.audio, example.sample_rate or sample_rate,
                   sample_rate)
  elif example.path is None:
    raise ValueError(f"example {example.clip_id!r} has neither a path nor "
                     "audio")
  elif example.path.lower().endswith(SNDFILE_EXTENSIONS):
    wav, rate = _read_segment(example)
    wav = _to_rate(wav, rate, sample_rate)
  else:
    wav = _ffmpeg_decode(example.path, sample_rate, example.start_s,
                         example.duration_s)
  if wav.size == 0:
    raise audio_io.AudioDecodeError(example.path or example.clip_id,
                                    "no samples in the clip's segment")
  return wav


def _read_segment(example: Example) -> tuple[np.ndarray, int]:
  path = example.path
  try:
    with soundfile.SoundFile(path) as f:
      rate = f.samplerate
      start = int(round(example.start_s * rate))
      frames = (-1 if example.duration_s is None
                else int(round(example.duration_s * rate)))
      if start:
        f.seek(min(start, f.frames))
      wav = f.read(frames, dtype="float32", always_2d=True)
  except Exception as e:  # pylint: disable=broad-except
    raise audio_io.AudioDecodeError(path, f"{type(e).__name__}: {e}") from e
  if not np.isfinite(wav).all():
    raise audio_io.AudioDecodeError(path, "non-finite samples")
  return wav.mean(axis=1), rate


def _ffmpeg_decode(path: str, sample_rate: int, start_s: float,
                   duration_s: float | None) -> np.ndarray:
  if shutil.which("ffmpeg") is None:
    raise audio_io.AudioDecodeError(
        path, "libsndfile cannot read this format and ffmpeg is not "
        "installed (apt-get install ffmpeg)")
  cmd = ["ffmpeg", "-nostdin", "-v", "error", "-ss", str(start_s)]
  if duration_s is not None:
    cmd += ["-t", str(duration_s)]
  cmd += ["-i", path, "-f", "f32le", "-ac", "1", "-ar", str(sample_rate), "-"]
  proc = subprocess.run(cmd, capture_output=True, check=False)
  if proc.returncode != 0:
    raise audio_io.AudioDecodeError(
        path, f"ffmpeg: {proc.stderr.decode(errors='replace').strip()}")
  return np.frombuffer(proc.stdout, np.float32).copy()


# ----------------------------------------------------------------------------
# Checks.


def file_problem(path: str, check: str = "header") -> str | None:
  """Why an audio file cannot be used, or None when it can.

  Args:
    path: the file.
    check: "exists" (present and non-empty) or "header" (also: libsndfile
      reads its header, or ffprobe reads it for other formats when ffprobe
      is installed).
  """
  try:
    size = os.path.getsize(path)
  except OSError:
    return f"{path}: missing"
  if not os.path.isfile(path):
    return f"{path}: not a file"
  if size == 0:
    return f"{path}: empty (0 bytes)"
  if check == "exists":
    return None
  if path.lower().endswith(SNDFILE_EXTENSIONS):
    try:
      info = soundfile.info(path)
    except Exception as e:  # pylint: disable=broad-except
      return f"{path}: unreadable: {type(e).__name__}: {e}"
    if info.format == "RAW":  # libsndfile's guess for an unknown header
      return f"{path}: unreadable: no {os.path.splitext(path)[1]} header"
    if info.frames <= 0:
      return f"{path}: unreadable: no audio frames"
    return None
  try:
    with open(path, "rb") as f:
      f.read(16)
  except OSError as e:
    return f"{path}: unreadable: {e}"
  if shutil.which("ffprobe") is not None:
    proc = subprocess.run(["ffprobe", "-v", "error", "-select_streams", "a:0",
                           "-show_entries", "stream=codec_type", "-of", "csv=p=0",
                           path], capture_output=True, check=False)
    if proc.returncode != 0 or b"audio" not in proc.stdout:
      reason = proc.stderr.decode(errors="replace").strip() or "no audio stream"
      return f"{path}: unreadable: {reason}"
  return None


def check_files(paths: Iterable[str], check: str = "header",
                threads: int = 8) -> list[str]:
  """`file_problem` of every distinct path, in order; [] when all are fine."""
  unique = list(dict.fromkeys(paths))
  if check == "none" or not unique:
    return []
  with concurrent.futures.ThreadPoolExecutor(threads) as pool:
    found = pool.map(lambda p: file_problem(p, check), unique)
    return [p for p in found if p is not None]


CHECKS = ("header", "exists", "none")


def finish(spec: TaskSpec, *, check: str = "header",
           label_errors: Sequence[str] = (),
           expected_splits: Sequence[str] | None = None) -> TaskSpec:
  """Validates a reader's result and returns it (see the module doc).

  Args:
    spec: the reader's task.
    check: how audio files are checked: "header" (default), "exists", or
      "none".
    label_errors: "file:line: ..." problems the reader found while parsing
      (labels outside the classes, bad fields).
    expected_splits: splits that must exist and be non-empty; default: the
      spec's own splits.

  Raises:
    TaskDataError: see the module doc; labels first, then empty splits,
      then files.
  """
  if spec.kind not in KINDS:
    raise ValueError(f"unknown task kind {spec.kind!r}; valid: {KINDS}")
  if check not in CHECKS:
    raise ValueError(f"check={check!r}; valid: {CHECKS}")
  problems = list(label_errors)
  index = spec.class_index
  if spec.kind != CAPTIONS:
    for split in spec.splits.values():
      for e in split:
        bad = [l for l in e.labels if l not in index]
        if bad:
          problems.append(f"{e.row_ref}: label(s) {bad} not among the "
                          f"{len(spec.classes)} classes of {spec.name}")
        elif not e.labels:
          problems.append(f"{e.row_ref}: no label")
        elif spec.kind == MULTICLASS and len(e.labels) != 1:
          problems.append(f"{e.row_ref}: {len(e.labels)} labels in a "
                          "multiclass task")
  else:
    for split in spec.splits.values():
      for e in split:
        if not e.captions:
          problems.append(f"{e.row_ref}: no caption")
  if problems:
    raise TaskDataError(f"{spec.name}: {len(problems)} bad row(s) in "
                        f"{spec.root}", problems)
  names = list(expected_splits) if expected_splits is not None else list(
      spec.splits)
  empty = [f"split {s!r} has no examples (defined by "
           f"{spec.split_sources.get(s, spec.root)})"
           for s in names if not spec.splits.get(s)]
  if empty:
    raise TaskDataError(f"{spec.name}: empty split(s) in {spec.root}", empty)
  if spec.stream is None:
    bad_files = check_files((e.path for s in spec.splits.values() for e in s
                             if e.path is not None), check)
    if bad_files:
      raise TaskDataError(
          f"{spec.name}: {len(bad_files)} missing or unreadable audio "
          f"file(s) in {spec.root}", bad_files)
  return spec


# ----------------------------------------------------------------------------
# Reading metadata files.


def require_file(path: str, what: str) -> str:
  """`path` if it is a file, else a TaskDataError naming it."""
  if not os.path.isfile(path):
    raise TaskDataError(f"{what} not found", [f"{path}: missing"])
  return path


def csv_rows(path: str, *, delimiter: str = ",", header: bool = True,
             required: Sequence[str] = ()
             ) -> Iterator[tuple[str, dict[str, str] | list[str]]]:
  """Yields ("path:line", row) of a CSV file.

  With `header`, rows are dicts keyed by the (stripped) header names and a
  header missing `required` columns, or a row with the wrong number of
  fields, raises TaskDataError naming the file and line.
  """
  require_file(path, "metadata file")
  with open(path, encoding="utf-8", newline="") as f:
    reader = csv.reader(f, delimiter=delimiter)
    names = None
    for fields in reader:
      ref = f"{path}:{reader.line_num}"
      if not any(x.strip() for x in fields):
        continue
      if header and names is None:
        names = [h.strip().lstrip("\ufeff") for h in fields]
        missing = [c for c in required if c not in names]
        if missing:
          raise TaskDataError(f"{path}: unexpected header",
                              [f"{ref}: header {names} lacks {missing}"])
        continue
      if header:
        if len(fields) != len(names):
          raise TaskDataError(f"{path}: malformed row", [
              f"{ref}: {len(fields)} fields, the header has {len(names)}"])
        yield ref, {k: v.strip() for k, v in zip(names, fields)}
      else:
        yield ref, [x.strip() for x in fields]


def text_lines(path: str) -> Iterator[tuple[str, str]]:
  """Yields ("path:line", stripped line) of the non-empty lines of a file."""
  require_file(path, "list file")
  with open(path, encoding="utf-8") as f:
    for number, line in enumerate(f, 1):
      if line.strip():
        yield f"{path}:{number}", line.strip()


def label_text(name: str) -> str:
  """A class name as words: "Crying_and_sobbing" -> "crying and sobbing"."""
  return " ".join(name.replace("_", " ").split()).strip()


def split_by_groups(groups: Sequence[str], fractions: Mapping[str, float],
                    seed: int = 0) -> dict[str, str]:
  """Assigns each distinct group to a split by a seeded permutation.

  Args:
    groups: group ids (e.g. speakers); order does not matter.
    fractions: split name -> fraction, in the order splits are filled.
    seed: seeds the permutation of the sorted groups.

  Returns:
    group -> split name. Every split with a positive fraction gets at least
    one group when there are enough groups.
  """
  unique = sorted(set(groups))
  order = np.random.default_rng(seed).permutation(len(unique))
  names = list(fractions)
  bounds = np.cumsum([fractions[n] for n in names])
  bounds = bounds / bounds[-1] * len(unique)
  out = {}
  for rank, i in enumerate(order):
    k = int(np.searchsorted(bounds, rank, side="right"))
    out[unique[i]] = names[min(k, len(names) - 1)]
  return out


def audio_files(folder: str, extensions: Sequence[str]) -> list[str]:
  """Sorted paths (relative to `folder`) of files with the extensions."""
  out = []
  for dirpath, _, files in os.walk(folder):
    for name in files:
      if name.lower().endswith(tuple(extensions)):
        out.append(os.path.relpath(os.path.join(dirpath, name), folder))
  return sorted(out)


def examples_by_split(examples: Iterable[Example],
                      order: Sequence[str]) -> dict[str, list[Example]]:
  """Groups examples by split, splits in `order` (all present, maybe [])."""
  out: dict[str, list[Example]] = {s: [] for s in order}
  for e in examples:
    out.setdefault(e.split, []).append(e)
  return out


def describe(spec: TaskSpec) -> dict[str, Any]:
  """A short summary: kind, class count, examples per split."""
  return {"name": spec.name, "kind": spec.kind,
          "num_classes": len(spec.classes),
          "splits": {s: len(v) for s, v in spec.splits.items()},
          "folds": list(spec.folds)}
