r"""Captioning: CapPa-style caption decoder on the strong captions.

A 6-layer transformer decoder (width 768, 8 heads, FFN 3072) cross-attends
to the encoder frames; 25% of batches are autoregressive (causal, teacher
forcing), 75% parallel (every input [MASK], no causal mask); label
smoothing 0.1 (PAPER.md section 3; audiopt/objectives/captioning.py):

  python -m audiopt.main --config=configs/captioning.py \
      --config.data.name=uts_records --config.data.data_dir=/data/tfds \
      --workdir=/tmp/captioning

Captions are tokenized by `config.text.tokenizer` (a tokenizer.json, e.g.
BART-base's or BERT-base's) or, when that is empty, by a WordPiece
vocabulary of `config.text.vocab_size` trained on the training captions.

Options after a colon, comma-separated:
  encoder=NAME   encoder architecture (default transformer)
  size=NAME      encoder size preset (default base)
  ar=F           fraction of autoregressive batches (default 0.25)
  runlocal       tiny model, few steps, demo records: a laptop smoke test
Example: configs/captioning.py:runlocal
"""

from audiopt import config as config_lib


def get_config(arg=None):
  """Returns the captioning experiment config."""
  opts = config_lib.parse_arg(arg)
  config_lib.check_arg(opts, ("encoder", "size", "ar", "runlocal"),
                       "configs/captioning.py")
  c = config_lib.base_config()
  c.encoder.name = opts.get("encoder", "transformer")
  c.encoder.size = opts.get("size", "base")
  c.objective.name = "captioning"
  c.objective.decoder_size = "base"
  c.objective.ar_fraction = float(opts.get("ar", 0.25))
  c.objective.label_smoothing = 0.1
  c.text.max_len = 64
  c.text.vocab_size = 10_000
  c.train.global_batch_size = 512
  c.train.num_steps = 400_000
  c.optimizer.learning_rate = 5e-4
  c.optimizer.warmup_steps = 5000
  if "runlocal" in opts:
    config_lib.runlocal(c, opts)
    c.objective.decoder_size = "tiny"
    c.text.vocab_size = 500
    c.text.max_len = 32
  return c
