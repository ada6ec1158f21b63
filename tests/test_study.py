"""The study runner: run specs, data variants, reports, kill and resume."""

import csv
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest

from audiopt import config as config_lib
from audiopt.data import records
from audiopt.study import results as results_lib
from audiopt.study import runner
from audiopt.study import spec as spec_lib
from audiopt.study import variants

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RUNS = "mtc_uts: data=uts; mtc_weak: data=weak_labels"
TASKS = "audiopt_demo_emotion"


def test_run_specs_parse_and_apply():
  text = spec_lib.format_runs({
      "a": {"data": "uts_k8"},
      "b": {"objective.name": "multitask",
            "objective.tasks": "mtc:1.0,captioning:0.5",
            "train.num_steps": 7, "encoder.remat": True, "label": "B run"}})
  assert "'mtc:1.0,captioning:0.5'" in text
  a, b = spec_lib.parse_runs(text)
  assert (a.name, a.data, a.overrides) == ("a", "uts_k8", ())
  base = config_lib.base_config()
  config = spec_lib.run_config(base, b)
  assert config.objective.tasks == "mtc:1.0,captioning:0.5"
  assert config.train.num_steps == 7 and config.encoder.remat is True
  assert base.train.num_steps != 7 and base.encoder.remat is None
  assert spec_lib.run_label(b, config) == "B run"
  assert spec_lib.run_label(a, spec_lib.run_config(base, a)) == "MTC, UTS K=8"
  for bad, match in [("x: data=uts_k0", "unknown data variant"),
                     ("x: train.num_stpes=3", "num_stpes"),
                     ("x: train.num_steps=many", "train.num_steps"),
                     ("x: data=uts; x: data=uts", "twice"),
                     ("Bad Name: data=uts", "snake_case"),
                     ("", "empty")]:
    with pytest.raises(ValueError, match=match):
      for s in spec_lib.parse_runs(bad):
        spec_lib.run_config(base, s)


def test_data_variants(demo_data_dir, tmp_path):
  data_dir = str(tmp_path / "data")
  shutil.copytree(demo_data_dir, data_dir)
  base = records.open_records(data_dir, "audiopt_demo", "train")
  names = base.metadata["tag_names"]
  name = variants.prepare_variant(data_dir, "audiopt_demo", "uts_k4")
  small = records.open_records(data_dir, name, "train")
  assert small.metadata["tag_names"] == names[:4]
  kept = [base[i] for i in range(len(base)) if (base[i]["tags"] < 4).any()]
  assert len(small) == len(kept) > 0
  for i, r in enumerate(kept):
    assert small[i]["tags"].tolist() == [t for t in r["tags"] if t < 4]
    assert small[i]["audio"] == r["audio"]
  weak = records.open_records(
      data_dir, variants.prepare_variant(data_dir, "audiopt_demo",
                                         "weak_labels"), "train")
  assert weak.metadata["tag_names"] == base.metadata["weak_label_names"]
  assert weak[0]["tags"].tolist() == weak[0]["weak_labels"].tolist()
  short = records.open_records(data_dir, variants.prepare_variant(
      data_dir, "audiopt_demo", "captions_short"), "train")
  assert short[0]["caption"] == variants.short_caption(base[0]["caption"])
  assert len(short[0]["caption"]) < len(base[0]["caption"])
  assert variants.short_caption("A dog barks. Then rain.") == "A dog barks."
  assert variants.short_caption("A dog barks in a park; no echo.") == (
      "A dog barks in a park.")
  whole = variants.prepare_variant(data_dir, "audiopt_demo",
                                   f"uts_k{len(names)}")
  assert whole == "audiopt_demo"  # the whole vocabulary: no copy
  with pytest.raises(ValueError, match="exceeds"):
    variants.prepare_variant(data_dir, "audiopt_demo", "uts_k999")


def test_tables_and_plots(tmp_path):
  rows = []
  for label, base in (("MTC, UTS K=8", 0.5), ("MTC, UTS K=16", 0.6)):
    for probe in ("mean", "attention", "knn"):
      rows.append(dict(run=label, label=label, objective="mtc",
                       data="uts_k" + label.split("=")[1],
                       task="audiopt_demo_a",
                       kind="multiclass", probe=probe, metric="accuracy",
                       value=base))
      for metric, value in (("mAP", base / 2), ("d_prime", 1.0)):
        rows.append(dict(run=label, label=label, objective="mtc",
                         data="uts_k" + label.split("=")[1], task="b",
                         kind="multilabel", probe=probe, metric=metric,
                         value=value))
  text = results_lib.markdown_tables(rows)
  assert "| model | a acc | b mAP |" in text
  assert "| MTC, UTS K=8 | 50.00 | 0.250 |" in text
  assert text.count("### ") == 4  # three probes and d-prime
  paths = results_lib.write_plots(str(tmp_path), rows)
  assert sorted(os.path.basename(p) for p in paths) == [
      "probe_attention.png", "probe_knn.png", "probe_mean.png",
      "uts_vocabulary_size.png"]
  for p in paths:
    with open(p, "rb") as f:
      assert f.read(8) == b"\x89PNG\r\n\x1a\n"


def _study_config(data_dir):
  from configs import demo  # pylint: disable=g-import-not-at-top
  config = demo.get_config("quick,study")
  config.data.data_dir = str(data_dir)
  config.study.runs = RUNS
  config.train.num_steps = config.train.checkpoint_every = 4
  config.eval.tasks = TASKS
  config.eval.compare_random_init = False
  config.eval.probe_epochs = 3
  return config


def _csv(path):
  with open(path, newline="") as f:
    return list(csv.reader(f))


def test_study_kill_and_resume(demo_data_dir, tmp_path):
  data_dir = tmp_path / "data"
  shutil.copytree(demo_data_dir, data_dir)

  # Killed (SIGKILL) once the first run has stored a task result.
  killed = tmp_path / "killed"
  cmd = [sys.executable, "-m", "audiopt.main",
         "--config=configs/demo.py:quick,study", f"--workdir={killed}",
         f"--config.data.data_dir={data_dir}", f"--config.study.runs={RUNS}",
         "--config.train.num_steps=4", "--config.train.checkpoint_every=4",
         f"--config.eval.tasks={TASKS}",
         "--config.eval.compare_random_init=false",
         "--config.eval.probe_epochs=3"]
  proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.DEVNULL,
                          stderr=subprocess.PIPE, text=True)
  first = killed / "results" / "mtc_uts"
  deadline = time.time() + 300
  while time.time() < deadline and proc.poll() is None:
    if first.is_dir() and any(f.endswith(".json") for f in os.listdir(first)):
      break
    time.sleep(0.2)
  assert proc.poll() is None, proc.stderr.read()[-3000:]
  proc.send_signal(signal.SIGKILL)
  proc.wait()
  assert not (killed / "results" / "mtc_weak").exists()
  done = {f: os.stat(first / f).st_mtime_ns for f in os.listdir(first)
          if f.endswith(".json")}
  metrics_lines = (killed / "runs" / "mtc_uts" / "metrics.jsonl").read_text()
  # Whether or not the kill caught a report mid-write, leave what it leaves.
  (killed / "plots").mkdir(exist_ok=True)
  for stale in ("plots/probe_knn.png.tmp-1-1", "results.csv.tmp-1-1"):
    (killed / stale).write_bytes(b"partial")

  # Restarted: only what is missing is done, each row once.
  rows = runner.run_study(_study_config(data_dir), str(killed))
  got = _csv(killed / "results.csv")
  assert got[0] == list(results_lib.COLUMNS)
  keys = [tuple(r[i] for i in (0, 4, 6, 7)) for r in got[1:]]
  assert len(keys) == len(set(keys)) == len(rows) == 2 * 3
  assert {r[0] for r in got[1:]} == {"mtc_uts", "mtc_weak"}
  for f, mtime in done.items():
    assert os.stat(first / f).st_mtime_ns == mtime  # not recomputed
  assert (killed / "runs" / "mtc_uts" / "metrics.jsonl").read_text() == (
      metrics_lines)  # not retrained
  table = (killed / "results.md").read_text()
  assert "| MTC, weak labels |" in table and "emotion acc" in table
  assert sorted(os.listdir(killed / "plots")) == [
      "probe_attention.png", "probe_knn.png", "probe_mean.png"]
  assert not list(killed.glob("results.csv.tmp-*"))

  # A third start finds everything done and changes nothing.
  before = {p: os.stat(p).st_mtime_ns for p in (killed / "results").rglob("*")}
  runner.run_study(_study_config(data_dir), str(killed))
  assert {p: os.stat(p).st_mtime_ns
          for p in (killed / "results").rglob("*")} == before
  assert _csv(killed / "results.csv") == got

  # The same checkpoints evaluated in one uninterrupted go: the same CSV.
  fresh = tmp_path / "fresh"
  shutil.copytree(killed / "runs", fresh / "runs")
  runner.run_study(_study_config(data_dir), str(fresh))
  assert _csv(fresh / "results.csv") == got


@pytest.mark.parametrize("path,arg", [("configs/study_demo.py", None),
                                      ("configs/study_demo.py", "quick"),
                                      ("configs/demo.py", None)])
def test_study_configs_validate_every_run(path, arg):
  config = config_lib.load_config_file(os.path.join(REPO, path), arg)
  assert config.job == "study"
  config_lib.validate(config, num_devices=8)
  runs = spec_lib.parse_runs(config.study.runs)
  assert len({r.name for r in runs}) == len(runs) >= 2
  for run in runs:
    run_config = spec_lib.run_config(config, run)
    run_config.data.source, run_config.data.name = "records", "x"
    config_lib.validate(run_config, num_devices=8)


def test_changed_run_settings_fail_naming_the_run(demo_data_dir, tmp_path):
  data_dir = tmp_path / "data"
  shutil.copytree(demo_data_dir, data_dir)
  work = tmp_path / "study"
  (work / "runs" / "mtc_uts").mkdir(parents=True)
  (work / "runs" / "mtc_uts" / "study_run.json").write_text(
      '{"training_hash": "0123456789abcdef"}')
  with pytest.raises(ValueError, match="run 'mtc_uts': its training settings "
                     "changed"):
    runner.run_study(_study_config(data_dir), str(work))
