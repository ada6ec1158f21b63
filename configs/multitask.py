r"""Multi-task: MTC on UTS tags plus lambda x an auxiliary objective.

The paper's multi-task model is L = L_MTC + lambda * L_caption with a tuned,
unpublished lambda; `objective.tasks` holds the weighted list
(audiopt/objectives/multitask.py):

  python -m audiopt.main --config=configs/multitask.py \
      --config.data.name=uts_records --config.data.data_dir=/data/tfds \
      --workdir=/tmp/multitask

Any weighted list of objectives works through the override, e.g.
--config.objective.tasks="mtc:1.0,contrastive:0.2,masked:0.5".

Options after a colon, comma-separated:
  encoder=NAME   encoder architecture (default transformer)
  size=NAME      encoder size preset (default base)
  aux=NAME       the objective added to MTC (default captioning)
  lambda=W       its weight (default 0.5)
  runlocal       tiny model, few steps, demo records: a laptop smoke test
Example: configs/multitask.py:aux=masked,lambda=0.5,runlocal
"""

from audiopt import config as config_lib
from audiopt.objectives import masked


def get_config(arg=None):
  """Returns the multi-task experiment config."""
  opts = config_lib.parse_arg(arg)
  config_lib.check_arg(opts, ("encoder", "size", "aux", "lambda", "runlocal"),
                       "configs/multitask.py")
  c = config_lib.base_config()
  c.encoder.name = opts.get("encoder", "transformer")
  c.encoder.size = opts.get("size", "base")
  aux = opts.get("aux", "captioning")
  weight = float(opts.get("lambda", 0.5))
  c.objective.name = "multitask"
  c.objective.tasks = f"mtc:1.0,{aux}:{weight}"
  c.objective.target = "tags"
  c.train.global_batch_size = 512
  c.train.num_steps = 700_000
  c.optimizer.learning_rate = 1e-3
  c.optimizer.warmup_steps = 5000
  if aux == "masked":
    c.frontend.use_spec_augment = False
  if "runlocal" in opts:
    config_lib.runlocal(c, opts)
    c.objective.head_hidden_dim = 64
    c.objective.decoder_size = "tiny"
    c.objective.text_encoder_size = "tiny"
    c.objective.embed_dim = 64
    c.text.vocab_size = 500
    c.text.max_len = 24
  c.objective.frames_per_step = masked.frames_per_step_for(
      c.encoder, c.frontend.fbank.frame_shift_ms)
  return c
