"""Training metrics: clu writers (TensorBoard + log) and a JSON-lines file.

Only process 0 writes. Each `write` call is one line of
`<workdir>/metrics.jsonl`: {"step": int, "name": value, ...}.
"""

import json
import os
import time
from typing import Mapping

from absl import logging
from clu import metric_writers
import jax
import numpy as np


class MetricsLogger:
  """Writes scalar metrics to TensorBoard, the log and `metrics.jsonl`."""

  def __init__(self, workdir: str, *, total_steps: int):
    self._is_writer = jax.process_index() == 0
    self._writer = metric_writers.create_default_writer(
        workdir, just_logging=not self._is_writer, asynchronous=False)
    self._jsonl = (open(os.path.join(workdir, "metrics.jsonl"), "a")
                   if self._is_writer else None)
    self._total_steps = total_steps
    self._last = None  # (time, step) of the last progress line

  def write(self, step: int, scalars: Mapping[str, float]) -> None:
    """Writes `scalars` (host floats or 0-d arrays) for `step`."""
    values = {k: float(np.asarray(v)) for k, v in scalars.items()}
    self._writer.write_scalars(step, values)
    if self._jsonl is not None:
      self._jsonl.write(json.dumps({"step": step, **values}) + "\n")
      self._jsonl.flush()

  def progress(self, step: int) -> dict[str, float]:
    """Logs steps/s and the estimated time left; returns those numbers."""
    now = time.time()
    out = {}
    if self._last is not None and step > self._last[1]:
      rate = (step - self._last[1]) / max(now - self._last[0], 1e-9)
      left = (self._total_steps - step) / max(rate, 1e-9)
      out = {"steps_per_sec": rate}
      logging.info("step %d/%d  %.2f steps/s  %s left", step,
                   self._total_steps, rate, _format_seconds(left))
    self._last = (now, step)
    return out

  def close(self) -> None:
    """Flushes and closes the writers."""
    self._writer.flush()
    self._writer.close()
    if self._jsonl is not None:
      self._jsonl.close()


def _format_seconds(seconds: float) -> str:
  seconds = int(seconds)
  h, rem = divmod(seconds, 3600)
  m, s = divmod(rem, 60)
  return f"{h}h{m:02d}m{s:02d}s" if h else f"{m}m{s:02d}s"


def read_jsonl(path: str) -> list[dict]:
  """Reads a `metrics.jsonl` file into a list of dicts."""
  with open(path) as f:
    return [json.loads(line) for line in f if line.strip()]
