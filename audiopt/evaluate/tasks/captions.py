"""Audio-language tasks (retrieval, captioning): AudioCaps, Clotho, MusicCaps."""

from __future__ import annotations

import os

from audiopt.data import manifests
from audiopt.evaluate.tasks import base

SPLITS = ("train", "validation", "test")


def _from_manifest(items, split: str, errors: list[str]) -> list[base.Example]:
  out = []
  for item in items:
    if isinstance(item, manifests.ManifestError):
      errors.append(item.reason)
      continue
    out.append(base.Example(
        clip_id=item.clip_id, split=split, captions=tuple(item.captions),
        path=manifests.resolve_audio_path(item.path), start_s=item.start_s,
        duration_s=item.duration_s, row_ref=item.row_ref))
  return out


def read_audiocaps(root: str, *, audio_root: str | None = None,
                   path_template: str = "{youtube_id}",
                   check: str = "header") -> base.TaskSpec:
  """AudioCaps (cdjkim/audiocaps): 1 caption per training clip, 5 otherwise.

  Layout: `dataset/{train,val,test}.csv` (audiocap_id,youtube_id,
  start_time,caption) as in the repository (the CSVs directly under `root`
  are read too) and the clips the user downloaded, one 10-second file per
  clip, under `<audio_root>/{train,val,test}/` named by `path_template`
  (fields youtube_id, start_time, start_ms, audiocap_id; without an
  extension the first existing audio extension is used). `audio_root`
  defaults to `<root>/audio`.
  """
  meta = os.path.join(root, "dataset")
  if not os.path.isdir(meta):
    meta = root
  audio_root = audio_root or os.path.join(root, "audio")
  examples, errors, sources = [], [], {}
  for split, name in (("train", "train"), ("validation", "val"),
                      ("test", "test")):
    path = base.require_file(os.path.join(meta, f"{name}.csv"),
                             "AudioCaps CSV")
    sources[split] = path
    examples += _from_manifest(manifests.read_audiocaps_csv(
        path, audio_root=os.path.join(audio_root, name),
        path_template=path_template), split, errors)
  spec = base.TaskSpec(
      name="audiocaps", kind=base.CAPTIONS, classes=(),
      splits=base.examples_by_split(examples, SPLITS), root=root,
      split_sources=sources)
  return base.finish(spec, check=check, label_errors=errors)


def read_clotho(root: str, *, check: str = "header") -> base.TaskSpec:
  """Clotho v2.1: five captions per clip.

  Layout: `clotho_captions_{development,validation,evaluation}.csv`
  (file_name,caption_1..caption_5) and the audio folders `development/`,
  `validation/`, `evaluation/`. Splits: train (development), validation,
  test (evaluation).
  """
  examples, errors, sources = [], [], {}
  for split, name in (("train", "development"), ("validation", "validation"),
                      ("test", "evaluation")):
    path = base.require_file(
        os.path.join(root, f"clotho_captions_{name}.csv"), "Clotho CSV")
    sources[split] = path
    examples += _from_manifest(manifests.read_clotho_csv(
        path, audio_root=os.path.join(root, name)), split, errors)
  spec = base.TaskSpec(
      name="clotho", kind=base.CAPTIONS, classes=(),
      splits=base.examples_by_split(examples, SPLITS), root=root,
      split_sources=sources)
  return base.finish(spec, check=check, label_errors=errors)


def read_musiccaps(root: str, *, audio_root: str | None = None,
                   path_template: str = "{ytid}",
                   segment_in_file: bool = False,
                   check: str = "header") -> base.TaskSpec:
  """MusicCaps (google-research-datasets/musiccaps): one caption per clip.

  Layout: `musiccaps-public.csv` (ytid,start_s,end_s,
  audioset_positive_labels,aspect_list,caption,author_id,
  is_balanced_subset,is_audioset_eval) and the clips the user downloaded
  under `audio_root` (default `<root>/audio`), named by `path_template`
  (fields ytid, start_s, end_s as ints). Splits: "test" (is_audioset_eval
  True, 2,858 clips) and "train" (the rest).

  Args:
    segment_in_file: the files are whole videos: the clip is start_s to
      end_s of the file; False: the files are the 10-second clips.
  """
  path = os.path.join(root, "musiccaps-public.csv")
  audio_root = audio_root or os.path.join(root, "audio")
  examples, errors = [], []
  for ref, row in base.csv_rows(path, required=(
      "ytid", "start_s", "end_s", "caption", "is_audioset_eval")):
    try:
      start, end = int(float(row["start_s"])), int(float(row["end_s"]))
    except ValueError:
      errors.append(f"{ref}: start_s / end_s are not numbers")
      continue
    flag = row["is_audioset_eval"].lower()
    if flag not in ("true", "false"):
      errors.append(f"{ref}: is_audioset_eval {row['is_audioset_eval']!r} is "
                    "not True or False")
      continue
    rel = path_template.format(ytid=row["ytid"], start_s=start, end_s=end)
    examples.append(base.Example(
        clip_id=row["ytid"], split="test" if flag == "true" else "train",
        captions=(row["caption"],) if row["caption"] else (),
        path=manifests.resolve_audio_path(os.path.join(audio_root, rel)),
        start_s=float(start) if segment_in_file else 0.0,
        duration_s=float(end - start) if segment_in_file else None,
        row_ref=ref))
  spec = base.TaskSpec(
      name="musiccaps", kind=base.CAPTIONS, classes=(),
      splits=base.examples_by_split(examples, ("train", "test")), root=root,
      split_sources={"train": path, "test": path})
  return base.finish(spec, check=check, label_errors=errors)
