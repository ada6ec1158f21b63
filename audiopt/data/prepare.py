"""Makes sure the records a config trains and evaluates on exist.

`data.source = "records"` trains on TFDS records someone already wrote (for
example with the labelling pipeline). `data.source = "demo"` writes the
embedded demo corpus first, once, into the data directory: pre-training
records with UTS tags built from the strong captions, weak labels, and one
record set per held-out probe task.
"""

import os

from absl import logging
import jax
from jax.experimental import multihost_utils

from audiopt.data import demo_corpus
from audiopt.data import records
from audiopt.labels import vocabulary

DEMO_NAME = "audiopt_demo"


def demo_task_name(task: str) -> str:
  """TFDS name of the demo record set of probe task `task`."""
  return f"{DEMO_NAME}_{task}"


def demo_task_names() -> list[str]:
  """TFDS names of every demo probe task."""
  return [demo_task_name(t) for t in demo_corpus.EVAL_TASKS]


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


def write_demo(data_dir: str, cfg) -> None:
  """Writes the demo pre-training and task records (skips complete ones).

  Args:
    data_dir: TFDS data directory.
    cfg: the `data.demo` config section (num_clips, num_task_clips,
      vocab_size, seed).
  """
  names = [DEMO_NAME] + demo_task_names()
  if all(records.is_complete(data_dir, n) for n in names):
    return
  clips = list(demo_corpus.generate_corpus(cfg.num_clips, cfg.seed))
  vocab = vocabulary.build_vocabulary((c["tag_words"] for c in clips),
                                      cfg.vocab_size)
  logging.info("demo: %d clips, UTS vocabulary of %d tags", len(clips),
               len(vocab))

  def pretrain_examples():
    for c in clips:
      tags = vocabulary.to_ids(c["tag_words"], vocab)
      if not tags:
        continue  # as the paper: clips with no in-vocabulary tag are dropped
      yield {k: v for k, v in c.items() if k != "tag_words"} | {"tags": tags}

  records.write_records(
      data_dir, DEMO_NAME, {"train": pretrain_examples},
      metadata={"tag_names": vocab,
                "weak_label_names": list(demo_corpus.WEAK_LABEL_NAMES)},
      description="audiopt embedded demo corpus (synthetic audio).")

  for i, (task, (kind, classes)) in enumerate(demo_corpus.EVAL_TASKS.items()):
    def split(seed, n):
      def examples():
        for c in demo_corpus.generate_task(task, n, seed):
          yield {k: v for k, v in c.items() if k != "tag_words"}
      return examples

    base = cfg.seed + 1000 * (i + 1)  # disjoint from the pre-training seed
    records.write_records(
        data_dir, demo_task_name(task),
        {"train": split(base + 1, cfg.num_task_clips),
         "test": split(base + 2, max(cfg.num_task_clips // 2, 1))},
        metadata={"task": kind, "label_names": list(classes)},
        description=f"audiopt demo probe task {task!r}.")
