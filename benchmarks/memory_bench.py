r"""Largest batch per device that fits a memory budget, from compiled programs.

  python benchmarks/memory_bench.py --budget_gib=80 --dtype=bfloat16 \
      --encoders=transformer:base,vit:b,zipformer:m

For each encoder (MTC objective, 10-second clips, one device, no FSDP) the
real train step is compiled ahead of time (`audiopt.aot`) at two batch
sizes; the per-device peak (arguments + outputs - aliased + temporaries
from `memory_analysis()`) is fitted as fixed + per-clip bytes, the largest
batch under `--budget_gib` is predicted, and that batch is compiled once
more to check it. The compile is for THIS host's backend: on CPU it is an
estimate of the GPU figure (XLA's CPU and GPU fusion and buffer assignment
differ), not a measurement on the GPU.
"""

import argparse
import json

import jax

from audiopt import aot
from audiopt import config as config_lib
from audiopt.objectives import DatasetInfo


def peak_bytes(encoder: str, size: str, batch: int, args) -> int:
  """Per-device peak bytes of the compiled train step at `batch` clips."""
  c = config_lib.base_config()
  c.encoder.name, c.encoder.size, c.encoder.dtype = encoder, size, args.dtype
  if args.remat:
    c.encoder.remat = True
  if args.scan_layers:
    c.encoder.scan_layers = True
  c.objective.name = "mtc"
  c.data.clip_seconds = args.seconds
  c.train.global_batch_size = batch
  c.mesh.data = 1
  info = DatasetInfo(num_tags=args.num_tags, num_weak_labels=527)
  setup, compiled = aot.compile_train_step(c, info,
                                           devices=jax.devices()[:1])
  return aot.report(setup, compiled)["memory"]["peak_bytes"]


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--encoders", default="transformer:base,vit:b,"
                      "zipformer:m")
  parser.add_argument("--budget_gib", type=float, default=80.0)
  parser.add_argument("--dtype", default="bfloat16")
  parser.add_argument("--seconds", type=float, default=10.0)
  parser.add_argument("--num_tags", type=int, default=2000)
  parser.add_argument("--probe", default="4,8",
                      help="the two batch sizes the fit uses")
  parser.add_argument("--remat", action="store_true",
                      help="set encoder.remat (per-layer rematerialisation)")
  parser.add_argument("--scan_layers", action="store_true",
                      help="set encoder.scan_layers (one compiled layer per "
                      "stack: far faster compiles of Zipformer-M)")
  parser.add_argument("--json", default=None)
  args = parser.parse_args()
  budget = args.budget_gib * 2**30
  b0, b1 = (int(x) for x in args.probe.split(","))
  rows = []
  for item in args.encoders.split(","):
    encoder, size = item.split(":")
    m0 = peak_bytes(encoder, size, b0, args)
    m1 = peak_bytes(encoder, size, b1, args)
    per_clip = (m1 - m0) / (b1 - b0)
    fixed = m0 - per_clip * b0
    batch = int((budget - fixed) // per_clip)
    check = peak_bytes(encoder, size, batch, args)
    while check > budget and batch > 1:
      batch = int(batch * budget / check)
      check = peak_bytes(encoder, size, batch, args)
    row = {"encoder": f"{encoder}/{size}", "dtype": args.dtype,
           "remat": args.remat, "fixed_gib": fixed / 2**30,
           "per_clip_mib": per_clip / 2**20, "max_batch": batch,
           "peak_gib_at_max": check / 2**30,
           "platform": jax.devices()[0].platform}
    rows.append(row)
    print(f"{row['encoder']} {args.dtype} remat={args.remat}: "
          f"{row['fixed_gib']:.2f} GiB fixed + {row['per_clip_mib']:.0f} MiB "
          f"per {args.seconds:g}-s clip -> largest batch {batch} "
          f"({row['peak_gib_at_max']:.1f} GiB of {args.budget_gib:g}, "
          f"{row['platform']} compile)", flush=True)
  if args.json:
    with open(args.json, "w") as f:
      json.dump(rows, f, indent=2)


if __name__ == "__main__":
  main()
