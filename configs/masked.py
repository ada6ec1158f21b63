r"""Masked-frame prediction: the self-supervised baseline (no labels used).

Spans of encoder steps of the log-mel input are replaced by a learned
vector; a light head regresses the masked frames (normalised per clip) from
the encoder frames (audiopt/objectives/masked.py). Train on the same records
as the supervised objectives:

  python -m audiopt.main --config=configs/masked.py \
      --config.data.name=uts_records --config.data.data_dir=/data/tfds \
      --workdir=/tmp/masked

Not in the paper: it answers "how far does no supervision get on the same
audio". The recipe below (mask ratio, span, steps) is a starting point, not
a tuned one.

Options after a colon, comma-separated:
  encoder=NAME   encoder architecture (default transformer); the head's
                 frames_per_step follows the encoder's hop
  size=NAME      encoder size preset (default base)
  ratio=R        expected fraction of masked encoder steps (default 0.5)
  runlocal       tiny model, few steps, demo records: a laptop smoke test
Example: configs/masked.py:encoder=vit,runlocal
"""

from audiopt import config as config_lib
from audiopt.objectives import masked


def get_config(arg=None):
  """Returns the masked-prediction experiment config."""
  opts = config_lib.parse_arg(arg)
  config_lib.check_arg(opts, ("encoder", "size", "ratio", "runlocal"),
                       "configs/masked.py")
  c = config_lib.base_config()
  c.encoder.name = opts.get("encoder", "transformer")
  c.encoder.size = opts.get("size", "base")
  c.objective.name = "masked"
  c.objective.mask_ratio = float(opts.get("ratio", 0.5))
  c.objective.mask_span = 5
  c.objective.head_hidden_dim = 512
  # The targets are the encoder's input: no SpecAugment on top of the masks.
  c.frontend.use_spec_augment = False
  c.train.global_batch_size = 512
  c.train.num_steps = 400_000
  c.optimizer.learning_rate = 5e-4
  c.optimizer.warmup_steps = 10_000
  c.optimizer.weight_decay = 0.05
  if "runlocal" in opts:
    config_lib.runlocal(c, opts)
    c.objective.head_hidden_dim = 64
  c.objective.frames_per_step = masked.frames_per_step_for(
      c.encoder, c.frontend.fbank.frame_shift_ms)
  return c
