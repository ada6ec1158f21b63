"""Grain input pipeline: records -> fixed-shape per-process numpy batches.

Order of operations (identical on every process up to the slice, so the
processes agree on the global order without talking to each other):

  source -> global shuffle (seed; reshuffled each epoch) -> repeat
         -> decode FLAC + crop/pad (seeded per position in the stream)
         -> [eval: pad with invalid rows to a multiple of the global batch]
         -> this process's rows of each global batch (`_ProcessRows`)
         -> batches of global_batch_size // process_count

Local batch k of process p holds global stream positions
k * global_batch_size + p * local_batch + i (i < local_batch), so the local
batches k of all processes, concatenated in process order, are exactly global
batch k, row for row.

Batch contract (b = local batch, S = clip_samples):
  audio        float32 [b, S]   waveform, zero-padded
  audio_mask   bool    [b, S]   True on real samples
  tags         int32   [b, max_tags]         UTS tag ids, padded with -1
  weak_labels  int32   [b, max_weak_labels]  weak label ids, padded with -1
  label_ids    int32   [b, max_label_ids]    task targets, padded with -1
  clip_id      object  [b]      str ids ("" on padding rows); host only
  valid        bool    [b]      False on padding rows (eval remainder)
  caption_ids  int32   [b, L]   only with `PipelineOptions.tokenizer`: the
  caption_mask bool    [b, L]   tokenized strong caption (padding rows: all
                                zeros, mask False)

Id lists longer than their max_* keep their first max_* ids; the cut is
counted (`truncation_counts()`) and logged once per field and process.
"""

from __future__ import annotations

import collections
import dataclasses
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import grain
import numpy as np
from absl import logging

from audiopt.audio import io as audio_io

_ID_FIELDS = (("tags", "max_tags"), ("weak_labels", "max_weak_labels"),
              ("label_ids", "max_label_ids"))
_truncated = collections.Counter()
_truncated_lock = threading.Lock()


@dataclasses.dataclass(frozen=True)
class PipelineOptions:
  """How records become batches.

  Attributes:
    global_batch_size: batch size summed over all processes.
    clip_seconds: every clip is cropped or zero-padded to this length.
    sample_rate: waveform rate in Hz (records are resampled if they differ).
    max_tags: width of the `tags` array.
    max_weak_labels: width of the `weak_labels` array.
    max_label_ids: width of the `label_ids` array.
    seed: seed of the shuffle and the crops; same on all processes.
    shuffle: global shuffle, a new order each epoch.
    repeat: repeat forever (training); False: one pass (evaluation).
    random_crop: random crop offset for long clips; False: crop the start.
    num_threads: Grain reader threads of this process.
    prefetch: batches read ahead.
    drop_remainder: one pass only: drop the last partial global batch; False:
      pad it with `valid=False` rows to a full batch.
    tokenizer: None, or a callable `caption (str) -> (ids [L], mask [L])` of
      fixed length L (e.g. a bound `TextTokenizer.encode` with its max_len);
      then batches carry `caption_ids` and `caption_mask`. Not part of the
      options' equality or hash.
  """

  global_batch_size: int
  clip_seconds: float
  sample_rate: int = 16000
  max_tags: int = 32
  max_weak_labels: int = 16
  max_label_ids: int = 16
  seed: int = 0
  shuffle: bool = True
  repeat: bool = True
  random_crop: bool = True
  num_threads: int = 2
  prefetch: int = 2
  drop_remainder: bool = True
  tokenizer: Callable[[str], tuple[Any, Any]] | None = dataclasses.field(
      default=None, compare=False, hash=False, repr=False)

  def __post_init__(self):
    if self.global_batch_size <= 0:
      raise ValueError(f"global_batch_size must be > 0, got "
                       f"{self.global_batch_size}")
    if self.clip_seconds <= 0 or self.sample_rate <= 0:
      raise ValueError(f"clip_seconds and sample_rate must be > 0, got "
                       f"{self.clip_seconds}, {self.sample_rate}")
    if not 0 <= self.seed < 2**32:
      raise ValueError(f"seed must be in [0, 2**32), got {self.seed}")

  @property
  def clip_samples(self) -> int:
    """Samples per clip, S = round(clip_seconds * sample_rate)."""
    return int(round(self.clip_seconds * self.sample_rate))


def truncation_counts() -> dict[str, int]:
  """Returns {field: records whose id list was cut to max_*} in this process."""
  with _truncated_lock:
    return dict(_truncated)


def make_dataset(source: Sequence[Mapping[str, Any]], opts: PipelineOptions,
                 *, process_index: int = 0,
                 process_count: int = 1) -> grain.MapDataset:
  """Builds the lazy per-process dataset of batches (see module doc).

  Args:
    source: random-access records, e.g. `records.open_records(...)`: items
      are dicts with `clip_id` (str), `audio` (FLAC bytes), `tags`,
      `weak_labels`, `label_ids` (int sequences).
    opts: pipeline options.
    process_index: this process, in [0, process_count).
    process_count: number of processes sharing the global batch.

  Returns:
    A `grain.MapDataset` of batch dicts; `len()` is the number of local
    batches (sys.maxsize // local batch when repeating).

  Raises:
    ValueError: bad process arguments, a global batch not divisible by
      process_count, an empty source, or (one pass with drop_remainder) fewer
      records than one global batch.
  """
  if not 0 <= process_index < process_count:
    raise ValueError(f"process_index {process_index} not in "
                     f"[0, {process_count})")
  if opts.global_batch_size % process_count:
    raise ValueError(f"global_batch_size {opts.global_batch_size} is not "
                     f"divisible by process_count {process_count}")
  local_batch = opts.global_batch_size // process_count
  num_records = len(source)
  if num_records == 0:
    raise ValueError(f"empty record source {source!r}")

  ds = grain.MapDataset.source(source)
  if opts.shuffle:
    ds = ds.shuffle(seed=_derived_seed(opts.seed, 0))
  if opts.repeat:
    ds = ds.repeat()
  ds = ds.random_map(_Prepare(opts), seed=_derived_seed(opts.seed, 1))
  if not opts.repeat:
    ds = _whole_global_batches(ds, opts)
  ds = _ProcessRows(ds, opts.global_batch_size, local_batch, process_index)
  return ds.batch(local_batch, drop_remainder=True, batch_fn=_stack)


def make_iterator(source: Sequence[Mapping[str, Any]], opts: PipelineOptions,
                  *, process_index: int = 0,
                  process_count: int = 1) -> grain.DatasetIterator:
  """Returns this process's iterator of batch dicts (see module doc).

  Args:
    source: random-access records (see `make_dataset`).
    opts: pipeline options.
    process_index: this process, in [0, process_count).
    process_count: number of processes sharing the global batch.

  Returns:
    A `grain.DatasetIterator`; `get_state()` is a JSON-serialisable dict and
    `set_state()` on an iterator built the same way resumes at that batch.
  """
  ds = make_dataset(source, opts, process_index=process_index,
                    process_count=process_count)
  read_options = grain.ReadOptions(num_threads=opts.num_threads,
                                   prefetch_buffer_size=opts.prefetch)
  return iter(ds.to_iter_dataset(read_options))


def iterate_eval(source: Sequence[Mapping[str, Any]], opts: PipelineOptions,
                 *, process_index: int = 0,
                 process_count: int = 1) -> grain.DatasetIterator:
  """Returns an iterator over one in-order pass of every record.

  Same as `make_iterator` with shuffle, repeat, random_crop and
  drop_remainder forced off: clips are cropped from their start and the last
  global batch is padded with `valid=False` rows, so every record appears in
  exactly one valid row across all processes and all batches share a shape.

  Args:
    source: random-access records (see `make_dataset`).
    opts: pipeline options (batch size, clip length, widths, threads).
    process_index: this process, in [0, process_count).
    process_count: number of processes sharing the global batch.

  Returns:
    A finite `grain.DatasetIterator` of batch dicts.
  """
  opts = dataclasses.replace(opts, shuffle=False, repeat=False,
                             random_crop=False, drop_remainder=False)
  return make_iterator(source, opts, process_index=process_index,
                       process_count=process_count)


class _ProcessRows(grain.MapDataset):
  """This process's rows of every global batch of the stream.

  Process p takes rows [p * b, (p + 1) * b) of each global batch of G = P * b
  consecutive elements, so the global array assembled from the processes'
  local batches (in process order) holds the same rows in the same order as
  a single process reading the whole global batch: losses, dropout and
  SpecAugment draws do not depend on the number of processes.
  """

  def __init__(self, parent: grain.MapDataset, global_batch: int,
               local_batch: int, process_index: int):
    super().__init__(parent)
    self._global = global_batch
    self._local = local_batch
    self._offset = process_index * local_batch

  def __len__(self) -> int:
    return len(self._parent) // self._global * self._local

  def __getitem__(self, index):
    if isinstance(index, slice):
      return self.slice(index)
    batch, row = divmod(index, self._local)
    return self._parent[batch * self._global + self._offset + row]


def _derived_seed(seed: int, stream: int) -> int:
  """Returns an independent 32-bit seed for one random stream."""
  return int(np.random.SeedSequence([seed, stream]).generate_state(1)[0])


def _whole_global_batches(ds: grain.MapDataset,
                          opts: PipelineOptions) -> grain.MapDataset:
  """Cuts or pads a one-pass stream to whole global batches.

  Every process then gets the same number of full local batches, so
  multi-process evaluation steps stay in lock step.
  """
  batch = opts.global_batch_size
  if opts.drop_remainder:
    usable = len(ds) // batch * batch
    if not usable:
      raise ValueError(f"{len(ds)} records are fewer than one global batch "
                       f"of {batch} and drop_remainder is set")
    return ds[:usable]
  missing = -len(ds) % batch
  if not missing:
    return ds
  padding = grain.MapDataset.range(missing).map(
      lambda _: _padding_example(opts))
  return grain.MapDataset.concatenate([ds, padding])


class _Prepare:
  """Decodes one record and makes its fixed-shape example."""

  def __init__(self, opts: PipelineOptions):
    self._opts = opts

  def __call__(self, record: Mapping[str, Any],
               rng: np.random.Generator) -> dict[str, Any]:
    opts = self._opts
    clip_id = str(record["clip_id"])
    wav = audio_io.decode_audio(record["audio"], name=clip_id,
                                target_sample_rate=opts.sample_rate)
    size = opts.clip_samples
    if wav.shape[0] == size:  # the common case: no zero fill, no copy
      audio, mask = np.asarray(wav, np.float32), np.ones((size,), bool)
    elif wav.shape[0] > size:
      start = int(rng.integers(0, wav.shape[0] - size + 1)) if (
          opts.random_crop) else 0
      audio, mask = wav[start:start + size].copy(), np.ones((size,), bool)
    else:
      audio = np.zeros((size,), np.float32)
      mask = np.zeros((size,), bool)
      audio[:wav.shape[0]] = wav
      mask[:wav.shape[0]] = True
    example = {"audio": audio, "audio_mask": mask, "clip_id": clip_id,
               "valid": True}
    for field, width_name in _ID_FIELDS:
      example[field] = _fixed_ids(record.get(field, ()),
                                  getattr(opts, width_name), field, clip_id)
    if opts.tokenizer is not None:
      example.update(_caption_fields(opts.tokenizer,
                                     str(record.get("caption", "") or "")))
    return example


def _caption_fields(tokenizer: Callable[[str], tuple[Any, Any]],
                    caption: str) -> dict[str, np.ndarray]:
  """Tokenizes one caption into `caption_ids` int32 [L], `caption_mask` [L]."""
  ids, mask = tokenizer(caption)
  ids = np.asarray(ids, np.int32).reshape(-1)
  mask = np.asarray(mask, bool).reshape(-1)
  if ids.shape != mask.shape:
    raise ValueError(f"tokenizer returned ids {ids.shape} and mask "
                     f"{mask.shape} of different shapes")
  return {"caption_ids": ids, "caption_mask": mask}


def _fixed_ids(ids: Any, width: int, field: str, clip_id: str) -> np.ndarray:
  """Returns ids as int32 [width]: the first `width` ids, padded with -1."""
  ids = np.asarray(ids, dtype=np.int64).reshape(-1)
  if ids.shape[0] > width:
    with _truncated_lock:
      _truncated[field] += 1
      first = _truncated[field] == 1
    if first:
      logging.warning(
          "Clip %r has %d %s, more than the %d kept; keeping the first. "
          "Further cuts of %s are only counted (pipeline.truncation_counts).",
          clip_id, ids.shape[0], field, width, field)
    ids = ids[:width]
  out = np.full((width,), -1, np.int32)
  out[:ids.shape[0]] = ids
  return out


def _padding_example(opts: PipelineOptions) -> dict[str, Any]:
  """Returns an all-padding example with `valid=False`."""
  example = {
      "audio": np.zeros((opts.clip_samples,), np.float32),
      "audio_mask": np.zeros((opts.clip_samples,), bool),
      "clip_id": "",
      "valid": False,
  }
  for field, width_name in _ID_FIELDS:
    example[field] = np.full((getattr(opts, width_name),), -1, np.int32)
  if opts.tokenizer is not None:
    fields = _caption_fields(opts.tokenizer, "")
    example["caption_ids"] = np.zeros_like(fields["caption_ids"])
    example["caption_mask"] = np.zeros_like(fields["caption_mask"])
  return example


def _stack(examples: Sequence[Mapping[str, Any]]) -> dict[str, np.ndarray]:
  """Stacks examples into a batch dict; clip ids become an object array."""
  batch = {key: np.stack([e[key] for e in examples])
           for key in examples[0] if key != "clip_id"}
  clip_ids = np.empty((len(examples),), dtype=object)
  clip_ids[:] = [e["clip_id"] for e in examples]
  batch["clip_id"] = clip_ids
  return batch
