"""Probes a frozen encoder on tasks: mean + linear, attention + linear, kNN.

For each task named in `eval.tasks` (TFDS record sets with `label_ids` and a
metadata `task` of "multiclass" or "multilabel"), the frozen encoder embeds
the train and test splits (and the validation split when the task has one)
through `embeddings.extract_cached`, so a second evaluation of the same
checkpoint reads them from disk. Then every configured probe is fitted on
train and scored on test:

  mean       mean pooling over valid frames + linear (optax, early stopping)
  attention  multi-head attention pooling + linear (same training)
  knn        cosine kNN on the mean-pooled vectors (k, temperature)

Both poolings are always run. Multiclass tasks report accuracy; multilabel
tasks mAP, ROC-AUC and d-prime. `evaluate_run` (the trainer's last step)
also probes a randomly initialised encoder for reference and writes
`<workdir>/probe_results.json` and the Markdown tables `probe_results.md`.
"""

from __future__ import annotations

import json
import os
import time
from typing import Any

from absl import logging
import jax
import numpy as np

from audiopt.data import prepare
from audiopt.data import records
from audiopt.evaluate import cache as cache_lib
from audiopt.evaluate import embeddings
from audiopt.evaluate import knn
from audiopt.evaluate import probes
from audiopt.train import step as step_lib

PRIMARY_METRIC = {"multiclass": "accuracy", "multilabel": "mAP"}
PROBE_KINDS = tuple(PRIMARY_METRIC)
POOLINGS = ("mean", "attention")


def task_names(config) -> list[str]:
  """The probe tasks of `eval.tasks`, in order."""
  return [t.strip() for t in config.eval.tasks.split(",") if t.strip()]


def probe_names(config) -> list[str]:
  """Configured probes; both poolings always come first."""
  named = [p.strip() for p in config.eval.probes.split(",") if p.strip()]
  return list(POOLINGS) + [p for p in named if p not in POOLINGS]


def targets(label_ids: np.ndarray, kind: str, num_classes: int) -> np.ndarray:
  """Probe targets from padded label ids [N, L]: ids [N] or multi-hot [N, C].

  Raises:
    ValueError: a multiclass clip without a label, or an id outside
      [0, num_classes), naming the row.
  """
  label_ids = np.asarray(label_ids)
  bad = np.argwhere((label_ids >= num_classes))
  if bad.size:
    row = int(bad[0, 0])
    raise ValueError(f"row {row}: label id {int(label_ids[tuple(bad[0])])} "
                     f"outside the task's {num_classes} classes")
  if kind == "multiclass":
    if label_ids.shape[1] == 0 or (label_ids[:, 0] < 0).any():
      row = int(np.flatnonzero(label_ids[:, 0] < 0)[0]) if (
          label_ids.shape[1]) else 0
      raise ValueError(f"row {row}: a multiclass clip without a label")
    return label_ids[:, 0].astype(np.int32)
  multi_hot = np.zeros((len(label_ids), num_classes), np.float32)
  rows, cols = np.nonzero(label_ids >= 0)
  multi_hot[rows, label_ids[rows, cols]] = 1.0
  return multi_hot


def _open(data_dir: str, task: str, split: str, *, required: bool = True):
  try:
    return records.open_records(data_dir, task, split)
  except FileNotFoundError:
    if required:
      raise
    return None


def task_kind(data_dir: str, task: str, split: str = "test") -> tuple[str, int]:
  """(kind, number of classes) from a task's record metadata."""
  meta = records.open_records(data_dir, task, split).metadata
  return str(meta.get("task", "")), len(meta.get("label_names", []))


def probe_embeddings(train: dict[str, np.ndarray], test: dict[str, np.ndarray],
                     *, kind: str, num_classes: int, config,
                     validation: dict[str, np.ndarray] | None = None
                     ) -> dict[str, dict[str, float]]:
  """Fits and scores every configured probe on embedded splits.

  Args:
    train, test, validation: dicts with "frames" [N, T, D], "mask" [N, T]
      and "label_ids" [N, L] (from `embeddings.extract`).
    kind: "multiclass" or "multilabel".
    num_classes: C.
    config: the experiment config (eval section and seed).

  Returns:
    {probe: {metric: value}} for "mean", "attention" and, if configured,
    "knn".
  """
  ec = config.eval
  y_train = targets(train["label_ids"], kind, num_classes)
  y_test = targets(test["label_ids"], kind, num_classes)
  fit = dict(task=kind, num_classes=num_classes, seed=int(config.seed),
             max_epochs=int(ec.probe_epochs), lr=float(ec.probe_learning_rate))
  pooled_train = probes.mean_pool(train["frames"], train["mask"])
  pooled_test = probes.mean_pool(test["frames"], test["mask"])
  y_val = None
  if validation is not None:
    y_val = targets(validation["label_ids"], kind, num_classes)
  out = {}
  for name in probe_names(config):
    if name == "mean":
      val = None if validation is None else (
          probes.mean_pool(validation["frames"], validation["mask"]), y_val)
      probe = probes.fit_linear_probe(pooled_train, y_train, validation=val,
                                      **fit)
      out[name] = probes.evaluate_probe(probe, pooled_test, y_test)
    elif name == "attention":
      val = None if validation is None else (
          validation["frames"], validation["mask"], y_val)
      probe = probes.fit_attention_probe(train["frames"], train["mask"],
                                         y_train, validation=val, **fit)
      out[name] = probes.evaluate_probe(probe, test["frames"], y_test,
                                        mask=test["mask"])
    elif name == "knn":
      out[name] = knn.evaluate_knn(
          pooled_train, y_train, pooled_test, y_test, task=kind,
          num_classes=num_classes, k=int(ec.knn_k),
          temperature=float(ec.knn_temperature))
    else:
      raise ValueError(f"unknown probe {name!r}; valid: attention, knn, mean")
  return {p: {m: float(v) for m, v in r.items()} for p, r in out.items()}


def evaluate_task(embed_fn, params, task: str, config, data_dir: str, mesh, *,
                  model_id: str, cache: cache_lib.EmbeddingCache | None
                  ) -> dict[str, Any]:
  """Embeds a task's splits (cached) and runs every probe on them.

  Returns:
    {"kind", "num_classes", "num_train", "num_test", "num_validation",
     "probes": {probe: {metric: value}}, "seconds"}.
  """
  ec = config.eval
  start = time.time()
  options = embeddings.ExtractOptions.from_config(config)
  extra = {"frontend": config.frontend.to_dict(),
           "encoder": config.encoder.to_dict()}
  train_src = _open(data_dir, task, ec.train_split)
  test_src = _open(data_dir, task, ec.test_split)
  val_src = (_open(data_dir, task, ec.validation_split, required=False)
             if ec.validation_split else None)
  kind = str(test_src.metadata.get("task", ""))
  num_classes = len(test_src.metadata.get("label_names", []))
  if kind not in PROBE_KINDS:
    raise ValueError(f"task {task!r} has metadata task={kind!r}; probe tasks "
                     f"are {list(PROBE_KINDS)}")

  def embed(source, split):
    return embeddings.extract_cached(
        embed_fn, params, source, task=task, split=split, model_id=model_id,
        options=options, mesh=mesh, cache=cache, extra_settings=extra)

  train = embed(train_src, ec.train_split)
  test = embed(test_src, ec.test_split)
  val = embed(val_src, ec.validation_split) if val_src is not None else None
  results = probe_embeddings(train, test, kind=kind, num_classes=num_classes,
                             config=config, validation=val)
  return {"kind": kind, "num_classes": num_classes,
          "num_train": int(len(train["label_ids"])),
          "num_test": int(len(test["label_ids"])),
          "num_validation": int(len(val["label_ids"])) if val else 0,
          "probes": results, "seconds": round(time.time() - start, 2)}


def cache_of(config, workdir: str) -> cache_lib.EmbeddingCache:
  """The embedding cache of a run: `eval.cache_dir` or <workdir>/embeddings."""
  return cache_lib.EmbeddingCache(config.eval.cache_dir or
                                  os.path.join(workdir, "embeddings"))


def evaluate_params(setup, params, config, data_dir: str, *,
                    model_id: str | None = None,
                    cache: cache_lib.EmbeddingCache | None = None
                    ) -> dict[str, Any]:
  """Probes `params` on every task of `eval.tasks`; returns task -> results."""
  embed_fn = embeddings.make_embed_fn(setup.model, setup.mesh, setup.rules,
                                      layer=config.eval.layer)
  model_id = model_id or cache_lib.model_id(params)
  out = {}
  for task in task_names(config):
    out[task] = evaluate_task(embed_fn, params, task, config, data_dir,
                              setup.mesh, model_id=model_id, cache=cache)
    logging.info("probed %s on %s: %s", model_id, task, out[task]["probes"])
  return out


def evaluate_run(config, workdir: str, setup, params, *,
                 step: int | None = None) -> dict[str, Any]:
  """Probes the trained encoder and, if configured, a random-init one.

  Returns:
    {"pretrained": task results, "random_init": task results (optional)}.
  """
  if not task_names(config):
    return {}
  data_dir = prepare.data_dir_of(config, workdir)
  cache = cache_of(config, workdir)
  step = int(config.train.num_steps) if step is None else step
  results = {"pretrained": evaluate_params(
      setup, params, config, data_dir,
      model_id=cache_lib.model_id(params, step), cache=cache)}
  if config.eval.compare_random_init:
    random_state = step_lib.init_state(
        setup, jax.random.key(config.seed + 1))
    results["random_init"] = evaluate_params(
        setup, random_state.params, config, data_dir,
        model_id=cache_lib.model_id(random_state.params, "init"), cache=cache)
  if jax.process_index() == 0:
    with open(os.path.join(workdir, "probe_results.json"), "w") as f:
      json.dump(results, f, indent=1)
    table = results_table(results)
    with open(os.path.join(workdir, "probe_results.md"), "w") as f:
      f.write(table + "\n")
    print(table)
  return results


def result_rows(results: dict[str, Any]) -> list[dict[str, Any]]:
  """Long-format rows (encoder, task, kind, probe, metric, value)."""
  rows = []
  for encoder, tasks in results.items():
    for task, r in tasks.items():
      for probe, metrics in r["probes"].items():
        for metric, value in metrics.items():
          rows.append({"run": encoder, "label": encoder, "task": task,
                       "kind": r["kind"], "probe": probe, "metric": metric,
                       "value": value})
  return rows


def results_table(results: dict[str, Any]) -> str:
  """Markdown tables in the paper's layout: one per probe, rows = encoders,
  columns = tasks with their primary metric."""
  from audiopt.study import results as study_results  # pylint: disable=g-import-not-at-top
  return study_results.markdown_tables(result_rows(results))
