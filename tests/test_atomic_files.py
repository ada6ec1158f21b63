"""Tests of the atomic file writers every stage's outputs go through."""

import json
import os

import pytest

from audiopt import atomic_files


def test_write_json_then_text_then_bytes(tmp_path):
  path = str(tmp_path / "out.json")
  atomic_files.write_json_atomic(path, {"b": "é", "a": [1]}, indent=1,
                                 sort_keys=True)
  with open(path, encoding="utf-8") as f:
    text = f.read()
  assert text == '{\n "a": [\n  1\n ],\n "b": "é"\n}'  # UTF-8, not \\u00e9
  assert json.loads(text) == {"a": [1], "b": "é"}
  atomic_files.write_atomic(path, "replaced")
  assert open(path, encoding="utf-8").read() == "replaced"
  atomic_files.write_atomic(path, b"\x00\x01")
  assert open(path, "rb").read() == b"\x00\x01"
  assert os.listdir(tmp_path) == ["out.json"]


def test_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path):
  path = str(tmp_path / "plot.png")
  atomic_files.write_atomic(path, "old")
  with pytest.raises(RuntimeError, match="renderer died"):
    with atomic_files.atomic_path(path) as tmp:
      with open(tmp, "w") as f:
        f.write("half")
      raise RuntimeError("renderer died")
  assert open(path).read() == "old"
  assert os.listdir(tmp_path) == ["plot.png"]
  with pytest.raises(TypeError):  # nothing to serialise: nothing written
    atomic_files.write_json_atomic(path, {"x": object()})
  assert open(path).read() == "old"


def test_temporary_name_hides_the_extension(tmp_path):
  # Readers that pick `results*.jsonl` must never take a half-written file.
  name = os.path.basename(
      atomic_files.temporary_name(str(tmp_path / "results-00000.jsonl")))
  assert name.startswith("results-00000.jsonl" + atomic_files.TEMP_MARK)
  assert not name.endswith(".jsonl") and str(os.getpid()) in name
  with atomic_files.atomic_path(str(tmp_path / "results-00000.jsonl")) as tmp:
    assert os.path.basename(tmp) == name
    open(tmp, "w").close()
  assert os.listdir(tmp_path) == ["results-00000.jsonl"]


def test_remove_temporaries_of_a_killed_writer(tmp_path):
  for name in ("summary.json.tmp-11-12", "summary-00001-of-00002.json.tmp-3-4",
               "summary.json", "label_4.json.tmp-5-6", "notes.tmpl"):
    (tmp_path / name).write_text("x")
  assert atomic_files.remove_temporaries(str(tmp_path), "summary.json") == [
      "summary.json.tmp-11-12"]
  assert atomic_files.remove_temporaries(str(tmp_path)) == [
      "label_4.json.tmp-5-6", "summary-00001-of-00002.json.tmp-3-4"]
  assert sorted(os.listdir(tmp_path)) == ["notes.tmpl", "summary.json"]
  assert atomic_files.remove_temporaries(str(tmp_path / "missing")) == []


def test_write_json_can_remove_its_own_stale_temporaries(tmp_path):
  (tmp_path / "summary.json.tmp-11-12").write_text("{")
  (tmp_path / "summary-00000-of-00002.json.tmp-1-1").write_text("{")
  atomic_files.write_json_atomic(str(tmp_path / "summary.json"), {"n": 1},
                                 remove_stale=True)
  assert sorted(os.listdir(tmp_path)) == [
      "summary-00000-of-00002.json.tmp-1-1", "summary.json"]
