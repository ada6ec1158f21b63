"""What a study runs: run specs parsed from `study.runs`, one config per run.

A study config is an ordinary experiment config (the shared settings:
data, encoder, training budget, evaluation) with `job = "study"` and
`study.runs` listing the runs, each as the keys where it differs:

  "mtc_uts: data=uts; mtc_weak: data=weak_labels;
   contrastive: data=uts, objective.name=contrastive, objective.embed_dim=64"

Runs are separated by ";", keys by ","; a value holding either is quoted
('mtc:1.0,captioning:0.5'). A key is any config key (its value is parsed to
the key's type) or one of

  data   the pre-training data variant (`variants.VARIANTS`): uts (the
         records as they are), uts_k<K> (top-K UTS tags), weak_labels,
         captions_<quality>; default "uts".
  label  the row name in tables and plots (default from objective and data,
         e.g. "MTC, UTS K=64"); no "," or ";".

`format_runs({"name": {"data": "uts", "objective.name": "par"}, ...})`
writes that string from Python, for config files.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
import re
from collections.abc import Mapping
from typing import Any

import ml_collections

from audiopt.study import variants

_NAME_RE = re.compile(r"^[a-z][a-z0-9_]*$")
SPECIAL_KEYS = ("data", "label")
OBJECTIVE_LABELS = {"mtc": "MTC", "par": "PAR", "contrastive": "Contrastive",
                    "siglip": "SigLIP", "captioning": "Captioning",
                    "multitask": "Multi-task", "masked": "Masked"}


@dataclasses.dataclass(frozen=True)
class RunSpec:
  """One run of a study.

  Attributes:
    name: snake_case run name (its directory and results key).
    data: data variant name.
    label: row label.
    overrides: (dotted config key, value string) pairs, in order.
  """

  name: str
  data: str
  label: str
  overrides: tuple[tuple[str, str], ...]


def format_runs(runs: Mapping[str, Mapping[str, Any]]) -> str:
  """The `study.runs` string of {run name: {key: value}}."""
  parts = []
  for name, keys in runs.items():
    items = ", ".join(f"{k}={_format_value(v)}" for k, v in keys.items())
    parts.append(f"{name}: {items}" if items else f"{name}:")
  return "; ".join(parts)


def _format_value(value: Any) -> str:
  text = str(value)
  if any(c in text for c in ",;"):
    if "'" in text:
      raise ValueError(f"value {value!r} cannot hold both ',' or ';' and a "
                       "quote")
    return f"'{text}'"
  return text


def _split(text: str, sep: str) -> list[str]:
  """Splits on `sep` outside single or double quotes; strips the parts."""
  parts, current, quote = [], [], ""
  for ch in text:
    if quote:
      quote = "" if ch == quote else quote
    elif ch in "'\"":
      quote = ch
    elif ch == sep:
      parts.append("".join(current).strip())
      current = []
      continue
    current.append(ch)
  if quote:
    raise ValueError(f"study.runs: unclosed quote in {text!r}")
  parts.append("".join(current).strip())
  return [p for p in parts if p]


def _unquote(value: str) -> str:
  if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
    return value[1:-1]
  return value


def parse_runs(text: str) -> list[RunSpec]:
  """Parses `study.runs`; raises ValueError naming the bad part."""
  runs, seen = [], set()
  for part in _split(text, ";"):
    name, sep, rest = part.partition(":")
    name = name.strip()
    if not sep or not _NAME_RE.match(name):
      raise ValueError(f"study.runs: {part!r} must start with a snake_case "
                       "run name and a colon, e.g. 'mtc_uts: data=uts'")
    if name in seen:
      raise ValueError(f"study.runs: run {name!r} is listed twice")
    seen.add(name)
    data, label, overrides = "uts", "", []
    for item in _split(rest, ","):
      key, eq, value = item.partition("=")
      key, value = key.strip(), _unquote(value.strip())
      if not eq or not key:
        raise ValueError(f"study.runs: run {name!r}: {item!r} is not "
                         "key=value")
      if key == "data":
        variants.parse_variant(value)  # fails listing the valid forms
        data = value
      elif key == "label":
        label = value
      else:
        overrides.append((key, value))
    runs.append(RunSpec(name=name, data=data, label=label,
                        overrides=tuple(overrides)))
  if not runs:
    raise ValueError("study.runs is empty; a study lists its runs")
  return runs


def _parse_value(config: ml_collections.ConfigDict, key: str, text: str):
  kind = config.get_type(key)
  if kind is bool:
    if text.lower() in ("true", "1", "yes"):
      return True
    if text.lower() in ("false", "0", "no"):
      return False
    raise ValueError(f"{text!r} is not a bool")
  if kind is int:
    return int(text)
  if kind is float:
    return float(text)
  if kind is str:
    return text
  raise ValueError(f"keys of type {kind.__name__} cannot be set by a study")


def set_key(config: ml_collections.ConfigDict, dotted: str, text: str
            ) -> None:
  """Sets `config.<dotted>` from a string, parsed to the key's type.

  Raises:
    ValueError: an unknown key (naming it and its section's keys) or a
      value of the wrong type.
  """
  *path, leaf = dotted.split(".")
  node = config
  for i, part in enumerate(path):
    if part not in node or not isinstance(node[part],
                                          ml_collections.ConfigDict):
      where = ".".join(path[:i]) or "<config>"
      raise ValueError(f"unknown config key {dotted!r}: {where} has no "
                       f"section {part!r}")
    node = node[part]
  if leaf not in node or isinstance(node[leaf], ml_collections.ConfigDict):
    keys = sorted(k for k in node.keys()
                  if not isinstance(node[k], ml_collections.ConfigDict))
    raise ValueError(f"unknown config key {dotted!r}; keys there: {keys}")
  try:
    node[leaf] = _parse_value(node, leaf, text)
  except (TypeError, ValueError) as e:
    raise ValueError(f"config key {dotted!r}: bad value {text!r}: {e}") from e


def run_config(base: ml_collections.ConfigDict, spec: RunSpec
               ) -> ml_collections.ConfigDict:
  """The training config of one run: `base` with the run's overrides.

  The result is a plain training job (job "train", no study runs, no
  evaluation tasks: the study evaluates). The data variant is applied by
  the runner, which knows where its records are.
  """
  config = copy.deepcopy(base)
  config.job = "train"
  config.study.runs = ""
  for key, value in spec.overrides:
    if key.split(".")[0] in ("study", "job"):
      raise ValueError(f"run {spec.name!r}: {key!r} cannot be set per run")
    set_key(config, key, value)
  return config


def run_label(spec: RunSpec, config: ml_collections.ConfigDict) -> str:
  """The row label: the spec's, else "<Objective>, <data>"."""
  if spec.label:
    return spec.label
  name = config.objective.name
  objective = OBJECTIVE_LABELS.get(name, name)
  if name == "multitask" and config.objective.tasks:
    objective += f" ({config.objective.tasks})"
  return f"{objective}, {variants.variant_label(spec.data)}"


def training_hash(config: ml_collections.ConfigDict) -> str:
  """Hash of everything that changes a run's checkpoint (not eval/study)."""
  d = config.to_dict()
  for key in ("eval", "study", "job"):
    d.pop(key, None)
  d.get("data", {}).pop("data_dir", None)  # where, not what
  text = json.dumps(d, sort_keys=True, default=str)
  return hashlib.sha256(text.encode()).hexdigest()[:16]
