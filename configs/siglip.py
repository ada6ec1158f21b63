r"""SigLIP: audio-text pairwise sigmoid loss (not in the paper).

The towers of configs/contrastive.py with SigLIP's loss: an independent
sigmoid per audio-caption pair, learnable temperature (init 10) and bias
(init -10), no softmax over the batch, so it holds up at small batch sizes.
`chunked` computes it on a ring of devices, each holding only its b x b
block of logits (audiopt/objectives/contrastive_losses.py):

  python -m audiopt.main --config=configs/siglip.py:chunked \
      --config.data.name=uts_records --config.data.data_dir=/data/tfds \
      --workdir=/tmp/siglip

Options after a colon, comma-separated:
  encoder=NAME   encoder architecture (default transformer)
  size=NAME      encoder size preset (default base)
  text=SIZE      text encoder size (default base)
  chunked        the ring (ppermute) form of the loss
  runlocal       tiny model, few steps, demo records: a laptop smoke test
Example: configs/siglip.py:chunked,runlocal
"""

import os

from audiopt import config as config_lib


def _contrastive_module():
  return config_lib.config_module(
      os.path.join(os.path.dirname(os.path.abspath(__file__)),
                   "contrastive.py"))


def get_config(arg=None):
  """Returns the SigLIP experiment config."""
  opts = config_lib.parse_arg(arg)
  config_lib.check_arg(opts, ("encoder", "size", "text", "chunked",
                              "runlocal"), "configs/siglip.py")
  c = _contrastive_module().contrastive_config(opts, "siglip")
  c.objective.chunked = "chunked" in opts
  return c
