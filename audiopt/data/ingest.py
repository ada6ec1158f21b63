"""The ingest stage: audio files + manifest rows -> ArrayRecord shards of clips.

Each manifest row (`manifests.ManifestRow`) is decoded as a stream (so a
two-hour file never sits in memory whole), downmixed to mono by the mean over
channels, resampled to 16 kHz with libsoxr, cut to its segment, and either
split into near-equal chunks of at most `max_seconds` (policy "split";
chunk ids `<clip_id>#000`, `#001`, ...; a final piece shorter than
`min_seconds` is dropped and counted) or dropped (policy "drop"). Clips
shorter than `min_seconds` are dropped. Every kept clip is FLAC-encoded into
a clip shard (`clip_shards`). Files libsndfile cannot open (WAV, FLAC, OGG
and MP3 it reads) are decoded by `ffmpeg` when it is on PATH.

Resuming, shard by shard. The rows of this job (`shard_index` of
`num_shards`, split by `captioner.in_shard` of the clip id, the rule of
every labelling stage) that the journal does not list yet are grouped into
shards of `shard_size` rows. A worker process writes a whole shard under a
temporary name, writes its index, and renames it; then the stage journal
(`journal.Journal`) gets one entry per row: a result `{"id", "shard",
"clips", "seconds", "dropped_tail_s"}` or a quarantine entry `{"id",
"reason", "kind", "row_ref", "path"}` with kind "manifest", "missing",
"decode", "too_short", "too_long" or "error". On start, every complete
shard's index is replayed into the journal (a run killed between a rename
and its journal lines loses nothing) and temporary files are removed, so a
run killed at any point and started again ends with every row exactly once.
Workers die with the process that started them (Linux PR_SET_PDEATHSIG, and
a parent check before each rename), so a killed run leaves no writer behind.

Usage:

  rows = manifests.read_manifest("train.csv", audio_root="/data/audiocaps")
  summary = ingest.run_ingest(rows, "/work/ingest")
  clips = clip_shards.ClipSource("/work/ingest")   # for the caption stage

A job array splits a corpus: task i of N runs
`run_ingest(rows, out_dir, shard_index=i, num_shards=N)` on the same
manifest and directory.
"""

from __future__ import annotations

import concurrent.futures
import ctypes
import dataclasses
import fcntl
import math
import multiprocessing
import os
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from typing import Any, Iterable, Iterator

from absl import logging
import numpy as np
import soundfile
import soxr
import tqdm

from audiopt import atomic_files
from audiopt.audio import io as audio_io
from audiopt.data import clip_shards
from audiopt.data import journal as journal_lib
from audiopt.data import manifests
from audiopt.labels.captioner import in_shard

SAMPLE_RATE = 16000
POLICIES = ("split", "drop")
_BLOCK_FRAMES = 1 << 16
_SPOOL_BYTES = 32 << 20
_PR_SET_PDEATHSIG = 1


@dataclasses.dataclass(frozen=True)
class IngestOptions:
  """How rows become clips.

  Attributes:
    min_seconds: clips (and split tails) shorter than this are dropped.
    max_seconds: longer clips are split or dropped.
    long_clip_policy: "split" or "drop".
    sample_rate: output rate in Hz.
  """
  min_seconds: float = 1.0
  max_seconds: float = 60.0
  long_clip_policy: str = "split"
  sample_rate: int = SAMPLE_RATE

  def __post_init__(self):
    if self.long_clip_policy not in POLICIES:
      raise ValueError(f"long_clip_policy {self.long_clip_policy!r} not in "
                       f"{POLICIES}")
    if not 0 <= self.min_seconds <= self.max_seconds:
      raise ValueError(f"need 0 <= min_seconds ({self.min_seconds}) <= "
                       f"max_seconds ({self.max_seconds})")
    if self.max_seconds <= 0:
      raise ValueError(f"max_seconds must be > 0, got {self.max_seconds}")


class ClipRejected(Exception):
  """A row that yields no clip, with the kind and reason to quarantine."""

  def __init__(self, kind: str, reason: str):
    super().__init__(reason)
    self.kind = kind
    self.reason = reason


class _Orphaned(Exception):
  """The process that asked for a shard has died; the shard is abandoned."""


# ----------------------------------------------------------------------------
# Streaming decode.


def _soundfile_source(path: str, start_s: float, duration_s: float | None
                      ) -> tuple[int, int, Iterator[np.ndarray]]:
  """Opens a file with libsndfile.

  Returns:
    (sample rate, frames to read, iterator of [n, channels] float32 blocks).

  Raises:
    soundfile.LibsndfileError (or another error) when the file cannot be
    opened; AudioDecodeError for an empty file or a segment past its end.
  """
  f = soundfile.SoundFile(path)
  rate, total = f.samplerate, f.frames
  start = int(round(start_s * rate))
  if total <= 0:
    f.close()
    raise audio_io.AudioDecodeError(path, "no samples")
  if start >= total:
    f.close()
    raise audio_io.AudioDecodeError(
        path, f"clip starts at {start_s:.3f} s, past the end of the file "
        f"({total / rate:.3f} s)")
  want = total - start
  if duration_s is not None:
    want = min(want, int(round(duration_s * rate)))

  def blocks() -> Iterator[np.ndarray]:
    with f:
      left = want
      try:
        if start:
          f.seek(start)
        while left > 0:
          block = f.read(min(_BLOCK_FRAMES, left), dtype="float32",
                         always_2d=True)
          if block.shape[0] == 0:
            raise audio_io.AudioDecodeError(
                path, f"truncated: read {want - left} of {want} frames")
          left -= block.shape[0]
          yield block
      except (soundfile.LibsndfileError, RuntimeError) as e:
        raise audio_io.AudioDecodeError(
            path, f"read failed after {want - left} of {want} frames: "
            f"{e}") from e

  return rate, want, blocks()


def _ffmpeg_source(path: str, start_s: float, duration_s: float | None,
                   rate: int, ffmpeg: str) -> Iterator[np.ndarray]:
  """Decodes with ffmpeg to mono float32 at `rate`; yields [n, 1] blocks."""
  cmd = [ffmpeg, "-nostdin", "-hide_banner", "-v", "error", "-xerror"]
  if start_s:
    cmd += ["-ss", f"{start_s:.6f}"]
  cmd += ["-i", path]
  if duration_s is not None:
    cmd += ["-t", f"{duration_s:.6f}"]
  cmd += ["-vn", "-ac", "1", "-ar", str(rate), "-f", "f32le", "pipe:1"]
  with tempfile.TemporaryFile() as err:
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=err)
    try:
      rest = b""
      while data := proc.stdout.read(_BLOCK_FRAMES * 4):
        data = rest + data
        usable = len(data) // 4 * 4
        rest = data[usable:]
        if usable:
          yield np.frombuffer(data[:usable], np.float32).reshape(-1, 1)
      code = proc.wait()
      if code != 0:
        err.seek(0)
        message = err.read()[-400:].decode("utf-8", "replace").strip()
        raise audio_io.AudioDecodeError(
            path, f"ffmpeg exited with {code}: {message or 'no message'}")
    finally:
      if proc.poll() is None:
        proc.kill()
        proc.wait()
      proc.stdout.close()


def _open_source(path: str, start_s: float, duration_s: float | None,
                 rate: int) -> tuple[int, int | None, Iterator[np.ndarray]]:
  """libsndfile first; ffmpeg for files it cannot open."""
  try:
    return _soundfile_source(path, start_s, duration_s)
  except audio_io.AudioDecodeError:
    raise
  except Exception as e:  # pylint: disable=broad-exception-caught
    reason = getattr(e, "error_string", None) or f"{type(e).__name__}: {e}"
  ffmpeg = shutil.which("ffmpeg")
  if ffmpeg is None:
    raise audio_io.AudioDecodeError(
        path, f"libsndfile: {reason} (no ffmpeg on PATH to try)")
  blocks = _ffmpeg_source(path, start_s, duration_s, rate, ffmpeg)
  try:
    first = next(blocks)
  except StopIteration:
    raise audio_io.AudioDecodeError(
        path, f"libsndfile: {reason}; ffmpeg: no samples") from None
  except audio_io.AudioDecodeError as e:
    raise audio_io.AudioDecodeError(
        path, f"libsndfile: {reason}; {e.reason}") from None

  def chained() -> Iterator[np.ndarray]:
    yield first
    yield from blocks

  return rate, None, chained()


def _downmix(block: np.ndarray) -> np.ndarray:
  """[n, channels] -> [n] mean over channels (a matrix-vector product: far
  faster than numpy's mean over a short last axis)."""
  channels = block.shape[1]
  if channels == 1:
    return block[:, 0]
  return block @ np.full(channels, 1.0 / channels, np.float32)


def iter_chunks(path: str, options: IngestOptions = IngestOptions(), *,
                start_s: float = 0.0, duration_s: float | None = None
                ) -> Iterator[np.ndarray]:
  """Decodes a clip as mono chunks at `options.sample_rate`, streaming.

  With policy "split", a clip longer than `max_seconds` comes as
  ceil(length / max) near-equal chunks when the length is known up front
  (libsndfile), else as max-length chunks and a shorter remainder (ffmpeg).
  Memory stays around one chunk whatever the file's length.

  Args:
    path: the audio file.
    options: the ingest options.
    start_s: offset of the clip in the file, seconds.
    duration_s: its length; None: to the end.

  Yields:
    [n] float32 chunks, n <= max_seconds * sample_rate.

  Raises:
    AudioDecodeError: unreadable, truncated, empty or non-finite audio.
    ClipRejected: "too_long" under policy "drop".
  """
  out_rate = options.sample_rate
  rate, frames, blocks = _open_source(path, start_s, duration_s, out_rate)
  max_samples = int(round(options.max_seconds * out_rate))
  drop = options.long_clip_policy == "drop"
  expected = (audio_io.resampled_length(frames, rate, out_rate)
              if frames is not None else None)
  length = f" ({expected / out_rate:.2f} s)" if expected is not None else ""
  too_long = ClipRejected(
      "too_long", f"{path}: longer than max_seconds {options.max_seconds}"
      f"{length} under policy 'drop'")
  if expected is not None and expected > max_samples and drop:
    blocks.close()
    raise too_long
  num_chunks, chunk_len = None, max_samples
  if expected is not None:
    num_chunks = max(1, math.ceil(expected / max_samples))
    chunk_len = math.ceil(expected / num_chunks)
  resampler = (soxr.ResampleStream(rate, out_rate, 1, dtype="float32",
                                   quality="HQ") if rate != out_rate else None)
  pending: list[np.ndarray] = []
  buffered = emitted = total = 0

  def take(n: int) -> np.ndarray:
    nonlocal pending, buffered
    joined = np.concatenate(pending) if len(pending) > 1 else pending[0]
    pending = [joined[n:]] if joined.shape[0] > n else []
    buffered -= min(n, joined.shape[0])
    return joined[:n]

  try:
    for block in blocks:
      mono = _downmix(block)
      # NaN and inf survive the mean and the float64 sum, so one check on
      # the sum finds any non-finite input sample.
      if not math.isfinite(float(mono.sum(dtype=np.float64))):
        raise audio_io.AudioDecodeError(path, "non-finite samples")
      out = resampler.resample_chunk(mono) if resampler else mono
      if out.shape[0]:
        pending.append(out)
        buffered += out.shape[0]
        total += out.shape[0]
      if drop and expected is None and total > max_samples:
        raise too_long
      while buffered >= chunk_len and (num_chunks is None
                                       or emitted < num_chunks - 1):
        yield take(chunk_len)
        emitted += 1
  finally:
    blocks.close()
  if resampler:
    out = resampler.resample_chunk(np.zeros(0, np.float32), last=True)
    if out.shape[0]:
      pending.append(out)
      buffered += out.shape[0]
      total += out.shape[0]
  if total == 0:
    raise audio_io.AudioDecodeError(path, "no samples")
  while buffered > max_samples:
    yield take(chunk_len)
  if buffered:
    yield take(buffered)


# ----------------------------------------------------------------------------
# One row, one shard.


def _process_row(row: manifests.ManifestRow, options: IngestOptions,
                 spool) -> tuple[list[dict[str, Any]], list[int], float]:
  """Decodes one row into FLAC chunks written to `spool`.

  Returns:
    (clip metadata per kept chunk, FLAC byte sizes, seconds of dropped
    tail).

  Raises:
    ClipRejected, AudioDecodeError.
  """
  path = manifests.resolve_audio_path(row.path)
  if not os.path.isfile(path):
    raise ClipRejected("missing", f"{path}: no such file")
  if os.path.getsize(path) == 0:
    raise ClipRejected("decode", f"{path}: empty file (0 bytes)")
  rate = options.sample_rate
  lengths, sizes = [], []
  for wav in iter_chunks(path, options, start_s=row.start_s,
                         duration_s=row.duration_s):
    flac = audio_io.encode_flac(wav, rate)
    spool.write(flac)
    lengths.append(wav.shape[0])
    sizes.append(len(flac))
  min_samples = options.min_seconds * rate
  dropped = 0.0
  if len(lengths) > 1 and lengths[-1] < min_samples:
    dropped = lengths.pop() / rate
    sizes.pop()
  if lengths[0] < min_samples:
    raise ClipRejected("too_short", f"{path}: {lengths[0] / rate:.3f} s is "
                       f"shorter than min_seconds {options.min_seconds}")
  metas, offset = [], row.start_s
  for k, n in enumerate(lengths):
    metas.append({
        "clip_id": row.clip_id if len(lengths) == 1 else
                   f"{row.clip_id}#{k:03d}",
        "row_id": row.clip_id, "chunk": k, "num_chunks": len(lengths),
        "offset_s": round(offset, 6), "duration": n / rate, "path": path,
        "source": row.source, "domain": row.domain, "caption": row.caption,
        "captions": list(row.captions), "tags": list(row.tags),
        "labels": list(row.labels), "sample_rate": rate})
    offset += n / rate
  return metas, sizes, dropped


def _quarantine_entry(row: manifests.ManifestRow, kind: str,
                      reason: str) -> dict[str, Any]:
  return {"id": row.clip_id, "reason": reason, "kind": kind,
          "row_ref": row.row_ref, "path": row.path}


def ingest_shard(rows: Iterable[manifests.ManifestRow], shard_path: str,
                 options: IngestOptions, *,
                 parent_pid: int | None = None) -> dict[str, Any]:
  """Ingests rows into one clip shard, published only when complete.

  Rows that yield no clip are listed in the index's "quarantined"; nothing
  is raised for them.

  Args:
    rows: the shard's manifest rows.
    shard_path: the final shard path (`<dir>/<name>.array_record`).
    options: the ingest options.
    parent_pid: when set, the shard is abandoned (not published) once this
      process is no longer our parent.

  Returns:
    The shard's index dict (`clip_shards` module doc).

  Raises:
    _Orphaned: the parent died; nothing was published.
  """
  def wanted() -> bool:
    return parent_pid is None or os.getppid() == parent_pid

  writer = clip_shards.ShardWriter(shard_path)
  try:
    clips, done, quarantined = [], [], []
    for row in rows:
      if not wanted():
        raise _Orphaned(shard_path)
      with tempfile.SpooledTemporaryFile(max_size=_SPOOL_BYTES) as spool:
        try:
          metas, sizes, dropped = _process_row(row, options, spool)
        except ClipRejected as e:
          quarantined.append(_quarantine_entry(row, e.kind, e.reason))
          continue
        except audio_io.AudioDecodeError as e:
          quarantined.append(_quarantine_entry(row, "decode", str(e)))
          continue
        except Exception as e:  # pylint: disable=broad-exception-caught
          # One bad file must not stop the shard; the reason is kept.
          quarantined.append(_quarantine_entry(
              row, "error", f"{row.path}: {type(e).__name__}: {e}"))
          continue
        spool.seek(0)
        for meta, size in zip(metas, sizes):
          index = writer.write(meta, spool.read(size))
          clips.append({**meta, "index": index})
        done.append({"id": row.clip_id,
                     "clips": [m["clip_id"] for m in metas],
                     "seconds": round(sum(m["duration"] for m in metas), 6),
                     "dropped_tail_s": round(dropped, 6)})
    index = {"shard": os.path.basename(shard_path),
             "num_records": writer.num_records, "clips": clips,
             "rows": done, "quarantined": quarantined}
    if not writer.commit(index, still_wanted=wanted):
      raise _Orphaned(shard_path)
    return index
  except BaseException:
    writer.abort()
    raise


def journal_shard(journal: journal_lib.Journal, index: dict[str, Any]
                  ) -> tuple[int, int]:
  """Adds a shard index's rows to the journal (rows already there are kept).

  Returns:
    (new results, new quarantine entries).
  """
  added = quarantined = 0
  for row in index["rows"]:
    if not journal.is_done(row["id"]):
      journal.add_result(row["id"], shard=index["shard"], clips=row["clips"],
                         seconds=row["seconds"],
                         dropped_tail_s=row["dropped_tail_s"])
      added += 1
  for entry in index["quarantined"]:
    if not journal.is_done(entry["id"]):
      fields = {k: v for k, v in entry.items() if k not in ("id", "reason")}
      journal.quarantine(entry["id"], entry["reason"], **fields)
      quarantined += 1
  return added, quarantined


# ----------------------------------------------------------------------------
# The stage.


def _init_worker(parent_pid: int) -> None:
  """Makes a worker die with its parent, so no orphan writes or hangs.

  PR_SET_PDEATHSIG (Linux) kills the worker at once, but only if the parent is
  alive when it is set and only where the kernel or sandbox implements it; a
  daemon thread that checks the parent pid covers both gaps, including a
  worker idle on the task queue, which would otherwise wait forever.
  """
  try:
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
  except (OSError, AttributeError):
    pass  # Not Linux: the watchdog and the check before each rename hold.

  def watch():
    while os.getppid() == parent_pid:
      time.sleep(0.25)
    os._exit(1)  # pylint: disable=protected-access

  threading.Thread(target=watch, name="parent-watchdog", daemon=True).start()


def _shard_prefix(shard_index: int, num_shards: int) -> str:
  return f"clips{journal_lib.shard_suffix(shard_index, num_shards)}-"


def recover(out_dir: str, prefix: str, journal: journal_lib.Journal) -> int:
  """Cleans temporary files and replays complete shards into the journal.

  Args:
    out_dir: the stage directory.
    prefix: shard names of one job start with it.
    journal: the job's journal.

  Returns:
    The next free shard number.
  """
  for name in os.listdir(out_dir):
    if name.startswith(prefix) and atomic_files.TEMP_MARK in name:
      os.remove(os.path.join(out_dir, name))
  complete = clip_shards.complete_shards(out_dir, prefix)
  for name in os.listdir(out_dir):
    if (name.startswith(prefix) and name.endswith(clip_shards.INDEX_SUFFIX)
        and name[:-len(clip_shards.INDEX_SUFFIX)] not in complete):
      os.remove(os.path.join(out_dir, name))  # its shard was never renamed
  for shard in complete:
    journal_shard(journal, clip_shards.read_index(out_dir, shard))
  numbers = [int(s[len(prefix):-len(clip_shards.SHARD_SUFFIX)])
             for s in complete]
  return max(numbers, default=-1) + 1


def _lock(out_dir: str, shard_index: int, num_shards: int):
  """Holds an exclusive lock for this job shard of `out_dir`."""
  path = os.path.join(
      out_dir, f".ingest{journal_lib.shard_suffix(shard_index, num_shards)}"
      ".lock")
  f = open(path, "w")
  try:
    fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
  except BlockingIOError:
    f.close()
    raise RuntimeError(f"another ingest of shard {shard_index}/{num_shards} "
                       f"is running on {out_dir}") from None
  return f


def run_ingest(manifest_rows: Iterable[manifests.ManifestItem], out_dir: str,
               *, min_seconds: float = 1.0, max_seconds: float = 60.0,
               long_clip_policy: str = "split", shard_size: int = 256,
               num_workers: int | None = None, shard_index: int = 0,
               num_shards: int = 1, progress: bool = True) -> dict[str, Any]:
  """Ingests manifest rows into clip shards under `out_dir`; resumable.

  Args:
    manifest_rows: `ManifestRow`s and `ManifestError`s (from
      `manifests.read_manifest`); errors are quarantined (kind "manifest").
    out_dir: the stage directory: shards, indexes, journal, summary.
    min_seconds: shorter clips are dropped (quarantined "too_short").
    max_seconds: longer clips are split or dropped.
    long_clip_policy: "split" or "drop" (quarantined "too_long").
    shard_size: manifest rows per shard.
    num_workers: worker processes; None: os.cpu_count(); <= 1 runs in this
      process.
    shard_index: this job's shard of the rows, in [0, num_shards).
    num_shards: how many jobs split the rows (by clip id).
    progress: show a progress bar.

  Returns:
    Summary dict: "results", "quarantined", "resumed" (journal counts over
    all runs), and for this run "rows_pending", "rows_ingested",
    "rows_quarantined", "quarantine_kinds" (kind -> count), "duplicates",
    "rows_other_shards", "clips_written", "seconds_written",
    "dropped_tail_s", "shards_written", "shards_failed", "shards_total",
    "elapsed_s". Also written to `summary<suffix>.json` in `out_dir`.
  """
  options = IngestOptions(min_seconds, max_seconds, long_clip_policy)
  if shard_size < 1:
    raise ValueError(f"shard_size must be >= 1, got {shard_size}")
  workers = (os.cpu_count() or 1) if num_workers is None else num_workers
  started = time.monotonic()
  os.makedirs(out_dir, exist_ok=True)
  suffix = journal_lib.shard_suffix(shard_index, num_shards)
  prefix = _shard_prefix(shard_index, num_shards)
  lock = _lock(out_dir, shard_index, num_shards)
  stats = {"rows_pending": 0, "rows_ingested": 0, "rows_quarantined": 0,
           "quarantine_kinds": {}, "duplicates": 0, "rows_other_shards": 0,
           "clips_written": 0, "seconds_written": 0.0, "dropped_tail_s": 0.0,
           "shards_written": 0, "shards_failed": 0}
  kinds = stats["quarantine_kinds"]
  try:
    with journal_lib.Journal(out_dir, shard_index, num_shards) as journal:
      next_shard = recover(out_dir, prefix, journal)
      pending: list[manifests.ManifestRow] = []
      seen: set[str] = set()
      for item in manifest_rows:
        item_id = (item.item_id if isinstance(item, manifests.ManifestError)
                   else item.clip_id)
        if not in_shard(item_id, shard_index, num_shards):
          stats["rows_other_shards"] += 1
          continue
        if journal.is_done(item_id):
          continue
        if item_id in seen:
          stats["duplicates"] += 1
          logging.warning("ingest: duplicate clip id %r (%s) skipped",
                          item_id, getattr(item, "row_ref", ""))
          continue
        seen.add(item_id)
        if isinstance(item, manifests.ManifestError):
          journal.quarantine(item_id, item.reason, kind="manifest",
                             row_ref=item.row_ref)
          kinds["manifest"] = kinds.get("manifest", 0) + 1
          stats["rows_quarantined"] += 1
          continue
        pending.append(item)
      stats["rows_pending"] = len(pending)
      tasks = [(os.path.join(out_dir, f"{prefix}{next_shard + j:05d}"
                             f"{clip_shards.SHARD_SUFFIX}"),
                pending[start:start + shard_size])
               for j, start in enumerate(range(0, len(pending), shard_size))]
      bar = tqdm.tqdm(total=len(pending), disable=not progress, unit="clip",
                      desc=f"ingest {shard_index}/{num_shards}")

      def finished(index: dict[str, Any], num_rows: int) -> None:
        journal_shard(journal, index)
        stats["shards_written"] += 1
        stats["rows_ingested"] += len(index["rows"])
        stats["rows_quarantined"] += len(index["quarantined"])
        stats["clips_written"] += index["num_records"]
        stats["seconds_written"] += sum(r["seconds"] for r in index["rows"])
        stats["dropped_tail_s"] += sum(r["dropped_tail_s"]
                                       for r in index["rows"])
        for entry in index["quarantined"]:
          kinds[entry["kind"]] = kinds.get(entry["kind"], 0) + 1
        bar.update(num_rows)
        bar.set_postfix(quarantined=stats["rows_quarantined"])

      with bar:
        _run_tasks(tasks, options, workers, finished, stats)
      summary = {**journal.summary(), **stats,
                 "seconds_written": round(stats["seconds_written"], 3),
                 "dropped_tail_s": round(stats["dropped_tail_s"], 3),
                 "shards_total": len(clip_shards.complete_shards(out_dir,
                                                                 prefix)),
                 "elapsed_s": round(time.monotonic() - started, 3)}
    # Under the shard's lock: no other process writes this summary.
    atomic_files.write_json_atomic(
        os.path.join(out_dir, f"summary{suffix}.json"), summary,
        remove_stale=True)
  finally:
    lock.close()
  logging.info("ingest %s shard %d/%d: %s", out_dir, shard_index, num_shards,
               summary)
  return summary


def _run_tasks(tasks, options: IngestOptions, workers: int, finished,
               stats: dict[str, Any]) -> None:
  """Runs shard tasks inline or in a process pool, calling `finished`."""
  if workers <= 1 or not tasks:
    for path, rows in tasks:
      finished(ingest_shard(rows, path, options), len(rows))
    return
  # Spawned, not forked: the caller may hold JAX/TF threads and locks.
  context = multiprocessing.get_context("spawn")
  with concurrent.futures.ProcessPoolExecutor(
      max_workers=min(workers, len(tasks)), mp_context=context,
      initializer=_init_worker,
      initargs=(os.getpid(),)) as pool:
    futures = {pool.submit(ingest_shard, rows, path, options,
                           parent_pid=os.getpid()): (path, len(rows))
               for path, rows in tasks}
    try:
      for future in concurrent.futures.as_completed(futures):
        path, num_rows = futures[future]
        try:
          index = future.result()
        except Exception as e:  # pylint: disable=broad-exception-caught
          # Its rows stay unjournaled, so the next run retries them.
          stats["shards_failed"] += 1
          logging.error("ingest: shard %s failed: %s: %s", path,
                        type(e).__name__, e)
          continue
        finished(index, num_rows)
    except BaseException:
      pool.shutdown(wait=False, cancel_futures=True)
      raise
