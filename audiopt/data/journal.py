"""Append-only JSON-lines journals that make pipeline stages resumable.

Every labelling stage (ingest, caption, tag, vocabulary, records) processes
items with ids and writes one JSON line per item, either to its results file
or to its quarantine file (with the reason). On a restart, ids already in
either file are skipped, so a stage killed at any point and run again ends
with exactly the lines of an uninterrupted run: nothing lost, nothing
duplicated. A line is written with one `write` of the whole line, then
flushed and fsynced; a torn last line left by a kill is cut off on open.

Layout under a stage directory, for shard i of N (N = 1 by default):
  results-0000i-of-0000N.jsonl      {"id": ..., <stage fields>}
  quarantine-0000i-of-0000N.jsonl   {"id": ..., "reason": ..., ...}
"""

import json
import os
from typing import Any, Iterator


def shard_suffix(shard_index: int, num_shards: int) -> str:
  """'-0000i-of-0000N' for shard i of N; raises on a bad pair."""
  if not 0 <= shard_index < num_shards:
    raise ValueError(f"shard index {shard_index} not in [0, {num_shards})")
  return f"-{shard_index:05d}-of-{num_shards:05d}"


def _read(path: str, *, repair: bool = False) -> list[dict[str, Any]]:
  """Reads a journal file, ignoring a torn (unterminated) last line.

  Only the journal's writer repairs (cuts the torn line off the file); a
  reader of another stage's journal may meet a line being written right now.
  """
  if not os.path.exists(path):
    return []
  with open(path, "rb") as f:
    data = f.read()
  end = data.rfind(b"\n") + 1
  if repair and end < len(data):
    with open(path, "r+b") as f:
      f.truncate(end)
  rows = []
  for number, line in enumerate(data[:end].splitlines(), 1):
    if not line.strip():
      continue
    try:
      rows.append(json.loads(line))
    except json.JSONDecodeError as e:
      raise ValueError(f"{path}:{number}: not a JSON line: {e}") from None
  return rows


class Journal:
  """Results and quarantine of one stage (or one shard of it).

  Args:
    directory: the stage directory (created if missing).
    shard_index: this shard, in [0, num_shards).
    num_shards: how many shards split the stage's items.
  """

  def __init__(self, directory: str, shard_index: int = 0,
               num_shards: int = 1):
    os.makedirs(directory, exist_ok=True)
    suffix = shard_suffix(shard_index, num_shards)
    self.directory = directory
    self.results_path = os.path.join(directory, f"results{suffix}.jsonl")
    self.quarantine_path = os.path.join(directory, f"quarantine{suffix}.jsonl")
    self._done: set[str] = set()
    self.num_results = self.num_quarantined = 0
    for row in _read(self.results_path, repair=True):
      self._done.add(str(row["id"]))
      self.num_results += 1
    for row in _read(self.quarantine_path, repair=True):
      self._done.add(str(row["id"]))
      self.num_quarantined += 1
    self.num_resumed = len(self._done)
    self._results = open(self.results_path, "a")
    self._quarantine = open(self.quarantine_path, "a")

  def is_done(self, item_id: str) -> bool:
    """Whether `item_id` already has a result or a quarantine entry."""
    return str(item_id) in self._done

  def _append(self, f, row: dict[str, Any]) -> None:
    f.write(json.dumps(row, ensure_ascii=False) + "\n")
    f.flush()
    os.fsync(f.fileno())
    self._done.add(str(row["id"]))

  def add_result(self, item_id: str, **fields: Any) -> None:
    """Records the result of one item (ignored if the id is done)."""
    if self.is_done(item_id):
      return
    self._append(self._results, {"id": str(item_id), **fields})
    self.num_results += 1

  def quarantine(self, item_id: str, reason: str, **fields: Any) -> None:
    """Records why one item could not be processed (ignored if done)."""
    if self.is_done(item_id):
      return
    self._append(self._quarantine,
                 {"id": str(item_id), "reason": reason, **fields})
    self.num_quarantined += 1

  def summary(self) -> dict[str, int]:
    """Counts: results, quarantined, and items found done when opened."""
    return {"results": self.num_results, "quarantined": self.num_quarantined,
            "resumed": self.num_resumed}

  def close(self) -> None:
    """Closes the files."""
    self._results.close()
    self._quarantine.close()

  def __enter__(self) -> "Journal":
    return self

  def __exit__(self, *exc) -> None:
    self.close()


def read_results(directory: str) -> Iterator[dict[str, Any]]:
  """Yields the result rows of every shard of a stage directory, in order."""
  for name in sorted(os.listdir(directory)):
    if name.startswith("results") and name.endswith(".jsonl"):
      yield from _read(os.path.join(directory, name))


def read_quarantine(directory: str) -> Iterator[dict[str, Any]]:
  """Yields the quarantine rows of every shard of a stage directory."""
  for name in sorted(os.listdir(directory)):
    if name.startswith("quarantine") and name.endswith(".jsonl"):
      yield from _read(os.path.join(directory, name))
