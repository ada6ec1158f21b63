"""The Zipformer authors' Eden learning-rate schedules, as optax schedules.

With b the reference's batch index (its `global_step`, 1 on the first update)
and warm(b) = 1 if b >= warmup_batches else
warmup_start + (1 - warmup_start) * b / warmup_batches:

  Eden2  lr = base * ((b^2 + B^2) / B^2) ^ -1/2 * warm(b)
  Eden3  lr = base * ((b^2 + B^2) (b^2 + B2^2) / (B^2 B2^2)) ^ -1/4 * warm(b)

where B = lr_batches and B2 = lr_epochs * steps_per_epoch. The reference
trainer picks Eden3 when steps_per_epoch > 0 and Eden2 otherwise (see
reference/ZIPFORMER.md section 9); so does `eden`. The epoch-based `Eden` is
not provided: its epoch factor needs an epoch counter the trainer does not
have.

optax calls a schedule with the count of updates already applied (0 on the
first update), while the reference increments `global_step` before its first
update. `eden(...)(count)` is therefore the reference lr of batch
count + first_batch, first_batch = 1 by default.
"""

import jax.numpy as jnp
import optax


def eden(base_lr: float,
         lr_batches: float,
         lr_epochs: float | None = None,
         steps_per_epoch: int | None = None,
         warmup_batches: float = 500,
         warmup_start: float = 0.5,
         first_batch: int = 1) -> optax.Schedule:
  """Returns the Eden2 or Eden3 schedule count -> lr.

  Args:
    base_lr: the peak learning rate (the reference uses 0.045).
    lr_batches: B, the batch count at which the first decay factor is
      2^-1/2 (Eden2) or 2^-1/4 (Eden3).
    lr_epochs: epochs of the second decay of Eden3 (B2 = lr_epochs *
      steps_per_epoch); needed when steps_per_epoch > 0.
    steps_per_epoch: > 0 selects Eden3; None or 0 selects Eden2.
    warmup_batches: length of the linear warm-up; 0 disables it.
    warmup_start: the warm-up factor at batch 0.
    first_batch: the reference batch index of optax count 0.

  Returns:
    A schedule mapping an integer count (scalar, traceable) to a scalar lr
    in the default float dtype.

  Raises:
    ValueError: on non-positive lr_batches, or Eden3 without lr_epochs > 0.
  """
  if lr_batches <= 0:
    raise ValueError(f"eden lr_batches must be > 0, got {lr_batches}")
  eden3 = bool(steps_per_epoch) and steps_per_epoch > 0
  if eden3 and not (lr_epochs and lr_epochs > 0):
    raise ValueError(f"eden with steps_per_epoch={steps_per_epoch} (Eden3) "
                     f"needs lr_epochs > 0, got {lr_epochs}")
  lr_batches2 = float(lr_epochs) * steps_per_epoch if eden3 else None

  def schedule(count):
    b = jnp.asarray(count + first_batch, dtype=jnp.result_type(float))
    if eden3:
      factor = (((b**2 + lr_batches**2) * (b**2 + lr_batches2**2)) /
                (lr_batches**2 * lr_batches2**2)) ** -0.25
    else:
      factor = ((b**2 + lr_batches**2) / lr_batches**2) ** -0.5
    if warmup_batches > 0:
      warm = jnp.where(
          b >= warmup_batches, 1.0,
          warmup_start + (1.0 - warmup_start) * (b / warmup_batches))
      factor = factor * warm
    return base_lr * factor

  return schedule
