"""Music tasks: MagnaTagATune, NSynth, GTZAN."""

from __future__ import annotations

import collections
import json
import os
import re

from audiopt.evaluate.tasks import base

SPLITS = ("train", "validation", "test")

NSYNTH_FAMILIES = ("bass", "brass", "flute", "guitar", "keyboard", "mallet",
                   "organ", "reed", "string", "synth_lead", "vocal")
NSYNTH_SOURCES = ("acoustic", "electronic", "synthetic")
NSYNTH_QUALITIES = ("bright", "dark", "distortion", "fast_decay",
                    "long_release", "multiphonic", "nonlinear_env",
                    "percussive", "reverb", "tempo-synced")
NSYNTH_TARGETS = ("instrument_family", "instrument_source", "pitch",
                  "qualities")
# The NSynth archives and their split names here.
NSYNTH_SPLITS = {"train": "nsynth-train", "validation": "nsynth-valid",
                 "test": "nsynth-test"}

GTZAN_GENRES = ("blues", "classical", "country", "disco", "hiphop", "jazz",
                "metal", "pop", "reggae", "rock")
GTZAN_FOLDS = tuple(f"fold{i:02d}" for i in range(1, 11))
_GTZAN_NAME = re.compile(r"^([a-z]+)\.(\d{5})\.(au|wav)$")

# MagnaTagATune: the first character of mp3_path's folder decides the split
# (the usual 12 / 1 / 3 division of its 16 folders).
MTAT_SPLIT_OF_FOLDER = {**{c: "train" for c in "0123456789ab"},
                        "c": "validation", "d": "test", "e": "test",
                        "f": "test"}


def read_magnatagatune(root: str, *, top_k: int = 50,
                       check: str = "header") -> base.TaskSpec:
  """MagnaTagATune auto-tagging: multi-label over the `top_k` tags.

  Layout: `annotations_final.csv` (tab-separated; "clip_id", one 0/1 column
  per tag, "mp3_path") and the unpacked mp3.zip.00* folders `0/` .. `f/`
  (directly under `root` or under `root/mp3/`). Classes: the `top_k` most
  frequent tags (ties: column order). Splits by folder: 0-b train, c
  validation, d-f test. Clips with none of the tags are kept (all-zero
  targets), as in the usual protocol.
  """
  path = os.path.join(root, "annotations_final.csv")
  rows = list(base.csv_rows(path, delimiter="\t",
                            required=("clip_id", "mp3_path")))
  if not rows:
    raise base.TaskDataError("magnatagatune: no rows", [f"{path}: empty"])
  tags = [k for k in rows[0][1] if k not in ("clip_id", "mp3_path")]
  counts = collections.Counter()
  errors = []
  for ref, row in rows:
    for t in tags:
      if row[t] not in ("0", "1"):
        errors.append(f"{ref}: tag {t!r} has value {row[t]!r}, not 0 or 1")
      elif row[t] == "1":
        counts[t] += 1
  if errors:
    raise base.TaskDataError("magnatagatune: bad rows", errors)
  classes = tuple(sorted(tags, key=lambda t: (-counts[t], tags.index(t)))
                  [:top_k])
  chosen = set(classes)
  audio_root = (os.path.join(root, "mp3")
                if os.path.isdir(os.path.join(root, "mp3")) else root)
  examples = []
  for ref, row in rows:
    rel = row["mp3_path"]
    split = MTAT_SPLIT_OF_FOLDER.get(rel.split("/")[0])
    if split is None:
      errors.append(f"{ref}: mp3_path {rel!r} is not in a folder 0-f")
      continue
    examples.append(base.Example(
        clip_id=row["clip_id"], split=split,
        labels=tuple(t for t in classes if row[t] == "1" and t in chosen),
        path=os.path.join(audio_root, rel), row_ref=ref))
  spec = base.TaskSpec(
      name="magnatagatune", kind=base.MULTILABEL, classes=classes,
      splits=base.examples_by_split(examples, SPLITS), root=root,
      split_sources={s: path for s in SPLITS})
  # Clips without any of the top tags are allowed here.
  return _finish_allowing_no_label(spec, check, errors)


def _finish_allowing_no_label(spec, check, errors):
  if errors:
    raise base.TaskDataError(f"{spec.name}: bad rows", errors)
  index = spec.class_index
  bad = [f"{e.row_ref}: label(s) {[l for l in e.labels if l not in index]} "
         f"not among the classes" for s in spec.splits.values() for e in s
         if any(l not in index for l in e.labels)]
  if bad:
    raise base.TaskDataError(f"{spec.name}: bad rows", bad)
  empty = [f"split {s!r} has no examples (defined by "
           f"{spec.split_sources.get(s, spec.root)})"
           for s, v in spec.splits.items() if not v]
  if empty:
    raise base.TaskDataError(f"{spec.name}: empty split(s)", empty)
  files = base.check_files((e.path for s in spec.splits.values() for e in s),
                           check)
  if files:
    raise base.TaskDataError(
        f"{spec.name}: {len(files)} missing or unreadable audio file(s) in "
        f"{spec.root}", files)
  return spec


def read_nsynth(root: str, *, target: str = "instrument_family",
                check: str = "header") -> base.TaskSpec:
  """NSynth (nsynth-{train,valid,test}.jsonwav.tar.gz unpacked in `root`).

  Layout: `nsynth-<split>/examples.json` (note_str -> note attributes) and
  `nsynth-<split>/audio/<note_str>.wav`. Splits: train, validation
  (nsynth-valid), test.

  Args:
    target: "instrument_family" (11 classes, the usual task),
      "instrument_source" (3), "pitch" (MIDI 0-127 as class names "0".."127")
      or "qualities" (multi-label, 10).
  """
  if target not in NSYNTH_TARGETS:
    raise ValueError(f"target={target!r}; valid: {NSYNTH_TARGETS}")
  classes = {"instrument_family": NSYNTH_FAMILIES,
             "instrument_source": NSYNTH_SOURCES,
             "pitch": tuple(str(p) for p in range(128)),
             "qualities": NSYNTH_QUALITIES}[target]
  examples, errors, sources = [], [], {}
  for split, folder in NSYNTH_SPLITS.items():
    meta = os.path.join(root, folder, "examples.json")
    sources[split] = meta
    base.require_file(meta, "nsynth examples.json")
    try:
      with open(meta, encoding="utf-8") as f:
        notes = json.load(f)
    except (OSError, ValueError) as e:
      raise base.TaskDataError("nsynth: unreadable examples.json",
                               [f"{meta}: {e}"]) from e
    for note_str, note in notes.items():
      ref = f"{meta}:{note_str}"
      try:
        if target == "instrument_family":
          labels = (note["instrument_family_str"],)
        elif target == "instrument_source":
          labels = (note["instrument_source_str"],)
        elif target == "pitch":
          labels = (str(int(note["pitch"])),)
        else:
          labels = tuple(note["qualities_str"])
      except (KeyError, TypeError, ValueError) as e:
        errors.append(f"{ref}: missing or bad field: {e!r}")
        continue
      examples.append(base.Example(
          clip_id=note_str, split=split, labels=labels,
          path=os.path.join(root, folder, "audio", note_str + ".wav"),
          row_ref=ref))
  spec = base.TaskSpec(
      name="nsynth" if target == "instrument_family" else f"nsynth_{target}",
      kind=base.MULTILABEL if target == "qualities" else base.MULTICLASS,
      classes=classes, splits=base.examples_by_split(examples, SPLITS),
      root=root, split_sources=sources)
  if target == "qualities":
    return _finish_allowing_no_label(spec, check, errors)
  return base.finish(spec, check=check, label_errors=errors)


def read_gtzan(root: str, *, split_dir: str | None = None,
               check: str = "header") -> base.TaskSpec:
  """GTZAN genre classification (10 genres).

  Layout: `genres/<genre>/<genre>.000NN.au` as in genres.tar.gz (also read:
  the genre folders directly under `root`, `.wav` copies, and the
  `Data/genres_original/` layout of the common re-distribution).

  Splits: with `split_dir` holding the fault-filtered lists
  `train_filtered.txt`, `valid_filtered.txt`, `test_filtered.txt`
  ("<genre>/<genre>.000NN.(au|wav)" per line), those three; otherwise ten
  folds "fold01".."fold10" of consecutive clip numbers (00000-00009 in
  fold01 ...), which keeps GTZAN's runs of same-artist clips together.
  """
  folder = next((os.path.join(root, *p) for p in (
      ("genres",), ("Data", "genres_original"), ()) if all(
          os.path.isdir(os.path.join(root, *p, g)) for g in GTZAN_GENRES[:1])),
                None)
  if folder is None:
    raise base.TaskDataError("gtzan: genre folders not found", [
        f"{os.path.join(root, 'genres', GTZAN_GENRES[0])}: missing"])
  on_disk = {}
  errors = []
  for genre in sorted(os.listdir(folder)):
    sub = os.path.join(folder, genre)
    if not os.path.isdir(sub):
      continue
    for name in sorted(os.listdir(sub)):
      match = _GTZAN_NAME.match(name)
      if not match:
        continue
      if match.group(1) != genre:
        errors.append(f"{os.path.join(sub, name)}: file of genre "
                      f"{match.group(1)!r} in folder {genre!r}")
        continue
      on_disk[f"{genre}/{name}"] = os.path.join(sub, name)
  examples = []
  if split_dir:
    lists = {"train": "train_filtered.txt", "validation": "valid_filtered.txt",
             "test": "test_filtered.txt"}
    sources = {s: os.path.join(split_dir, n) for s, n in lists.items()}
    for split, path in sources.items():
      for ref, line in base.text_lines(path):
        rel = line.replace("\\", "/")
        genre = rel.split("/")[0]
        stem = os.path.splitext(rel)[0]
        file = next((on_disk[k] for k in (stem + ".au", stem + ".wav")
                     if k in on_disk), os.path.join(folder, rel))
        examples.append(base.Example(
            clip_id=os.path.basename(stem), split=split, labels=(genre,),
            path=file, row_ref=ref))
    order = SPLITS
    folds = ()
  else:
    for rel, file in on_disk.items():
      genre, name = rel.split("/")
      number = int(_GTZAN_NAME.match(name).group(2))
      examples.append(base.Example(
          clip_id=os.path.splitext(name)[0],
          split=GTZAN_FOLDS[min(number // 10, 9)], labels=(genre,), path=file,
          row_ref=file))
    sources = {f: folder for f in GTZAN_FOLDS}
    order = folds = GTZAN_FOLDS
  spec = base.TaskSpec(
      name="gtzan", kind=base.MULTICLASS, classes=GTZAN_GENRES,
      splits=base.examples_by_split(examples, order), folds=folds, root=root,
      split_sources=sources)
  return base.finish(spec, check=check, label_errors=errors)
