r"""Ingest throughput: 10-second WAV clips to FLAC clip shards, per core.

  python benchmarks/ingest_bench.py [--clips=200] [--rate=44100] \
      [--channels=2] [--workers=1,2] [--shard_size=50] [--repeats=3]

Writes `--clips` distinct 10-second WAV files (`--rate` Hz, `--channels`
channels, 16-bit PCM; pink-ish noise plus tones, so FLAC does real work),
then runs `ingest.run_ingest` over them (decode, downmix, resample to
16 kHz, FLAC-encode, write ArrayRecord shards, journal) into a fresh
directory, once per worker count and repeat. Reported per worker count: the
median wall time, clips per second, clips per second per worker, and the
real-time factor (audio seconds ingested per wall second), and the CPU
time (user + system, this process and its workers) with clips per CPU
second: the per-core rate, which other load on the machine does not skew the
way it skews wall time. A warm-up run
with one worker comes first (file cache, imports). With more than one worker
the time includes starting the spawned worker processes.

Prints one JSON line per worker count.
"""

import argparse
import json
import os
import resource
import shutil
import statistics
import tempfile
import time

import numpy as np
import soundfile

from audiopt.data import ingest
from audiopt.data import manifests


def _write_clips(directory: str, n: int, rate: int, channels: int,
                 seconds: float = 10.0) -> list[manifests.ManifestRow]:
  """Writes n distinct WAV clips; returns their manifest rows."""
  rng = np.random.default_rng(0)
  t = np.arange(int(seconds * rate)) / rate
  rows = []
  for i in range(n):
    noise = np.cumsum(rng.standard_normal((t.size, channels)), axis=0)
    noise -= noise.mean(axis=0)
    noise *= 0.05 / (np.abs(noise).max() + 1e-9)
    tone = 0.2 * np.sin(2 * np.pi * (200 + 10 * i) * t)[:, None]
    path = os.path.join(directory, f"clip{i:05d}.wav")
    soundfile.write(path, (noise + tone).astype(np.float32), rate,
                    subtype="PCM_16")
    rows.append(manifests.ManifestRow(f"clip{i:05d}", path))
  return rows


def _cpu_seconds() -> float:
  """User + system CPU time of this process and its reaped children."""
  total = 0.0
  for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN):
    usage = resource.getrusage(who)
    total += usage.ru_utime + usage.ru_stime
  return total


def _run(rows, out_dir: str, workers: int, shard_size: int
         ) -> tuple[float, float]:
  """One ingest into a fresh directory; returns (wall s, CPU s)."""
  shutil.rmtree(out_dir, ignore_errors=True)
  cpu = _cpu_seconds()
  start = time.perf_counter()
  summary = ingest.run_ingest(rows, out_dir, shard_size=shard_size,
                              num_workers=workers, progress=False)
  elapsed = time.perf_counter() - start
  if summary["results"] != len(rows):
    raise RuntimeError(f"ingest lost clips: {summary}")
  return elapsed, _cpu_seconds() - cpu


def main() -> None:
  """Runs the benchmark (module doc)."""
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--clips", type=int, default=200)
  parser.add_argument("--rate", type=int, default=44100)
  parser.add_argument("--channels", type=int, default=2)
  parser.add_argument("--workers", default="1,2")
  parser.add_argument("--shard_size", type=int, default=50)
  parser.add_argument("--repeats", type=int, default=3)
  args = parser.parse_args()
  with tempfile.TemporaryDirectory(prefix="ingest_bench_") as tmp:
    audio = os.path.join(tmp, "audio")
    os.makedirs(audio)
    rows = _write_clips(audio, args.clips, args.rate, args.channels)
    out = os.path.join(tmp, "out")
    _run(rows[:min(20, len(rows))], out, 1, args.shard_size)  # warm-up
    for workers in (int(w) for w in args.workers.split(",")):
      runs = [_run(rows, out, workers, args.shard_size)
              for _ in range(args.repeats)]
      times = [wall for wall, _ in runs]
      wall = statistics.median(times)
      cpu = statistics.median(c for _, c in runs)
      print(json.dumps({
          "workers": workers, "clips": args.clips,
          "input": f"10 s WAV, {args.rate} Hz, {args.channels} ch, PCM_16",
          "wall_s": round(wall, 3),
          "wall_s_min_max": [round(min(times), 3), round(max(times), 3)],
          "clips_per_s": round(args.clips / wall, 1),
          "clips_per_s_per_worker": round(args.clips / wall / workers, 1),
          "realtime_factor": round(10 * args.clips / wall, 1),
          "cpu_s": round(cpu, 3),
          "clips_per_cpu_s": round(args.clips / cpu, 1),
          "cpus": os.cpu_count()}))


if __name__ == "__main__":
  main()
