r"""The whole comparison of the paper in miniature, on the demo world.

  python -m audiopt.main --config=configs/study_demo.py --workdir=/tmp/study

One small transformer encoder ("mini"), the same audio and the same training
budget for every run; only the objective and the labels change (PAPER.md
sections 3 and 4):

  mtc_uts_k16, mtc_uts_k32, mtc_uts_k64  MTC on UTS tags, K = 16, 32, 64
  mtc_weak                            MTC on the weak labels (the baseline)
  par_uts                             PAR (parallel tag decoding), K = 64
  contrastive_uts                     CLAP-style InfoNCE on strong captions
  contrastive_short                   ... on short captions (the strong
                                      caption's first clause: caption
                                      quality)
  captioning_uts                      CapPa-style captioning
  multitask_uts                       MTC + 0.5 x captioning

plus the encoder at random initialisation. Each is probed frozen on the
demo's held-out tasks (mean and attention pooling + linear, kNN), the text
objectives also on caption-audio retrieval. Writes <workdir>/results.csv,
results.md (the tables in the paper's layout) and plots/*.png; a killed
study rerun with the same command redoes only what is missing. Runs on 2
CPU cores in under 60 minutes (see BENCHMARKS.md for the measured time).

Options after a colon: steps=N training steps per run (default 200); quick
shrinks everything (tiny encoder, a few steps) for a smoke test.
"""

import os

from audiopt import config as config_lib
from audiopt.data import prepare
from audiopt.study import spec

TEXT = {"objective.text_encoder_size": "tiny", "objective.embed_dim": 128,
        "text.vocab_size": 1000}
DECODER = {"objective.decoder_size": "tiny", "text.vocab_size": 1000}
RUNS = {
    "mtc_uts_k16": {"data": "uts_k16"},
    "mtc_uts_k32": {"data": "uts_k32"},
    "mtc_uts_k64": {"data": "uts_k64"},  # the demo's whole vocabulary
    "mtc_weak": {"data": "weak_labels"},
    "par_uts": {"data": "uts", "objective.name": "par",
                "objective.decoder_size": "tiny"},
    "contrastive_uts": {"data": "uts", "objective.name": "contrastive",
                        **TEXT},
    "contrastive_short": {"data": "captions_short",
                          "objective.name": "contrastive", **TEXT},
    "captioning_uts": {"data": "uts", "objective.name": "captioning",
                       **DECODER},
    "multitask_uts": {"data": "uts", "objective.name": "multitask",
                      "objective.tasks": "mtc:1.0,captioning:0.5",
                      **DECODER},
}


def get_config(arg=None):
  """Returns the demo study config."""
  opts = config_lib.parse_arg(arg)
  config_lib.check_arg(opts, ("steps", "quick"), "configs/study_demo.py")
  c = _demo_module().get_config("quick" if "quick" in opts else None)
  c.data.demo.vocab_size = 64  # K of the largest UTS vocabulary compared
  c.job = "study"
  c.study.runs = spec.format_runs(RUNS)
  c.train.num_steps = int(opts.get("steps", 6 if "quick" in opts else 200))
  c.train.checkpoint_every = c.train.num_steps
  c.train.log_every = min(c.train.log_every, c.train.num_steps)
  c.optimizer.warmup_steps = max(1, c.train.num_steps // 10)
  c.eval.retrieval_tasks = prepare.demo_retrieval_name()
  return c


def _demo_module():
  """configs/demo.py beside this file (the demo world and its encoder)."""
  return config_lib.config_module(
      os.path.join(os.path.dirname(os.path.abspath(__file__)), "demo.py"))
