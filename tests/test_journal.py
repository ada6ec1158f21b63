"""Resumable stage journals: no loss, no duplicates, torn lines repaired."""

import signal
import subprocess
import sys
import time

import pytest

from audiopt.data import journal


def test_resume_skips_done_and_quarantined(tmp_path):
  with journal.Journal(str(tmp_path)) as j:
    j.add_result("a", caption="x")
    j.quarantine("b", "unreadable")
  with journal.Journal(str(tmp_path)) as j:
    assert j.is_done("a") and j.is_done("b") and not j.is_done("c")
    j.add_result("a", caption="again")  # ignored: already done
    j.add_result("c", caption="y")
    assert j.summary() == {"results": 2, "quarantined": 1, "resumed": 2}
  rows = list(journal.read_results(str(tmp_path)))
  assert [r["id"] for r in rows] == ["a", "c"]
  assert list(journal.read_quarantine(str(tmp_path)))[0]["reason"] == \
      "unreadable"


def test_torn_last_line_is_cut(tmp_path):
  with journal.Journal(str(tmp_path)) as j:
    j.add_result("a")
  path = j.results_path
  with open(path, "a") as f:
    f.write('{"id": "b", "cap')  # killed mid-write
  with journal.Journal(str(tmp_path)) as j:
    assert not j.is_done("b")
    j.add_result("b")
  assert [r["id"] for r in journal.read_results(str(tmp_path))] == ["a", "b"]


def test_bad_shard_pair():
  with pytest.raises(ValueError, match="shard index 3"):
    journal.shard_suffix(3, 2)


_WRITER = """
import sys, time
from audiopt.data import journal
with journal.Journal(sys.argv[1]) as j:
  for i in range(400):
    if not j.is_done(str(i)):
      j.add_result(str(i), text="x" * (i % 50))
      time.sleep(0.001)
"""


def test_sigkill_in_a_loop_loses_and_duplicates_nothing(tmp_path):
  for trial in range(20):
    proc = subprocess.Popen([sys.executable, "-c", _WRITER, str(tmp_path)])
    time.sleep(0.15 + 0.05 * (trial % 5))
    proc.send_signal(signal.SIGKILL)
    proc.wait()
  subprocess.run([sys.executable, "-c", _WRITER, str(tmp_path)], check=True)
  ids = [r["id"] for r in journal.read_results(str(tmp_path))]
  assert sorted(ids, key=int) == [str(i) for i in range(400)]
  assert len(ids) == len(set(ids))
