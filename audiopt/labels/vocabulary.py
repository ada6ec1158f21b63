"""The Unified Tag System (UTS) vocabulary.

Tags are scored by s(t) = df(t) * log((N + 1) / (df(t) + 1)), where N is the
number of clips and df(t) the number of clips whose tag set holds t (PAPER.md
section 1); the top K form the vocabulary, written as the released id-to-label
JSON `{"0": "electronic", ...}`. Ties are broken by tag name so that the
vocabulary is deterministic.

Normalisation (an improvement over the released vocabularies, whose spelling
variants are separate tags) maps every raw tag to one canonical spelling:

1. Surface: Unicode NFKC, lower case; runs of whitespace, underscores and
   dashes become one hyphen; characters other than letters, digits, "&" and
   hyphens are removed. Nothing left: the tag is dropped (None).
2. Synonyms: an editable map, raw -> canonical (None drops the tag), applied
   after every step below: automobile -> car, reverberant -> reverb, ...
3. Inflection: the last hyphen-separated part is made singular (drums ->
   drum, hi-hats -> hi-hat), with irregular forms and words that only look
   plural (bass, blues, news, acoustics, 1980s) handled.
4. Run-together compounds: a tag whose hyphen-free spelling is a known
   compound takes its hyphenated form (highfidelity -> high-fidelity).
5. Corpus level (`merge_variants`): normalised tags that differ only by
   hyphens are merged into the most frequent spelling, which catches
   run-together variants no table lists.
"""

from __future__ import annotations

import collections
import dataclasses
import hashlib
import io
import json
import math
import os
import re
import unicodedata
from typing import Any, Iterable, Iterator, Mapping, Sequence

from absl import logging

from audiopt import atomic_files
from audiopt.data import journal as journal_lib
from audiopt.data import manifests

# ----------------------------------------------------------------------------
# Scores and vocabularies.


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


def rank_tags(df: Mapping[str, int], num_clips: int) -> list[str]:
  """Returns every tag of `df` sorted by s(t), best first, ties by name."""
  return sorted(df, key=lambda t: (-tag_score(df[t], num_clips), t))


def build_vocabulary(tag_sets: Iterable[Iterable[str]], k: int) -> list[str]:
  """Returns the top-`k` tags by s(t), best first (the id order)."""
  df, n = document_frequencies(tag_sets)
  return rank_tags(df, n)[:k]


def build_vocabularies(df: Mapping[str, int], num_clips: int,
                       ks: Sequence[int]) -> dict[int, list[str]]:
  """Top-K vocabularies for several K from one ranking.

  Args:
    df: tag -> document frequency.
    num_clips: N.
    ks: vocabulary sizes.

  Returns:
    K -> the top-K tags, best first (fewer when fewer tags exist).
  """
  ranked = rank_tags(df, num_clips)
  return {k: ranked[:k] for k in ks}


def to_ids(tags: Iterable[str], vocabulary: Sequence[str]) -> list[int]:
  """Maps tags to vocabulary ids, dropping out-of-vocabulary tags, in order."""
  index = {t: i for i, t in enumerate(vocabulary)}
  seen, ids = set(), []
  for t in tags:
    if t in index and t not in seen:
      seen.add(t)
      ids.append(index[t])
  return ids


def vocabulary_filename(k: int) -> str:
  """The released file name of a K-tag vocabulary: label_800.json,
  label_1k.json, label_1.5k.json, ..."""
  if k >= 1000 and k % 100 == 0:
    return f"label_{k / 1000:g}k.json"
  return f"label_{k}.json"


def save_vocabulary(vocabulary: Sequence[str], path: str) -> None:
  """Writes the released id-to-label JSON format (atomically)."""
  _write_json(path, {str(i): t for i, t in enumerate(vocabulary)})


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


def _write_json(path: str, obj: Any) -> None:
  """Writes JSON (indent 1, UTF-8) atomically."""
  atomic_files.write_json_atomic(path, obj, indent=1)


# ----------------------------------------------------------------------------
# Normalisation tables. Keys and values are surface forms (step 1).

DEFAULT_SYNONYMS: dict[str, str | None] = {
    # Derived forms of one concept.
    "reverberant": "reverb", "reverberation": "reverb",
    "reverberating": "reverb", "reverby": "reverb", "reverbed": "reverb",
    "echoey": "echo", "echoing": "echo", "echoic": "echo",
    "lyrics": "lyric",
    # Synonyms: one canonical word, as the tagging prompt asks.
    "automobile": "car", "motorcar": "car", "motorbike": "motorcycle",
    "aeroplane": "aircraft", "airplane": "aircraft", "lorry": "truck",
    "man": "male", "woman": "female", "kid": "child",
    "phone": "telephone", "tv": "television", "mic": "microphone",
    "synthesizer": "synth", "synthesiser": "synth",
    "drumset": "drum-kit", "drum-set": "drum-kit",
    "dialog": "dialogue", "ambiance": "ambience", "rnb": "r&b",
    "sfx": "sound-effect", "advert": "advertisement",
    # British spellings.
    "theatre": "theater", "humour": "humor", "colour": "color",
    "harbour": "harbor", "neighbourhood": "neighborhood", "tyre": "tire",
    "vocalisation": "vocalization", "centre": "center",
    "programme": "program", "organisation": "organization",
}

# Hyphen-free spelling -> hyphenated canonical, for run-together compounds.
_COMPOUNDS = {c.replace("-", ""): c for c in (
    "high-fidelity", "low-fidelity", "hi-fi", "lo-fi", "hip-hop", "hi-hat",
    "sci-fi", "trip-hop", "synth-pop", "nu-metal", "k-pop", "j-pop",
    "doo-wop", "post-punk", "pop-punk", "8-bit", "16-bit", "high-frequency",
    "low-frequency", "high-pitched", "low-pitched", "high-energy",
    "high-quality", "close-mic", "close-miked", "voice-over", "drum-kit",
    "kick-drum", "sound-effect", "background-noise", "middle-aged",
    "walkie-talkie", "sub-bass", "bass-line", "drum-machine",
    "field-recording", "video-game", "call-and-response", "four-on-the-floor",
    "mid-tempo", "e-guitar", "a-cappella", "wah-wah", "cha-cha", "x-ray",
)}

_IRREGULAR_PLURALS = {
    "men": "man", "women": "woman", "children": "child", "feet": "foot",
    "teeth": "tooth", "geese": "goose", "mice": "mouse", "oxen": "ox",
    "echoes": "echo", "heroes": "hero", "tomatoes": "tomato",
    "potatoes": "potato", "volcanoes": "volcano", "mosquitoes": "mosquito",
    "torpedoes": "torpedo", "dominoes": "domino", "buses": "bus",
    "quizzes": "quiz", "analyses": "analysis", "crises": "crisis",
    "wolves": "wolf", "leaves": "leaf", "knives": "knife", "lives": "life",
    "wives": "wife", "shelves": "shelf", "halves": "half", "calves": "calf",
    "hooves": "hoof", "thieves": "thief", "loaves": "loaf", "elves": "elf",
    "scarves": "scarf", "selves": "self", "aches": "ache",
    "headaches": "headache", "niches": "niche", "caches": "cache",
    "moustaches": "moustache", "mustaches": "mustache",
    "avalanches": "avalanche", "cliches": "cliche", "movies": "movie",
    "cookies": "cookie", "zombies": "zombie", "hippies": "hippie",
    "smoothies": "smoothie", "selfies": "selfie", "hoodies": "hoodie",
    "brownies": "brownie", "calories": "calorie", "rookies": "rookie",
    "newbies": "newbie", "freebies": "freebie", "goalies": "goalie",
    "choruses": "chorus", "viruses": "virus", "bonuses": "bonus",
    "circuses": "circus", "campuses": "campus", "statuses": "status",
}

# Words that end like plurals but are not (or are kept as they are).
_NOT_PLURAL = frozenset((
    "news", "series", "species", "means", "chaos", "lens", "gas", "bias",
    "canvas", "atlas", "christmas", "texas", "alias", "kansas", "vegas",
    "blues", "jeans", "pants", "shorts", "scissors", "pliers", "tongs",
    "thanks", "kudos", "diabetes", "measles", "mumps", "billiards", "darts",
    "olympics", "alps", "andes", "wales", "athens", "paris", "mars", "yes",
    "this", "always", "perhaps", "sometimes", "afterwards", "towards",
    "overseas", "outskirts", "whereas", "pampas", "mantis", "dynamics",
    "windows", "headquarters", "clothes", "sunglasses", "binoculars",
))

_SEPARATOR_RUN = re.compile(r"[\s_\-\u2010-\u2015\u2212/]+")
_DISALLOWED = re.compile(r"[^\w&-]|_")


def _surface(tag: str) -> str:
  """Step 1: case, separators and stray characters (may return "")."""
  t = unicodedata.normalize("NFKC", str(tag)).lower()
  t = _SEPARATOR_RUN.sub("-", t.strip())
  t = _DISALLOWED.sub("", t)
  return re.sub(r"-{2,}", "-", t).strip("-")


def _singular(word: str) -> str:
  """The singular of one lower-case word (the word itself if not plural)."""
  if word in _IRREGULAR_PLURALS:
    return _IRREGULAR_PLURALS[word]
  if (len(word) <= 3 or not word.endswith("s") or word in _NOT_PLURAL
      or not word[-2].isalpha()  # 1980s, 80s
      or word.endswith(("ss", "us", "is", "ics", "ous", "'s"))):
    return word
  if word.endswith("ies") and len(word) > 4:
    return word[:-3] + "y"
  if word.endswith(("sses", "xes", "ches", "shes", "zzes")):
    return word[:-2]
  return word[:-1]


class TagNormaliser:
  """Maps raw tags to canonical spellings, with a cache (see module doc).

  Args:
    synonyms: raw -> canonical (None: drop the tag); None uses
      `DEFAULT_SYNONYMS`. Keys and values are put through the same surface,
      inflection and compound steps, so "High Fidelity" or "automobiles" work
      as keys.
  """

  def __init__(self, synonyms: Mapping[str, str | None] | None = None):
    table = DEFAULT_SYNONYMS if synonyms is None else synonyms
    self._synonyms: dict[str, str | None] = {}
    for raw, canonical in table.items():
      key = _surface(raw)
      if not key:
        continue
      target = self._spell(canonical) if canonical else None
      self._synonyms[key] = target or None
    self._cache: dict[str, str | None] = {}

  @staticmethod
  def _spell(tag: str) -> str:
    """Steps 1, 3 and 4 without synonyms."""
    t = _surface(tag)
    if not t:
      return t
    head, _, last = t.rpartition("-")
    t = f"{head}-{_singular(last)}" if head else _singular(last)
    return _COMPOUNDS.get(t.replace("-", ""), t)

  def _synonym(self, tag: str) -> str | None:
    for _ in range(8):  # follows chains; a cycle stops here
      if tag not in self._synonyms:
        return tag
      tag = self._synonyms[tag]
      if tag is None:
        return None
    return tag

  def __call__(self, tag: str) -> str | None:
    """Returns the canonical spelling of `tag`, or None to drop it."""
    cached = self._cache.get(tag, self)
    if cached is not self:
      return cached
    t = self._synonym(_surface(tag))
    if t:
      head, _, last = t.rpartition("-")
      t = self._synonym(f"{head}-{_singular(last)}" if head
                        else _singular(last))
    if t:
      t = self._synonym(_COMPOUNDS.get(t.replace("-", ""), t))
    result = t or None
    self._cache[tag] = result
    return result

  def normalise_set(self, tags: Iterable[str]) -> list[str]:
    """Normalises a tag set: canonical tags, dropped ones left out, deduped."""
    out = []
    for tag in tags:
      t = self(tag)
      if t is not None:
        out.append(t)
    return list(dict.fromkeys(out))


_DEFAULT_NORMALISER: TagNormaliser | None = None


def normalise_tag(tag: str, synonyms: Mapping[str, str | None] | None = None
                  ) -> str | None:
  """Canonical spelling of one tag (module doc, steps 1-4).

  Args:
    tag: a raw tag, e.g. "High_Fidelity", "drums", "reverberant".
    synonyms: raw -> canonical map (None values drop tags); None uses
      `DEFAULT_SYNONYMS`. For many tags build one `TagNormaliser` instead.

  Returns:
    The canonical tag ("high-fidelity", "drum", "reverb"), or None when
    nothing usable is left or a synonym entry drops it.
  """
  global _DEFAULT_NORMALISER
  if synonyms is not None:
    return TagNormaliser(synonyms)(tag)
  if _DEFAULT_NORMALISER is None:
    _DEFAULT_NORMALISER = TagNormaliser()
  return _DEFAULT_NORMALISER(tag)


def load_synonyms(path: str | None, *, include_defaults: bool = True
                  ) -> dict[str, str | None]:
  """Reads a user synonym map: a JSON object raw -> canonical (or null).

  Args:
    path: the JSON file; None reads nothing.
    include_defaults: start from `DEFAULT_SYNONYMS` (the file's entries
      override them).

  Returns:
    The merged map, ready for `TagNormaliser`.

  Raises:
    ValueError: the file is not a JSON object of strings to strings/null.
  """
  table: dict[str, str | None] = dict(DEFAULT_SYNONYMS) if include_defaults \
      else {}
  if path is None:
    return table
  with open(path) as f:
    user = json.load(f)
  if not isinstance(user, dict) or not all(
      isinstance(k, str) and (v is None or isinstance(v, str))
      for k, v in user.items()):
    raise ValueError(f"{path}: a synonym map must be a JSON object of "
                     "strings to strings (or null to drop a tag)")
  table.update(user)
  return table


def merge_variants(counts: Mapping[str, int],
                   normaliser: TagNormaliser | None = None
                   ) -> dict[str, str | None]:
  """Maps raw tags to canonical ones, merging hyphenation variants.

  Every raw tag is normalised; normalised tags that are equal once hyphens
  are removed (e.g. "soundscape", "sound-scape") merge into the spelling with
  the largest summed count (ties: more hyphens, then alphabetical).

  Args:
    counts: raw tag -> count (a df, or any weight such as rank order).
    normaliser: the per-tag normaliser; None uses the default synonyms.

  Returns:
    raw tag -> canonical tag (None: dropped), for every key of `counts`.
  """
  normaliser = normaliser or TagNormaliser()
  first = {raw: normaliser(raw) for raw in counts}
  weight = collections.Counter()
  for raw, tag in first.items():
    if tag is not None:
      weight[tag] += counts[raw]
  by_key = collections.defaultdict(list)
  for tag in weight:
    by_key[tag.replace("-", "")].append(tag)
  winner = {}
  for forms in by_key.values():
    best = min(forms, key=lambda t: (-weight[t], -t.count("-"), t))
    for t in forms:
      winner[t] = best
  return {raw: (winner[t] if t is not None else None)
          for raw, t in first.items()}


def variant_groups(mapping: Mapping[str, str | None]
                   ) -> dict[str, list[str]]:
  """canonical -> its raw spellings, for canonical tags with two or more."""
  groups = collections.defaultdict(list)
  for raw, canonical in mapping.items():
    if canonical is not None:
      groups[canonical].append(raw)
  return {c: sorted(r) for c, r in sorted(groups.items()) if len(r) > 1}


def spelling_variant_sets(raws: Iterable[str]) -> int:
  """How many sets of two or more raw tags differ only by case and
  separators (high-fidelity / high_fidelity / highfidelity is one set)."""
  keys = collections.Counter(re.sub(r"[\W_]+", "", r.lower()) for r in raws)
  return sum(n > 1 for n in keys.values())


# ----------------------------------------------------------------------------
# Filtering and statistics.


@dataclasses.dataclass
class FilteredClips:
  """What `filter_clips` keeps.

  Attributes:
    tags: clip id -> its in-vocabulary tags, input order, no duplicates;
      only clips with at least one.
    dropped: ids of clips left with no in-vocabulary tag.
  """
  tags: dict[str, list[str]]
  dropped: list[str]

  @property
  def num_kept(self) -> int:
    """Clips kept."""
    return len(self.tags)

  @property
  def num_dropped(self) -> int:
    """Clips dropped."""
    return len(self.dropped)


def filter_clips(
    tag_sets: Mapping[str, Sequence[str]] | Sequence[Sequence[str]],
    vocab: Sequence[str]) -> FilteredClips:
  """Keeps in-vocabulary tags; drops (and counts) clips left with none.

  Args:
    tag_sets: clip id -> normalised tags, or a sequence of tag lists (ids are
      then the positions, as strings).
    vocab: the vocabulary.

  Returns:
    A `FilteredClips`.
  """
  items = (tag_sets.items() if isinstance(tag_sets, Mapping)
           else ((str(i), t) for i, t in enumerate(tag_sets)))
  known = set(vocab)
  kept, dropped = {}, []
  for clip_id, tags in items:
    inside = [t for t in tags if t in known]
    if len(inside) > 1 and len(set(inside)) < len(inside):
      inside = list(dict.fromkeys(inside))
    if inside:
      kept[clip_id] = inside
    else:
      dropped.append(clip_id)
  return FilteredClips(tags=kept, dropped=dropped)


def tag_table(df: Mapping[str, int], num_clips: int) -> list[dict[str, Any]]:
  """Per-tag statistics, best first: rank, tag, df, score."""
  return [{"rank": r, "tag": t, "df": int(df[t]),
           "score": round(tag_score(df[t], num_clips), 4)}
          for r, t in enumerate(rank_tags(df, num_clips))]


def domain_coverage(tag_sets: Mapping[str, Sequence[str]],
                    domains: Mapping[str, str], vocab: Sequence[str]
                    ) -> dict[str, dict[str, float]]:
  """How well a vocabulary covers each domain (speech, music, sound, ...).

  Args:
    tag_sets: clip id -> normalised tags.
    domains: clip id -> domain ("" or missing: "unknown").
    vocab: the vocabulary.

  Returns:
    domain -> {"clips", "kept" (clips with >= 1 in-vocabulary tag),
    "coverage" (kept / clips), "mean_tags" (in-vocabulary tags per kept clip),
    "tag_coverage" (share of the domain's tag occurrences in vocabulary)}.
  """
  known = set(vocab)
  acc = collections.defaultdict(lambda: [0, 0, 0, 0])
  for clip_id, tags in tag_sets.items():
    unique = list(dict.fromkeys(tags))
    inside = sum(t in known for t in unique)
    a = acc[domains.get(clip_id) or "unknown"]
    a[0] += 1
    a[1] += inside > 0
    a[2] += inside
    a[3] += len(unique)
  return {d: {"clips": c, "kept": k,
              "coverage": round(k / c, 4) if c else 0.0,
              "mean_tags": round(i / k, 3) if k else 0.0,
              "tag_coverage": round(i / o, 4) if o else 0.0}
          for d, (c, k, i, o) in sorted(acc.items())}


def plot_long_tail(df: Mapping[str, int], num_clips: int, path: str, *,
                   ks: Sequence[int] = ()) -> None:
  """Saves a PNG of df against rank (log-log), marking each K.

  Uses matplotlib's Agg canvas directly, leaving pyplot's global backend
  alone.

  Args:
    df: tag -> document frequency.
    num_clips: N, for the ranking and the title.
    path: the PNG file to write.
    ks: vocabulary sizes to mark with vertical lines.
  """
  # Imported here: only this function needs matplotlib.
  from matplotlib import figure  # pylint: disable=g-import-not-at-top
  from matplotlib.backends import backend_agg  # pylint: disable=g-import-not-at-top
  ranked = rank_tags(df, num_clips)
  fig = figure.Figure(figsize=(6, 4), dpi=100)
  backend_agg.FigureCanvasAgg(fig)
  ax = fig.add_subplot(1, 1, 1)
  if ranked:
    ax.loglog(range(1, len(ranked) + 1), [df[t] for t in ranked], lw=1.2)
  for k in ks:
    if k <= len(ranked):
      ax.axvline(k, color="gray", ls="--", lw=0.8)
      ax.text(k, ax.get_ylim()[1], f" K={k}", rotation=90, va="top",
              fontsize=7, color="gray")
  ax.set_xlabel("tag rank by s(t)")
  ax.set_ylabel("document frequency")
  ax.set_title(f"UTS tags: {len(ranked)} tags over {num_clips} clips")
  fig.tight_layout()
  fig.savefig(path, format="png")


# ----------------------------------------------------------------------------
# The released UTS data: Lhotse cut manifests and label_*.json files.


def read_released_cuts(path: str) -> Iterator[dict[str, Any]]:
  """Reads a released UTS Lhotse cut manifest (JSONL, optionally .gz).

  Each cut has one supervision whose `custom` (or the supervision itself)
  holds `audio_tag` (a list, or a string joined by ";" or ",") and
  `caption`; the recording's source names the source data set.

  Args:
    path: the manifest file.

  Yields:
    {"id", "tags" (raw list), "caption", "source", "duration"} per cut.

  Raises:
    ValueError: a line that is not a JSON cut with a supervision, naming the
      file and line.
  """
  for row in manifests.read_lhotse_cuts(path):
    if isinstance(row, manifests.ManifestError):
      raise ValueError(f"not a UTS cut: {row.reason}")
    yield {"id": row.clip_id, "tags": list(row.tags), "caption": row.caption,
           "source": row.source, "duration": row.duration_s or 0.0}


@dataclasses.dataclass
class ReleasedImport:
  """The released UTS labels, normalised, and what normalisation merged.

  Attributes:
    vocabularies: label file name -> its tags in id order, as released.
    normalised_vocabularies: label file name -> canonical tags, first
      occurrence order, without the merged duplicates.
    groups: label file name -> canonical -> the released spellings it merges.
    clip_tags: cut id -> canonical tags (from the manifests).
    clip_sources: cut id -> source data set name.
    mapping: raw tag -> canonical tag (None: dropped), over every raw tag.
    report: counts per label file and over the manifests (see
      `import_released`).
  """
  vocabularies: dict[str, list[str]]
  normalised_vocabularies: dict[str, list[str]]
  groups: dict[str, dict[str, list[str]]]
  clip_tags: dict[str, list[str]]
  clip_sources: dict[str, str]
  mapping: dict[str, str | None]
  report: dict[str, Any]


def import_released(manifest_paths: Sequence[str],
                    label_json_paths: Sequence[str], *,
                    synonyms: Mapping[str, str | None] | None = None
                    ) -> ReleasedImport:
  """Imports released UTS manifests and vocabularies, normalising tags.

  Variant merging is weighted by manifest document frequency when manifests
  are given, and otherwise by vocabulary rank (a better-ranked spelling
  wins), so the canonical form is the released one used most.

  Args:
    manifest_paths: Lhotse cut JSONL(.gz) files (may be empty).
    label_json_paths: label_*.json id-to-label files (may be empty).
    synonyms: the synonym map (None: `DEFAULT_SYNONYMS`).

  Returns:
    A `ReleasedImport`. Its report holds, per label file: "size",
    "unique" (distinct released strings), "normalised_size",
    "merged_groups" (canonical tags that two or more released strings map
    to), "spelling_groups" (of those, groups whose members differ only by
    case, separators or hyphenation: the defect PAPER.md section 1 counts),
    "merged_tags" (released strings removed by merging); and under
    "manifests": "clips", "raw_tags", "normalised_tags", "merged_groups",
    "spelling_groups".
  """
  normaliser = TagNormaliser(synonyms)
  vocabularies = {os.path.basename(p): load_vocabulary(p)
                  for p in label_json_paths}
  raw_clips: dict[str, list[str]] = {}
  clip_sources: dict[str, str] = {}
  for path in manifest_paths:
    for cut in read_released_cuts(path):
      raw_clips[cut["id"]] = cut["tags"]
      clip_sources[cut["id"]] = cut["source"]
  counts = collections.Counter()
  if raw_clips:
    counts.update(t for tags in raw_clips.values() for t in set(tags))
  else:
    for vocab in vocabularies.values():
      for rank, tag in enumerate(vocab):
        counts[tag] = max(counts[tag], len(vocab) - rank)
  for vocab in vocabularies.values():
    for tag in vocab:
      counts.setdefault(tag, 0)
  mapping = merge_variants(counts, normaliser)
  report: dict[str, Any] = {}
  normalised, groups = {}, {}
  for name, vocab in vocabularies.items():
    normalised[name] = list(dict.fromkeys(
        mapping[t] for t in vocab if mapping[t] is not None))
    groups[name] = variant_groups({t: mapping[t] for t in set(vocab)})
    report[name] = {
        "size": len(vocab), "unique": len(set(vocab)),
        "duplicates": len(vocab) - len(set(vocab)),
        "normalised_size": len(normalised[name]),
        "merged_groups": len(groups[name]),
        "spelling_groups": sum(spelling_variant_sets(g)
                               for g in groups[name].values()),
        "merged_tags": len(set(vocab)) - len(normalised[name]),
    }
  clip_tags = {c: apply_mapping(tags, mapping)
               for c, tags in raw_clips.items()}
  if raw_clips:
    raw_tags = {t for tags in raw_clips.values() for t in tags}
    manifest_groups = variant_groups({t: mapping[t] for t in raw_tags})
    report["manifests"] = {
        "clips": len(raw_clips), "raw_tags": len(raw_tags),
        "normalised_tags": len({t for tags in clip_tags.values()
                                for t in tags}),
        "merged_groups": len(manifest_groups),
        "spelling_groups": sum(spelling_variant_sets(g)
                               for g in manifest_groups.values()),
    }
  return ReleasedImport(vocabularies=vocabularies,
                        normalised_vocabularies=normalised, groups=groups,
                        clip_tags=clip_tags, clip_sources=clip_sources,
                        mapping=mapping, report=report)


def apply_mapping(tags: Iterable[str], mapping: Mapping[str, str | None]
                     ) -> list[str]:
  """Applies a raw -> canonical mapping to a tag list (deduped, in order)."""
  out = (mapping.get(t) for t in tags)
  return list(dict.fromkeys(t for t in out if t is not None))


# ----------------------------------------------------------------------------
# The vocabulary stage.

DEFAULT_KS = (800, 1000, 1500, 2000, 3000)


def _fingerprint(rows: Sequence[Mapping[str, Any]], ks: Sequence[int],
                 synonyms: Mapping[str, str | None]) -> str:
  """Hash of the stage's inputs, to skip an up-to-date rerun."""
  h = hashlib.sha256()
  h.update(json.dumps([list(ks), sorted(synonyms.items(),
                                        key=lambda kv: kv[0])],
                      default=str).encode())
  for row in rows:
    h.update(row["id"].encode())
    h.update(b"\0")
    h.update("\x1f".join(row["tags"]).encode())
    h.update(b"\n")
  return h.hexdigest()


def run_vocabulary_stage(tag_stage_dir: str, out_dir: str,
                         ks: Sequence[int] = DEFAULT_KS, *,
                         synonyms_path: str | None = None,
                         plot: bool = True) -> dict[str, Any]:
  """Builds the UTS vocabularies from the tag stage's results.

  Reads every shard of `tag_stage_dir` (rows {"id", "tags", "domain"?}),
  normalises tags (`load_synonyms(synonyms_path)`, then `merge_variants`
  weighted by df), scores them and writes to `out_dir`:

  - `label_<K>.json` per K, the released id-to-label format;
  - `variants.json`: raw tag -> canonical tag for every raw tag that
    changes (null: dropped), to apply to tag sets made later;
  - `tags.tsv`: rank, tag, df, score for every canonical tag;
  - `long_tail.png` (when `plot`);
  - `summary.json`, written last: clips, raw and canonical tag counts,
    merged groups, and per K the vocabulary size, kept and dropped clips and
    coverage per domain.

  Every file is written atomically. A rerun whose inputs (tag rows, ks,
  synonyms) match the finished `summary.json` returns it untouched; any
  other rerun rebuilds all files, so a killed run is resumed by rerunning.
  A rerun first removes the temporary files a killed run left: one stage
  writes an `out_dir` at a time.

  Args:
    tag_stage_dir: the tag stage directory.
    out_dir: where to write (created if missing).
    ks: vocabulary sizes.
    synonyms_path: a JSON synonym map merged over the defaults.
    plot: write the long-tail PNG.

  Returns:
    The summary dict.
  """
  os.makedirs(out_dir, exist_ok=True)
  atomic_files.remove_temporaries(out_dir)
  rows = [r for r in journal_lib.read_results(tag_stage_dir)]
  synonyms = load_synonyms(synonyms_path)
  fingerprint = _fingerprint(rows, ks, synonyms)
  summary_path = os.path.join(out_dir, "summary.json")
  if os.path.exists(summary_path):
    with open(summary_path) as f:
      previous = json.load(f)
    if previous.get("fingerprint") == fingerprint:
      logging.info("vocabulary stage %s is up to date", out_dir)
      return previous
  clip_raw = {r["id"]: list(r.get("tags", [])) for r in rows}
  domains = {r["id"]: r.get("domain") or "" for r in rows}
  raw_df, _ = document_frequencies(clip_raw.values())
  mapping = merge_variants(raw_df, TagNormaliser(synonyms))
  clip_tags = {c: apply_mapping(t, mapping) for c, t in clip_raw.items()}
  df, n = document_frequencies(clip_tags.values())
  vocabs = build_vocabularies(df, n, ks)
  per_k = {}
  for k, vocab in vocabs.items():
    save_vocabulary(vocab, os.path.join(out_dir, vocabulary_filename(k)))
    kept = filter_clips(clip_tags, vocab)
    per_k[str(k)] = {"file": vocabulary_filename(k), "size": len(vocab),
                     "kept_clips": kept.num_kept,
                     "dropped_clips": kept.num_dropped,
                     "domains": domain_coverage(clip_tags, domains, vocab)}
  _write_json(os.path.join(out_dir, "variants.json"),
              {r: c for r, c in sorted(mapping.items()) if r != c})
  _write_tsv(os.path.join(out_dir, "tags.tsv"), tag_table(df, n))
  if plot:
    png = os.path.join(out_dir, "long_tail.png")
    with atomic_files.atomic_path(png) as tmp:
      plot_long_tail(df, n, tmp, ks=ks)
  groups = variant_groups(mapping)
  summary = {
      "fingerprint": fingerprint, "clips": n,
      "untagged_clips": sum(not t for t in clip_tags.values()),
      "raw_tags": len(raw_df), "canonical_tags": len(df),
      "merged_groups": len(groups),
      "spelling_groups": sum(spelling_variant_sets(g) for g in groups.values()),
      "dropped_raw_tags": sum(c is None for c in mapping.values()),
      "vocabularies": per_k,
  }
  _write_json(summary_path, summary)
  logging.info("vocabulary stage: %d clips, %d raw -> %d canonical tags; %s",
               n, len(raw_df), len(df),
               {k: (v["size"], v["kept_clips"]) for k, v in per_k.items()})
  return summary


def _write_tsv(path: str, rows: Sequence[Mapping[str, Any]]) -> None:
  """Writes rows of equal keys as a tab-separated file, atomically."""
  buf = io.StringIO()
  if rows:
    keys = list(rows[0])
    buf.write("\t".join(keys) + "\n")
    for row in rows:
      buf.write("\t".join(str(row[k]) for k in keys) + "\n")
  atomic_files.write_atomic(path, buf.getvalue())
