"""A study's results: results.csv, Markdown tables in the paper's layout, plots.

Results are long-format rows, one per (run, task, probe, metric):

  run, label, objective, data, task, kind, probe, metric, value

`markdown_tables` lays them out as PAPER.md section 4 does: one table per
probe (mean pooling + linear, attention pooling + linear, kNN), one row per
model, one column per task holding its primary metric (accuracy in percent
for multiclass tasks, mAP for multilabel ones); then d-prime of the
multilabel tasks and, when measured, retrieval. `write_plots` draws a
grouped bar chart per probe and, when the study varies the UTS vocabulary
size K, the primary metric against K.
"""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Iterable, Sequence
from typing import Any

from audiopt import atomic_files

COLUMNS = ("run", "label", "objective", "data", "task", "kind", "probe",
           "metric", "value")
PRIMARY_METRIC = {"multiclass": "accuracy", "multilabel": "mAP"}
METRIC_SHORT = {"accuracy": "acc", "mAP": "mAP"}
PROBE_ORDER = ("mean", "attention", "knn")
PROBE_TITLES = {
    "mean": "Mean pooling + linear probe",
    "attention": "Multi-head attention pooling + linear probe",
    "knn": "kNN on mean-pooled embeddings (k = 10, temperature 0.07)",
}
RETRIEVAL_METRICS = ("t2a_R@1", "t2a_R@10", "a2t_R@1", "a2t_R@10")
_TASK_PREFIXES = ("audiopt_demo_",)


def short_task(name: str) -> str:
  """A task's column name: the demo prefix dropped."""
  for prefix in _TASK_PREFIXES:
    if name.startswith(prefix) and len(name) > len(prefix):
      return name[len(prefix):]
  return name


def _ordered(values: Iterable[str]) -> list[str]:
  seen, out = set(), []
  for v in values:
    if v not in seen:
      seen.add(v)
      out.append(v)
  return out


def _format(metric: str, value: float) -> str:
  if value != value:  # nan
    return "nan"
  if metric == "accuracy":
    return f"{100 * value:.2f}"
  if metric == "d_prime":
    return f"{value:.2f}"
  return f"{value:.3f}"


def _index(rows: Sequence[dict[str, Any]]) -> dict[tuple, float]:
  return {(r["label"], r["task"], r["probe"], r["metric"]): float(r["value"])
          for r in rows}


def _table(title: str, labels: list[str], columns: list[tuple[str, str]],
           cell) -> list[str]:
  lines = [f"### {title}", "",
           "| model | " + " | ".join(h for h, _ in columns) + " |",
           "|---|" + "---|" * len(columns)]
  for label in labels:
    lines.append(f"| {label} | " + " | ".join(cell(label, key)
                                               for _, key in columns) + " |")
  return lines + [""]


def markdown_tables(rows: Sequence[dict[str, Any]]) -> str:
  """The results as Markdown tables in the paper's layout (see module doc)."""
  if not rows:
    return "(no results)"
  index = _index(rows)
  labels = _ordered(r["label"] for r in rows)
  kinds = {r["task"]: r["kind"] for r in rows}
  probe_tasks = [t for t in _ordered(r["task"] for r in rows)
                 if kinds[t] in PRIMARY_METRIC]
  probes = [p for p in PROBE_ORDER if any(r["probe"] == p for r in rows)]
  probes += [p for p in _ordered(r["probe"] for r in rows)
             if p not in probes and p != "retrieval"]

  def cell(label, key):
    task, probe, metric = key
    value = index.get((label, task, probe, metric))
    return "-" if value is None else _format(metric, value)

  lines = []
  for probe in probes:
    columns = []
    for t in probe_tasks:
      metric = PRIMARY_METRIC[kinds[t]]
      columns.append((f"{short_task(t)} {METRIC_SHORT[metric]}",
                      (t, probe, metric)))
    lines += _table(PROBE_TITLES.get(probe, probe), labels, columns, cell)
  multilabel = [t for t in probe_tasks if kinds[t] == "multilabel"]
  if multilabel:
    columns = [(f"{short_task(t)} {p}", (t, p, "d_prime"))
               for t in multilabel for p in probes]
    lines += _table("d-prime of the multilabel tasks", labels, columns, cell)
  retrieval_tasks = _ordered(r["task"] for r in rows
                             if r["probe"] == "retrieval")
  if retrieval_tasks:
    columns = [(f"{short_task(t)} {m}", (t, "retrieval", m))
               for t in retrieval_tasks for m in RETRIEVAL_METRICS]
    with_retrieval = _ordered(r["label"] for r in rows
                              if r["probe"] == "retrieval")
    lines += _table("Retrieval (frozen audio encoder + the run's text tower)",
                    with_retrieval, columns, cell)
  return "\n".join(lines).rstrip() + "\n"


def _write(path: str, text: str) -> None:
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  atomic_files.write_atomic(path, text)


def write_csv(path: str, rows: Sequence[dict[str, Any]]) -> None:
  """Writes results.csv (atomically) with `COLUMNS`."""
  buffer = io.StringIO()
  writer = csv.DictWriter(buffer, fieldnames=COLUMNS, extrasaction="ignore",
                          lineterminator="\n")
  writer.writeheader()
  for r in rows:
    writer.writerow({k: r.get(k, "") for k in COLUMNS})
  _write(path, buffer.getvalue())


def read_csv(path: str) -> list[dict[str, Any]]:
  """Rows of a `write_csv` file as dicts, `value` as a float."""
  with open(path, newline="", encoding="utf-8") as f:
    rows = list(csv.DictReader(f))
  for r in rows:
    r["value"] = float(r["value"])
  return rows


def write_markdown(path: str, rows: Sequence[dict[str, Any]],
                   header: str = "") -> str:
  """Writes `header` then the study's markdown tables; returns the text."""
  text = (header + "\n\n" if header else "") + markdown_tables(rows)
  _write(path, text)
  return text


def write_plots(directory: str, rows: Sequence[dict[str, Any]]) -> list[str]:
  """Writes PNG plots; returns their paths (none without probe rows)."""
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  from matplotlib import pyplot as plt  # pylint: disable=g-import-not-at-top

  index = _index(rows)
  kinds = {r["task"]: r["kind"] for r in rows}
  tasks = [t for t in _ordered(r["task"] for r in rows)
           if kinds[t] in PRIMARY_METRIC]
  labels = _ordered(r["label"] for r in rows)
  probes = [p for p in PROBE_ORDER if any(r["probe"] == p for r in rows)]
  if not tasks or not probes:
    return []
  os.makedirs(directory, exist_ok=True)
  paths = []
  for probe in probes:
    fig, ax = plt.subplots(figsize=(max(6.0, 1.6 * len(tasks) + 2), 4.2))
    width = 0.8 / max(len(labels), 1)
    for i, label in enumerate(labels):
      values = [index.get((label, t, probe, PRIMARY_METRIC[kinds[t]]),
                          float("nan")) for t in tasks]
      xs = [j + (i - (len(labels) - 1) / 2) * width for j in range(len(tasks))]
      ax.bar(xs, values, width=width, label=label)
    ax.set_xticks(range(len(tasks)))
    ax.set_xticklabels([f"{short_task(t)}\n"
                        f"({METRIC_SHORT[PRIMARY_METRIC[kinds[t]]]})"
                        for t in tasks], fontsize=8)
    ax.set_ylim(0.0, 1.0)
    ax.set_ylabel("accuracy / mAP")
    ax.set_title(PROBE_TITLES.get(probe, probe), fontsize=10)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.tight_layout()
    path = os.path.join(directory, f"probe_{probe}.png")
    _save(fig, path)
    plt.close(fig)
    paths.append(path)
  k_path = _plot_vocab_size(directory, rows, index, kinds, tasks, plt)
  if k_path:
    paths.append(k_path)
  return paths


def _save(fig, path: str) -> None:
  """Writes `fig` to `path` as a PNG, atomically."""
  with atomic_files.atomic_path(path) as tmp:
    fig.savefig(tmp, dpi=110, format="png")


def _plot_vocab_size(directory, rows, index, kinds, tasks, plt) -> str | None:
  """Primary metric against K for runs of one objective on uts_k<K> data."""
  from audiopt.study import variants  # pylint: disable=g-import-not-at-top
  by_objective: dict[str, dict[int, str]] = {}
  for r in rows:
    try:
      v = variants.parse_variant(r.get("data", ""))
    except ValueError:
      continue
    if v.kind == "uts_k":
      by_objective.setdefault(r["objective"], {})[v.k] = r["label"]
  series = {o: ks for o, ks in by_objective.items() if len(ks) >= 2}
  if not series:
    return None
  fig, axes = plt.subplots(1, 2, figsize=(10, 4), sharey=True)
  for ax, probe in zip(axes, ("mean", "attention")):
    for objective, ks in series.items():
      for t in tasks:
        metric = PRIMARY_METRIC[kinds[t]]
        xs = sorted(ks)
        ys = [index.get((ks[k], t, probe, metric), float("nan")) for k in xs]
        ax.plot(xs, ys, marker="o",
                label=f"{objective}: {short_task(t)} ({METRIC_SHORT[metric]})")
    ax.set_xscale("log", base=2)
    ax.set_xlabel("UTS vocabulary size K")
    ax.set_title(PROBE_TITLES[probe], fontsize=9)
  axes[0].set_ylabel("accuracy / mAP")
  axes[1].legend(fontsize=7)
  fig.tight_layout()
  path = os.path.join(directory, "uts_vocabulary_size.png")
  _save(fig, path)
  plt.close(fig)
  return path
