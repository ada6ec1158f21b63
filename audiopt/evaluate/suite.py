"""Probes a trained encoder (and, for reference, a random one) on tasks.

For each task named in `eval.tasks` (TFDS record sets with `label_ids` and a
metadata `task` of "multiclass" or "multilabel"), the frozen encoder embeds
the train and test splits, and each configured probe (mean pooling + linear,
attention pooling + linear) is fitted on train and scored on test. Results go
to `<workdir>/probe_results.json` and a Markdown table `probe_results.md`.
"""

import json
import os
from typing import Any

import jax
import numpy as np

from audiopt.data import prepare
from audiopt.data import records
from audiopt.evaluate import embeddings
from audiopt.evaluate import probes
from audiopt.train import sharding
from audiopt.train import step as step_lib

PRIMARY_METRIC = {"multiclass": "accuracy", "multilabel": "mAP"}


def _targets(label_ids: np.ndarray, kind: str, num_classes: int) -> np.ndarray:
  if kind == "multiclass":
    return label_ids[:, 0].astype(np.int32)
  multi_hot = np.zeros((len(label_ids), num_classes), np.float32)
  rows, cols = np.nonzero(label_ids >= 0)
  multi_hot[rows, label_ids[rows, cols]] = 1.0
  return multi_hot


def probe_task(embed_fn, params, task_name: str, config, data_dir: str,
               mesh) -> dict[str, dict[str, float]]:
  """Fits and scores every configured probe on one task.

  Returns:
    {probe name: {metric: value}} for probes "mean" and/or "attention".
  """
  ec = config.eval
  splits = {}
  for split in (ec.train_split, ec.test_split):
    source = records.open_records(data_dir, task_name, split)
    splits[split] = embeddings.extract(
        embed_fn, params, source, batch_size=ec.batch_size,
        clip_seconds=ec.clip_seconds,
        sample_rate=config.frontend.fbank.sample_rate, mesh=mesh)
  kind = source.metadata["task"]
  num_classes = len(source.metadata["label_names"])
  train, test = splits[ec.train_split], splits[ec.test_split]
  y_train = _targets(train["label_ids"], kind, num_classes)
  y_test = _targets(test["label_ids"], kind, num_classes)
  fit_kwargs = dict(task=kind, num_classes=num_classes, seed=config.seed,
                    max_epochs=ec.probe_epochs, lr=ec.probe_learning_rate)
  results = {}
  for name in filter(None, ec.probes.split(",")):
    if name == "mean":
      probe = probes.fit_linear_probe(
          probes.mean_pool(train["frames"], train["mask"]), y_train,
          **fit_kwargs)
      results[name] = probes.evaluate_probe(
          probe, probes.mean_pool(test["frames"], test["mask"]), y_test)
    else:
      probe = probes.fit_attention_probe(train["frames"], train["mask"],
                                         y_train, **fit_kwargs)
      results[name] = probes.evaluate_probe(probe, test["frames"], y_test,
                                            mask=test["mask"])
  return {"kind": kind, **{k: {m: float(v) for m, v in r.items()}
                           for k, r in results.items()}}


def evaluate_params(setup, params, config, data_dir: str) -> dict[str, Any]:
  """Probes `params` on every task of `eval.tasks`; returns task -> results."""
  embed_fn = embeddings.make_embed_fn(setup.model, setup.mesh, setup.rules)
  out = {}
  with sharding.mesh_and_rules(setup.mesh, setup.rules):
    for task in filter(None, config.eval.tasks.split(",")):
      out[task] = probe_task(embed_fn, params, task, config, data_dir,
                             setup.mesh)
  return out


def evaluate_run(config, workdir: str, setup, params) -> dict[str, Any]:
  """Probes the trained encoder and, if configured, a random-init one.

  Returns:
    {"pretrained": task results, "random_init": task results (optional)}.
  """

  if not config.eval.tasks:
    return {}
  data_dir = prepare.data_dir_of(config, workdir)
  results = {"pretrained": evaluate_params(setup, params, config, data_dir)}
  if config.eval.compare_random_init:
    random_state = step_lib.init_state(
        setup, jax.random.key(config.seed + 1))
    results["random_init"] = evaluate_params(setup, random_state.params,
                                             config, data_dir)
  if jax.process_index() == 0:
    with open(os.path.join(workdir, "probe_results.json"), "w") as f:
      json.dump(results, f, indent=1)
    table = results_table(results)
    with open(os.path.join(workdir, "probe_results.md"), "w") as f:
      f.write(table + "\n")
    print(table)
  return results


def results_table(results: dict[str, Any]) -> str:
  """Markdown table: one row per (encoder, pooling), one column per task."""
  models = list(results)
  tasks = list(results[models[0]]) if models else []
  header = "| encoder | pooling | " + " | ".join(
      f"{t} ({PRIMARY_METRIC[results[models[0]][t]['kind']]})"
      for t in tasks) + " |"
  lines = [header, "|" + "---|" * (len(tasks) + 2)]
  for m in models:
    poolings = [p for p in results[m][tasks[0]] if p != "kind"] if tasks else []
    for p in poolings:
      cells = []
      for t in tasks:
        r = results[m][t]
        cells.append(f"{r[p][PRIMARY_METRIC[r['kind']]]:.3f}")
      lines.append(f"| {m} | {p} | " + " | ".join(cells) + " |")
  return "\n".join(lines)
