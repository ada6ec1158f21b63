"""Readers of public evaluation tasks from local copies in official layouts.

  load_task(name, path, **options) -> TaskSpec

Names (`TASK_READERS`): fsd50k, vggsound, voxceleb1, voxceleb2, crema_d,
magnatagatune, nsynth, esc50, gtzan, speech_commands (classification);
audiocaps, clotho, musiccaps (retrieval / captioning). Each reader's
docstring gives the layout it expects. With `tfds_data_dir`, the data sets
TFDS has a builder for (`tfds_source.TFDS_TASKS`: speech_commands, nsynth,
gtzan, crema_d, voxceleb) are read from the prepared builder instead.

A `TaskSpec` gives the classes, the kind (multiclass, multilabel,
captions), the examples of each split or fold, `targets(split)` for the
probes, and `iter_audio(split, sample_rate)` for the embeddings. Bad input
fails with `TaskDataError` (see `base`).
"""

from __future__ import annotations

from collections.abc import Callable

from audiopt.evaluate.tasks import captions
from audiopt.evaluate.tasks import music
from audiopt.evaluate.tasks import sound
from audiopt.evaluate.tasks import speech
from audiopt.evaluate.tasks import tfds_source
from audiopt.evaluate.tasks.base import CAPTIONS
from audiopt.evaluate.tasks.base import Example
from audiopt.evaluate.tasks.base import MULTICLASS
from audiopt.evaluate.tasks.base import MULTILABEL
from audiopt.evaluate.tasks.base import TaskDataError
from audiopt.evaluate.tasks.base import TaskSpec
from audiopt.evaluate.tasks.base import label_text
from audiopt.evaluate.tasks.base import load_audio

TASK_READERS: dict[str, Callable[..., TaskSpec]] = {
    "fsd50k": sound.read_fsd50k,
    "vggsound": sound.read_vggsound,
    "esc50": sound.read_esc50,
    "voxceleb1": speech.read_voxceleb1,
    "voxceleb2": speech.read_voxceleb2,
    "crema_d": speech.read_crema_d,
    "speech_commands": speech.read_speech_commands,
    "magnatagatune": music.read_magnatagatune,
    "nsynth": music.read_nsynth,
    "gtzan": music.read_gtzan,
    "audiocaps": captions.read_audiocaps,
    "clotho": captions.read_clotho,
    "musiccaps": captions.read_musiccaps,
}
# Our task name -> its TFDS builder.
TFDS_NAMES = {"speech_commands": "speech_commands", "nsynth": "nsynth",
              "gtzan": "gtzan", "crema_d": "crema_d", "voxceleb1": "voxceleb"}


def load_task(name: str, path: str | None = None, *,
              tfds_data_dir: str | None = None, **options) -> TaskSpec:
  """Reads a task.

  Args:
    name: a key of `TASK_READERS`.
    path: the local copy in its official layout.
    tfds_data_dir: a TFDS data_dir holding the prepared builder (for the
      names in `TFDS_NAMES`); used instead of `path` when given.
    **options: the reader's options (e.g. `check="exists"`, `esc10=True`).

  Returns:
    The checked `TaskSpec`.
  """
  if name not in TASK_READERS:
    raise ValueError(f"unknown task {name!r}; valid: {sorted(TASK_READERS)}")
  if tfds_data_dir:
    if name not in TFDS_NAMES:
      raise ValueError(f"task {name!r} has no TFDS builder; give its folder "
                       f"(TFDS tasks: {sorted(TFDS_NAMES)})")
    return tfds_source.read_tfds(TFDS_NAMES[name], tfds_data_dir)
  if not path:
    raise ValueError(f"task {name!r}: give the folder of its local copy")
  return TASK_READERS[name](path, **options)


__all__ = ["CAPTIONS", "Example", "MULTICLASS", "MULTILABEL", "TASK_READERS",
           "TFDS_NAMES", "TaskDataError", "TaskSpec", "label_text",
           "load_audio", "load_task"]
