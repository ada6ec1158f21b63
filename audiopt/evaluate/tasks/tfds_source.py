"""Tasks read through a prepared TFDS builder instead of the raw folder.

Where TensorFlow Datasets has a builder for a data set (speech_commands,
nsynth, gtzan, crema_d, voxceleb), `read_tfds(name, data_dir)` reads the
copy that `tfds build` (or `tfds.load`) prepared under `data_dir`: one pass
over each split collects the labels (audio decoding skipped), and
`TaskSpec.stream` reads the audio in the same order when the evaluation
asks for it, so a split is never held in memory whole. Nothing is
downloaded: an unprepared builder fails with what to run.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

from audiopt.evaluate.tasks import base
from audiopt.evaluate.tasks import speech


@dataclasses.dataclass(frozen=True)
class TfdsTask:
  """How one TFDS builder maps to a task.

  Attributes:
    task_name: the TaskSpec name.
    label: path of the ClassLabel feature ("label" or "instrument/family").
    splits: our split name -> the builder's split name.
    rename: class name as the builder writes it -> our class name.
  """

  task_name: str
  label: str
  splits: dict[str, str]
  rename: dict[str, str] = dataclasses.field(default_factory=dict)


_TVT = {"train": "train", "validation": "validation", "test": "test"}
TFDS_TASKS = {
    "speech_commands": TfdsTask("speech_commands_12", "label", _TVT),
    "nsynth": TfdsTask("nsynth", "instrument/family",
                       {"train": "train", "validation": "valid",
                        "test": "test"}),
    "gtzan": TfdsTask("gtzan", "label", {"train": "train"}),
    "crema_d": TfdsTask("crema_d", "label", _TVT,
                        rename=dict(speech.CREMA_D_EMOTIONS)),
    "voxceleb": TfdsTask("voxceleb1", "label", _TVT),
}


def _get(example: dict[str, Any], path: str) -> Any:
  for key in path.split("/"):
    if key not in example and path in example:
      return example[path]
    example = example[key]
  return example


def _feature(features, path: str):
  for key in path.split("/"):
    features = features[key]
  return features


def _to_float(audio: np.ndarray) -> np.ndarray:
  audio = np.asarray(audio)
  if np.issubdtype(audio.dtype, np.integer):
    return (audio.astype(np.float32) / 32768.0)
  return audio.astype(np.float32)


def read_tfds(name: str, data_dir: str, *,
              builder_fn: Callable[..., Any] | None = None) -> base.TaskSpec:
  """A task from a prepared TFDS builder.

  Args:
    name: a key of `TFDS_TASKS` (speech_commands, nsynth, gtzan, crema_d,
      voxceleb).
    data_dir: the TFDS data_dir holding the prepared data set.
    builder_fn: how to make the builder (default `tfds.builder`); for tests.

  Returns:
    A `TaskSpec` whose `stream` reads the audio.

  Raises:
    TaskDataError: the builder is not prepared under `data_dir`, or a split
      is empty, or a label is outside the classes.
  """
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  if name not in TFDS_TASKS:
    raise ValueError(f"no TFDS task {name!r}; valid: {sorted(TFDS_TASKS)}")
  task = TFDS_TASKS[name]
  builder = (builder_fn or tfds.builder)(name, data_dir=data_dir)
  if not builder.is_prepared():
    raise base.TaskDataError(
        f"TFDS data set {name!r} is not prepared under {data_dir}", [
            f"{os.path.join(data_dir, name)}: missing (run `tfds build {name} "
            f"--data_dir={data_dir}` with its manual files, or read the "
            "official folder instead)"])
  features = builder.info.features
  label_feature = _feature(features, task.label)
  classes = tuple(task.rename.get(n, n) for n in label_feature.names)
  rate = int(getattr(features["audio"], "sample_rate", 16000) or 16000)

  def dataset(split: str, skip_audio: bool):
    kwargs = {}
    if skip_audio:
      kwargs["decoders"] = {"audio": tfds.decode.SkipDecoding()}
    try:
      ds = builder.as_dataset(split=task.splits[split], shuffle_files=False,
                              **kwargs)
    except TypeError:
      ds = builder.as_dataset(split=task.splits[split], shuffle_files=False)
    return tfds.as_numpy(ds)

  def example_of(split: str, index: int, ex: dict[str, Any]) -> base.Example:
    label = classes[int(_get(ex, task.label))]
    clip_id = ex.get("id", ex.get("audio/filename", None))
    if isinstance(clip_id, bytes):
      clip_id = clip_id.decode()
    return base.Example(
        clip_id=str(clip_id) if clip_id is not None else f"{split}/{index}",
        split=split, labels=(label,), sample_rate=rate,
        row_ref=f"tfds:{name}/{task.splits[split]}[{index}]")

  splits = {}
  for split in task.splits:
    splits[split] = [example_of(split, i, ex)
                     for i, ex in enumerate(dataset(split, True))]

  def stream(split: str) -> Iterator[tuple[base.Example, np.ndarray, int]]:
    for example, ex in zip(splits[split], dataset(split, False)):
      yield example, _to_float(ex["audio"]), rate

  spec = base.TaskSpec(
      name=task.task_name, kind=base.MULTICLASS, classes=classes,
      splits=splits, root=data_dir,
      split_sources={s: f"tfds:{name}/{t}" for s, t in task.splits.items()},
      stream=stream)
  return base.finish(spec)
