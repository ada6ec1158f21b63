r"""PAR: parallel prediction of the UTS tag set with a transformer decoder.

The clip's tags, in vocabulary id order, are a token sequence closed by EOS;
a 6-layer decoder fed only [MASK] tokens, without a causal mask, predicts
all positions at once (PAPER.md section 3; audiopt/objectives/par.py):

  python -m audiopt.main --config=configs/par.py \
      --config.data.name=uts_records --config.data.data_dir=/data/tfds \
      --workdir=/tmp/par

The sequence width is data.max_tags + 1.

Options after a colon, comma-separated:
  encoder=NAME   encoder architecture (default transformer)
  size=NAME      encoder size preset (default base)
  runlocal       tiny model, few steps, demo records: a laptop smoke test
Example: configs/par.py:runlocal
"""

from audiopt import config as config_lib


def get_config(arg=None):
  """Returns the PAR experiment config."""
  opts = config_lib.parse_arg(arg)
  config_lib.check_arg(opts, ("encoder", "size", "runlocal"),
                       "configs/par.py")
  c = config_lib.base_config()
  c.encoder.name = opts.get("encoder", "transformer")
  c.encoder.size = opts.get("size", "base")
  c.objective.name = "par"
  c.objective.decoder_size = "base"
  c.train.global_batch_size = 512
  c.train.num_steps = 700_000
  c.optimizer.learning_rate = 1e-3
  c.optimizer.warmup_steps = 5000
  if "runlocal" in opts:
    config_lib.runlocal(c, opts)
    c.objective.decoder_size = "tiny"
  return c
