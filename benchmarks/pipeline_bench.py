r"""Input pipeline throughput against the train step's consumption, one run.

  python benchmarks/pipeline_bench.py --clips=256 --threads=1 --batch=64 \
      --encoder=transformer --size=base --step_batch=8 \
      --gpu_step_ms=250 --gpu_batch=256

Writes `--clips` 10-second FLAC records (tones plus noise, 16 kHz) with
`records.write_records`, then reads them through the training pipeline
(`pipeline.make_iterator`: shuffle, FLAC decode, random crop, id padding,
batching) and places every batch on the devices (`sharding.shard_batch`),
for `--batches` batches after one warm-up batch. It reports clips/s over
wall time and clips per CPU-second of this process (the per-core rate; the
log-mel front end runs inside the model, on the device, not here).

It then times the real train step (`audiopt.train.step`) of `--encoder` /
`--size` on this host's CPU on `--step_batch` clips and prints the clips/s
that step consumes, and the clips/s a GPU step of `--gpu_step_ms` ms on
`--gpu_batch` clips needs, with the CPU cores the pipeline needs to keep up.
"""

import argparse
import os
import statistics
import tempfile
import time

import jax
import numpy as np

from audiopt import config as config_lib
from audiopt.data import pipeline
from audiopt.data import records
from audiopt.objectives import DatasetInfo
from audiopt.train import sharding
from audiopt.train import step as step_lib

SAMPLE_RATE = 16000


def write_flac_records(data_dir: str, num_clips: int, seconds: float,
                       num_tags: int) -> None:
  """Writes `num_clips` records of `seconds` of audio as "bench_records".

  Each clip is three random tones plus noise (FLAC-compressible like real
  audio, unlike white noise) with 5 random tags of `num_tags`.
  """
  rng = np.random.default_rng(0)
  n = int(seconds * SAMPLE_RATE)
  t = np.arange(n, dtype=np.float32) / SAMPLE_RATE

  def examples():
    for i in range(num_clips):
      freqs = rng.uniform(80, 4000, 3)
      wav = sum(0.2 * np.sin(2 * np.pi * f * t) for f in freqs)
      wav = (wav + 0.05 * rng.standard_normal(n)).astype(np.float32)
      yield {"clip_id": f"clip{i:05d}", "audio": wav, "source": "bench",
             "domain": "sound", "caption": "tones and noise",
             "tags": rng.choice(num_tags, 5, replace=False)}

  records.write_records(
      data_dir, "bench_records", {"train": examples},
      metadata={"tag_names": [f"tag{i}" for i in range(num_tags)],
                "weak_label_names": []})


def time_pipeline(source, args, mesh) -> dict[str, float]:
  """Reads `args.batches` batches to the devices after one warm-up batch.

  Returns:
    {"clips_per_s": wall-clock rate, "clips_per_cpu_s": clips per CPU-second
    of this process, "cpu_util": CPU-seconds per wall second}.
  """
  opts = pipeline.PipelineOptions(
      global_batch_size=args.batch, clip_seconds=args.seconds,
      sample_rate=SAMPLE_RATE, seed=0, shuffle=True, repeat=True,
      random_crop=True, num_threads=args.threads, prefetch=args.prefetch)
  it = pipeline.make_iterator(source, opts)
  jax.block_until_ready(sharding.shard_batch(next(it), mesh))
  wall0, cpu0 = time.perf_counter(), time.process_time()
  for _ in range(args.batches):
    jax.block_until_ready(sharding.shard_batch(next(it), mesh))
  wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
  clips = args.batches * args.batch
  return {"clips_per_s": clips / wall, "clips_per_cpu_s": clips / cpu,
          "cpu_util": cpu / wall}


def time_step(args, num_tags: int) -> tuple[float, int]:
  """Median seconds of the real train step on `args.step_batch` clips.

  Returns:
    (median step seconds over `args.step_repeats` steps, parameter count).
  """
  c = config_lib.base_config()
  c.encoder.name, c.encoder.size = args.encoder, args.size
  c.encoder.dtype = args.dtype
  c.objective.name = "mtc"
  c.data.clip_seconds = args.seconds
  c.train.global_batch_size = args.step_batch
  c.mesh.data = -1
  info = DatasetInfo(num_tags=num_tags, num_weak_labels=1)
  setup = step_lib.build(c, info, {})
  state = step_lib.init_state(setup, jax.random.key(0))
  step = step_lib.make_train_step(setup)
  rng = np.random.default_rng(0)
  n = int(args.seconds * SAMPLE_RATE)
  b = args.step_batch
  local = {"audio": rng.uniform(-0.5, 0.5, (b, n)).astype(np.float32),
           "audio_mask": np.ones((b, n), bool),
           "tags": rng.integers(0, num_tags, (b, 32)).astype(np.int32),
           "weak_labels": -np.ones((b, 16), np.int32),
           "label_ids": -np.ones((b, 16), np.int32),
           "valid": np.ones((b,), bool)}
  times = []
  with sharding.mesh_and_rules(setup.mesh, setup.rules):
    batch = sharding.shard_batch(local, setup.mesh)
    for i in range(args.step_repeats + 1):
      t0 = time.perf_counter()
      state, m = step(state, batch, jax.random.key(1))
      jax.block_until_ready(m["loss"])
      if i:  # the first call compiles
        times.append(time.perf_counter() - t0)
  params = sum(x.size for x in jax.tree.leaves(state.params))
  return statistics.median(times), params


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--clips", type=int, default=256,
                      help="records written (the pipeline repeats them)")
  parser.add_argument("--seconds", type=float, default=10.0)
  parser.add_argument("--num_tags", type=int, default=2000)
  parser.add_argument("--batch", type=int, default=64,
                      help="pipeline batch size")
  parser.add_argument("--batches", type=int, default=16,
                      help="timed pipeline batches")
  parser.add_argument("--threads", type=int, default=1,
                      help="Grain reader threads")
  parser.add_argument("--prefetch", type=int, default=2)
  parser.add_argument("--data_dir", default=None,
                      help="reuse records here (default: a temp dir)")
  parser.add_argument("--encoder", default="transformer")
  parser.add_argument("--size", default="base")
  parser.add_argument("--dtype", default="float32")
  parser.add_argument("--step_batch", type=int, default=8)
  parser.add_argument("--step_repeats", type=int, default=3)
  parser.add_argument("--skip_step", action="store_true",
                      help="only time the pipeline")
  parser.add_argument("--gpu_step_ms", type=float, default=250.0,
                      help="a GPU step time to size the pipeline against")
  parser.add_argument("--gpu_batch", type=int, default=256,
                      help="clips per GPU step at --gpu_step_ms")
  args = parser.parse_args()

  data_dir = args.data_dir or tempfile.mkdtemp(prefix="pipeline_bench_")
  t0 = time.perf_counter()
  write_flac_records(data_dir, args.clips, args.seconds, args.num_tags)
  print(f"records: {args.clips} x {args.seconds:g} s FLAC under {data_dir} "
        f"({time.perf_counter() - t0:.1f} s to write; "
        f"{os.cpu_count()} CPUs visible)")
  source = records.open_records(data_dir, "bench_records", "train")
  mesh = sharding.make_mesh({"data": -1})
  p = time_pipeline(source, args, mesh)
  print(f"pipeline ({args.threads} thread(s), batch {args.batch}, "
        f"{len(jax.devices())} {jax.devices()[0].platform} device(s)): "
        f"{p['clips_per_s']:.0f} clips/s wall, "
        f"{p['clips_per_cpu_s']:.0f} clips per CPU-second "
        f"({p['cpu_util']:.2f} cores busy)")

  need = args.gpu_batch / (args.gpu_step_ms / 1000)
  print(f"a GPU step of {args.gpu_step_ms:g} ms on {args.gpu_batch} clips "
        f"needs {need:.0f} clips/s = {need / p['clips_per_cpu_s']:.1f} "
        "pipeline cores at the rate above")
  if args.skip_step:
    return
  sec, params = time_step(args, args.num_tags)
  used = args.step_batch / sec
  print(f"train step {args.encoder}/{args.size} ({params / 1e6:.1f} M params, "
        f"{args.dtype}) on this CPU: {sec * 1000:.0f} ms per "
        f"{args.step_batch} clips = {used:.1f} clips/s consumed; the "
        f"pipeline outruns it {p['clips_per_s'] / used:.1f}x")


if __name__ == "__main__":
  main()
