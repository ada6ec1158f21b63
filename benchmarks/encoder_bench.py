r"""Times, sizes and counts the FLOPs of each encoder on this host's CPU.

  python benchmarks/encoder_bench.py \
      [--encoders=transformer:base,vit:b,zipformer:m] [--batch=8] \
      [--seconds=10] [--repeats=5] [--dtype=float32] [--no-train]

For each encoder, built with `audiopt.models.registry.build_encoder`, on a
batch of `--batch` random 80-bin log-mel clips of `--seconds` (100 frames/s):

  fwd      jitted eval forward (train=False) returning the frames;
  fwd+bwd  jitted gradient w.r.t. the parameters of a scalar loss (mean
           square of the valid output frames); by default in train mode
           (dropout and the Zipformer's skips on), as training runs it.

Each is compiled ahead of time, run once to warm up, then timed `--repeats`
times: the median and the min / max are reported, since a shared machine is
noisy. FLOPs per clip come from XLA's `cost_analysis()` of the compiled
program divided by the batch (XLA counts a while loop's body once, so
these are exact only for unscanned models, the presets' default). Memory is
reported two ways: XLA's `memory_analysis()` of the compiled program (temp +
argument + output bytes; the arguments include the parameters), and the
growth of the process's peak RSS (`getrusage` ru_maxrss) over the warm-up
and timed runs of each program, i.e. what executing it allocates beyond the
resident parameters and inputs; the peak growth while compiling it is
reported too. On Linux the peak is reset before each phase by writing 5 to
/proc/self/clear_refs; where that is not allowed the numbers are growth of
a peak that never falls (JSON field "rss_reset": false), so a phase that
needs less than an earlier one shows about 0. Every encoder runs in its own
child process so that one does not hide another's peak.
"""

import argparse
import functools
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from typing import Any

_FEATURE_DIM = 80
_FRAMES_PER_SECOND = 100
_DEFAULT_ENCODERS = "transformer:base,vit:b,zipformer:m"


def _peak_rss_mib() -> float:
  return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # KiB.


def _reset_peak_rss() -> tuple[float, bool]:
  """Resets the peak RSS to the current RSS where the kernel allows it.

  Returns:
    (peak RSS in MiB right after the reset, whether the reset worked).
  """
  try:
    with open("/proc/self/clear_refs", "w", encoding="ascii") as f:
      f.write("5")
    ok = True
  except OSError:
    ok = False
  return _peak_rss_mib(), ok


def _phase(fn, args, repeats: int) -> tuple[dict[str, Any], bool]:
  """Compiles, warms up and times jitted `fn` on `args`.

  Returns:
    (numbers, whether both peak-RSS resets worked).
  """
  rss0, ok_compile = _reset_peak_rss()
  compiled, compile_s, flops, xla_mib = _compile(fn, *args)
  compile_rss = _peak_rss_mib() - rss0
  rss0, ok_run = _reset_peak_rss()
  times = _time(compiled, args, repeats)
  run_rss = _peak_rss_mib() - rss0
  return {
      "median_ms": statistics.median(times) * 1e3,
      "min_ms": min(times) * 1e3, "max_ms": max(times) * 1e3,
      "times_ms": [t * 1e3 for t in times], "compile_s": compile_s,
      "flops": flops, "xla_mib": xla_mib, "rss_delta_mib": run_rss,
      "compile_rss_delta_mib": compile_rss,
  }, ok_compile and ok_run


def _compile(fn, *args) -> tuple[Any, float, float, float]:
  """Compiles jitted `fn`: (executable, seconds, flops, XLA memory MiB)."""
  t0 = time.perf_counter()
  compiled = fn.lower(*args).compile()
  seconds = time.perf_counter() - t0
  cost = compiled.cost_analysis()
  cost = cost[0] if isinstance(cost, (list, tuple)) else cost
  flops = float(cost.get("flops", float("nan"))) if cost else float("nan")
  mem = compiled.memory_analysis()
  mib = float("nan")
  if mem is not None:
    mib = (mem.temp_size_in_bytes + mem.argument_size_in_bytes +
           mem.output_size_in_bytes) / 2 ** 20
  return compiled, seconds, flops, mib


def _time(compiled, args, repeats: int) -> list[float]:
  """Seconds of each of `repeats` runs after one warm-up run."""
  import jax  # pylint: disable=g-import-not-at-top
  jax.block_until_ready(compiled(*args))
  times = []
  for _ in range(repeats):
    t0 = time.perf_counter()
    jax.block_until_ready(compiled(*args))
    times.append(time.perf_counter() - t0)
  return times


def bench_one(spec: str, args: argparse.Namespace) -> dict[str, Any]:
  """Builds, compiles and times one "name:size" encoder; returns numbers."""
  import flax.linen as nn  # pylint: disable=g-import-not-at-top
  import jax  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top

  from audiopt.models import registry  # pylint: disable=g-import-not-at-top

  name, size = spec.split(":")
  enc = registry.build_encoder(dict(name=name, size=size, dtype=args.dtype))
  frames = int(round(args.seconds * _FRAMES_PER_SECOND))
  rng = np.random.default_rng(0)
  # Roughly the range of log-mel fbank values.
  x = jnp.asarray(rng.normal(-6.0, 3.0, (args.batch, frames, _FEATURE_DIM)),
                  jnp.float32)
  m = jnp.ones((args.batch, frames), bool)
  key = jax.random.key(0)

  init = jax.jit(functools.partial(enc.init, train=False))
  params = nn.unbox(init(key, x, m)["params"])
  n_params = sum(int(np.prod(p.shape)) for p in jax.tree.leaves(params))

  @jax.jit
  def forward(params, x, m):
    return enc.apply({"params": params}, x, m, train=False).frames

  def loss(params, x, m, rng):
    out = enc.apply({"params": params}, x, m, train=args.train,
                    rngs={"dropout": rng})
    w = out.mask[..., None].astype(jnp.float32)
    sq = jnp.square(out.frames.astype(jnp.float32)) * w
    return jnp.sum(sq) / jnp.maximum(jnp.sum(w) * out.frames.shape[-1], 1.0)

  grad = jax.jit(jax.grad(loss))

  fwd, ok_fwd = _phase(forward, (params, x, m), args.repeats)
  bwd, ok_bwd = _phase(grad, (params, x, m, key), args.repeats)
  for phase in (fwd, bwd):
    phase["gflop_per_clip"] = phase["flops"] / args.batch / 1e9
  return {
      "encoder": spec, "params": n_params, "batch": args.batch,
      "frames": frames, "dtype": args.dtype, "train": args.train,
      "device": str(jax.devices()[0]), "cpus": os.cpu_count(),
      "rss_reset": ok_fwd and ok_bwd, "fwd": fwd, "fwd_bwd": bwd,
  }


def _run_child(spec: str, argv: list[str]) -> dict[str, Any]:
  cmd = [sys.executable, os.path.abspath(__file__), f"--child={spec}"] + argv
  proc = subprocess.run(cmd, stdout=subprocess.PIPE, check=True, text=True)
  return json.loads(proc.stdout.strip().splitlines()[-1])


def _table(rows: list[dict[str, Any]]) -> str:
  def timing(r):
    return f"{r['median_ms']:,.0f} ({r['min_ms']:,.0f}-{r['max_ms']:,.0f})"

  lines = [
      "| encoder | params | fwd ms, median (min-max) | "
      "fwd+bwd ms, median (min-max) | GFLOP/clip fwd | GFLOP/clip fwd+bwd | "
      "XLA MiB fwd | XLA MiB fwd+bwd | run peak RSS +MiB fwd | "
      "run peak RSS +MiB fwd+bwd | compile s (peak RSS +MiB) fwd / "
      "fwd+bwd |",
      "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
  ]
  for row in rows:
    f, b = row["fwd"], row["fwd_bwd"]
    lines.append(
        f"| {row['encoder']} | {row['params'] / 1e6:.1f}M | {timing(f)} | "
        f"{timing(b)} | {f['gflop_per_clip']:.1f} | "
        f"{b['gflop_per_clip']:.1f} | {f['xla_mib']:,.0f} | "
        f"{b['xla_mib']:,.0f} | {f['rss_delta_mib']:,.0f} | "
        f"{b['rss_delta_mib']:,.0f} | "
        f"{f['compile_s']:.0f} ({f['compile_rss_delta_mib']:,.0f}) / "
        f"{b['compile_s']:.0f} ({b['compile_rss_delta_mib']:,.0f}) |")
  return "\n".join(lines)


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--encoders", default=_DEFAULT_ENCODERS,
                      help="comma-separated name:size specs")
  parser.add_argument("--batch", type=int, default=8)
  parser.add_argument("--seconds", type=float, default=10.0)
  parser.add_argument("--repeats", type=int, default=5)
  parser.add_argument("--dtype", default="float32",
                      help="encoder compute dtype (float32 or bfloat16)")
  parser.add_argument("--train", action=argparse.BooleanOptionalAction,
                      default=True, help="fwd+bwd in train mode")
  parser.add_argument("--json_out", default="",
                      help="also write one JSON line per encoder here")
  parser.add_argument("--child", default="", help=argparse.SUPPRESS)
  args = parser.parse_args()

  if args.child:
    os.environ.setdefault("JAX_PLATFORMS", "cpu")
    print(json.dumps(bench_one(args.child, args)), flush=True)
    return

  argv = [f"--batch={args.batch}", f"--seconds={args.seconds}",
          f"--repeats={args.repeats}", f"--dtype={args.dtype}",
          "--train" if args.train else "--no-train"]
  rows = []
  for spec in args.encoders.split(","):
    row = _run_child(spec.strip(), argv)
    rows.append(row)
    print(json.dumps(row), file=sys.stderr, flush=True)
    if args.json_out:
      with open(args.json_out, "a", encoding="utf-8") as f:
        f.write(json.dumps(row) + "\n")
  print(f"{args.batch} clips x {args.seconds:g} s "
        f"({int(round(args.seconds * _FRAMES_PER_SECOND))} frames x "
        f"{_FEATURE_DIM} mel), dtype {args.dtype}, fwd+bwd "
        f"{'train' if args.train else 'eval'} mode, median of "
        f"{args.repeats} after 1 warm-up\n")
  print(_table(rows))


if __name__ == "__main__":
  main()
