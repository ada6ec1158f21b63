r"""Times the JAX fbank against kaldi_native_fbank.

Usage:
  python benchmarks/frontend_bench.py [--batch 8] [--seconds 10] \
      [--repeats 10] [--platform cpu]

Prints the command line, the device and a table of median wall times: the
jitted `audiopt.audio.frontend.fbank` on a [batch, seconds * 16000] batch
(after a warm-up call that compiles it), and kaldi_native_fbank computing the
same clips one after another.
"""

import argparse
import os
import shlex
import sys
import time


def _parse_args() -> argparse.Namespace:
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--batch", type=int, default=8)
  p.add_argument("--seconds", type=float, default=10.0)
  p.add_argument("--repeats", type=int, default=10)
  p.add_argument("--platform", default="cpu",
                 help="JAX platform: cpu, gpu or tpu")
  return p.parse_args()


def _median_seconds(fn, repeats: int) -> float:
  """Median wall time in seconds of `repeats` calls of fn()."""
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    fn()
    times.append(time.perf_counter() - start)
  times.sort()
  return times[len(times) // 2]


def main():
  args = _parse_args()
  os.environ["JAX_PLATFORMS"] = args.platform
  import jax  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top
  from audiopt.audio import frontend  # pylint: disable=g-import-not-at-top

  opts = frontend.FbankOptions()
  n = int(args.seconds * opts.sample_rate)
  rs = np.random.RandomState(0)
  t = np.arange(n) / opts.sample_rate
  wav = (0.3 * np.sin(2 * np.pi * 440 * t)[None]
         + 0.1 * rs.randn(args.batch, n)).astype(np.float32)
  mask = np.ones_like(wav, bool)

  fbank = jax.jit(frontend.fbank, static_argnums=2)
  wav_d, mask_d = jax.device_put(wav), jax.device_put(mask)
  start = time.perf_counter()
  jax.block_until_ready(fbank(wav_d, mask_d, opts))
  compile_s = time.perf_counter() - start
  jax_s = _median_seconds(
      lambda: jax.block_until_ready(fbank(wav_d, mask_d, opts)), args.repeats)

  rows = [("jax fbank (jit, batched)", jax_s)]
  try:
    import kaldi_native_fbank as knf  # pylint: disable=g-import-not-at-top
  except ImportError:
    knf = None
  if knf is not None:
    k = knf.FbankOptions()
    k.frame_opts.dither = 0.0
    k.frame_opts.snip_edges = False
    k.mel_opts.num_bins = opts.num_mel_bins
    k.mel_opts.high_freq = opts.high_freq

    def run_knf():
      for row in wav:
        f = knf.OnlineFbank(k)
        f.accept_waveform(opts.sample_rate, row)
        f.input_finished()
        np.stack([f.get_frame(i) for i in range(f.num_frames_ready)])

    run_knf()
    rows.append(("kaldi_native_fbank (per clip)", _median_seconds(
        run_knf, args.repeats)))

  audio_s = args.batch * args.seconds
  print("command:", shlex.join([sys.executable] + sys.argv))
  print(f"device: {jax.devices()[0].device_kind} ({jax.default_backend()}), "
        f"batch {args.batch} x {args.seconds:g} s, median of {args.repeats} "
        f"runs; jit compile + first call {compile_s:.2f} s")
  print(f"| {'implementation':<30} | {'batch ms':>9} | {'ms / clip':>9} | "
        f"{'x real time':>11} |")
  print(f"|{'-' * 32}|{'-' * 11}|{'-' * 11}|{'-' * 13}|")
  for name, sec in rows:
    print(f"| {name:<30} | {sec * 1e3:9.1f} | {sec * 1e3 / args.batch:9.2f} | "
          f"{audio_s / sec:11.0f} |")


if __name__ == "__main__":
  main()
