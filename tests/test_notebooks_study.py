"""The objective-comparison notebook runs on a study's results.csv.

The CSV is written by the study runner's own writer
(`audiopt.study.results.write_csv`), so the notebook reads what a study
writes.
"""

import csv

import pytest

from audiopt.study import results
from test_notebooks import _execute
from test_notebooks import _text

_ROWS = [  # run, objective, data, task, metric, probe, value
    ("r1", "mtc", "uts", "scene", "accuracy", "mean", 0.61),
    ("r2", "mtc", "uts", "scene", "accuracy", "mean", 0.63),
    ("r3", "contrastive", "uts", "scene", "accuracy", "mean", 0.55),
    ("r1", "mtc", "uts", "speaker_id", "accuracy", "mean", 0.40),
    ("r3", "contrastive", "uts", "speaker_id", "accuracy", "mean", 0.47),
    ("random_init", "", "", "scene", "accuracy", "mean", 0.30),
]


def _write(path, header, rows):
  with open(path, "w", newline="") as f:
    w = csv.writer(f)
    w.writerow(header)
    w.writerows(rows)


def test_compare_objectives(tmp_path):
  path = tmp_path / "results.csv"
  keys = ("run", "objective", "data", "task", "metric", "probe", "value")
  results.write_csv(str(path), [
      dict(zip(keys, r), label=r[0], kind="multiclass") for r in _ROWS])
  text = _text(_execute("compare_objectives.ipynb",
                        {"AUDIOPT_STUDY_RESULTS": str(path)}))
  assert "6 results, 4 runs" in text
  assert "best on scene / accuracy / mean: mtc/uts (0.6200)" in text
  assert "best on speaker_id / accuracy / mean: contrastive/uts" in text
  assert "mean rank 1.50" in text
  assert "random init" in text


def test_compare_objectives_names_missing_columns(tmp_path):
  import nbclient  # pylint: disable=g-import-not-at-top
  path = tmp_path / "results.csv"
  _write(path, ("run", "objective", "value"), [("r1", "mtc", 0.5)])
  with pytest.raises(nbclient.exceptions.CellExecutionError,
                     match="missing columns"):
    _execute("compare_objectives.ipynb", {"AUDIOPT_STUDY_RESULTS": str(path)})
