"""Pre-training data variants of a study, derived from one record set.

The study compares label sources on the same audio (PAPER.md sections 1
and 3). Every variant is a record set written next to the base pre-training
records (`<base>_<variant>`, once; the audio bytes are copied as they are):

  uts                  the base records as they are (UTS tags, strong
                       captions).
  uts_k<K>             the top-K UTS vocabulary (K = the base vocabulary's
                       size: the base records themselves). Vocabulary ids
                       are in score order
                       (`labels.vocabulary.build_vocabulary`), so the
                       top-K vocabulary is the first K names: each clip keeps
                       its tags with id < K, and clips left with none are
                       dropped, as the paper filters. K must not exceed the
                       base vocabulary.
  weak_labels          the weak AudioSet-style labels in place of the tags
                       (tag_names = weak_label_names) and as the caption
                       ("Speech, music."): every objective then learns from
                       the weak labels (MTC on them is the paper's baseline).
                       Clips without a weak label are dropped.
  captions_<quality>   the text objectives' caption changed, tags kept:
                       strong (as is), short (the strong caption's first
                       sentence, cut at its first ";": sources and scene
                       without the details that follow), tags (the clip's
                       UTS tag names), weak_labels (the weak label names).
"""

from __future__ import annotations

import dataclasses
import re

from absl import logging
import jax
from jax.experimental import multihost_utils
import numpy as np

from audiopt.data import records

CAPTION_QUALITIES = ("strong", "short", "tags", "weak_labels")
VARIANTS = ("uts", "uts_k<K>", "weak_labels",
            *(f"captions_{q}" for q in CAPTION_QUALITIES))
_UTS_K = re.compile(r"^uts_k([1-9][0-9]*)$")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")


@dataclasses.dataclass(frozen=True)
class Variant:
  """A parsed variant: kind "uts", "uts_k", "weak_labels" or "captions"."""

  name: str
  kind: str
  k: int = 0
  quality: str = ""


def parse_variant(name: str) -> Variant:
  """Parses a variant name; raises ValueError listing the valid forms."""
  if name == "uts":
    return Variant(name, "uts")
  if name == "weak_labels":
    return Variant(name, "weak_labels")
  m = _UTS_K.match(name)
  if m:
    return Variant(name, "uts_k", k=int(m.group(1)))
  if name.startswith("captions_"):
    quality = name[len("captions_"):]
    if quality in CAPTION_QUALITIES:
      return Variant(name, "captions", quality=quality)
  raise ValueError(f"unknown data variant {name!r}; valid: {list(VARIANTS)} "
                   "(K a positive integer)")


def variant_label(name: str) -> str:
  """Human label: "UTS", "UTS K=32", "weak labels", "captions: tags"."""
  v = parse_variant(name)
  if v.kind == "uts":
    return "UTS"
  if v.kind == "uts_k":
    return f"UTS K={v.k}"
  if v.kind == "weak_labels":
    return "weak labels"
  return f"captions: {v.quality.replace('_', ' ')}"


def record_name(base_name: str, name: str) -> str:
  """TFDS name of a variant's records (the base name for "uts")."""
  v = parse_variant(name)
  if v.kind == "uts" or (v.kind == "captions" and v.quality == "strong"):
    return base_name
  return f"{base_name}_{name}"


def _names_text(names: list[str]) -> str:
  text = ", ".join(names)
  return (text[:1].upper() + text[1:].lower() + ".") if text else ""


def short_caption(caption: str) -> str:
  """A caption's first sentence, cut at its first ";" (ends with ".")."""
  first = _SENTENCE_END.split(caption.strip(), maxsplit=1)[0]
  first = first.split(";", 1)[0].strip().rstrip(".!?")
  return first + "." if first else ""


def _derive(record: dict, v: Variant, tag_names: list[str],
            weak_names: list[str]) -> dict | None:
  out = dict(record)
  tags = np.asarray(record.get("tags", ()), np.int64)
  weak = np.asarray(record.get("weak_labels", ()), np.int64)
  if v.kind == "uts_k":
    tags = tags[tags < v.k]
    if not tags.size:
      return None
    out["tags"] = tags
  elif v.kind == "weak_labels":
    if not weak.size:
      return None
    out["tags"] = weak
    out["caption"] = _names_text([weak_names[i] for i in weak])
    out["caption_full"] = out["caption"]
  elif v.quality == "short":
    out["caption"] = short_caption(record.get("caption", ""))
  elif v.quality == "tags":
    out["caption"] = _names_text([tag_names[i] for i in tags])
  elif v.quality == "weak_labels":
    out["caption"] = _names_text([weak_names[i] for i in weak])
  return out


def prepare_variant(data_dir: str, base_name: str, name: str,
                    split: str = "train") -> str:
  """Writes the variant's records if missing; returns their TFDS name.

  In a multi-process job process 0 writes and the others wait.
  """
  v = parse_variant(name)
  target = record_name(base_name, name)
  if target == base_name or records.is_complete(data_dir, target):
    return target
  if v.kind == "uts_k":
    size = len(records.open_records(data_dir, base_name, split).metadata.get(
        "tag_names", []))
    if v.k == size:  # the whole base vocabulary: the base records as they are
      return base_name
  if jax.process_index() == 0:
    _write_variant(data_dir, base_name, v, target, split)
  if jax.process_count() > 1:
    multihost_utils.sync_global_devices(f"audiopt_variant_{target}")
  return target


def _write_variant(data_dir: str, base_name: str, v: Variant, target: str,
                   split: str) -> None:
  source = records.open_records(data_dir, base_name, split)
  meta = dict(source.metadata)
  tag_names = list(meta.get("tag_names", []))
  weak_names = list(meta.get("weak_label_names", []))
  if v.kind == "uts_k":
    if v.k > len(tag_names):
      raise ValueError(f"data variant {v.name!r}: K={v.k} exceeds the "
                       f"{len(tag_names)}-tag vocabulary of {base_name!r}; "
                       "write the base records with a larger vocabulary")
    meta["tag_names"] = tag_names[:v.k]
  elif v.kind == "weak_labels":
    if not weak_names:
      raise ValueError(f"data variant 'weak_labels': records {base_name!r} "
                       "have no weak_label_names in their metadata")
    meta["tag_names"] = weak_names
  kept = [0]

  def examples():
    for i in range(len(source)):
      out = _derive(source[i], v, tag_names, weak_names)
      if out is not None:
        kept[0] += 1
        yield out

  records.write_records(
      data_dir, target, {split: examples}, metadata=meta,
      description=f"{base_name} as data variant {v.name!r} "
                  "(audiopt.study.variants).")
  logging.info("data variant %s: %d of %d clips kept", target, kept[0],
               len(source))
