"""Sound-event tasks: FSD50K, VGGSound, ESC-50."""

from __future__ import annotations

import os
from collections.abc import Sequence

from audiopt.data import manifests
from audiopt.evaluate.tasks import base

# ESC-50's categories in `target` order (meta/esc50.csv).
ESC50_CLASSES = (
    "dog", "rooster", "pig", "cow", "frog", "cat", "hen", "insects", "sheep",
    "crow", "rain", "sea_waves", "crackling_fire", "crickets",
    "chirping_birds", "water_drops", "wind", "pouring_water", "toilet_flush",
    "thunderstorm", "crying_baby", "sneezing", "clapping", "breathing",
    "coughing", "footsteps", "laughing", "brushing_teeth", "snoring",
    "drinking_sipping", "door_wood_knock", "mouse_click", "keyboard_typing",
    "door_wood_creaks", "can_opening", "washing_machine", "vacuum_cleaner",
    "clock_alarm", "clock_tick", "glass_breaking", "helicopter", "chainsaw",
    "siren", "car_horn", "engine", "train", "church_bells", "airplane",
    "fireworks", "hand_saw")
ESC10_CLASSES = ("dog", "rooster", "rain", "sea_waves", "crackling_fire",
                 "crying_baby", "sneezing", "clock_tick", "helicopter",
                 "chainsaw")
ESC50_FOLDS = tuple(f"fold{i}" for i in range(1, 6))


def read_esc50(root: str, *, esc10: bool = False,
               check: str = "header") -> base.TaskSpec:
  """ESC-50 (karolpiczak/ESC-50 master archive), five folds.

  Layout: `meta/esc50.csv` (filename,fold,target,category,esc10,src_file,
  take) and `audio/<filename>`. Splits are the folds "fold1".."fold5"
  (`TaskSpec.fold_splits()` gives the five cross-validation rounds).

  Args:
    root: the folder holding meta/ and audio/.
    esc10: only the ESC-10 subset (rows with esc10 True, 10 classes).
    check: audio file check, see `base.finish`.
  """
  meta = os.path.join(root, "meta", "esc50.csv")
  classes = ESC10_CLASSES if esc10 else ESC50_CLASSES
  examples, errors = [], []
  for ref, row in base.csv_rows(meta, required=(
      "filename", "fold", "target", "category", "esc10")):
    if esc10 and row["esc10"].lower() != "true":
      continue
    fold, category = row["fold"], row["category"]
    if fold not in ("1", "2", "3", "4", "5"):
      errors.append(f"{ref}: fold {fold!r} is not 1..5")
      continue
    if category in ESC50_CLASSES and row["target"] != str(
        ESC50_CLASSES.index(category)):
      errors.append(f"{ref}: target {row['target']} does not match category "
                    f"{category!r} (target {ESC50_CLASSES.index(category)})")
      continue
    examples.append(base.Example(
        clip_id=os.path.splitext(row["filename"])[0], split=f"fold{fold}",
        labels=(category,), path=os.path.join(root, "audio", row["filename"]),
        row_ref=ref))
  spec = base.TaskSpec(
      name="esc10" if esc10 else "esc50", kind=base.MULTICLASS,
      classes=classes, splits=base.examples_by_split(examples, ESC50_FOLDS),
      folds=ESC50_FOLDS, root=root,
      split_sources={f: meta for f in ESC50_FOLDS})
  return base.finish(spec, check=check, label_errors=errors)


def read_fsd50k(root: str, *, check: str = "header") -> base.TaskSpec:
  """FSD50K (Zenodo release), multi-label over its 200 classes.

  Layout: `FSD50K.ground_truth/{vocabulary.csv (index,label,mid; no
  header), dev.csv (fname,labels,mids,split), eval.csv (fname,labels,mids)}`,
  audio in `FSD50K.dev_audio/<fname>.wav` and `FSD50K.eval_audio/`.
  Splits: "train" and "validation" (dev.csv's split column: train / val)
  and "test" (eval.csv).
  """
  truth = os.path.join(root, "FSD50K.ground_truth")
  vocab = os.path.join(truth, "vocabulary.csv")
  classes, errors = [], []
  for ref, fields in base.csv_rows(vocab, header=False):
    if len(fields) != 3:
      errors.append(f"{ref}: expected index,label,mid")
      continue
    classes.append(fields[1])
  examples = []
  dev, evl = os.path.join(truth, "dev.csv"), os.path.join(truth, "eval.csv")
  for path, audio_dir in ((dev, "FSD50K.dev_audio"),
                          (evl, "FSD50K.eval_audio")):
    required = ("fname", "labels", "split") if path == dev else (
        "fname", "labels")
    for ref, row in base.csv_rows(path, required=required):
      if path == dev:
        split = {"train": "train", "val": "validation"}.get(row["split"])
        if split is None:
          errors.append(f"{ref}: split {row['split']!r} is not train or val")
          continue
      else:
        split = "test"
      labels = tuple(l.strip() for l in row["labels"].split(",") if l.strip())
      examples.append(base.Example(
          clip_id=row["fname"], split=split, labels=labels,
          path=os.path.join(root, audio_dir, row["fname"] + ".wav"),
          row_ref=ref))
  spec = base.TaskSpec(
      name="fsd50k", kind=base.MULTILABEL, classes=tuple(classes),
      splits=base.examples_by_split(examples, ("train", "validation", "test")),
      root=root, split_sources={"train": dev, "validation": dev, "test": evl})
  return base.finish(spec, check=check, label_errors=errors)


def read_vggsound(root: str, *, audio_root: str | None = None,
                  path_template: str = "video/{youtube_id}_{start:06d}",
                  classes: Sequence[str] | None = None,
                  check: str = "header") -> base.TaskSpec:
  """VGGSound, single-label over its 309 classes.

  Layout: `vggsound.csv` as released (no header: youtube_id,start_seconds,
  label,split with split train or test) and the clips the user downloaded.
  The release names clips `<youtube_id>_<start 6 digits>.mp4` under
  `video/`; `path_template` (fields youtube_id, start as int) relative to
  `audio_root` (default `root`) says where they are; without an extension
  the first existing audio extension is used.

  Args:
    classes: the class list; default: the sorted labels of the CSV.
  """
  csv_path = os.path.join(root, "vggsound.csv")
  audio_root = audio_root or root
  examples, errors = [], []
  for ref, fields in base.csv_rows(csv_path, header=False):
    if len(fields) != 4:
      errors.append(f"{ref}: expected youtube_id,start_seconds,label,split; "
                    f"got {len(fields)} fields")
      continue
    ytid, start, label, split = fields
    if split not in ("train", "test"):
      errors.append(f"{ref}: split {split!r} is not train or test")
      continue
    try:
      start_s = int(float(start))
    except ValueError:
      errors.append(f"{ref}: start_seconds {start!r} is not a number")
      continue
    rel = path_template.format(youtube_id=ytid, start=start_s)
    examples.append(base.Example(
        clip_id=f"{ytid}_{start_s:06d}", split=split, labels=(label,),
        path=manifests.resolve_audio_path(os.path.join(audio_root, rel)),
        row_ref=ref))
  if classes is None:
    classes = sorted({e.labels[0] for e in examples})
  spec = base.TaskSpec(
      name="vggsound", kind=base.MULTICLASS, classes=tuple(classes),
      splits=base.examples_by_split(examples, ("train", "test")), root=root,
      split_sources={"train": csv_path, "test": csv_path})
  return base.finish(spec, check=check, label_errors=errors)
