"""Orbax checkpoints that describe themselves.

A checkpoint step directory holds three items:
  state     the train state (step, params, optimizer state), sharded arrays
  data_iter the Grain iterator state, one file per process
  metadata  JSON: the config, the vocabularies and the front end settings,
            so a notebook can rebuild the model from the checkpoint alone
"""

import json
import os
from typing import Any

from absl import logging
import grain
import jax
import orbax.checkpoint as ocp

STATE, DATA_ITER, METADATA = "state", "data_iter", "metadata"


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

  def latest_step(self) -> int | None:
    """Returns the newest complete checkpoint's step, or None."""
    return self._manager.latest_step()

  def all_steps(self) -> list[int]:
    """Returns the steps of all complete checkpoints, oldest first."""
    return sorted(self._manager.all_steps())

  def save(self, step: int, state: Any, data_iter: grain.DatasetIterator | None,
           metadata: dict[str, Any], *, force: bool = False) -> bool:
    """Saves at `step` if due (or `force`); returns whether a save started."""
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
    """Blocks until asynchronous saves have finished."""
    self._manager.wait_until_finished()

  def close(self) -> None:
    """Finishes pending saves and releases the manager."""
    self._manager.wait_until_finished()
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
