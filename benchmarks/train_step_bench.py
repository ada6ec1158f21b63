r"""Times the jitted train step of an encoder + objective config on this host.

  python benchmarks/train_step_bench.py --encoder=transformer --size=tiny \
      --batch=8 --seconds=10 --repeats=5

Builds the model through the trainer (the real step: front end, encoder,
objective, optimizer, donated state), feeds a random batch of `--batch`
clips of `--seconds`, and prints compile time, the median step time over
`--repeats` steps after one warm-up, clips/s, and the step's FLOPs from
XLA's cost analysis.
"""

import argparse
import statistics
import time

import jax
import numpy as np

from audiopt import config as config_lib
from audiopt.objectives import DatasetInfo
from audiopt.train import sharding
from audiopt.train import step as step_lib


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--encoder", default="transformer")
  parser.add_argument("--size", default="tiny")
  parser.add_argument("--objective", default="mtc")
  parser.add_argument("--num_tags", type=int, default=2000)
  parser.add_argument("--batch", type=int, default=8)
  parser.add_argument("--seconds", type=float, default=10.0)
  parser.add_argument("--repeats", type=int, default=5)
  parser.add_argument("--dtype", default="float32")
  parser.add_argument("--optimizer", default="adamw")
  args = parser.parse_args()

  c = config_lib.base_config()
  c.encoder.name, c.encoder.size, c.encoder.dtype = (args.encoder, args.size,
                                                     args.dtype)
  c.objective.name = args.objective
  c.optimizer.name = args.optimizer
  if args.optimizer == "scaled_adam":
    c.optimizer.clip_norm = 0.0
  c.data.clip_seconds = args.seconds
  c.train.global_batch_size = args.batch
  c.mesh.data = -1
  info = DatasetInfo(num_tags=args.num_tags, num_weak_labels=527,
                     tag_names=tuple(map(str, range(args.num_tags))))
  setup = step_lib.build(c, info, {})
  state = step_lib.init_state(setup, jax.random.key(0))
  step = step_lib.make_train_step(setup)
  rng = np.random.default_rng(0)
  n = int(args.seconds * 16000)
  local = {
      "audio": rng.uniform(-0.5, 0.5, (args.batch, n)).astype(np.float32),
      "audio_mask": np.ones((args.batch, n), bool),
      "tags": rng.integers(0, args.num_tags, (args.batch, 10)).astype(np.int32),
      "weak_labels": rng.integers(0, 527, (args.batch, 3)).astype(np.int32),
      "label_ids": -np.ones((args.batch, 1), np.int32),
      "valid": np.ones((args.batch,), bool),
  }
  with sharding.mesh_and_rules(setup.mesh, setup.rules):
    batch = sharding.shard_batch(local, setup.mesh)
    t0 = time.perf_counter()
    compiled = step.lower(state, batch, jax.random.key(1)).compile()
    compile_s = time.perf_counter() - t0
    cost = compiled.cost_analysis()
    cost = cost[0] if isinstance(cost, list) else cost
    flops = float(cost.get("flops", float("nan"))) if cost else float("nan")
    state, m = compiled(state, batch, jax.random.key(1))
    jax.block_until_ready(m["loss"])
    times = []
    for _ in range(args.repeats):
      t0 = time.perf_counter()
      state, m = compiled(state, batch, jax.random.key(1))
      jax.block_until_ready(m["loss"])
      times.append(time.perf_counter() - t0)
  params = sum(x.size for x in jax.tree.leaves(state.params))
  med = statistics.median(times)
  print(f"{args.encoder}/{args.size} {args.objective} {args.dtype} "
        f"params={params:,} batch={args.batch}x{args.seconds:g}s "
        f"devices={jax.device_count()} ({jax.devices()[0].platform})")
  print(f"  compile {compile_s:.1f} s; step median {med * 1000:.0f} ms "
        f"(min {min(times) * 1000:.0f}, max {max(times) * 1000:.0f}, "
        f"n={len(times)}); {args.batch / med:.1f} clips/s; "
        f"XLA flops/step {flops / 1e9:.1f} GFLOP")


if __name__ == "__main__":
  main()
