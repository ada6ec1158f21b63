"""Training records on disk: a TFDS data set in ArrayRecord format per corpus.

Layout: `<data_dir>/<name>/<version>/` with TFDS's `dataset_info.json`,
`features.json`, `metadata.json` and shards
`<name>-<split>.array_record-NNNNN-of-MMMMM`. TFDS writes into a temporary
directory and renames it when every split is done, so a version directory with
a `dataset_info.json` is complete. Records keep the order their generator gave
them (the input pipeline shuffles).
"""

from __future__ import annotations

import bisect
import collections.abc
import json
import os
import re
import shutil
import tempfile
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import numpy as np
import tensorflow_datasets as tfds
from absl import logging

from audiopt.data import schema

SplitFn = Callable[[], Iterable[Mapping[str, Any]]]
_INFO_FILE = "dataset_info.json"
_NAME_RE = re.compile(r"^[a-z][a-z0-9_]*$")


class ShardReadError(OSError):
  """A record could not be read from its ArrayRecord shard file."""


class _RecordsBuilder(tfds.core.GeneratorBasedBuilder,
                      skip_registration=True):
  """Builds one corpus; subclasses set the class attributes below.

  TFDS keys builders by class (name and version are class attributes), so
  `_builder_class` makes one unregistered subclass per corpus.
  """

  VERSION = tfds.core.Version("1.0.0")
  # TFDS looks for url checksums next to a builder's source file; these
  # builders download nothing, and the lookup needs `importlib_resources` for
  # classes that live in a package.
  code_path = None
  split_fns: Mapping[str, SplitFn] = {}
  user_metadata: Mapping[str, Any] = {}
  user_description = ""

  def _info(self) -> tfds.core.DatasetInfo:
    return tfds.core.DatasetInfo(
        builder=self,
        description=self.user_description,
        features=schema.features(),
        metadata=tfds.core.MetadataDict(self.user_metadata),
        disable_shuffling=True,
    )

  def _split_generators(self, dl_manager):
    del dl_manager  # Records come from the split functions, nothing to fetch.
    return {split: self._generate_examples(split) for split in self.split_fns}

  def _generate_examples(self, split: str):
    # TFDS only detects duplicate keys when it shuffles; records keep their
    # order here, so duplicates are caught by hand.
    seen = set()
    for i, example in enumerate(self.split_fns[split]()):
      example = schema.validate_example(example, index_or_id=f"{split}[{i}]")
      clip_id = example["clip_id"]
      if clip_id in seen:
        raise ValueError(f"record {clip_id!r}: key 'clip_id': duplicate in "
                         f"split {split!r} of {self.name!r}")
      seen.add(clip_id)
      yield clip_id, example


def _builder_class(name: str, version: str, splits: Mapping[str, SplitFn],
                   metadata: Mapping[str, Any], description: str) -> type:
  """Returns a `_RecordsBuilder` subclass for one corpus."""
  class_name = "".join(p.capitalize() for p in name.split("_")) + "Records"
  return type(class_name, (_RecordsBuilder,), {
      "name": name,
      "VERSION": tfds.core.Version(version),
      "RELEASE_NOTES": {version: description or "audiopt training records"},
      "split_fns": dict(splits),
      "user_metadata": dict(metadata),
      "user_description": description,
      "__module__": __name__,
  }, skip_registration=True)


def write_records(data_dir: str, name: str, splits: Mapping[str, SplitFn], *,
                  metadata: Mapping[str, Any], version: str = "1.0.0",
                  description: str = "") -> None:
  """Writes one corpus as a TFDS ArrayRecord data set under `data_dir`.

  Args:
    data_dir: root directory of all record data sets.
    name: data set name, snake_case (e.g. "audiocaps_uts").
    splits: split name -> a function returning an iterable of record dicts
      (see `schema.validate_example`; audio as float waveform or FLAC bytes).
      Called once, only when the data set is written.
    metadata: JSON-serialisable dict stored with the data set, e.g.
      {"tag_names": [...], "weak_label_names": [...], "label_names": [...],
      "task": "multiclass"}; `open_records(...).metadata` returns it.
    version: data set version "X.Y.Z".
    description: free text stored in the data set info.

  Returns:
    None. If `<data_dir>/<name>/<version>` is already complete it is left
    untouched and the split functions are not called.

  Raises:
    ValueError: bad name, split names or metadata, or a bad record (naming
      its clip id and field).
  """
  if not _NAME_RE.match(name):
    raise ValueError(f"data set name {name!r} must be snake_case "
                     f"({_NAME_RE.pattern})")
  if not splits:
    raise ValueError(f"data set {name!r}: no splits given")
  for split in splits:
    if not _NAME_RE.match(split):
      raise ValueError(f"data set {name!r}: split name {split!r} must match "
                       f"{_NAME_RE.pattern}")
  try:
    json.dumps(dict(metadata))
  except TypeError as e:
    raise ValueError(f"data set {name!r}: metadata is not JSON-serialisable: "
                     f"{e}") from e
  version_dir = os.path.join(data_dir, name, version)
  if is_complete(data_dir, name, version):
    logging.info("Records %s already complete, not rewritten.", version_dir)
    return
  _remove_incomplete(data_dir, name, version)
  cls = _builder_class(name, version, splits, metadata, description)
  builder = cls(data_dir=data_dir,
                file_format=tfds.core.FileFormat.ARRAY_RECORD)
  # The builder downloads nothing; keep TFDS's download dir out of data_dir.
  with tempfile.TemporaryDirectory(prefix="audiopt_tfds_dl_") as download_dir:
    tfds.disable_progress_bar()  # TFDS's bars are global; ours is the log
    builder.download_and_prepare(download_dir=download_dir)
  logging.info("Wrote records %s: %s", version_dir,
               {s: builder.info.splits[s].num_examples for s in splits})


def _remove_incomplete(data_dir: str, name: str, version: str) -> None:
  """Deletes TFDS's `incomplete.<random>_<version>` folders of killed writes.

  Safe because one process writes a data set at a time.
  """
  parent = os.path.join(data_dir, name)
  if not os.path.isdir(parent):
    return
  for entry in sorted(os.listdir(parent)):
    if entry.startswith("incomplete.") and entry.endswith(f"_{version}"):
      logging.info("Removing %s, left by an interrupted write.", entry)
      shutil.rmtree(os.path.join(parent, entry), ignore_errors=True)


def is_complete(data_dir: str, name: str, version: str = "1.0.0") -> bool:
  """Whether `<data_dir>/<name>/<version>` holds a completely written set."""
  return os.path.isfile(os.path.join(data_dir, name, version, _INFO_FILE))


class RecordSource(collections.abc.Sequence):
  """Random access to the records of one split, decoded to python values.

  Item i is a dict with `clip_id`, `source`, `domain`, `caption`,
  `caption_full` (str), `audio` (FLAC bytes), `duration` (float) and `tags`,
  `weak_labels`, `label_ids` (int64 arrays [K]). Safe to read from several
  threads.

  Attributes:
    name: data set name.
    split: split name.
    path: version directory of the data set.
    metadata: the metadata dict given to `write_records`.
    num_records: number of records in the split.
    shard_files: the split's ArrayRecord files, in record order.
  """

  def __init__(self, data_source: Any, *, name: str, split: str, path: str,
               metadata: Mapping[str, Any],
               shards: list[tuple[str, int]]):
    self._data_source = data_source
    self.name = name
    self.split = split
    self.path = path
    self.metadata = dict(metadata)
    self.shard_files = [f for f, _ in shards]
    self._shard_ends = list(np.cumsum([n for _, n in shards]).tolist())
    self.num_records = len(data_source)

  def __len__(self) -> int:
    return self.num_records

  def __getitem__(self, index):
    if isinstance(index, slice):
      return [self[i] for i in range(*index.indices(self.num_records))]
    index = index.__index__()
    if index < 0:
      index += self.num_records
    if not 0 <= index < self.num_records:
      raise IndexError(f"record {index} out of range for {self!r}")
    try:
      raw = self._data_source[index]
    except Exception as e:  # pylint: disable=broad-exception-caught
      shard = self.shard_files[bisect.bisect_right(self._shard_ends, index)]
      raise ShardReadError(
          f"cannot read record {index} of {self.name}/{self.split} from shard "
          f"file {shard}: {type(e).__name__}: {e}") from e
    return _to_python(raw)

  def __repr__(self) -> str:
    return (f"RecordSource({self.path}, split={self.split!r}, "
            f"num_records={self.num_records})")


def _to_python(raw: Mapping[str, Any]) -> dict[str, Any]:
  """Turns a TFDS-decoded record (bytes, lists) into the RecordSource dict."""
  out = {}
  for key in schema.TEXT_FIELDS:
    value = raw[key]
    out[key] = value.decode("utf-8") if isinstance(value, bytes) else str(value)
  out["audio"] = bytes(raw["audio"])
  out["duration"] = float(raw["duration"])
  for key in schema.ID_FIELDS:
    out[key] = np.asarray(raw[key], dtype=np.int64).reshape(-1)
  return out


def open_records(data_dir: str, name: str, split: str, *,
                 version: str | None = None) -> RecordSource:
  """Opens one split of a data set written by `write_records`.

  Args:
    data_dir: root directory of all record data sets.
    name: data set name.
    split: split name, e.g. "train".
    version: "X.Y.Z"; None picks the newest complete version.

  Returns:
    A `RecordSource` (len, indexing, `.metadata`, `.num_records`).

  Raises:
    FileNotFoundError: data_dir, data set, version, split or a shard file is
      missing; the message names the path and lists what exists.
  """
  if not os.path.isdir(data_dir):
    parent = os.path.dirname(os.path.abspath(data_dir))
    existing = sorted(os.listdir(parent)) if os.path.isdir(parent) else []
    raise FileNotFoundError(f"records directory {data_dir} does not exist; "
                            f"{parent} holds {existing}")
  dataset_dir = os.path.join(data_dir, name)
  versions = _complete_versions(dataset_dir)
  if not versions:
    existing = sorted(n for n in os.listdir(data_dir)
                      if _complete_versions(os.path.join(data_dir, n)))
    raise FileNotFoundError(
        f"no complete data set {name!r} at {dataset_dir}; data sets in "
        f"{data_dir}: {existing}")
  if version is None:
    version = max(versions, key=lambda v: tuple(map(int, v.split("."))))
  elif version not in versions:
    raise FileNotFoundError(
        f"no complete version {version} of {name!r} at "
        f"{os.path.join(dataset_dir, version)}; versions: {versions}")
  path = os.path.join(dataset_dir, version)
  builder = tfds.builder_from_directory(path)
  splits = sorted(builder.info.splits)
  if split not in splits:
    raise FileNotFoundError(f"no split {split!r} in {path}; splits: {splits}")
  shards = [(os.fspath(fi.filename), fi.take)
            for fi in builder.info.splits[split].file_instructions]
  for shard, _ in shards:
    if not os.path.isfile(shard):
      raise FileNotFoundError(
          f"shard file {shard} of {name}/{split} is missing; files in {path}: "
          f"{sorted(os.listdir(path))}")
  data_source = builder.as_data_source(split=split)
  return RecordSource(data_source, name=name, split=split, path=path,
                      metadata=dict(builder.info.metadata or {}),
                      shards=shards)


def _complete_versions(dataset_dir: str) -> list[str]:
  """Returns the sorted version names under `dataset_dir` with an info file."""
  if not os.path.isdir(dataset_dir):
    return []
  return sorted(
      v for v in os.listdir(dataset_dir)
      if re.fullmatch(r"\d+\.\d+\.\d+", v)
      and os.path.isfile(os.path.join(dataset_dir, v, _INFO_FILE)))
