"""Orbax checkpoints that describe themselves.

A checkpoint step directory holds three items:
  state     the train state (step, params, optimizer state), sharded arrays
  data_iter the Grain iterator state, one file per process
  metadata  JSON: the config, the vocabularies and the front end settings,
            so a notebook can rebuild the model from the checkpoint alone

Once Orbax has committed a step, `Checkpointer` writes CHECKSUMS into it:
the SHA-256 of every file of the step, hashed in a background thread so
that training does not wait on reading back a large checkpoint.
`latest_step` verifies the newest steps against it and moves a step whose
files are missing, truncated or garbled to `<step>.corrupt-<n>` (logged), so
a run resumes from the previous complete checkpoint. Orbax never lists its
temporary directories, so a save killed midway is skipped too.
"""

import hashlib
import json
import os
import threading
from typing import Any

from absl import logging
import grain
import jax
import orbax.checkpoint as ocp

from audiopt import atomic_files

STATE, DATA_ITER, METADATA = "state", "data_iter", "metadata"
CHECKSUMS = "audiopt_checksums.json"


def _file_digests(step_dir: str) -> dict[str, str]:
  """{path relative to step_dir: sha256 hex} of its files but CHECKSUMS*."""
  digests = {}
  for root, _, files in os.walk(step_dir):
    for name in files:
      path = os.path.join(root, name)
      rel = os.path.relpath(path, step_dir)
      if rel.startswith(CHECKSUMS):  # the list and its temporaries
        continue
      h = hashlib.sha256()
      with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):  # noqa: B023
          h.update(chunk)
      digests[rel] = h.hexdigest()
  return digests


def write_checksums(step_dir: str) -> None:
  """Writes CHECKSUMS of a committed step directory (atomically)."""
  atomic_files.write_json_atomic(os.path.join(step_dir, CHECKSUMS),
                                 _file_digests(step_dir), indent=0,
                                 sort_keys=True)


def verify_checksums(step_dir: str) -> str | None:
  """Checks a step directory against its CHECKSUMS.

  Returns:
    None when every listed file is present with its digest (or the step has
    no CHECKSUMS: written before this check existed, or killed between the
    commit and the checksums, both complete by Orbax's commit marker);
    otherwise a message naming the first bad file.
  """
  path = os.path.join(step_dir, CHECKSUMS)
  if not os.path.exists(path):
    return None
  try:
    with open(path) as f:
      expected = json.load(f)
  except (OSError, ValueError) as e:
    return f"{path} unreadable: {e}"
  actual = _file_digests(step_dir)
  for rel, digest in sorted(expected.items()):
    if rel not in actual:
      return f"{os.path.join(step_dir, rel)} is missing"
    if actual[rel] != digest:
      return f"{os.path.join(step_dir, rel)} does not match its checksum"
  return None


def _checksum_steps(step_dirs: list[str]) -> None:
  """`write_checksums` of each step directory still there."""
  for step_dir in step_dirs:
    try:
      write_checksums(step_dir)
    except FileNotFoundError:  # removed meanwhile (max_to_keep)
      logging.info("checkpoint: %s went away before its checksums", step_dir)


class Checkpointer:
  """Saves and restores train state, iterator state and metadata.

  Args:
    directory: where step directories are written (created if missing).
    save_every: save when `step % save_every == 0` (plus forced saves).
    keep: how many most recent checkpoints to keep.
    use_async: write in a background thread while training goes on.
  """

  def __init__(self, directory: str, *, save_every: int, keep: int = 3,
               use_async: bool = True):
    self.directory = os.path.abspath(directory)
    every = max(save_every, 1)
    options = ocp.CheckpointManagerOptions(
        max_to_keep=keep, enable_async_checkpointing=use_async, create=True,
        # Only multiples of `every` (Orbax would also save the first step).
        should_save_fn=lambda step, last_saved: step % every == 0)
    self._manager = ocp.CheckpointManager(
        self.directory, item_names=(STATE, DATA_ITER, METADATA),
        options=options)
    self._hasher: threading.Thread | None = None

  def _step_dir(self, step: int) -> str:
    return os.path.join(self.directory, str(step))

  def _write_pending_checksums(self, *, background: bool) -> None:
    """Writes CHECKSUMS into committed steps that lack them (process 0).

    With `background`, hashes in a thread unless one is still running (the
    next call picks up what it has not done); otherwise first joins that
    thread and hashes here.
    """
    if jax.process_index() != 0 or self._manager.is_saving_in_progress():
      return
    if self._hasher is not None:
      if background and self._hasher.is_alive():
        return
      self._hasher.join()
      self._hasher = None
    pending = [self._step_dir(s) for s in self._manager.all_steps()
               if not os.path.exists(os.path.join(self._step_dir(s),
                                                  CHECKSUMS))]
    if not pending:
      return
    if background:
      self._hasher = threading.Thread(target=_checksum_steps, args=(pending,),
                                      name="audiopt-checksums", daemon=True)
      self._hasher.start()
    else:
      _checksum_steps(pending)

  def latest_step(self) -> int | None:
    """Returns the newest verified complete checkpoint's step, or None.

    Newer steps that fail `verify_checksums` are logged and moved aside to
    `<step>.corrupt-<n>` (process 0), so the run resumes from the previous
    one and may save that step again.
    """
    found, moved = None, False
    for step in sorted(self._manager.all_steps(), reverse=True):
      problem = verify_checksums(self._step_dir(step))
      if problem is None:
        found = step
        break
      logging.error("checkpoint: step %d is corrupt (%s); skipping it",
                    step, problem)
      if jax.process_index() == 0:
        n = 0
        while os.path.exists(f"{self._step_dir(step)}.corrupt-{n}"):
          n += 1
        os.rename(self._step_dir(step), f"{self._step_dir(step)}.corrupt-{n}")
        moved = True
    if moved:
      self._manager.reload()
    return found

  def all_steps(self) -> list[int]:
    """Returns the steps of all complete checkpoints, oldest first."""
    return sorted(self._manager.all_steps())

  def save(self, step: int, state: Any, data_iter: grain.DatasetIterator | None,
           metadata: dict[str, Any], *, force: bool = False) -> bool:
    """Saves at `step` if due (or `force`); returns whether a save started."""
    self._write_pending_checksums(background=True)
    items = {STATE: ocp.args.StandardSave(state),
             METADATA: ocp.args.JsonSave(metadata)}
    if data_iter is not None:
      items[DATA_ITER] = grain.checkpoint.CheckpointSave(data_iter)
    saved = self._manager.save(step, args=ocp.args.Composite(**items),
                               force=force)
    if saved:
      logging.info("checkpoint: saving step %d to %s", step, self.directory)
    return saved

  def restore(self, step: int, abstract_state: Any,
              data_iter: grain.DatasetIterator | None) -> Any:
    """Restores step `step`.

    Args:
      step: a step from `all_steps()`.
      abstract_state: pytree of jax.ShapeDtypeStruct with the target shardings
        (the current mesh may differ from the one that saved).
      data_iter: restored in place when given.

    Returns:
      The train state, laid out as `abstract_state` says.
    """
    items = {STATE: ocp.args.StandardRestore(abstract_state)}
    if data_iter is not None:
      items[DATA_ITER] = grain.checkpoint.CheckpointRestore(data_iter)
    restored = self._manager.restore(step, args=ocp.args.Composite(**items))
    logging.info("checkpoint: restored step %d from %s", step, self.directory)
    return restored[STATE]

  def wait(self) -> None:
    """Blocks until asynchronous saves have finished and are checksummed."""
    self._manager.wait_until_finished()
    self._write_pending_checksums(background=False)

  def close(self) -> None:
    """Finishes pending saves, checksums them and releases the manager."""
    self.wait()
    self._manager.close()


def read_metadata(checkpoint_dir: str, step: int | None = None
                  ) -> tuple[int, dict[str, Any]]:
  """Reads the metadata JSON of a checkpoint without touching any device.

  Args:
    checkpoint_dir: the run's checkpoint directory (`<workdir>/checkpoints`).
    step: which step; the newest one when None.

  Returns:
    (step, metadata dict).
  """
  steps = sorted(int(d) for d in os.listdir(checkpoint_dir) if d.isdigit())
  if not steps:
    raise FileNotFoundError(f"no checkpoint steps under {checkpoint_dir}")
  step = steps[-1] if step is None else step
  step_dir = os.path.join(checkpoint_dir, str(step), METADATA)
  names = [n for n in os.listdir(step_dir) if not n.startswith("_")]
  if not names:
    raise FileNotFoundError(f"checkpoint metadata missing in {step_dir}")
  with open(os.path.join(step_dir, names[0])) as f:
    return step, json.load(f)


def abstract_like(tree: Any) -> Any:
  """ShapeDtypeStructs (with shardings) of the arrays of `tree`."""
  return jax.tree.map(
      lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding),
      tree)
