r"""Checks and times bfloat16 training of each encoder on one GPU.

  python benchmarks/gpu_check.py [--encoders=transformer:base,vit:b,zipformer:m]
      [--objective=mtc] [--batch=64] [--seconds=10] [--repeats=10]
      [--peak_tflops=989] [--dtype=bfloat16] [--scan_layers]
      [--no_spec_augment] [--prng_impl=threefry2x32] [--attention=xla|cudnn]
      [--dropout=0.1] [--no_parts] [--optimizer=adamw|scaled_adam]

For each encoder: builds the trainer's real step from the objective's
experiment config (`configs/<objective>.py`; front end in float32, encoder
in bfloat16, 2,000 tags, random 32-token captions for the text objectives,
donated state) on all local devices, checks the loss is finite and falls over
the timed steps on a fixed batch, and prints the median step time, clips/s
and model-FLOPs utilisation = (model FLOPs of the step / step time) / peak,
with the compiled step's memory per device (XLA's memory analysis: arguments
+ outputs - donated + temporaries; on the GPU the measured figure that
`memory_bench.py` estimates from CPU compiles).
The model FLOPs are XLA's HLO cost analysis of the step lowered without
`scan_layers` (cost analysis counts a loop body once, so a scanned program
under-reports; lowering is cheap, only the timed program is compiled),
counting the front end, encoder, objective and optimizer. The default peak
is the H100/H200 SXM dense bfloat16 figure (989 TFLOP/s);
`--peak_tflops=0` measures one instead, the median throughput of a 4096^3
matrix product in `--dtype` on the same devices (how a CPU table is made).
Meant to run in under 5 minutes on one H100 or H200.

To show where a step's time goes it also times, on the same batch, the
front end alone (log-mel + SpecAugment, jitted) and the encoder's eval
forward alone; `--scan_layers` cuts compile time, `--prng_impl=rbg` swaps
the threefry dropout bits for the cheaper RBG generator. `--attention=cudnn`
runs the transformer and ViT attention as cuDNN flash attention and checks
its eval forward against the XLA attention's on the same batch (the FLOPs
are always counted with XLA attention: cost analysis does not see into the
cuDNN call).
"""

import argparse
import functools
import os
import statistics
import subprocess
import sys
import time

import jax
import numpy as np

from audiopt import aot
from audiopt import config as config_lib
from audiopt.objectives import DatasetInfo
from audiopt.train import sharding
from audiopt.train import step as step_lib


INFO = DatasetInfo(num_tags=2000, num_weak_labels=527,
                   tag_names=tuple(map(str, range(2000))))


CONFIGS = os.path.join(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))), "configs")
CAPTION_TOKENS = 32


def step_config(encoder: str, size: str, args):
  """The experiment config of `args.objective` for one checked step."""
  c = config_lib.load_config_file(os.path.join(CONFIGS, f"{args.objective}.py"),
                                 f"encoder={encoder},size={size}")
  c.encoder.dtype = args.dtype
  if args.scan_layers:
    c.encoder.scan_layers = True
  if args.no_spec_augment:  # else as the experiment has it (masked: off)
    c.frontend.use_spec_augment = False
  if args.dropout is not None:
    c.encoder.dropout_rate = args.dropout
  if encoder != "zipformer":
    c.encoder.attention_impl = args.attention
  c.data.clip_seconds = args.seconds
  c.train.global_batch_size = args.batch
  c.text.max_len = CAPTION_TOKENS
  if args.optimizer:
    c.optimizer.name = args.optimizer
    if args.optimizer == "scaled_adam":  # it clips by its own rule
      c.optimizer.clip_norm = 0.0
  c.optimizer.warmup_steps = 1
  c.optimizer.learning_rate = 1e-4
  return c


def host_batch(args) -> dict[str, np.ndarray]:
  """A fixed global batch: args.batch clips of args.seconds of noise."""
  rng = np.random.default_rng(0)
  n = int(args.seconds * 16000)
  return {
      "audio": rng.uniform(-0.3, 0.3, (args.batch, n)).astype(np.float32),
      "audio_mask": np.ones((args.batch, n), bool),
      "tags": rng.integers(0, 2000, (args.batch, 10)).astype(np.int32),
      "weak_labels": -np.ones((args.batch, 1), np.int32),
      "label_ids": -np.ones((args.batch, 1), np.int32),
      "valid": np.ones((args.batch,), bool),
      # Ids past the special tokens; 8 to 32 tokens, then padding.
      "caption_ids": rng.integers(5, 8000, (args.batch, CAPTION_TOKENS)
                                  ).astype(np.int32),
      "caption_mask": (np.arange(CAPTION_TOKENS)[None, :] <
                       rng.integers(8, CAPTION_TOKENS + 1, (args.batch, 1))),
  }


def check(encoder: str, size: str, args, trace_dir: str = "") -> dict:
  """Builds, compiles and times one encoder's train step; returns numbers.

  With `trace_dir`, three more steps after the timed ones run under
  `jax.profiler.trace` (Perfetto trace, no Python tracer), so that the trace
  holds the step's kernels and nothing of building or compiling it (the
  trace export keeps at most a million events).
  """
  c = step_config(encoder, size, args)
  info = INFO
  setup = step_lib.build(c, info, {})
  state = step_lib.init_state(setup, jax.random.key(0))
  train_step = step_lib.make_train_step(setup)
  xla_model = _xla_attention_model(c, info)  # built outside the mesh rules
  local = host_batch(args)
  with sharding.mesh_and_rules(setup.mesh, setup.rules):
    batch = sharding.shard_batch(local, setup.mesh)
    t0 = time.perf_counter()
    compiled = train_step.lower(state, batch, jax.random.key(1)).compile()
    compile_s = time.perf_counter() - t0
    peak_gib = aot.memory_bytes(compiled).get("peak_bytes", float("nan")
                                              ) / 2**30
    front_ms = fwd_ms = float("nan")
    if not args.no_parts:
      front_ms, fwd_ms = _parts_ms(setup, state.params, batch, args.repeats)
    losses, times = [], []
    for _ in range(args.repeats + 2):
      t0 = time.perf_counter()
      state, metrics = compiled(state, batch, jax.random.key(1))
      losses.append(float(metrics["loss"]))  # syncs
      times.append(time.perf_counter() - t0)
    if trace_dir:
      options = jax.profiler.ProfileOptions()
      options.python_tracer_level = 0
      with jax.profiler.trace(trace_dir, create_perfetto_trace=True,
                              profiler_options=options):
        for _ in range(3):
          state, metrics = compiled(state, batch, jax.random.key(1))
        jax.block_until_ready(metrics)
    try:  # after the timing, so that a failed comparison keeps the times
      attention_diff = _attention_diff(setup.model, xla_model, state.params,
                                       batch)
    except Exception as e:  # pylint: disable=broad-except
      print(f"attention check failed: {type(e).__name__}: {e}",
            file=sys.stderr)
      attention_diff = float("nan")
  times = times[2:]  # warm-up
  flops = (args.tflop_step * 1e12 if args.tflop_step
           else _unscanned_step_flops(c, info, batch, args))
  med = statistics.median(times)
  peak = (args.peak_tflops * 1e12 * jax.device_count() if args.peak_tflops
          else _matmul_flops_per_s(args.dtype))
  return {
      "encoder": f"{encoder}/{size} {args.objective}",
      "params": sum(x.size for x in jax.tree.leaves(state.params)),
      "compile_s": compile_s, "peak_gib": peak_gib, "step_ms": med * 1e3,
      "min_ms": min(times) * 1e3, "max_ms": max(times) * 1e3,
      "clips_per_s": args.batch / med, "tflop_step": flops / 1e12,
      "mfu": flops / med / peak, "peak_tflops": peak / 1e12,
      "finite": all(np.isfinite(losses)), "falls": losses[-1] < losses[0],
      "front_ms": front_ms, "fwd_ms": fwd_ms,
      "attention_diff": attention_diff,
      # Names the traced ops' model parts (gpu_sweep's profile summary).
      "hlo_text": compiled.as_text() if trace_dir else "",
  }


def _xla_attention_model(config, info):
  """The step's model with XLA attention, or None if it already has it."""
  if config.encoder.get("attention_impl") in (None, "xla"):
    return None
  config = config.copy_and_resolve_references()
  config.encoder.attention_impl = "xla"
  return step_lib.build(config, info, {}).model


def _attention_diff(model, xla_model, params, batch) -> float:
  """Max |eval frames - the same with XLA attention| over max |frames|.

  NaN when `xla_model` is None (the step already uses XLA attention).
  """
  if xla_model is None:
    return float("nan")
  frames = []
  for m in (model, xla_model):
    fn = jax.jit(lambda p, a, k, m=m: m.apply(
        {"params": p}, a, k, method="embed").frames.astype(np.float32))
    frames.append(np.asarray(fn(params, batch["audio"], batch["audio_mask"])))
  got, ref = frames
  return float(np.abs(got - ref).max() / np.abs(ref).max())


_FLOPS: dict[tuple, float] = {}


def _unscanned_step_flops(config, info, batch, args) -> float:
  """HLO cost-analysis FLOPs of the train step with every layer unrolled.

  Memoised per encoder, size and batch shape: a sweep lowers each once.
  Where the backend has no cost analysis of a lowered program (GPU), a CPU
  process lowers the same step (lowering only, no compile).
  """
  key = (config.encoder.name, config.encoder.size, args.objective,
         args.dtype, args.optimizer, tuple(batch["audio"].shape))
  if key not in _FLOPS:
    flops = _count_step_flops(config, info, batch)
    _FLOPS[key] = flops if flops is not None else _cpu_step_flops(
        config.encoder.name, config.encoder.size, args)
  return _FLOPS[key]


def _cpu_step_flops(encoder: str, size: str, args) -> float:
  """`_count_step_flops` of the same step in a JAX_PLATFORMS=cpu process."""
  cmd = [sys.executable, __file__, "--count_flops",
         f"--encoders={encoder}:{size}", f"--batch={args.batch}",
         f"--seconds={args.seconds}", f"--objective={args.objective}",
         f"--dtype={args.dtype}"]
  if args.no_spec_augment:
    cmd.append("--no_spec_augment")
  if args.dropout is not None:
    cmd.append(f"--dropout={args.dropout}")
  if args.optimizer:
    cmd.append(f"--optimizer={args.optimizer}")
  env = dict(os.environ, JAX_PLATFORMS="cpu")
  out = subprocess.run(cmd, env=env, capture_output=True, text=True,
                       check=True).stdout
  return float(out.split()[-1])


def _count_step_flops(config, info, batch) -> float | None:
  config = config.copy_and_resolve_references()
  config.encoder.scan_layers = False
  if config.encoder.get("attention_impl") is not None:
    config.encoder.attention_impl = "xla"
  setup = step_lib.build(config, info, {})
  whole = sharding.replicated(setup.mesh)
  abstract = jax.tree.map(
      lambda a: a if a.sharding is not None else jax.ShapeDtypeStruct(
          a.shape, a.dtype, sharding=whole), setup.abstract_state)
  with sharding.mesh_and_rules(setup.mesh, setup.rules):
    lowered = step_lib.make_train_step(setup).lower(
        abstract, batch, jax.random.key(1))
  cost = lowered.cost_analysis()
  cost = cost[0] if isinstance(cost, list) else cost
  return float(cost["flops"]) if cost else None


@functools.cache
def _matmul_flops_per_s(dtype: str, n: int = 4096) -> float:
  """Median FLOP/s of an n^3 `dtype` matrix product on the first device."""
  a = jax.device_put(np.ones((n, n), np.float32), jax.devices()[0]
                     ).astype(dtype)
  ms = _median_ms(jax.jit(lambda x: x @ x), a, repeats=5)
  return 2 * n ** 3 / (ms / 1e3)


def _median_ms(fn, *args, repeats: int) -> float:
  """Median wall milliseconds of jitted `fn(*args)` after one warm-up."""
  jax.block_until_ready(fn(*args))
  times = []
  for _ in range(repeats):
    t0 = time.perf_counter()
    jax.block_until_ready(fn(*args))
    times.append(time.perf_counter() - t0)
  return statistics.median(times) * 1e3


def _parts_ms(setup, params, batch, repeats: int) -> tuple[float, float]:
  """(front end in training mode, eval forward of front end + encoder) ms."""
  model = setup.model

  @jax.jit
  def front(audio, mask, rng):
    return model.apply({}, audio, mask, train=True, method="features",
                       rngs={"augment": rng})

  @jax.jit
  def forward(params, audio, mask):
    return model.apply({"params": params}, audio, mask, method="embed").frames

  key = jax.random.key(2)
  return (_median_ms(front, batch["audio"], batch["audio_mask"], key,
                     repeats=repeats),
          _median_ms(forward, params, batch["audio"], batch["audio_mask"],
                     repeats=repeats))


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--encoders", default="transformer:base,vit:b,zipformer:m")
  parser.add_argument("--objective", default="mtc",
                      help="configs/<objective>.py supplies the step")
  parser.add_argument("--dtype", default="bfloat16")
  parser.add_argument("--optimizer", default="",
                      help="the config's optimizer unless set")
  parser.add_argument("--batch", type=int, default=64)
  parser.add_argument("--seconds", type=float, default=10.0)
  parser.add_argument("--repeats", type=int, default=10)
  parser.add_argument("--peak_tflops", type=float, default=989.0)
  parser.add_argument("--scan_layers", action="store_true")
  parser.add_argument("--no_spec_augment", action="store_true")
  parser.add_argument("--prng_impl", default="")
  parser.add_argument("--attention", default="xla", choices=("xla", "cudnn"))
  parser.add_argument("--dropout", type=float, default=None)
  parser.add_argument("--no_parts", action="store_true")
  parser.add_argument("--tflop_step", type=float, default=0.0,
                      help="model TFLOP per step if known (skips counting)")
  parser.add_argument("--count_flops", action="store_true",
                      help="print the step's FLOPs for one encoder and exit")
  args = parser.parse_args()
  if args.count_flops:
    name, size = args.encoders.split(":")
    c = step_config(name, size, args)
    setup = step_lib.build(c, INFO, {})
    with sharding.mesh_and_rules(setup.mesh, setup.rules):
      batch = sharding.shard_batch(host_batch(args), setup.mesh)
    print(_count_step_flops(c, INFO, batch))
    return
  if args.prng_impl:
    jax.config.update("jax_default_prng_impl", args.prng_impl)
  print(f"devices: {jax.devices()}")
  print(f"batch {args.batch} x {args.seconds:g} s, {args.dtype} encoder, "
        f"configs/{args.objective}.py, 2,000 tags")
  print(f"attention {args.attention}, dropout "
        f"{'default' if args.dropout is None else args.dropout}")
  print(HEADER)
  for item in args.encoders.split(","):
    name, size = item.split(":")
    print(row(check(name, size, args)), flush=True)


HEADER = ("| encoder | params | compile s | memory GiB | step ms (min-max) | "
          "clips/s | TFLOP/step | MFU | peak TFLOP/s | front end ms | "
          "eval fwd ms | loss finite, falls | attention rel. diff |\n"
          "|---|---|---|---|---|---|---|---|---|---|---|---|---|")


def row(r: dict) -> str:
  """One markdown table row (see HEADER) of a `check` result."""
  return (f"| {r['encoder']} | {r['params']:,} | {r['compile_s']:.0f} | "
          f"{r['peak_gib']:.3g} | "
          f"{r['step_ms']:.1f} ({r['min_ms']:.1f}-{r['max_ms']:.1f}) | "
          f"{r['clips_per_s']:.0f} | {r['tflop_step']:.3g} | "
          f"{100 * r['mfu']:.1f}% | {r['peak_tflops']:.3g} | "
          f"{r['front_ms']:.1f} | {r['fwd_ms']:.1f} | "
          f"{r['finite']}, {r['falls']} | {r['attention_diff']:.2g} |")


if __name__ == "__main__":
  main()
