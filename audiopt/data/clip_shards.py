"""The ingest stage's output: ArrayRecord shards of FLAC clips, and indexes.

A clip shard `<name>.array_record` holds one record per clip: the bytes
`b"AC01"`, a little-endian uint32 header length, a UTF-8 JSON header (the
clip's metadata) and the clip's 16 kHz mono FLAC file. Beside it,
`<name>.array_record.index.json` holds the shard's metadata without audio:

  {"shard": name, "num_records": n,
   "clips": [{"clip_id", "row_id", "index", "duration", ...}],  # record order
   "rows": [{"id", "clips": [...], "seconds", "dropped_tail_s"}],
   "quarantined": [{"id", "reason", "kind", ...}]}

The index is written (atomically) before the shard is renamed from its
temporary name, so a shard file without `.tmp` in its name always has its
index: the shard is complete. Readers list only complete shards.

Clip metadata keys: clip_id, row_id (the manifest clip it was cut from),
chunk, num_chunks, offset_s (start in the source file), duration (s), path,
source, domain, caption, captions, tags, labels, sample_rate.
"""

from __future__ import annotations

import bisect
import collections.abc
import json
import os
import struct
from typing import Any, Iterator, Mapping

from array_record.python import array_record_module

from audiopt import atomic_files

SHARD_SUFFIX = ".array_record"
INDEX_SUFFIX = ".index.json"
WRITER_OPTIONS = "group_size:1,uncompressed"  # FLAC does not compress further
_MAGIC = b"AC01"
_HEADER = struct.Struct("<4sI")


def encode_clip(meta: Mapping[str, Any], flac: bytes) -> bytes:
  """Serializes one clip record.

  Args:
    meta: JSON-serializable clip metadata (see module doc).
    flac: the clip's FLAC file bytes.

  Returns:
    The record bytes.
  """
  header = json.dumps(dict(meta), ensure_ascii=False).encode("utf-8")
  return _HEADER.pack(_MAGIC, len(header)) + header + bytes(flac)


def decode_clip(record: bytes) -> dict[str, Any]:
  """Parses a record of `encode_clip`.

  Args:
    record: the record bytes.

  Returns:
    The metadata dict with "audio" (FLAC bytes) added.

  Raises:
    ValueError: not a clip record.
  """
  if len(record) < _HEADER.size:
    raise ValueError(f"clip record too short ({len(record)} bytes)")
  magic, size = _HEADER.unpack_from(record)
  if magic != _MAGIC or _HEADER.size + size > len(record):
    raise ValueError("not a clip record (bad magic or header length)")
  end = _HEADER.size + size
  meta = json.loads(record[_HEADER.size:end].decode("utf-8"))
  meta["audio"] = bytes(record[end:])
  return meta


def is_shard_name(name: str) -> bool:
  """Whether a file name is a complete clip shard (not a temporary file)."""
  return name.endswith(SHARD_SUFFIX) and atomic_files.TEMP_MARK not in name


def complete_shards(directory: str, prefix: str = "") -> list[str]:
  """Names of the complete shards in `directory` starting with `prefix`.

  A shard is complete when its file exists under its final name and its
  index file exists; sorted by name.
  """
  if not os.path.isdir(directory):
    return []
  names = set(os.listdir(directory))
  return sorted(n for n in names
                if n.startswith(prefix) and is_shard_name(n)
                and n + INDEX_SUFFIX in names)


def read_index(directory: str, shard: str) -> dict[str, Any]:
  """Reads the index of one shard (see module doc)."""
  with open(os.path.join(directory, shard + INDEX_SUFFIX),
            encoding="utf-8") as f:
    return json.load(f)


def iter_clip_metadata(directory: str) -> Iterator[dict[str, Any]]:
  """Yields the metadata of every clip of every complete shard, no audio.

  Args:
    directory: an ingest output directory.

  Yields:
    Clip metadata dicts with "shard" (file name) and "index" (record
    position in it), in shard order then record order.
  """
  for shard in complete_shards(directory):
    for clip in read_index(directory, shard)["clips"]:
      yield {**clip, "shard": shard}


class ShardWriter:
  """Writes one clip shard under a temporary name; `commit` publishes it.

  Args:
    path: the final shard path (`...array_record`).
  """

  def __init__(self, path: str):
    self.path = path
    self.tmp_path = atomic_files.temporary_name(path)
    self._writer = array_record_module.ArrayRecordWriter(self.tmp_path,
                                                         WRITER_OPTIONS)
    self.num_records = 0

  def write(self, meta: Mapping[str, Any], flac: bytes) -> int:
    """Appends one clip; returns its record index in the shard."""
    self._writer.write(encode_clip(meta, flac))
    self.num_records += 1
    return self.num_records - 1

  def commit(self, index: Mapping[str, Any], *,
             still_wanted=lambda: True) -> bool:
    """Closes the shard, writes its index, renames it to its final name.

    Args:
      index: the index dict (see module doc).
      still_wanted: called just before the rename; False abandons the shard
        (e.g. the process that asked for it has died).

    Returns:
      Whether the shard was published.
    """
    self._writer.close()
    atomic_files.fsync_path(self.tmp_path)
    if not still_wanted():
      self.abort()
      return False
    atomic_files.write_json_atomic(self.path + INDEX_SUFFIX, dict(index))
    if not still_wanted():
      os.remove(self.path + INDEX_SUFFIX)
      self.abort()
      return False
    os.replace(self.tmp_path, self.path)
    atomic_files.fsync_path(os.path.dirname(os.path.abspath(self.path)))
    return True

  def abort(self) -> None:
    """Drops the temporary file."""
    if self._writer.is_open():
      self._writer.close()
    if os.path.exists(self.tmp_path):
      os.remove(self.tmp_path)


class ClipSource(collections.abc.Sequence):
  """Random access to every clip of an ingest directory.

  Item i is `decode_clip` of a record: the clip metadata with "audio" (FLAC
  bytes). Works as the `records_source` of the caption stage.

  Args:
    directory: the ingest output directory.
  """

  def __init__(self, directory: str):
    self.directory = directory
    self.shards = complete_shards(directory)
    self._counts = [read_index(directory, s)["num_records"]
                    for s in self.shards]
    self._ends = []
    total = 0
    for n in self._counts:
      total += n
      self._ends.append(total)
    self._readers: dict[str, Any] = {}

  def __len__(self) -> int:
    return self._ends[-1] if self._ends else 0

  def read(self, shard: str, index: int) -> dict[str, Any]:
    """Reads record `index` of shard file `shard`."""
    reader = self._readers.get(shard)
    if reader is None:
      reader = array_record_module.ArrayRecordReader(
          os.path.join(self.directory, shard))
      self._readers[shard] = reader
    return decode_clip(reader.read([index])[0])

  def __getitem__(self, i):
    if isinstance(i, slice):
      return [self[j] for j in range(*i.indices(len(self)))]
    i = i.__index__()
    if i < 0:
      i += len(self)
    if not 0 <= i < len(self):
      raise IndexError(f"clip {i} out of range ({len(self)} clips)")
    k = bisect.bisect_right(self._ends, i)
    start = self._ends[k] - self._counts[k]
    return self.read(self.shards[k], i - start)

  def __iter__(self) -> Iterator[dict[str, Any]]:
    for shard in self.shards:
      reader = array_record_module.ArrayRecordReader(
          os.path.join(self.directory, shard))
      try:
        for i in range(reader.num_records()):
          yield decode_clip(reader.read([i])[0])
      finally:
        reader.close()

  def close(self) -> None:
    """Closes open shard readers."""
    for reader in self._readers.values():
      reader.close()
    self._readers.clear()
