r"""MTC: multi-label UTS tag classification, the paper's main objective.

Train on TFDS records written by the labelling pipeline:

  python -m audiopt.main --config=configs/mtc.py \
      --config.data.name=uts_records --config.data.data_dir=/data/tfds \
      --workdir=/tmp/mtc

Options after a colon, comma-separated:
  encoder=NAME   encoder architecture (default transformer)
  size=NAME      encoder size preset (default base)
  target=KEY     "tags" (UTS, default) or "weak_labels" (the AudioSet-style
                 weak-label baseline)
  runlocal       tiny model, few steps, demo records: a laptop smoke test
Example: configs/mtc.py:encoder=transformer,runlocal
"""

from audiopt import config as config_lib


def get_config(arg=None):
  """Returns the MTC experiment config."""
  opts = config_lib.parse_arg(arg)
  config_lib.check_arg(opts, ("encoder", "size", "target", "runlocal"),
                       "configs/mtc.py")
  c = config_lib.base_config()
  c.encoder.name = opts.get("encoder", "transformer")
  c.encoder.size = opts.get("size", "base")
  c.objective.name = "mtc"
  c.objective.target = opts.get("target", "tags")
  # The paper's recipe at 640 s of audio per device on 8 devices.
  c.train.global_batch_size = 512
  c.train.num_steps = 700_000
  c.optimizer.learning_rate = 1e-3
  c.optimizer.warmup_steps = 5000
  if "runlocal" in opts:
    config_lib.runlocal(c, opts)
  return c
