"""Clip generation: scenes rendered, captioned and labelled, in parallel.

Clip i of a stream depends only on (world seed, stream, split, i), so the
same seed gives bit-identical audio and text however the work is spread
over processes, and a longer corpus extends a shorter one. Streams:
0 pre-training; 10 + k the k-th task of `tasks.TASK_NAMES`.
"""

from __future__ import annotations

import dataclasses
import multiprocessing
import os
from collections.abc import Iterable, Iterator
from typing import Any, Callable

import numpy as np

from audiopt.audio import io as audio_io
from audiopt.data.demo_world import captions
from audiopt.data.demo_world import core
from audiopt.data.demo_world import labels
from audiopt.data.demo_world import scene as scene_lib
from audiopt.data.demo_world import tasks
from audiopt.data.demo_world import world as world_lib

WorldConfig = world_lib.WorldConfig


@dataclasses.dataclass(frozen=True)
class ClipJob:
  """One clip to make: pre-training (task None) or a task's split."""
  world: WorldConfig
  index: int
  task: str | None = None
  split: str = "train"
  flac: bool = False          # return FLAC bytes instead of the waveform


def _duration(rng: np.random.Generator, lo: float, hi: float) -> float:
  return float(np.clip(core.r2(rng.uniform(lo, hi)), lo, hi))


def clip_id_of(job: ClipJob) -> str:
  """The job's clip id: demo<seed>-<index> or <task><seed>-<split>-<index>."""
  if job.task is None:
    return f"demo{job.world.seed}-{job.index:06d}"
  return f"{job.task}{job.world.seed}-{job.split}-{job.index:06d}"


def make_scene(job: ClipJob) -> tuple[scene_lib.Scene, list[int],
                                      np.random.Generator]:
  """The job's scene, its task targets, and the generator to go on with."""
  w = job.world
  if job.task is None:
    rng = np.random.default_rng([0, w.seed, job.index])
    d = core.Draw(rng, w.restrictions)
    duration = _duration(rng, *w.duration_range)
    population = scene_lib.speech.population(
        w.seed, 0, scene_lib.DEFAULT_POPULATION, w.restrictions)
    return scene_lib.sample_scene(d, clip_id_of(job), duration_s=duration,
                                  population=population), [], rng
  tasks.check_task(job.task)
  stream = 10 + tasks.TASK_NAMES.index(job.task)
  split = tasks.SPLITS.index(core.check_name("split", job.split,
                                             tasks.SPLITS))
  rng = np.random.default_rng([stream, w.seed, split, job.index])
  duration = _duration(rng, *w.task_duration_range)
  scene, label_ids = tasks.sample_task_clip(
      job.task, core.Draw(rng), clip_id_of(job), seed=w.seed,
      split=job.split, duration_s=duration)
  return scene, label_ids, rng


def make_clip(job: ClipJob) -> dict[str, Any]:
  """Renders, captions and labels one clip.

  Returns:
    A record dict: "clip_id", "audio" (float32 [N] at 16 kHz, or FLAC bytes
    when `job.flac`), "duration", "source", "domain", "caption" (strong),
    "caption_full", "weak_labels" (noisy ids into
    `labels.WEAK_LABEL_NAMES`), "label_ids" (task targets; [] for
    pre-training) and "truth" (`labels.ground_truth`).
  """
  scene, label_ids, rng = make_scene(job)
  audio = scene_lib.render_scene(scene, seed=int(rng.integers(2**32)))
  full, strong = captions.caption_scene(scene, rng)
  weak = labels.weak_labels(scene, rng, drop_rate=job.world.drop_rate,
                            swap_rate=job.world.swap_rate)
  return {"clip_id": scene.clip_id,
          "audio": (audio_io.encode_flac(audio, core.SAMPLE_RATE)
                    if job.flac else audio),
          "duration": audio.size / core.SAMPLE_RATE,
          "source": core.SOURCE_NAME, "domain": scene.domain,
          "caption": strong, "caption_full": full, "weak_labels": weak,
          "label_ids": label_ids, "truth": labels.ground_truth(scene)}


def _world(seed: int, duration_range: tuple[float, float]) -> WorldConfig:
  return WorldConfig(seed=seed, duration_range=tuple(duration_range),
                     task_duration_range=tuple(duration_range))


def generate_corpus(num_clips: int, seed: int, *,
                    duration_range: tuple[float, float] =
                    core.DEFAULT_DURATION_RANGE,
                    world: WorldConfig | None = None
                    ) -> Iterator[dict[str, Any]]:
  """Yields a deterministic pre-training corpus (`make_clip` records).

  Args:
    num_clips: number of clips.
    seed: non-negative int (ignored when `world` is given).
    duration_range: (min, max) clip length in seconds, within [1, 10].
    world: the full world config; None builds one from seed and range.
  """
  core.Num(0, 10**9, 0, integer=True).check("generator", "num_clips",
                                            num_clips)
  world = world or _world(seed, duration_range)
  for i in range(num_clips):
    yield make_clip(ClipJob(world, i))


def generate_task(task: str, num_clips: int, seed: int, *,
                  split: str = "train",
                  duration_range: tuple[float, float] =
                  core.DEFAULT_DURATION_RANGE,
                  world: WorldConfig | None = None
                  ) -> Iterator[dict[str, Any]]:
  """Yields a deterministic split of one of `tasks.TASK_NAMES`.

  Args:
    task: the task.
    num_clips: number of clips.
    seed: the world seed (ignored when `world` is given).
    split: "train" or "test".
    duration_range: (min, max) clip length in seconds, within [1, 10].
    world: the full world config; None builds one from seed and range.
  """
  tasks.check_task(task)
  core.check_name("split", split, tasks.SPLITS)
  core.Num(0, 10**9, 0, integer=True).check("generator", "num_clips",
                                            num_clips)
  world = world or _world(seed, duration_range)
  for i in range(num_clips):
    yield make_clip(ClipJob(world, i, task, split))


def tag_shard(args: tuple[str, str, int, int]) -> dict[str, Any]:
  """Runs shard k of N of the tag stage with the offline lexical tagger.

  Args:
    args: (caption stage dir, tag stage dir, k, N).

  Returns:
    The tag stage's summary of the shard.
  """
  from audiopt.labels import tagger  # pylint: disable=g-import-not-at-top
  caption_dir, tag_dir, shard, num_shards = args
  return tagger.run_tag_stage(caption_dir, tag_dir, tagger.LexicalTagger(),
                              shard_index=shard, num_shards=num_shards,
                              progress=False)


# ----------------------------------------------------------------------------
# Parallel generation.


def available_cores() -> int:
  """CPU cores this process may run on (all cores where that is unknown)."""
  try:
    return len(os.sched_getaffinity(0))
  except AttributeError:  # not on Linux
    return os.cpu_count() or 1


class ClipPool:
  """Makes clips in worker processes, yielding them in job order.

  Workers are spawned (not forked: the parent may run JAX threads) and only
  import numpy, scipy and this package. With one worker, or few jobs,
  clips are made in this process.

  Args:
    num_workers: processes; 0 means one per available core.
  """

  def __init__(self, num_workers: int = 0):
    self.num_workers = num_workers or available_cores()
    self._pool = None

  def __enter__(self) -> "ClipPool":
    return self

  def __exit__(self, *exc) -> None:
    self.close()

  def close(self) -> None:
    """Shuts down and joins the worker processes, if any were started."""
    if self._pool is not None:
      self._pool.close()
      self._pool.join()
      self._pool = None

  def imap(self, fn: Callable[[Any], Any], jobs: Iterable[Any], *,
           size_hint: int = 0, chunksize: int = 4) -> Iterator[Any]:
    """fn(job) for every job, in order (fn and jobs must pickle)."""
    if self.num_workers <= 1 or 0 < size_hint < 4 * self.num_workers:
      yield from map(fn, jobs)
      return
    if self._pool is None:
      self._pool = multiprocessing.get_context("spawn").Pool(self.num_workers)
    yield from self._pool.imap(fn, jobs, chunksize=chunksize)
