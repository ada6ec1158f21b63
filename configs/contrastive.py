r"""Contrastive: CLAP-style audio-text InfoNCE on the strong captions.

Audio tower: mean-pooled encoder frames -> projection; text tower: a
BERT-style encoder -> projection; shared width 1024, learnable temperature
initialised at 0.07, negatives from the whole global batch (PAPER.md
section 3; audiopt/objectives/contrastive.py):

  python -m audiopt.main --config=configs/contrastive.py \
      --config.data.name=uts_records --config.data.data_dir=/data/tfds \
      --workdir=/tmp/contrastive

Captions are tokenized by `config.text.tokenizer` (a TextTokenizer JSON) or,
when that is empty, by a WordPiece vocabulary of `config.text.vocab_size`
trained on the training captions.

Options after a colon, comma-separated:
  encoder=NAME   encoder architecture (default transformer)
  size=NAME      encoder size preset (default base)
  text=SIZE      text encoder size (default base: BERT-base)
  runlocal       tiny model, few steps, demo records: a laptop smoke test
Example: configs/contrastive.py:runlocal
"""

from audiopt import config as config_lib


def get_config(arg=None):
  """Returns the contrastive (InfoNCE) experiment config."""
  opts = config_lib.parse_arg(arg)
  config_lib.check_arg(opts, ("encoder", "size", "text", "runlocal"),
                       "configs/contrastive.py")
  return contrastive_config(opts, "contrastive")


def contrastive_config(opts, objective: str):
  """The shared audio-text config of configs/contrastive.py and siglip.py."""
  c = config_lib.base_config()
  c.encoder.name = opts.get("encoder", "transformer")
  c.encoder.size = opts.get("size", "base")
  c.objective.name = objective
  c.objective.embed_dim = 1024
  c.objective.text_encoder_size = opts.get("text", "base")
  c.text.max_len = 64
  c.text.vocab_size = 30522
  c.train.global_batch_size = 512
  c.train.num_steps = 200_000
  c.optimizer.learning_rate = 1e-4
  c.optimizer.warmup_steps = 5000
  c.optimizer.weight_decay = 0.1
  if "runlocal" in opts:
    config_lib.runlocal(c, opts)
    c.objective.text_encoder_size = opts.get("text", "tiny")
    c.objective.embed_dim = 64
    c.text.vocab_size = 500
    c.text.max_len = 32
    c.optimizer.learning_rate = 1e-3
  return c
