"""The study runner: train or reuse each run, evaluate all, write results.

  python -m audiopt.main --config=configs/study_demo.py --workdir=DIR

A study config (`job = "study"`, see `spec.py`) lists runs that differ from
it by a few keys: objective x data variant. For each run, in order:

1. its data variant's records are derived from the base pre-training
   records once (`variants.py`);
2. it trains in `DIR/runs/<run>/` through the one trainer, or is reused
   when a complete final checkpoint (step = train.num_steps) is there; a
   run killed mid-way resumes from its newest checkpoint;
3. its frozen encoder is evaluated on every task of `eval.tasks` (mean and
   attention pooling + linear, kNN) and, for runs with a text tower, on the
   retrieval record sets of `eval.retrieval_tasks`. Embeddings are cached
   under `DIR/embeddings`; each (run, task) result is written atomically to
   `DIR/results/<run>/<task>.json` once complete.

With `eval.compare_random_init`, the same encoder at random initialisation
is evaluated too (row "random init"). After every run, `DIR/results.csv`,
`DIR/results.md` and `DIR/plots/*.png` are rewritten from the stored
results, so they hold each (run, task, probe, metric) once whatever was
killed and restarted. A restarted study redoes only what is missing: it
skips runs whose checkpoint is complete and whose results are all stored.
A run whose training settings changed since its checkpoint was written
fails with the run's directory (delete it, or rename the run).
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from typing import Any

from absl import logging
import jax
import ml_collections

from audiopt import atomic_files
from audiopt import config as config_lib
from audiopt.data import prepare
from audiopt.data import records
from audiopt.evaluate import cache as cache_lib
from audiopt.evaluate import embeddings
from audiopt.evaluate import suite
from audiopt.objectives import DatasetInfo
from audiopt.study import results as results_lib
from audiopt.study import spec as spec_lib
from audiopt.study import variants
from audiopt.train import checkpoint as checkpoint_lib
from audiopt.train import restore
from audiopt.train import step as step_lib

RANDOM_INIT = "random_init"
RANDOM_INIT_LABEL = "random init"
TEXT_OBJECTIVES = ("contrastive", "siglip")


def _atomic_json(path: str, value: Any) -> None:
  if jax.process_index() != 0:
    return
  os.makedirs(os.path.dirname(path), exist_ok=True)
  atomic_files.write_json_atomic(path, value, indent=1, sort_keys=True)


def _read_json(path: str) -> Any | None:
  try:
    with open(path, encoding="utf-8") as f:
      return json.load(f)
  except (OSError, ValueError):
    return None


def _eval_hash(config) -> str:
  """Hash of the settings that change a task's evaluation numbers."""
  ec = config.eval.to_dict()
  for key in ("tasks", "retrieval_tasks", "batch_size", "cache_dir",
              "compare_random_init"):
    ec.pop(key, None)
  text = json.dumps({"eval": ec, "seed": config.seed}, sort_keys=True)
  return hashlib.sha256(text.encode()).hexdigest()[:16]


class Study:
  """One study in its work directory (see the module docstring)."""

  def __init__(self, config: ml_collections.ConfigDict, workdir: str):
    self.config = config
    self.workdir = workdir
    self.specs = spec_lib.parse_runs(config.study.runs)
    self.data_dir = prepare.data_dir_of(config, workdir)
    self.cache = suite.cache_of(config, workdir)
    self.results_dir = os.path.join(workdir, "results")
    self.eval_hash = _eval_hash(config)
    self.timings: dict[str, dict[str, float]] = {}

  # -------------------------------------------------------------- paths

  def run_dir(self, name: str) -> str:
    """The workdir of training run `name`."""
    return os.path.join(self.workdir, "runs", name)

  def result_path(self, encoder: str, task: str) -> str:
    """The JSON file of one encoder's result on one task."""
    return os.path.join(self.results_dir, encoder, f"{task}.json")

  # -------------------------------------------------------------- configs

  def run_config(self, spec: spec_lib.RunSpec, base_name: str):
    """The run's training config, reading its data variant's records."""
    config = spec_lib.run_config(self.config, spec)
    name = variants.prepare_variant(self.data_dir, base_name, spec.data,
                                    config.data.train_split)
    config.data.source = "records"
    config.data.name = name
    config.data.data_dir = self.data_dir
    config.eval.tasks = ""
    config_lib.validate(config, jax.device_count())
    return config

  # -------------------------------------------------------------- results

  def stored(self, encoder: str, task: str, model_id: str | None
             ) -> dict[str, Any] | None:
    """A stored result of `encoder` on `task`, or None if there is none, or
    it came from other evaluation settings or (with `model_id`) another
    checkpoint of the encoder."""
    got = _read_json(self.result_path(encoder, task))
    if not got or got.get("eval_hash") != self.eval_hash:
      return None
    if model_id is not None and got.get("model_id") != model_id:
      return None
    return got

  def tasks(self) -> tuple[list[str], list[str]]:
    """(probe task names, retrieval task names) of the study config."""
    return (suite.task_names(self.config),
            [t.strip() for t in self.config.eval.retrieval_tasks.split(",")
             if t.strip()])

  def all_stored(self, encoder: str, model_id: str | None,
                 text_tower: bool) -> bool:
    """Whether every task the encoder is evaluated on (retrieval too with a
    text tower) has a current stored result."""
    probe_tasks, retrieval_tasks = self.tasks()
    wanted = probe_tasks + (retrieval_tasks if text_tower else [])
    return all(self.stored(encoder, t, model_id) for t in wanted)

  # -------------------------------------------------------------- running

  def run(self) -> list[dict[str, Any]]:
    """Runs the whole study; returns the result rows."""
    start = time.time()
    os.makedirs(self.workdir, exist_ok=True)
    prepare.prepare_data(self.config, self.workdir)
    self.timings["data"] = {"seconds": round(time.time() - start, 1)}
    base_name = prepare.dataset_name(self.config)
    logging.info("study: %d runs, tasks %s", len(self.specs), self.tasks())
    rows = []
    timings = os.path.join(self.workdir, "timings.json")
    for spec in self.specs:
      self.run_one(spec, base_name)
      rows = self.write_reports()
      _atomic_json(timings, self.timings)
    if self.config.eval.compare_random_init:
      self.run_random_init(self.specs[0], base_name)
      rows = self.write_reports()
    self.timings["total"] = {"seconds": round(time.time() - start, 1)}
    _atomic_json(timings, self.timings)
    if jax.process_index() == 0:
      print(results_lib.markdown_tables(rows))
      print(f"study results: {os.path.join(self.workdir, 'results.md')}, "
            f"results.csv, plots/ ({time.time() - start:.0f} s)")
    return rows

  def run_one(self, spec: spec_lib.RunSpec, base_name: str) -> None:
    """Trains or reuses one run, then evaluates what is not stored."""
    config = self.run_config(spec, base_name)
    run_dir = self.run_dir(spec.name)
    info_path = os.path.join(run_dir, "study_run.json")
    train_hash = spec_lib.training_hash(config)
    info = _read_json(info_path) or {}
    if info.get("training_hash", train_hash) != train_hash:
      raise ValueError(
          f"run {spec.name!r}: its training settings changed since "
          f"{run_dir} was written; delete that directory or rename the run")
    label = spec_lib.run_label(spec, config)
    text_tower = _has_text_tower(config)
    complete = _final_step(run_dir) == config.train.num_steps
    if (complete and info.get("model_id") and
        self.all_stored(spec.name, info["model_id"], text_tower)):
      logging.info("study: run %s complete and evaluated; skipped", spec.name)
      return
    _atomic_json(info_path, {"name": spec.name, "label": label,
                             "data": spec.data,
                             "objective": config.objective.name,
                             "training_hash": train_hash,
                             "config": json.loads(config.to_json())})
    timing = self.timings.setdefault(spec.name, {})
    t0 = time.time()
    if complete:
      logging.info("study: reusing the final checkpoint of %s", spec.name)
    else:
      from audiopt.train import trainer  # pylint: disable=g-import-not-at-top
      logging.info("study: training %s (%s)", spec.name, label)
      trainer.train(config, run_dir)
      timing["train_seconds"] = round(time.time() - t0, 1)
      if _final_step(run_dir) != config.train.num_steps:
        raise RuntimeError(f"run {spec.name!r} stopped before step "
                           f"{config.train.num_steps} (preempted?); rerun "
                           "the study to resume it")
    restored = restore.load_checkpoint(run_dir, on_mesh=True)
    model_id = cache_lib.model_id(restored.params, restored.step)
    info = {**(_read_json(info_path) or {}), "model_id": model_id,
            "step": restored.step}
    _atomic_json(info_path, info)
    t1 = time.time()
    self.evaluate_encoder(spec.name, label, config, restored, model_id,
                          text_tower=text_tower)
    timing["eval_seconds"] = round(time.time() - t1, 1)

  def run_random_init(self, spec: spec_lib.RunSpec, base_name: str) -> None:
    """Evaluates the first run's encoder at random initialisation."""
    config = self.run_config(spec, base_name)
    source = records.open_records(config.data.data_dir, config.data.name,
                                  config.data.train_split)
    setup = step_lib.build(config, DatasetInfo.from_metadata(source.metadata),
                           source.metadata)
    state = step_lib.init_state(setup, jax.random.key(config.seed + 1))
    model_id = cache_lib.model_id(state.params, "init")
    restored = restore.Restored(step=0, config=config, metadata={},
                                setup=setup, params=state.params)
    t0 = time.time()
    self.evaluate_encoder(RANDOM_INIT, RANDOM_INIT_LABEL, config, restored,
                          model_id, text_tower=False)
    self.timings[RANDOM_INIT] = {"eval_seconds": round(time.time() - t0, 1)}

  def evaluate_encoder(self, encoder: str, label: str, config, restored,
                       model_id: str, *, text_tower: bool) -> None:
    """Evaluates one encoder on every task not yet stored for it."""
    probe_tasks, retrieval_tasks = self.tasks()
    eval_config = _with_eval(config, self.config)
    embed_fn = None
    for task in probe_tasks:
      if self.stored(encoder, task, model_id):
        continue
      if embed_fn is None:
        embed_fn = embeddings.make_embed_fn(
            restored.setup.model, restored.setup.mesh, restored.setup.rules,
            layer=eval_config.eval.layer)
      result = suite.evaluate_task(
          embed_fn, restored.params, task, eval_config, self.data_dir,
          restored.setup.mesh, model_id=model_id, cache=self.cache)
      self._store(encoder, label, config, task, model_id, result)
    if not text_tower:
      return
    for task in retrieval_tasks:
      if self.stored(encoder, task, model_id):
        continue
      start = time.time()
      metrics = evaluate_retrieval_records(restored, self.data_dir, task,
                                           eval_config)
      result = {"kind": "captions", "probes": {"retrieval": metrics},
                "seconds": round(time.time() - start, 2)}
      self._store(encoder, label, config, task, model_id, result)

  def _store(self, encoder, label, config, task, model_id, result) -> None:
    data = "" if encoder == RANDOM_INIT else next(
        s.data for s in self.specs if s.name == encoder)
    _atomic_json(self.result_path(encoder, task), {
        "run": encoder, "label": label, "objective": (
            "" if encoder == RANDOM_INIT else config.objective.name),
        "data": data, "task": task, "model_id": model_id,
        "eval_hash": self.eval_hash, **result})
    logging.info("study: %s on %s: %s", encoder, task, result["probes"])

  def rows(self) -> list[dict[str, Any]]:
    """Result rows of the stored results of this study's runs, in order."""
    encoders = [s.name for s in self.specs]
    if self.config.eval.compare_random_init:
      encoders.append(RANDOM_INIT)
    probe_tasks, retrieval_tasks = self.tasks()
    rows = []
    for encoder in encoders:
      for task in probe_tasks + retrieval_tasks:
        got = self.stored(encoder, task, None)
        if not got:
          continue
        order = list(results_lib.PROBE_ORDER) + sorted(got["probes"])
        for probe in sorted(got["probes"], key=order.index):
          metrics = got["probes"][probe]
          for metric, value in metrics.items():
            if isinstance(value, (int, float)) and not isinstance(value,
                                                                  bool):
              rows.append({"run": encoder, "label": got["label"],
                           "objective": got["objective"],
                           "data": got["data"], "task": task,
                           "kind": got["kind"], "probe": probe,
                           "metric": metric, "value": float(value)})
    return rows

  def write_reports(self) -> list[dict[str, Any]]:
    """Rewrites results.csv, results.md and the plots from stored results."""
    rows = self.rows()
    if jax.process_index() != 0:
      return rows
    # These files are written here alone: a killed study's temporaries of
    # them are debris (its stored results are what the reports are from).
    for name in ("results.csv", "results.md"):
      atomic_files.remove_temporaries(self.workdir, name)
    atomic_files.remove_temporaries(os.path.join(self.workdir, "plots"))
    results_lib.write_csv(os.path.join(self.workdir, "results.csv"), rows)
    header = ("## Study results\n\nFrozen-encoder probes on the held-out "
              "tasks; accuracy in percent (multiclass), mAP (multilabel). "
              f"Runs: {', '.join(s.name for s in self.specs)}.")
    results_lib.write_markdown(os.path.join(self.workdir, "results.md"), rows,
                               header)
    if self.config.study.plots:
      results_lib.write_plots(os.path.join(self.workdir, "plots"), rows)
    return rows


def _with_eval(run_config, study_config):
  """The run's config with the study's evaluation settings."""
  config = run_config.copy_and_resolve_references()
  config.eval = study_config.eval.copy_and_resolve_references()
  config.seed = study_config.seed
  return config


def _has_text_tower(config) -> bool:
  name = config.objective.name
  if name in TEXT_OBJECTIVES:
    return True
  return name == "multitask" and any(
      t in config.objective.tasks for t in TEXT_OBJECTIVES)


def _final_step(run_dir: str) -> int | None:
  """The newest complete checkpoint step of a run directory, or None."""
  ckpt_dir = os.path.join(run_dir, "checkpoints")
  if not os.path.isdir(ckpt_dir):
    return None
  manager = checkpoint_lib.Checkpointer(ckpt_dir, save_every=1)
  try:
    return manager.latest_step()
  finally:
    manager.close()


def evaluate_retrieval_records(restored, data_dir: str, task: str, config
                               ) -> dict[str, float]:
  """Text-audio retrieval on a caption record set's test split."""
  from audiopt.audio import io as audio_io  # pylint: disable=g-import-not-at-top
  from audiopt.evaluate import retrieval  # pylint: disable=g-import-not-at-top
  source = records.open_records(data_dir, task, config.eval.test_split)
  rate = int(config.frontend.fbank.sample_rate)
  clips, captions = [], []
  for i in range(len(source)):
    r = source[i]
    clips.append(audio_io.decode_audio(r["audio"], name=r["clip_id"],
                                       target_sample_rate=rate))
    captions.append([r["caption"]])
  max_seconds = float(config.eval.chunk_seconds)
  got = retrieval.evaluate_retrieval(restored, clips, captions,
                                     batch_size=int(config.eval.batch_size),
                                     max_seconds=max_seconds)
  return {k: float(v) for k, v in got.items()}


def run_study(config, workdir: str) -> list[dict[str, Any]]:
  """main.py's entry for job "study"."""
  return Study(config, workdir).run()
