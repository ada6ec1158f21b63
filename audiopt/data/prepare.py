"""Makes sure the records a config trains and evaluates on exist.

`data.source = "records"` trains on TFDS records someone already wrote (for
example with the labelling pipeline). `data.source = "demo"` writes the
embedded demo world first, once, into the data directory:

- `audiopt_demo`: the pre-training corpus, made by the labelling pipeline's
  own stages. The world plays the ingest stage (clip shards of FLAC audio
  with their weak labels and ground truth) and the captioner (the caption
  stage's journal); then the offline tag extractor (`LexicalTagger`, the
  tag stage), the UTS vocabulary stage and the records stage run exactly
  as on real data. Stage directories stay under
  `<data_dir>/_demo_stages/audiopt_demo/` for inspection.
- `audiopt_demo_<task>` for each held-out task (`demo_world.TASK_NAMES`),
  with train and test splits, `label_ids` and metadata {"task", "label_names"}
  (the retrieval task: caption-audio pairs, metadata task "captions").
"""

from __future__ import annotations

import json
import os
import shutil
import time
from typing import Any

from absl import logging
import jax
from jax.experimental import multihost_utils

from audiopt import atomic_files
from audiopt.data import clip_shards
from audiopt.data import demo_world
from audiopt.data import records
from audiopt.data import records_stage
from audiopt.data import schema
from audiopt.data.demo_world import corpus
from audiopt.labels import vocabulary

DEMO_NAME = "audiopt_demo"
STAGES_DIR = "_demo_stages"
CAPTIONER_NAME = "audiopt-demo-world"
_CLIPS_PER_SHARD = 2048


def demo_task_name(task: str) -> str:
  """TFDS name of the demo record set of task `task`."""
  return f"{DEMO_NAME}_{task}"


def demo_task_names() -> list[str]:
  """TFDS names of the demo probe tasks (multiclass and multilabel)."""
  return [demo_task_name(t) for t in demo_world.PROBE_TASKS]


def demo_retrieval_name() -> str:
  """TFDS name of the demo caption-audio pairs."""
  return demo_task_name("retrieval")


def demo_record_names() -> list[str]:
  """Every record set the demo writes."""
  return [DEMO_NAME] + [demo_task_name(t) for t in demo_world.TASK_NAMES]


def data_dir_of(config, workdir: str) -> str:
  """The TFDS data_dir of a run: `data.data_dir`, or `<workdir>/data`."""
  return config.data.data_dir or os.path.join(workdir, "data")


def dataset_name(config) -> str:
  """TFDS name of the pre-training records of a config."""
  return DEMO_NAME if config.data.source == "demo" else config.data.name


def prepare_data(config, workdir: str) -> str:
  """Writes the demo records if the config asks for them; returns data_dir.

  In a multi-process job only process 0 writes; the others wait for it.
  """
  data_dir = data_dir_of(config, workdir)
  if config.data.source != "demo":
    return data_dir
  if jax.process_index() == 0:
    write_demo(data_dir, config.data.demo)
  if jax.process_count() > 1:
    multihost_utils.sync_global_devices("audiopt_prepare_data")
  return data_dir


def check_demo_config(cfg) -> demo_world.WorldConfig:
  """Checks a `data.demo` section; unknown names fail listing valid ones."""
  for key in ("num_clips", "num_task_clips", "vocab_size"):
    if cfg[key] < 1:
      raise ValueError(f"config data.demo.{key}: must be >= 1, got "
                       f"{cfg[key]}")
  if cfg.num_workers < 0:
    raise ValueError(f"config data.demo.num_workers: must be >= 0 (0: one "
                     f"per core), got {cfg.num_workers}")
  return demo_world.WorldConfig.from_config(cfg)


def write_demo(data_dir: str, cfg) -> dict[str, Any]:
  """Writes the demo pre-training and task records (skips complete ones).

  Args:
    data_dir: TFDS data directory.
    cfg: the `data.demo` config section (see `audiopt.config`).

  Returns:
    Seconds spent per record set written, and the pre-training stages'
    summaries.
  """
  world = check_demo_config(cfg)
  summary: dict[str, Any] = {}
  if all(records.is_complete(data_dir, n) for n in demo_record_names()):
    return summary
  with demo_world.ClipPool(cfg.num_workers) as pool:
    if not records.is_complete(data_dir, DEMO_NAME):
      summary[DEMO_NAME] = write_pretraining(
          data_dir, world, cfg.num_clips, cfg.vocab_size, pool)
    for task in demo_world.TASK_NAMES:
      name = demo_task_name(task)
      if not records.is_complete(data_dir, name):
        start = time.time()
        write_task(data_dir, world, task, cfg.num_task_clips, pool)
        summary[name] = {"seconds": round(time.time() - start, 2)}
  return summary


# ----------------------------------------------------------------------------
# Pre-training corpus: the labelling stages on the world's clips.


def _write_jsonl(path: str, rows) -> None:
  """Writes journal-format rows at once (a stage that ran in one go)."""
  atomic_files.write_atomic(
      path, "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows))


def write_ingest_and_captions(ingest_dir: str, caption_dir: str,
                              world: demo_world.WorldConfig, num_clips: int,
                              pool: demo_world.ClipPool) -> int:
  """Makes the clips: ingest-stage shards and the caption stage's journal.

  Shards hold each clip's FLAC with metadata: "labels" (its noisy weak
  label names, as a manifest would give) and "truth" (the scene's ground
  truth). Caption rows are {"id", "caption" (full), "strong_caption",
  "domain", "source", "captioner"}.

  Returns:
    Seconds of audio made.
  """
  os.makedirs(ingest_dir, exist_ok=True)
  os.makedirs(caption_dir, exist_ok=True)
  jobs = (corpus.ClipJob(world, i, flac=True) for i in range(num_clips))
  caption_rows = []
  writer, index, shard, seconds = None, [], 0, 0.0

  def commit():
    name = os.path.basename(writer.path)
    writer.commit({"shard": name, "num_records": len(index), "clips": index,
                   "rows": [{"id": c["clip_id"], "clips": [c["clip_id"]],
                             "seconds": c["duration"], "dropped_tail_s": 0.0}
                            for c in index],
                   "quarantined": []})

  for i, clip in enumerate(pool.imap(corpus.make_clip, jobs,
                                     size_hint=num_clips)):
    if writer is None:
      writer = clip_shards.ShardWriter(os.path.join(
          ingest_dir, f"demo-{shard:05d}{clip_shards.SHARD_SUFFIX}"))
      index = []
    meta = {"clip_id": clip["clip_id"], "row_id": clip["clip_id"],
            "chunk": 0, "num_chunks": 1, "offset_s": 0.0,
            "duration": clip["duration"], "source": clip["source"],
            "domain": clip["domain"], "sample_rate": schema.SAMPLE_RATE,
            "labels": [demo_world.WEAK_LABEL_NAMES[k]
                       for k in clip["weak_labels"]],
            "truth": clip["truth"]}
    index.append({**meta, "index": writer.write(meta, clip["audio"])})
    caption_rows.append({"id": clip["clip_id"],
                         "caption": clip["caption_full"],
                         "strong_caption": clip["caption"],
                         "domain": clip["domain"], "source": clip["source"],
                         "captioner": CAPTIONER_NAME})
    seconds += clip["duration"]
    if len(index) == _CLIPS_PER_SHARD or i == num_clips - 1:
      commit()
      writer, shard = None, shard + 1
  _write_jsonl(os.path.join(caption_dir, "results-00000-of-00001.jsonl"),
               caption_rows)
  return seconds


def write_pretraining(data_dir: str, world: demo_world.WorldConfig,
                      num_clips: int, vocab_size: int,
                      pool: demo_world.ClipPool) -> dict[str, Any]:
  """Writes `audiopt_demo` through ingest, caption, tag, vocab and records.

  Returns:
    Seconds per stage and the vocabulary and records stages' counts.
  """
  stages = os.path.join(data_dir, STAGES_DIR, DEMO_NAME)
  # Every stage is deterministic: a run killed half-way starts over.
  shutil.rmtree(stages, ignore_errors=True)
  shutil.rmtree(os.path.join(data_dir, "_records_stage", f"{DEMO_NAME}-1.0.0"),
                ignore_errors=True)
  dirs = {s: os.path.join(stages, s) for s in
          ("ingest", "caption", "tag", "vocab")}
  times = {}
  start = time.time()
  audio_s = write_ingest_and_captions(dirs["ingest"], dirs["caption"], world,
                                      num_clips, pool)
  times["clips"] = time.time() - start
  start = time.time()
  # The tag stage in shards, one per worker, as a job array would run it.
  shards = pool.num_workers if num_clips >= 64 * pool.num_workers else 1
  tags = {"tagged": 0}
  for shard in pool.imap(corpus.tag_shard,
                         [(dirs["caption"], dirs["tag"], k, shards)
                          for k in range(shards)], chunksize=1):
    tags["tagged"] += shard["tagged"]
  times["tag"] = time.time() - start
  start = time.time()
  vocab = vocabulary.run_vocabulary_stage(dirs["tag"], dirs["vocab"],
                                          ks=(vocab_size,), plot=False)
  times["vocab"] = time.time() - start
  start = time.time()
  written = records_stage.run_records_stage(
      dirs["ingest"], dirs["caption"], dirs["tag"],
      os.path.join(dirs["vocab"], vocabulary.vocabulary_filename(vocab_size)),
      data_dir, DEMO_NAME,
      weak_label_names=list(demo_world.WEAK_LABEL_NAMES),
      description="audiopt embedded demo world (synthetic audio), "
                  "pre-training corpus.", progress=False)
  times["records"] = time.time() - start
  logging.info("demo: %d clips (%.0f s of audio), %d tagged, UTS vocabulary "
               "of %d, %s records; seconds per stage %s", num_clips, audio_s,
               tags["tagged"], vocab["vocabularies"][str(vocab_size)]["size"],
               written["written"], {k: round(v, 1) for k, v in times.items()})
  return {"seconds": {k: round(v, 2) for k, v in times.items()},
          "audio_seconds": round(audio_s, 1), "tagged": tags["tagged"],
          "vocabulary": vocab["vocabularies"][str(vocab_size)],
          "written": written["written"], "dropped": written["dropped"]}


# ----------------------------------------------------------------------------
# Held-out tasks.


def write_task(data_dir: str, world: demo_world.WorldConfig, task: str,
               num_clips: int, pool: demo_world.ClipPool) -> None:
  """Writes one task's train (`num_clips`) and test (half) splits.

  The ground truth of every clip goes to
  `<data_dir>/_demo_stages/<name>/truth-<split>.jsonl`.
  """
  spec = demo_world.TASKS[task]
  name = demo_task_name(task)
  truth_dir = os.path.join(data_dir, STAGES_DIR, name)
  os.makedirs(truth_dir, exist_ok=True)

  def split(split_name: str, n: int):
    def examples():
      jobs = (corpus.ClipJob(world, i, task, split_name, flac=True)
              for i in range(n))
      truth = []
      for clip in pool.imap(corpus.make_clip, jobs, size_hint=n):
        truth.append({"id": clip["clip_id"], "label_ids": clip["label_ids"],
                      **clip["truth"]})
        yield {k: clip[k] for k in schema.FIELDS if k in clip}
      _write_jsonl(os.path.join(truth_dir, f"truth-{split_name}.jsonl"),
                   truth)
    return examples

  records.write_records(
      data_dir, name,
      {"train": split("train", num_clips),
       "test": split("test", max(num_clips // 2, 1))},
      metadata={"task": spec.kind, "label_names": list(spec.classes),
                "weak_label_names": list(demo_world.WEAK_LABEL_NAMES),
                "description": spec.description},
      description=f"audiopt demo task {task!r}: {spec.description}.")
