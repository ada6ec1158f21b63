"""Profiles the bfloat16 train step of one encoder on one GPU.

  python benchmarks/gpu_profile.py --out=/tmp/prof [--encoder=transformer:base]

Writes a Perfetto/Chrome trace (perfetto_trace.json.gz, open it at
ui.perfetto.dev) of `gpu_check`'s compile and timed steps under --out. The
trace of transformer-base at batch 64 is about 40 MB.
"""

import argparse

import jax

import gpu_check

parser = argparse.ArgumentParser()
parser.add_argument("--out", required=True)
parser.add_argument("--encoder", default="transformer:base")
parser.add_argument("--batch", type=int, default=64)
args = parser.parse_args()
ns = argparse.Namespace(seconds=10.0, batch=args.batch, repeats=2,
                        peak_tflops=989.0, scan_layers=True,
                        no_spec_augment=False, prng_impl="")
name, size = args.encoder.split(":")
with jax.profiler.trace(args.out, create_perfetto_trace=True):
  print(gpu_check.check(name, size, ns))
