"""Training-record schema: one record is one audio clip with its labels.

Every corpus (pre-training or evaluation) is stored with the same TFDS
FeaturesDict, so every reader and the input pipeline see the same fields:

============  ===========================  ==================================
field         type                         meaning
============  ===========================  ==================================
clip_id       Text                         unique id of the clip in its data
                                           set (also the TFDS example key)
audio         Tensor(shape=(), tf.string)  FLAC file bytes, 16 kHz, mono
duration      Scalar float32               clip length in seconds
source        Text                         source corpus, e.g. "audiocaps"
domain        Text                         speech, music, sound or mixed
caption       Text                         strong (short) caption; may be ""
caption_full  Text                         full captioner output; may be ""
tags          Sequence(int64)              UTS tag ids (names: metadata
                                           "tag_names")
weak_labels   Sequence(int64)              weak AudioSet-style label ids
                                           (metadata "weak_label_names")
label_ids     Sequence(int64)              evaluation-task targets (metadata
                                           "label_names"); empty for
                                           pre-training records
============  ===========================  ==================================

Id sequences hold non-negative ids (the pipeline pads with -1). Names of the
ids live in the data set's metadata, not in the records.
"""

from __future__ import annotations

import io
from collections.abc import Mapping
from typing import Any

import numpy as np
import soundfile
import tensorflow_datasets as tfds

from audiopt.audio import io as audio_io

SAMPLE_RATE = 16000
DOMAINS = ("speech", "music", "sound", "mixed")
TEXT_FIELDS = ("clip_id", "source", "domain", "caption", "caption_full")
ID_FIELDS = ("tags", "weak_labels", "label_ids")
FIELDS = ("clip_id", "audio", "duration", "source", "domain", "caption",
          "caption_full", "tags", "weak_labels", "label_ids")
_REQUIRED = ("clip_id", "audio", "source", "domain")
_OPTIONAL_TEXT = ("caption", "caption_full")
# Tolerance between a stated duration and the FLAC length: 10 ms.
_DURATION_TOLERANCE_S = 0.01


def features() -> tfds.features.FeaturesDict:
  """Returns the TFDS FeaturesDict of a training record (see module doc)."""
  fields = {key: tfds.features.Text() for key in TEXT_FIELDS}
  # np.object_ is TFDS's spelling of tf.string without importing TF here.
  fields["audio"] = tfds.features.Tensor(shape=(), dtype=np.object_)
  fields["duration"] = tfds.features.Scalar(dtype=np.float32)
  for key in ID_FIELDS:
    fields[key] = tfds.features.Sequence(np.int64)
  return tfds.features.FeaturesDict({key: fields[key] for key in FIELDS})


def make_example(*, clip_id: str, audio: np.ndarray | bytes, source: str,
                 domain: str, duration: float | None = None,
                 caption: str = "", caption_full: str = "",
                 tags=(), weak_labels=(), label_ids=()) -> dict[str, Any]:
  """Builds one checked record from keyword fields.

  Args:
    clip_id: unique id of the clip.
    audio: float waveform [N] at 16 kHz mono (values in [-1, 1]), or the bytes
      of a 16 kHz mono FLAC file.
    source: source corpus name.
    domain: one of `DOMAINS`.
    duration: seconds; derived from the audio when None.
    caption: strong caption.
    caption_full: full caption.
    tags: UTS tag ids, ints >= 0 [T].
    weak_labels: weak label ids [W].
    label_ids: evaluation-task target ids [L].

  Returns:
    The normalised record dict, see `validate_example`.

  Raises:
    ValueError: naming the clip id and the bad field.
  """
  return validate_example(
      dict(clip_id=clip_id, audio=audio, source=source, domain=domain,
           duration=duration, caption=caption, caption_full=caption_full,
           tags=tags, weak_labels=weak_labels, label_ids=label_ids),
      index_or_id=clip_id)


def validate_example(example: Mapping[str, Any], *,
                     index_or_id: int | str | None = None) -> dict[str, Any]:
  """Checks one record dict and returns it normalised for the TFDS writer.

  Args:
    example: a mapping with the schema's fields. `clip_id`, `audio`, `source`
      and `domain` are required; `duration` (None or missing: derived from the
      audio), `caption`, `caption_full` (None or missing: "") and the id
      sequences (missing: empty) are optional. `audio` is a float waveform
      [N] at 16 kHz or FLAC bytes of a 16 kHz mono file.
    index_or_id: where the record came from (e.g. its position in the input),
      used in error messages when the clip id itself is missing or bad.

  Returns:
    A new dict with exactly `FIELDS`: text fields as str, `audio` as FLAC
    bytes, `duration` as float, id fields as int64 arrays [K].

  Raises:
    ValueError: naming the record (clip id, else `index_or_id`) and the key.
  """
  clip_id = example.get("clip_id") if isinstance(example, Mapping) else None
  where = repr(clip_id) if isinstance(clip_id, str) and clip_id else (
      f"#{index_or_id}" if index_or_id is not None else "<unknown>")

  def fail(key: str, why: str) -> ValueError:
    return ValueError(f"record {where}: key {key!r}: {why}")

  if not isinstance(example, Mapping):
    raise fail("<record>", f"expected a dict, got {type(example).__name__}")
  unknown = sorted(set(example) - set(FIELDS))
  if unknown:
    raise fail(unknown[0], f"unknown field (schema fields: {FIELDS})")
  for key in _REQUIRED:
    if example.get(key) is None:
      raise fail(key, "missing")

  out: dict[str, Any] = {}
  for key in TEXT_FIELDS:
    value = example.get(key)
    if value is None and key in _OPTIONAL_TEXT:
      value = ""
    if not isinstance(value, str):
      raise fail(key, f"expected str, got {type(value).__name__}")
    out[key] = value
  if not out["clip_id"].strip():
    raise fail("clip_id", "empty")
  if out["domain"] not in DOMAINS:
    raise fail("domain", f"{out['domain']!r} is not one of {DOMAINS}")

  try:
    out["audio"], num_samples = _to_flac(example["audio"])
  except ValueError as e:
    raise fail("audio", str(e)) from e
  actual = num_samples / SAMPLE_RATE
  duration = example.get("duration")
  if duration is None:
    duration = actual
  try:
    duration = float(duration)
  except (TypeError, ValueError) as e:
    raise fail("duration", f"not a number: {duration!r}") from e
  if abs(duration - actual) > _DURATION_TOLERANCE_S:
    raise fail("duration",
               f"{duration:.3f} s but the audio holds {actual:.3f} s")
  out["duration"] = duration

  for key in ID_FIELDS:
    try:
      out[key] = _to_ids(example.get(key, ()))
    except ValueError as e:
      raise fail(key, str(e)) from e
  return out


def _to_flac(audio: Any) -> tuple[bytes, int]:
  """Returns (FLAC bytes, number of samples) of a waveform or FLAC bytes."""
  if isinstance(audio, (bytes, bytearray, memoryview)):
    data = bytes(audio)
    if not data.startswith(b"fLaC"):
      raise ValueError("bytes are not a FLAC file (no 'fLaC' header)")
    try:
      info = soundfile.info(io.BytesIO(data))
    except RuntimeError as e:  # libsndfile errors.
      raise ValueError(f"unreadable FLAC header: {e}") from e
    if info.samplerate != SAMPLE_RATE or info.channels != 1:
      raise ValueError(f"FLAC is {info.samplerate} Hz, {info.channels} "
                       f"channel(s); the schema needs {SAMPLE_RATE} Hz mono")
    if info.frames <= 0:
      raise ValueError("FLAC holds no samples")
    return data, int(info.frames)
  wav = np.asarray(audio)
  if not np.issubdtype(wav.dtype, np.floating):
    raise ValueError(f"expected a float waveform or FLAC bytes, got "
                     f"{type(audio).__name__} of dtype {wav.dtype}")
  if wav.ndim != 1:
    raise ValueError(f"expected a mono waveform [N], got shape {wav.shape}")
  if wav.size == 0:
    raise ValueError("empty waveform")
  if not np.all(np.isfinite(wav)):
    raise ValueError("waveform holds NaN or inf")
  return audio_io.encode_flac(wav.astype(np.float32), SAMPLE_RATE), wav.size


def _to_ids(value: Any) -> np.ndarray:
  """Returns a sequence of non-negative integer ids as int64 [K]."""
  if isinstance(value, (str, bytes)):
    raise ValueError(f"expected a sequence of ints, got {value!r}")
  arr = np.asarray(value if value is not None else ())
  if arr.size == 0:
    return np.zeros((0,), np.int64)
  if arr.ndim != 1:
    raise ValueError(f"expected a 1-D sequence, got shape {arr.shape}")
  if not np.issubdtype(arr.dtype, np.integer):
    raise ValueError(f"expected integer ids, got {arr.tolist()!r}")
  if np.any(arr < 0):
    raise ValueError(f"ids must be >= 0, got {arr.tolist()!r}")
  return arr.astype(np.int64)
