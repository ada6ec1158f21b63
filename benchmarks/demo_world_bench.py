r"""Demo-world generation speed through the real record path.

  python benchmarks/demo_world_bench.py --num_clips=10000 --seconds=5 \
      --workers=2

Generates `num_clips` pre-training clips of exactly `seconds` seconds with
`prepare.write_pretraining`, the path the demo runs: clips rendered,
captioned and weak-labelled in `workers` processes into ingest shards and
the caption journal, then the lexical tag stage, the UTS vocabulary stage
and the records stage writing TFDS ArrayRecord records. Prints seconds per
stage, clips per second and the total as one JSON line. `--taskset=0,1`
pins the run (and its workers) to those cores first, to measure "2 cores"
on a larger machine.
"""

import argparse
import json
import os
import shutil
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("JAX_PLATFORMS", "cpu")

# pylint: disable=g-import-not-at-top,wrong-import-position
from audiopt.data import demo_world
from audiopt.data import prepare
from audiopt.data import records


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--num_clips", type=int, default=10000)
  parser.add_argument("--seconds", type=float, default=5.0)
  parser.add_argument("--workers", type=int, default=2)
  parser.add_argument("--vocab_size", type=int, default=1000)
  parser.add_argument("--seed", type=int, default=1234)
  parser.add_argument("--taskset", default="",
                      help="cores to pin to, e.g. 0,1 (Linux only)")
  parser.add_argument("--data_dir", default="",
                      help="where to write (default: a temporary directory, "
                           "removed afterwards)")
  args = parser.parse_args()
  if args.taskset:
    os.sched_setaffinity(0, {int(c) for c in args.taskset.split(",")})
  data_dir = args.data_dir or tempfile.mkdtemp(prefix="demo_world_bench_")
  world = demo_world.WorldConfig(seed=args.seed,
                                 duration_range=(args.seconds, args.seconds))
  start = time.time()
  try:
    with demo_world.ClipPool(args.workers) as pool:
      summary = prepare.write_pretraining(data_dir, world, args.num_clips,
                                          args.vocab_size, pool)
    total = time.time() - start
    written = len(records.open_records(data_dir, prepare.DEMO_NAME, "train"))
    size = sum(os.path.getsize(os.path.join(root, f))
               for root, _, files in os.walk(os.path.join(
                   data_dir, prepare.DEMO_NAME)) for f in files)
  finally:
    if not args.data_dir:
      shutil.rmtree(data_dir, ignore_errors=True)
  print(json.dumps({
      "num_clips": args.num_clips, "seconds_per_clip": args.seconds,
      "workers": args.workers,
      "cores": len(os.sched_getaffinity(0)),
      "total_s": round(total, 1),
      "clips_per_s": round(args.num_clips / total, 1),
      "stage_s": summary["seconds"], "records_written": written,
      "records_mb": round(size / 2**20, 1),
      "vocabulary_size": summary["vocabulary"]["size"],
      "dropped": summary["dropped"]}))


if __name__ == "__main__":
  main()
