"""Entry point: python -m audiopt.main --config=configs/X.py --workdir=DIR.

Flags:
  --config     an ml_collections config file, optionally `file.py:arg`;
               override any key with --config.section.key=value.
  --workdir    where records (demo), checkpoints, metrics and results go.
"""

import os

# TensorFlow (imported by TFDS and clu) only for records and summaries: keep
# its C++ start-up chatter out of the run's log.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import logging  # pylint: disable=g-import-not-at-top

from absl import app  # pylint: disable=g-import-not-at-top
from absl import flags  # pylint: disable=g-import-not-at-top
from ml_collections import config_flags  # pylint: disable=g-import-not-at-top

_CONFIG = config_flags.DEFINE_config_file(
    "config", None, "Experiment config file (configs/*.py[:arg]).",
    lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Work directory of the run.")
flags.mark_flags_as_required(["config", "workdir"])


_CHATTY_LIBRARIES = ("/orbax/", "/tensorflow_datasets/", "/grain/", "/clu/")


class _LibraryInfoFilter(logging.Filter):
  """Drops INFO records of chatty libraries; their warnings still show."""

  def filter(self, record: logging.LogRecord) -> bool:
    return (record.levelno > logging.INFO or
            not any(p in record.pathname for p in _CHATTY_LIBRARIES))


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  from absl import logging as absl_logging  # pylint: disable=g-import-not-at-top
  absl_logging.get_absl_handler().addFilter(_LibraryInfoFilter())
  # jax.distributed must start before any other JAX call.
  from audiopt.train import distributed  # pylint: disable=g-import-not-at-top
  distributed.maybe_initialize()
  from audiopt import config as config_lib  # pylint: disable=g-import-not-at-top
  from audiopt.train import trainer  # pylint: disable=g-import-not-at-top
  import jax  # pylint: disable=g-import-not-at-top

  config = _CONFIG.value
  config_lib.validate(config, jax.device_count())
  if config.job == "study":  # a config with study runs: audiopt/study
    from audiopt.study import runner  # pylint: disable=g-import-not-at-top
    runner.run_study(config, _WORKDIR.value)
    return
  jobs = {"train": trainer.train_and_evaluate}
  jobs[config.job](config, _WORKDIR.value)


if __name__ == "__main__":
  app.run(main)
