"""The Unified Tag System (UTS) vocabulary.

Tags are scored by s(t) = df(t) * log((N + 1) / (df(t) + 1)), where N is the
number of clips and df(t) the number of clips whose tag set holds t (PAPER.md
section 1); the top K form the vocabulary, written as the released id-to-label
JSON `{"0": "electronic", ...}`. Ties are broken by tag name so that the
vocabulary is deterministic.
"""

import collections
import json
import math
from typing import Iterable, Sequence


def document_frequencies(tag_sets: Iterable[Iterable[str]]
                         ) -> tuple[collections.Counter, int]:
  """Counts df(t) over clips; returns (Counter tag -> df, number of clips N)."""
  df = collections.Counter()
  n = 0
  for tags in tag_sets:
    df.update(set(tags))
    n += 1
  return df, n


def tag_score(df: int, num_clips: int) -> float:
  """The paper's s(t) = df * log((N + 1) / (df + 1))."""
  return df * math.log((num_clips + 1) / (df + 1))


def build_vocabulary(tag_sets: Iterable[Iterable[str]], k: int) -> list[str]:
  """Returns the top-`k` tags by s(t), best first (the id order)."""
  df, n = document_frequencies(tag_sets)
  ranked = sorted(df, key=lambda t: (-tag_score(df[t], n), t))
  return ranked[:k]


def to_ids(tags: Iterable[str], vocabulary: Sequence[str]) -> list[int]:
  """Maps tags to vocabulary ids, dropping out-of-vocabulary tags, in order."""
  index = {t: i for i, t in enumerate(vocabulary)}
  seen, ids = set(), []
  for t in tags:
    if t in index and t not in seen:
      seen.add(t)
      ids.append(index[t])
  return ids


def save_vocabulary(vocabulary: Sequence[str], path: str) -> None:
  """Writes the released id-to-label JSON format."""
  with open(path, "w") as f:
    json.dump({str(i): t for i, t in enumerate(vocabulary)}, f, indent=1)


def load_vocabulary(path: str) -> list[str]:
  """Reads an id-to-label JSON file into a list in id order."""
  with open(path) as f:
    mapping = json.load(f)
  try:
    ids = sorted(int(i) for i in mapping)
  except ValueError as e:
    raise ValueError(f"{path}: keys must be integer ids: {e}") from None
  if ids != list(range(len(ids))):
    raise ValueError(f"{path}: ids are not 0..{len(ids) - 1} without gaps")
  return [mapping[str(i)] for i in ids]
