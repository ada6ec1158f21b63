r"""The embedded demo: pre-train on the synthetic demo corpus, then probe.

  python -m audiopt.main --config=configs/demo.py --workdir=/tmp/audiopt_demo

Writes the demo records under <workdir>/data (once), trains a small
transformer with MTC on UTS tags built from the demo's strong captions, then
fits mean- and attention-pooling linear probes on held-out demo tasks for the
trained encoder and for a randomly initialised one, and prints the table
(also in <workdir>/probe_results.md). About 5 minutes on 2 CPU cores.

Options after a colon: target=weak_labels trains on the weak labels instead;
quick shrinks everything for tests.
"""

from audiopt import config as config_lib
from audiopt.data import prepare


def get_config(arg=None):
  """Returns the demo config."""
  opts = config_lib.parse_arg(arg)
  config_lib.check_arg(opts, ("target", "quick"), "configs/demo.py")
  c = config_lib.base_config()
  c.data.source = "demo"
  c.data.clip_seconds = 4.0
  c.data.demo.num_clips = 600
  c.data.demo.num_task_clips = 240
  c.data.demo.vocab_size = 64
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
    c.data.demo.num_task_clips = 32
    c.data.demo.vocab_size = 32
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
  return c
