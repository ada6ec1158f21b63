r"""Times the UTS vocabulary build on synthetic tag sets.

Usage:
  python benchmarks/vocab_bench.py [--clips 400000] [--tags 50000] \
      [--ks 800,1000,1500,2000,3000] [--repeats 3] [--seed 0]

Synthetic data: a universe of `--tags` raw tags (the lexical tagger's words,
then pseudo-words for the long tail), about 15% of them also written as
spelling variants (high_fidelity, highfidelity, High-Fidelity, plurals);
every clip holds 5 to 10 distinct tags drawn from a Zipf(1.1) law over that
universe, as captions' tag sets do. Timed, as `run_vocabulary_stage` does
it (without file output): raw df, normalisation and variant merging
(`merge_variants`), applying the mapping to every clip, canonical df,
scoring and top-K for each K, and `filter_clips` for each K. Prints the
command line and the median of `--repeats` runs per phase.
"""

import argparse
import shlex
import sys
import time

import numpy as np

from audiopt.labels import tagger
from audiopt.labels import vocabulary


def _parse_args() -> argparse.Namespace:
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--clips", type=int, default=400_000)
  p.add_argument("--tags", type=int, default=50_000)
  p.add_argument("--ks", default="800,1000,1500,2000,3000")
  p.add_argument("--repeats", type=int, default=3)
  p.add_argument("--seed", type=int, default=0)
  return p.parse_args()


def _universe(num_tags: int, rng: np.random.Generator) -> list[str]:
  """Raw tags, most frequent first, with spelling variants mixed in."""
  base = tagger.LexicalTagger().tag_names
  letters = np.array(list("abcdefghijklmnopqrstuvwxyz"))
  while len(base) < num_tags:
    parts = ["".join(rng.choice(letters, size=rng.integers(3, 9)))
             for _ in range(rng.integers(1, 3))]
    base.append("-".join(parts))
  base = base[:num_tags]
  out = []
  for tag in base:
    out.append(tag)
    if rng.random() < 0.15:
      variant = rng.integers(4)
      if variant == 0:
        out.append(tag.replace("-", "_") if "-" in tag else tag + "s")
      elif variant == 1:
        out.append(tag.replace("-", ""))
      elif variant == 2:
        out.append(tag.title())
      else:
        out.append(tag + "s")
  return out[:num_tags]


def _tag_sets(num_clips: int, universe: list[str],
              rng: np.random.Generator) -> list[list[str]]:
  ranks = np.arange(1, len(universe) + 1)
  p = ranks ** -1.1
  p /= p.sum()
  draws = rng.choice(len(universe), size=(num_clips, 14), p=p)
  lengths = rng.integers(5, 11, size=num_clips)
  out = []
  for row, n in zip(draws, lengths):
    picked = list(dict.fromkeys(row.tolist()))[:n]
    out.append([universe[i] for i in picked])
  return out


def _build(tag_sets, ks):
  """One vocabulary build; returns {phase: seconds} and the results."""
  times = {}
  t0 = time.perf_counter()
  raw_df, _ = vocabulary.document_frequencies(tag_sets)
  t1 = time.perf_counter()
  mapping = vocabulary.merge_variants(raw_df)
  t2 = time.perf_counter()
  clips = {str(i): vocabulary.apply_mapping(t, mapping)
           for i, t in enumerate(tag_sets)}
  t3 = time.perf_counter()
  df, n = vocabulary.document_frequencies(clips.values())
  t4 = time.perf_counter()
  vocabs = vocabulary.build_vocabularies(df, n, ks)
  t5 = time.perf_counter()
  kept = {k: vocabulary.filter_clips(clips, v).num_kept
          for k, v in vocabs.items()}
  t6 = time.perf_counter()
  times = {"raw df": t1 - t0, "normalise + merge": t2 - t1,
           "apply mapping": t3 - t2, "canonical df": t4 - t3,
           "score + top-K (all K)": t5 - t4, "filter (all K)": t6 - t5}
  times["total"] = t6 - t0
  return times, (len(raw_df), len(df), kept,
                 len(vocabulary.variant_groups(mapping)))


def main():
  args = _parse_args()
  ks = tuple(int(k) for k in args.ks.split(","))
  print("command:", " ".join(shlex.quote(a) for a in [sys.executable]
                             + sys.argv))
  rng = np.random.default_rng(args.seed)
  start = time.perf_counter()
  universe = _universe(args.tags, rng)
  tag_sets = _tag_sets(args.clips, universe, rng)
  print(f"synthetic data: {args.clips} clips, "
        f"{sum(map(len, tag_sets))} tag occurrences, made in "
        f"{time.perf_counter() - start:.1f} s")
  runs = []
  for _ in range(args.repeats):
    times, info = _build(tag_sets, ks)
    runs.append(times)
  raw, canonical, kept, groups = info
  print(f"raw tags {raw}, canonical tags {canonical}, merged groups "
        f"{groups}; kept clips per K: {kept}")
  print(f"| phase | median s (of {args.repeats}) |")
  print("|---|---|")
  for phase in runs[0]:
    values = sorted(r[phase] for r in runs)
    print(f"| {phase} | {values[len(values) // 2]:.3f} |")


if __name__ == "__main__":
  main()
