"""Frozen-encoder embeddings of clips, computed on the mesh, cached on disk.

`make_embed_fn(model, mesh, rules, layer=...)` jits the encoder with the
batch sharded over the mesh's data axes and the frames returned replicated
(every process gets every row). `layer` is "last" (or None) for the final
frames, or a name from the encoder's `EncoderOutput.intermediates`
(transformer and ViT: "layer_0".."layer_{L-1}"; Zipformer: "stack_0"..;
`layer_names` lists them).

`embed_waveforms` takes clips of any length: each clip is cut into chunks
of at most `chunk_seconds`, the chunks of all clips are batched (padded
with masks, one compiled shape), and the valid frames of a clip's chunks
are concatenated in time. The result is frames [N, T, D] padded to the
longest clip with a mask [N, T], which the probes take as they are.
`extract` does the same for a record set (`audiopt.data.records`), and
`extract_cached` looks the result up in an `EmbeddingCache` first.

In a multi-process job every process reads every clip, feeds its own rows
of each global batch, and gets all rows back.

`checkpoint_embeddings(workdir, data_dir, task, split, options=...,
cache_dir=...)` restores a run's checkpoint with its parameters sharded over
the run's mesh (`restore.load_checkpoint(..., on_mesh=True)`) and embeds a
record set with it in one call.
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Iterable, Sequence
from typing import Any

import jax
import numpy as np

from audiopt.audio import io as audio_io
from audiopt.evaluate import cache as cache_lib
from audiopt.train import restore
from audiopt.train import sharding

LAST = "last"


def checkpoint_embeddings(path: str, data_dir: str, task: str, split: str, *,
                          options: ExtractOptions | None = None,
                          cache_dir: str | None = None,
                          step: int | None = None) -> dict[str, Any]:
  """Embeddings of one split of a record set by a run's checkpoint.

  Args:
    path: the run's workdir (or its checkpoints directory).
    data_dir: TFDS data_dir of the records.
    task: record set name; split: its split.
    options: chunking, layer, batch; default from the run's config.
    cache_dir: an embedding cache to read and fill; None: no cache.
    step: the checkpoint step; the newest when None.

  Returns:
    As `extract`: frames [N, T, D], mask, label_ids, clip_id.
  """
  from audiopt.data import records  # pylint: disable=g-import-not-at-top
  run = restore.load_checkpoint(path, step, on_mesh=True)
  options = options or ExtractOptions.from_config(run.config)
  fn = make_embed_fn(run.setup.model, run.setup.mesh, run.setup.rules,
                     layer=options.layer)
  source = records.open_records(data_dir, task, split)
  cache = cache_lib.EmbeddingCache(cache_dir) if cache_dir else None
  return extract_cached(
      fn, run.params, source, task=task, split=split,
      model_id=cache_lib.model_id(run.params, run.step), options=options,
      mesh=run.setup.mesh, cache=cache,
      extra_settings={"frontend": run.config.frontend.to_dict(),
                      "encoder": run.config.encoder.to_dict()})


def layer_names(model, params, sample_rate: int = 16000) -> list[str]:
  """Names `make_embed_fn` accepts: "last" and the encoder's intermediates."""
  audio = jax.ShapeDtypeStruct((1, sample_rate), np.float32)
  mask = jax.ShapeDtypeStruct((1, sample_rate), bool)
  out = jax.eval_shape(
      lambda p, a, m: model.apply({"params": p}, a, m, train=False,
                                  method=model.embed), params, audio, mask)
  return [LAST] + sorted(out.intermediates)


def make_embed_fn(model, mesh, rules=None, *, layer: str | None = None):
  """Returns fn(params, batch) -> {"frames" [B, T', D] f32, "mask" [B, T']}.

  Args:
    model: an `AudioModel`.
    mesh: the device mesh; the batch ("audio" [B, S], "audio_mask" [B, S],
      global arrays from `sharding.shard_batch`) is split over its data axes.
    rules: logical axis rules, entered around each call (None: the caller's).
    layer: None or "last" for the encoder's final frames, else a key of its
      intermediates; an unknown name fails listing the valid ones.
  """
  name = None if layer in (None, LAST) else layer

  def embed(params, batch):
    out = model.apply({"params": params}, batch["audio"], batch["audio_mask"],
                      train=False, method=model.embed)
    if name is None:
      frames = out.frames
    elif name in out.intermediates:
      frames = out.intermediates[name]
    else:
      raise ValueError(
          f"layer {name!r} is not an output of the encoder; valid layers: "
          f"{[LAST] + sorted(out.intermediates)} (a transformer or ViT with "
          "scan_layers exposes only its last block)")
    return {"frames": frames.astype(np.float32), "mask": out.mask}

  jitted = jax.jit(embed, out_shardings=sharding.replicated(mesh))

  def call(params, batch):
    if rules is None:
      return jitted(params, batch)
    with sharding.mesh_and_rules(mesh, rules):
      return jitted(params, batch)

  call.mesh = mesh
  return call


def _batch_shards(mesh) -> int:
  return math.prod(mesh.shape[a] for a in sharding.BATCH_AXES
                   if a in mesh.axis_names)


def _window(lengths: Sequence[int], chunk: int, sample_rate: int) -> int:
  """The chunk window: `chunk`, or less when every clip is shorter (rounded
  up to 0.1 s so that similar tasks share a compiled shape)."""
  step = max(sample_rate // 10, 1)
  longest = max(list(lengths) + [1])
  return max(min(chunk, -(-longest // step) * step), step)


def embed_waveforms(embed_fn, params, waves: Iterable[np.ndarray], *,
                    batch_size: int, chunk_seconds: float, sample_rate: int,
                    mesh, max_seconds: float = 0.0,
                    lengths: Sequence[int] | None = None
                    ) -> dict[str, np.ndarray]:
  """Frames of clips of any length, long ones embedded in chunks.

  Args:
    embed_fn: from `make_embed_fn`.
    params: the model parameters (any sharding).
    waves: [N_i] float32 mono waveforms at `sample_rate`, in order.
    batch_size: chunks per global batch (rounded up to a multiple of the
      mesh's batch shards).
    chunk_seconds: longest piece of audio the encoder sees at once; a longer
      clip is cut into consecutive chunks whose valid frames are
      concatenated.
    sample_rate: rate of `waves`.
    mesh: the device mesh of `embed_fn`.
    max_seconds: > 0: only the first `max_seconds` of each clip; 0: whole.
    lengths: the clips' sample counts (after any `max_seconds` cut) when
      known in advance: chunks shorter than `chunk_seconds` then use a
      shorter window. None: every chunk is padded to `chunk_seconds`.

  Returns:
    {"frames": [N, T, D] float32 (zero where not valid), "mask": [N, T]
    bool}, T the most valid frames of any clip (at least 1).
  """
  if chunk_seconds <= 0:
    raise ValueError(f"chunk_seconds must be > 0, got {chunk_seconds}")
  chunk = int(round(chunk_seconds * sample_rate))
  limit = int(round(max_seconds * sample_rate)) if max_seconds > 0 else None
  window = _window(lengths, chunk, sample_rate) if lengths else chunk
  shards = _batch_shards(mesh)
  batch = max(-(-batch_size // shards) * shards, shards)
  processes = jax.process_count()
  local = batch // processes
  offset = jax.process_index() * local

  pieces: list[list[np.ndarray]] = []   # per clip, its chunks' frames
  pending: list[tuple[int, np.ndarray]] = []  # (clip, chunk audio)

  def run(items):
    audio = np.zeros((batch, window), np.float32)
    mask = np.zeros((batch, window), bool)
    for row, (_, wav) in enumerate(items):
      audio[row, :len(wav)], mask[row, :len(wav)] = wav, True
    rows = slice(offset, offset + local)
    got = jax.device_get(embed_fn(params, sharding.shard_batch(
        {"audio": audio[rows], "audio_mask": mask[rows]}, mesh)))
    for row, (clip, _) in enumerate(items):
      valid = np.asarray(got["mask"][row], bool)
      pieces[clip].append(np.asarray(got["frames"][row])[valid])

  for clip, wav in enumerate(waves):
    wav = np.asarray(wav, np.float32).reshape(-1)
    if limit is not None:
      wav = wav[:limit]
    pieces.append([])
    for start in range(0, max(len(wav), 1), window):
      pending.append((clip, wav[start:start + window]))
      if len(pending) == batch:
        run(pending)
        pending = []
  if pending:
    run(pending)
  if not pieces:
    raise ValueError("no clips to embed")
  clips = [np.concatenate(p) if p else None for p in pieces]
  dim = next(c.shape[-1] for c in clips if c is not None)
  clips = [c if c is not None else np.zeros((0, dim), np.float32)
           for c in clips]
  longest = max(1, max(c.shape[0] for c in clips))
  frames = np.zeros((len(clips), longest, dim), np.float32)
  mask = np.zeros((len(clips), longest), bool)
  for i, c in enumerate(clips):
    frames[i, :len(c)], mask[i, :len(c)] = c, True
  return {"frames": frames, "mask": mask}


def _pad_ids(rows: Sequence[np.ndarray]) -> np.ndarray:
  width = max([1] + [len(r) for r in rows])
  out = np.full((len(rows), width), -1, np.int32)
  for i, r in enumerate(rows):
    out[i, :len(r)] = r
  return out


def extract(embed_fn, params, source, *, batch_size: int, sample_rate: int,
            mesh, chunk_seconds: float = 10.0, max_seconds: float = 0.0
            ) -> dict[str, Any]:
  """Embeds every record of `source` once, in record order.

  Args:
    embed_fn: from `make_embed_fn`.
    params: the model parameters (any sharding).
    source: records (`audiopt.data.records.open_records`): dicts with
      "clip_id", "audio" (encoded bytes) and "label_ids".
    batch_size, sample_rate, mesh, chunk_seconds, max_seconds: see
      `embed_waveforms`.

  Returns:
    {"frames": [N, T, D] float32, "mask": [N, T] bool, "label_ids": [N, L]
    int32 padded with -1, "clip_id": [N] str}; in a multi-process job every
    process gets all rows.
  """
  # A first pass keeps only ids, labels and durations (not the audio), so
  # memory holds one batch of audio however large the set.
  rows = []
  for i in range(len(source)):
    r = source[i]
    rows.append({"clip_id": str(r["clip_id"]),
                 "label_ids": np.asarray(r.get("label_ids", ()), np.int64),
                 "duration": float(r.get("duration", 0.0))})
  limit = int(round(max_seconds * sample_rate)) if max_seconds > 0 else None
  lengths = []
  for r in rows:
    n = int(math.ceil(r["duration"] * sample_rate)) + 160
    lengths.append(min(n, limit) if limit else n)

  def waves():
    for i, r in enumerate(rows):
      yield audio_io.decode_audio(source[i]["audio"], name=r["clip_id"],
                                  target_sample_rate=sample_rate)

  out = embed_waveforms(embed_fn, params, waves(), batch_size=batch_size,
                        chunk_seconds=chunk_seconds, sample_rate=sample_rate,
                        mesh=mesh, max_seconds=max_seconds, lengths=lengths)
  out["label_ids"] = _pad_ids([r["label_ids"] for r in rows])
  out["clip_id"] = np.asarray([r["clip_id"] for r in rows])
  return out


@dataclasses.dataclass(frozen=True)
class ExtractOptions:
  """What besides the model changes the embeddings of a record set.

  Attributes:
    batch_size: chunks per global batch (no effect on the values).
    chunk_seconds: chunk length of long clips.
    max_seconds: > 0: embed only the first max_seconds of each clip.
    sample_rate: the front end's rate.
    layer: "last" or an intermediate's name.
  """

  batch_size: int = 32
  chunk_seconds: float = 10.0
  max_seconds: float = 0.0
  sample_rate: int = 16000
  layer: str = LAST

  @classmethod
  def from_config(cls, config) -> "ExtractOptions":
    """The options of a run config's `eval` block and front-end rate."""
    ec = config.eval
    return cls(batch_size=int(ec.batch_size),
               chunk_seconds=float(ec.chunk_seconds),
               max_seconds=float(ec.clip_seconds),
               sample_rate=int(config.frontend.fbank.sample_rate),
               layer=str(ec.layer or LAST))


def records_settings(source, options: ExtractOptions,
                     extra: dict[str, Any] | None = None) -> dict[str, Any]:
  """Cache settings of a record set: its path, size and write time, and the
  options that change the values (not the batch size)."""
  info = os.path.join(getattr(source, "path", ""), "dataset_info.json")
  written = os.stat(info).st_mtime_ns if os.path.exists(info) else 0
  return {"records": os.path.abspath(getattr(source, "path", "")) if
          getattr(source, "path", "") else repr(source),
          "num_records": len(source), "written_ns": written,
          "chunk_seconds": options.chunk_seconds,
          "max_seconds": options.max_seconds,
          "sample_rate": options.sample_rate, **(extra or {})}


def extract_cached(embed_fn, params, source, *, task: str, split: str,
                   model_id: str, options: ExtractOptions, mesh,
                   cache: cache_lib.EmbeddingCache | None,
                   extra_settings: dict[str, Any] | None = None
                   ) -> dict[str, Any]:
  """`extract`, read from `cache` when an equal entry exists, else stored.

  Args:
    embed_fn: from `make_embed_fn` with `options.layer`.
    params: the model parameters.
    source: the records of one split.
    task: task (record set) name of the key.
    split: split name of the key.
    model_id: `cache.model_id(params, step)` of the checkpoint.
    options: extraction options (chunking, layer, rate).
    mesh: the device mesh.
    cache: the cache; None computes without caching.
    extra_settings: more key settings (e.g. the front end config).
  """
  def compute():
    return extract(embed_fn, params, source, batch_size=options.batch_size,
                   sample_rate=options.sample_rate, mesh=mesh,
                   chunk_seconds=options.chunk_seconds,
                   max_seconds=options.max_seconds)

  if cache is None:
    return compute()
  key = cache_lib.CacheKey.make(
      model_id, task, split, options.layer,
      records_settings(source, options, extra_settings))
  return cache.get_or_compute(key, compute)
