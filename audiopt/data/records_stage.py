"""The records stage: clips + captions + tags + weak labels -> training records.

Joins, by clip id, the ingest stage's clips (`clip_shards`), the caption
stage's results (rows `{"id", "full", "strong"}`; the older shape `{"id",
"caption", "strong_caption"}` is read too), the tag stage's results (rows
`{"id", "tags": [...]}`) and the clips' manifest weak labels, and writes the
TFDS training records through `records.write_records`.

Per clip:

- caption, caption_full: the caption stage's strong and full caption. Without
  a caption stage, the manifest caption: as the strong caption
  (`manifest_caption="strong"`, e.g. AudioCaps), or as the full caption
  whose closing summary (`captioner.strong_caption`) is the strong one
  (`manifest_caption="full"`, e.g. the UTS manifests' captions).
- tags: the tag stage's tags (without a tag stage: the manifest tags, e.g.
  UTS `audio_tag`), spelled as the vocabulary stage spelled them (its
  `variants.json` raw -> canonical map, read from beside the vocabulary
  when present), then mapped to ids with `vocabulary.to_ids`. With a
  vocabulary, clips left with no in-vocabulary tag are dropped (PAPER.md
  section 1, step 4).
- weak_labels: manifest labels (e.g. AudioSet display names) mapped to ids
  in `weak_label_names`; names outside it are left out and counted.
- domain: the first valid domain among the tag row, the caption row, the
  manifest, `domains[source]` and `SOURCE_DOMAINS`; else "mixed".
- split: by `split_rules` (see `assign_split`); chunks cut from one file
  share its split, so no file leaks across splits.

Dropped clips ("no_caption": the caption stage has no result for it,
"no_tag_row", "no_tags", "invalid_audio", "excluded" by a split rule) are
counted in the summary and quarantined in the stage journal with the reason.

Resuming. TFDS writes a data set into a temporary directory and renames it
when complete, so the unit of resumption is the data set: a killed run
leaves nothing and is run again; a complete one is not rewritten (give a new
`version`, or delete it, after the inputs change). The stage journal
(`<data_dir>/_records_stage/<name>-<version>/`) gets one line per clip once
the records are complete: a result `{"id", "split", "tags", "weak_labels"}`
or a quarantine entry; a run that finds the records complete but the
journal short fills it in from the written records.
"""

from __future__ import annotations

import collections
import dataclasses
import hashlib
import json
import os
from typing import Any, Callable, Iterable, Iterator, Mapping, Sequence

from absl import logging
import tqdm

from audiopt import atomic_files
from audiopt.data import clip_shards
from audiopt.data import journal as journal_lib
from audiopt.data import records
from audiopt.data import schema
from audiopt.labels import captioner
from audiopt.labels import vocabulary

SplitRules = Mapping[str, float] | Callable[[Mapping[str, Any]], str | None]
# Domain of clips from well-known corpora, when nothing else says.
SOURCE_DOMAINS = {
    "audiocaps": "sound", "clotho": "sound", "wavcaps": "sound",
    "freesound": "sound", "bbc_sound_effects": "sound", "soundbible": "sound",
    "esc50": "sound", "fsd50k": "sound", "vggsound": "sound",
    "audioset": "mixed", "audiosetcaps": "mixed",
    "musiccaps": "music", "jamendomaxcaps": "music", "jamendo": "music",
    "mtg_jamendo": "music", "song_describer": "music", "nsynth": "music",
    "paraspeechcaps": "speech", "librispeech": "speech", "voxceleb": "speech",
    "voxceleb2": "speech", "commonvoice": "speech", "crema_d": "speech",
}


def assign_split(clip: Mapping[str, Any], rules: SplitRules | None,
                 salt: str = "") -> str | None:
  """The split of a clip.

  Args:
    clip: clip metadata (`clip_shards`), at least "row_id" or "clip_id".
    rules: None: "train"; a mapping split -> fraction (summing to 1): the
      clip's source row id is hashed (md5 with `salt`) to a number in [0, 1)
      that picks the split, stable across runs and machines; or a callable
      clip -> split name, None leaving the clip out.
    salt: changes the hash draw.

  Returns:
    The split name, or None.
  """
  if rules is None:
    return "train"
  if callable(rules):
    return rules(clip)
  key = f"{salt}:{clip.get('row_id') or clip['clip_id']}".encode("utf-8")
  u = int.from_bytes(hashlib.md5(key).digest()[:8], "big") / 2.0**64
  edge = 0.0
  for split, fraction in rules.items():
    edge += fraction
    if u < edge:
      return split
  return list(rules)[-1]


def _check_rules(rules: SplitRules | None) -> None:
  if rules is None or callable(rules):
    return
  if not rules or any(f < 0 for f in rules.values()) or abs(
      sum(rules.values()) - 1.0) > 1e-6:
    raise ValueError(f"split fractions must be >= 0 and sum to 1, got "
                     f"{dict(rules)}")


def load_variants(vocab_path: str | None, variants_path: str | None = "auto"
                  ) -> dict[str, str | None]:
  """The raw -> canonical tag map of a vocabulary.

  Args:
    vocab_path: the vocabulary JSON.
    variants_path: a `variants.json` (the vocabulary stage's output); "auto":
      the one beside `vocab_path` if it exists; None: none.

  Returns:
    raw tag -> canonical tag (None: dropped); empty when there is none, so
    tags are matched as they are spelled (e.g. with the released lists).
  """
  if variants_path == "auto":
    if vocab_path is None:
      return {}
    variants_path = os.path.join(os.path.dirname(vocab_path), "variants.json")
    if not os.path.exists(variants_path):
      return {}
  if variants_path is None:
    return {}
  with open(variants_path, encoding="utf-8") as f:
    return json.load(f)


def collect_label_names(clips: Iterable[Mapping[str, Any]]) -> list[str]:
  """Sorted names of every manifest weak label of the clips."""
  return sorted({str(label) for c in clips for label in c.get("labels", ())})


def _valid_domain(*candidates: Any) -> str:
  for d in candidates:
    if isinstance(d, str) and d in schema.DOMAINS:
      return d
  return "mixed"


@dataclasses.dataclass
class Joiner:
  """Turns one clip and its label rows into a planned record or a drop.

  Attributes:
    vocab: UTS tags in id order, or None (records get no tag ids).
    variants: raw -> canonical tag map applied before `vocab`.
    weak_label_names: weak label names in id order.
    split_rules: see `assign_split`.
    split_salt: see `assign_split`.
    domains: source name -> domain, over `SOURCE_DOMAINS`.
    manifest_caption: "strong" or "full", see the module doc.
    use_caption_stage: a caption stage is given (a clip without a caption
      row is dropped).
    use_tag_stage: a tag stage is given (a clip without a tag row is
      dropped).
  """
  vocab: Sequence[str] | None
  variants: Mapping[str, str | None]
  weak_label_names: Sequence[str]
  split_rules: SplitRules | None = None
  split_salt: str = ""
  domains: Mapping[str, str] | None = None
  manifest_caption: str = "strong"
  use_caption_stage: bool = False
  use_tag_stage: bool = False

  def __post_init__(self):
    if self.manifest_caption not in ("strong", "full"):
      raise ValueError(f"manifest_caption must be 'strong' or 'full', got "
                       f"{self.manifest_caption!r}")
    _check_rules(self.split_rules)
    self._weak_index = {n: i for i, n in enumerate(self.weak_label_names)}
    self._tag_index = ({t: i for i, t in enumerate(self.vocab)}
                       if self.vocab is not None else None)

  def _captions(self, clip, caption_row) -> tuple[str, str]:
    if caption_row is not None:
      if "strong" in caption_row or "full" in caption_row:
        return (str(caption_row.get("strong") or ""),
                str(caption_row.get("full") or ""))
      return (str(caption_row.get("strong_caption") or ""),
              str(caption_row.get("caption") or ""))
    text = str(clip.get("caption") or "")
    if self.manifest_caption == "full":
      return captioner.strong_caption(text), text
    return text, ""

  def _tag_ids(self, raw: Iterable[str]) -> list[int]:
    tags = [self.variants.get(t, t) for t in raw]
    tags = [t for t in tags if t is not None]
    return vocabulary.to_ids(tags, self.vocab) if self.vocab is not None \
        else []

  def join(self, clip: Mapping[str, Any],
           caption_row: Mapping[str, Any] | None = None,
           tag_row: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Plans one record.

    Args:
      clip: clip metadata from the ingest index (with "shard", "index").
      caption_row: the caption stage's row for the clip, or None.
      tag_row: the tag stage's row for the clip, or None.

    Returns:
      A planned record: {"clip_id", "shard", "index", "split", "duration",
      "source", "domain", "caption", "caption_full", "tags" (ids),
      "weak_labels" (ids), "unknown_weak_labels" (count)}, or a drop:
      {"clip_id", "drop": kind, "reason"}.
    """
    clip_id = clip["clip_id"]

    def drop(kind: str, reason: str) -> dict[str, Any]:
      return {"clip_id": clip_id, "drop": kind, "reason": reason}

    if self.use_caption_stage and caption_row is None:
      return drop("no_caption", "no result in the caption stage")
    if self.use_tag_stage and tag_row is None:
      return drop("no_tag_row", "no result in the tag stage")
    raw_tags = tag_row.get("tags", []) if tag_row is not None else clip.get(
        "tags", [])
    tags = self._tag_ids(raw_tags)
    if self.vocab is not None and not tags:
      return drop("no_tags", f"no in-vocabulary tag among {list(raw_tags)}")
    split = assign_split(clip, self.split_rules, self.split_salt)
    if split is None:
      return drop("excluded", "left out by the split rules")
    labels = [str(x) for x in clip.get("labels", ())]
    weak = list(dict.fromkeys(self._weak_index[x] for x in labels
                              if x in self._weak_index))
    caption, caption_full = self._captions(clip, caption_row)
    source = str(clip.get("source") or "")
    domain = _valid_domain(
        (tag_row or {}).get("domain"), (caption_row or {}).get("domain"),
        clip.get("domain"), (self.domains or {}).get(source),
        SOURCE_DOMAINS.get(source.lower()))
    return {"clip_id": clip_id, "shard": clip["shard"],
            "index": clip["index"], "split": split,
            "duration": clip["duration"], "source": source, "domain": domain,
            "caption": caption, "caption_full": caption_full, "tags": tags,
            "weak_labels": weak,
            "unknown_weak_labels": sum(x not in self._weak_index
                                       for x in labels)}


def _rows_by_id(stage_dir: str | None) -> dict[str, dict[str, Any]] | None:
  """A stage's result rows by id (the last row of an id wins)."""
  if stage_dir is None:
    return None
  return {str(r["id"]): r for r in journal_lib.read_results(stage_dir)}


def plan_records(clips: Iterable[Mapping[str, Any]], joiner: Joiner,
                 caption_rows: Mapping[str, Mapping[str, Any]] | None,
                 tag_rows: Mapping[str, Mapping[str, Any]] | None
                 ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
  """Joins every clip; returns (planned records, drops), in clip order."""
  planned, dropped = [], []
  for clip in clips:
    clip_id = clip["clip_id"]
    entry = joiner.join(
        clip, None if caption_rows is None else caption_rows.get(clip_id),
        None if tag_rows is None else tag_rows.get(clip_id))
    (dropped if "drop" in entry else planned).append(entry)
  return planned, dropped


def write_planned(ingest_dir: str, planned: Sequence[Mapping[str, Any]],
                  data_dir: str, name: str, *, metadata: Mapping[str, Any],
                  version: str = "1.0.0", description: str = "",
                  progress: bool = True) -> list[dict[str, Any]]:
  """Writes planned records (audio read from the clip shards) as TFDS.

  Args:
    ingest_dir: the ingest directory holding the shards.
    planned: planned records (`Joiner.join`), in the order to write.
    data_dir: TFDS data directory.
    name: data set name.
    metadata: data set metadata.
    version: data set version.
    description: data set description.
    progress: show a progress bar.

  Returns:
    Drops found while writing: clips whose audio fails the schema, as
    {"clip_id", "drop": "invalid_audio", "reason"}.
  """
  by_split: dict[str, list[Mapping[str, Any]]] = collections.defaultdict(list)
  for entry in planned:
    by_split[entry["split"]].append(entry)
  invalid: list[dict[str, Any]] = []
  source = clip_shards.ClipSource(ingest_dir)
  bar = tqdm.tqdm(total=len(planned), disable=not progress, unit="record",
                  desc=f"records {name}")

  def examples(split: str) -> Iterator[dict[str, Any]]:
    for entry in by_split[split]:
      bar.update(1)
      try:
        audio = source.read(entry["shard"], entry["index"])["audio"]
        example = schema.validate_example(
            {k: entry[k] for k in ("clip_id", "source", "domain", "caption",
                                   "caption_full", "tags", "weak_labels",
                                   "duration")} | {"audio": audio})
      except (ValueError, OSError) as e:
        invalid.append({"clip_id": entry["clip_id"], "drop": "invalid_audio",
                        "reason": str(e)})
        continue
      yield example

  try:
    with bar:
      records.write_records(
          data_dir, name,
          {split: (lambda s=split: examples(s)) for split in by_split},
          metadata=metadata, version=version, description=description)
  finally:
    source.close()
  return invalid


def _journal(journal: journal_lib.Journal, written: Iterable[Mapping],
             dropped: Iterable[Mapping]) -> None:
  for entry in written:
    journal.add_result(entry["clip_id"], split=entry["split"],
                       tags=len(entry["tags"]),
                       weak_labels=len(entry["weak_labels"]))
  for entry in dropped:
    journal.quarantine(entry["clip_id"], entry["reason"], kind=entry["drop"])


def _written_ids(data_dir: str, name: str, version: str, splits: Iterable[str]
                 ) -> set[str]:
  """Clip ids of the records written to the given splits."""
  ids = set()
  for split in splits:
    try:
      source = records.open_records(data_dir, name, split, version=version)
    except FileNotFoundError:
      continue
    ids.update(source[i]["clip_id"] for i in range(len(source)))
  return ids


def run_records_stage(ingest_dir: str, caption_stage_dir: str | None,
                      tag_stage_dir: str | None, vocab_path: str | None,
                      data_dir: str, name: str, *,
                      weak_label_names: Sequence[str] | None = None,
                      split_rules: SplitRules | None = None,
                      split_salt: str = "",
                      variants_path: str | None = "auto",
                      manifest_caption: str = "strong",
                      domains: Mapping[str, str] | None = None,
                      version: str = "1.0.0", description: str = "",
                      stage_dir: str | None = None,
                      progress: bool = True) -> dict[str, Any]:
  """Joins the labelling stages into TFDS training records (module doc).

  Args:
    ingest_dir: the ingest stage directory.
    caption_stage_dir: the caption stage directory, or None (manifest
      captions).
    tag_stage_dir: the tag stage directory, or None (manifest tags).
    vocab_path: the UTS vocabulary (id-to-label JSON), or None: records get
      no tag ids and no clip is dropped for its tags.
    data_dir: TFDS data directory.
    name: data set name (snake_case).
    weak_label_names: weak label names in id order (e.g. AudioSet display
      names from `manifests.read_class_labels`); None: the sorted names
      found in the clips.
    split_rules: see `assign_split`; None: every clip in "train".
    split_salt: see `assign_split`.
    variants_path: see `load_variants`.
    manifest_caption: "strong" or "full", see the module doc.
    domains: source name -> domain, over `SOURCE_DOMAINS`.
    version: data set version.
    description: data set description.
    stage_dir: the stage journal directory; None:
      `<data_dir>/_records_stage/<name>-<version>`.
    progress: show a progress bar.

  Returns:
    Summary: "clips", "written" (split -> records), "dropped" (kind ->
    clips), "unknown_weak_labels", "tag_names", "weak_label_names" (counts),
    and the journal's "results", "quarantined", "resumed". Also in
    `<stage_dir>/summary.json`.

  Raises:
    ValueError: a tag stage without a vocabulary, or bad split rules.
  """
  if tag_stage_dir is not None and vocab_path is None:
    raise ValueError("a tag stage needs a vocabulary (vocab_path) to turn "
                     "tags into ids")
  clips = list(clip_shards.iter_clip_metadata(ingest_dir))
  vocab = vocabulary.load_vocabulary(vocab_path) if vocab_path else None
  weak_names = (list(weak_label_names) if weak_label_names is not None
                else collect_label_names(clips))
  joiner = Joiner(vocab=vocab, variants=load_variants(vocab_path,
                                                      variants_path),
                  weak_label_names=weak_names, split_rules=split_rules,
                  split_salt=split_salt, domains=domains,
                  manifest_caption=manifest_caption,
                  use_caption_stage=caption_stage_dir is not None,
                  use_tag_stage=tag_stage_dir is not None)
  planned, dropped = plan_records(clips, joiner,
                                  _rows_by_id(caption_stage_dir),
                                  _rows_by_id(tag_stage_dir))
  return finish_records_stage(
      ingest_dir, planned, dropped, data_dir, name, num_clips=len(clips),
      tag_names=vocab or [], weak_label_names=weak_names, version=version,
      description=description, stage_dir=stage_dir, progress=progress)


def finish_records_stage(ingest_dir: str, planned: list[dict[str, Any]],
                         dropped: list[dict[str, Any]], data_dir: str,
                         name: str, *, num_clips: int,
                         tag_names: Sequence[str],
                         weak_label_names: Sequence[str],
                         version: str = "1.0.0", description: str = "",
                         stage_dir: str | None = None,
                         progress: bool = True) -> dict[str, Any]:
  """Writes a joined plan as records and journals every clip.

  Args:
    ingest_dir: the ingest stage directory.
    planned: planned records (`Joiner.join`), in the order to write.
    dropped: drops (`Joiner.join`).
    data_dir: TFDS data directory.
    name: data set name.
    num_clips: clips joined (planned + dropped).
    tag_names: the vocabulary, stored as metadata "tag_names".
    weak_label_names: stored as metadata "weak_label_names".
    version: data set version.
    description: data set description.
    stage_dir: the stage journal directory (None: see `run_records_stage`).
    progress: show a progress bar.

  Returns:
    The summary of `run_records_stage`.
  """
  stage_dir = stage_dir or os.path.join(data_dir, "_records_stage",
                                        f"{name}-{version}")
  dropped = list(dropped)
  splits = sorted({e["split"] for e in planned})
  counts = collections.Counter(e["drop"] for e in dropped)
  stats = {"clips": num_clips,
           "unknown_weak_labels": sum(e["unknown_weak_labels"]
                                      for e in planned),
           "tag_names": len(tag_names),
           "weak_label_names": len(weak_label_names)}
  metadata = {"tag_names": list(tag_names),
              "weak_label_names": list(weak_label_names),
              "records_stage": {**stats, "planned": len(planned),
                                "dropped": dict(counts)}}
  with journal_lib.Journal(stage_dir) as journal:
    if records.is_complete(data_dir, name, version):
      if journal.num_results + journal.num_quarantined < num_clips:
        logging.info("records %s complete; filling in the stage journal",
                     name)
        written = _written_ids(data_dir, name, version, splits)
        dropped += [{"clip_id": e["clip_id"], "drop": "invalid_audio",
                     "reason": "not in the written records (invalid audio)"}
                    for e in planned if e["clip_id"] not in written]
        planned = [e for e in planned if e["clip_id"] in written]
    elif not planned:
      logging.warning("records stage %s: every clip was dropped (%s); "
                      "nothing written", name, dict(counts))
    else:
      dropped += write_planned(ingest_dir, planned, data_dir, name,
                               metadata=metadata, version=version,
                               description=description, progress=progress)
      bad = {e["clip_id"] for e in dropped}
      planned = [e for e in planned if e["clip_id"] not in bad]
    _journal(journal, planned, dropped)
    summary = {**stats,
               "written": dict(collections.Counter(e["split"]
                                                   for e in planned)),
               "dropped": dict(collections.Counter(e["drop"]
                                                   for e in dropped)),
               **journal.summary()}
  atomic_files.write_json_atomic(os.path.join(stage_dir, "summary.json"),
                                summary, remove_stale=True)
  logging.info("records stage %s: %s", name, summary)
  return summary
