r"""The embedded demo: the paper's main comparison in miniature.

  python -m audiopt.main --config=configs/demo.py --workdir=/tmp/audiopt_demo

Writes the demo world's records under <workdir>/data (once), then runs a
small study (audiopt/study): a small transformer trained with MTC on UTS
tags built from the strong captions (run mtc_uts) and, as the baseline,
with MTC on the weak labels (run mtc_weak); both frozen encoders, and the
same encoder at random initialisation, are probed on every held-out demo
task with mean pooling + linear, attention pooling + linear and kNN. Prints
the tables in the paper's layout and saves them in <workdir>/results.md,
with <workdir>/results.csv and plots in <workdir>/plots. Rerunning the
command reuses what is done. At most 15 minutes on 2 CPU cores.

Options after a colon: target=tags|weak_labels trains that one MTC run and
probes it (no study); quick shrinks everything for tests and is one run
unless `study` is given too.
"""

from audiopt import config as config_lib
from audiopt.data import prepare


def get_config(arg=None):
  """Returns the demo config."""
  opts = config_lib.parse_arg(arg)
  config_lib.check_arg(opts, ("target", "quick", "study"), "configs/demo.py")
  c = config_lib.base_config()
  c.data.source = "demo"
  c.data.clip_seconds = 4.0
  # The demo world (audiopt/data/demo_world): pre-training clips of 2-6 s,
  # 240 train + 120 test clips per held-out task, a 64-tag UTS vocabulary
  # from the strong captions, weak labels with 10% dropped and 5% swapped.
  c.data.demo.num_clips = 2000
  c.data.demo.num_task_clips = 240
  c.data.demo.vocab_size = 64
  c.data.demo.min_seconds = 2.0
  c.data.demo.max_seconds = 6.0
  c.data.demo.task_min_seconds = 2.0
  c.data.demo.task_max_seconds = 6.0
  c.data.demo.weak_drop_rate = 0.1
  c.data.demo.weak_swap_rate = 0.05
  c.encoder.name = "transformer"
  c.encoder.size = "mini"
  c.objective.name = "mtc"
  c.objective.target = opts.get("target", "tags")
  c.train.global_batch_size = 32
  c.train.num_steps = 300
  c.train.log_every = 25
  c.train.checkpoint_every = 100
  c.optimizer.learning_rate = 1e-3
  c.optimizer.warmup_steps = 30
  c.eval.tasks = ",".join(prepare.demo_task_names())
  c.eval.clip_seconds = 4.0
  c.eval.batch_size = 32
  c.eval.probe_epochs = 100
  if "quick" in opts:
    c.data.demo.num_clips = 48
    c.data.demo.num_task_clips = 16
    c.data.demo.vocab_size = 32
    c.data.demo.min_seconds = c.data.demo.task_min_seconds = 1.5
    c.data.demo.max_seconds = c.data.demo.task_max_seconds = 2.5
    c.data.demo.num_workers = 1  # in-process: no worker start-up in tests
    c.data.clip_seconds = 2.0
    c.eval.clip_seconds = 2.0
    c.encoder.size = "tiny"
    c.train.global_batch_size = 16
    c.train.num_steps = 6
    c.train.log_every = 2
    c.train.checkpoint_every = 3
    c.optimizer.warmup_steps = 2
    c.eval.batch_size = 16
    c.eval.probe_epochs = 10
  if "study" in opts or not ({"quick", "target"} & set(opts)):
    # Two runs of 200 steps, data and probes: under 15 minutes on 2 cores.
    c.job = "study"
    c.study.runs = "mtc_uts: data=uts; mtc_weak: data=weak_labels"
    if "quick" not in opts:
      c.train.num_steps = 200
      c.optimizer.warmup_steps = 20
    c.train.checkpoint_every = c.train.num_steps
  return c
