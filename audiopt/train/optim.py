"""Optimizers and learning-rate schedules from config.

Config section `optimizer`:
  name:           "adamw" | "scaled_adam" (registered in `OPTIMIZERS`)
  learning_rate:  peak learning rate
  schedule:       "warmup_cosine" | "constant" | "warmup_constant" | "eden"
  warmup_steps, end_learning_rate_factor (cosine floor as a fraction of peak)
  eden_*:         Eden schedule (`audiopt.train.eden`); warmup_steps is its
                  warmup_batches
  clipping_scale, scalar_lr_scale, param_min_rms, param_max_rms, scalar_max,
  size_update_period, clipping_update_period: ScaledAdam
                  (`audiopt.train.scaled_adam`)
  b1, b2, eps, weight_decay
  clip_norm:      global-norm gradient clipping (0 disables)
  grad_accum_steps: micro-batches per update (handled by the trainer)
"""

from typing import Callable

import optax

from audiopt.train import eden as eden_lib
from audiopt.train import scaled_adam as scaled_adam_lib


def build_schedule(cfg, num_steps: int) -> optax.Schedule:
  """Returns the learning-rate schedule step -> lr of the `optimizer` section."""
  peak = cfg.learning_rate
  warmup = int(cfg.get("warmup_steps", 0))
  name = cfg.get("schedule", "warmup_cosine")
  if name == "constant":
    return optax.constant_schedule(peak)
  if name == "warmup_constant":
    return optax.join_schedules(
        [optax.linear_schedule(0.0, peak, max(warmup, 1)),
         optax.constant_schedule(peak)], [warmup])
  if name == "warmup_cosine":
    return optax.warmup_cosine_decay_schedule(
        init_value=0.0, peak_value=peak, warmup_steps=warmup,
        decay_steps=max(num_steps, warmup + 1),
        end_value=peak * cfg.get("end_learning_rate_factor", 0.0))
  if name == "eden":
    return eden_lib.eden(
        peak, cfg.get("eden_lr_batches", 7500),
        lr_epochs=cfg.get("eden_lr_epochs", None),
        steps_per_epoch=cfg.get("eden_steps_per_epoch", 0),
        warmup_batches=warmup,
        warmup_start=cfg.get("eden_warmup_start", 0.5))
  raise ValueError(f"config optimizer.schedule={name!r}; valid: "
                   "['constant', 'eden', 'warmup_constant', 'warmup_cosine']")


def _adamw(cfg, schedule: optax.Schedule) -> optax.GradientTransformation:
  return optax.adamw(schedule, b1=cfg.get("b1", 0.9), b2=cfg.get("b2", 0.98),
                     eps=cfg.get("eps", 1e-8),
                     weight_decay=cfg.get("weight_decay", 0.01))


def _scaled_adam(cfg, schedule: optax.Schedule
                 ) -> optax.GradientTransformation:
  if cfg.get("clip_norm", 0.0) > 0:
    raise ValueError(
        f"config optimizer.clip_norm={cfg.clip_norm} would clip before "
        "scaled_adam, which clips by itself (optimizer.clipping_scale); set "
        "optimizer.clip_norm=0")
  clipping_scale = cfg.get("clipping_scale", 2.0)
  return scaled_adam_lib.scaled_adam(
      schedule,
      clipping_scale=clipping_scale if clipping_scale > 0 else None,
      betas=(cfg.get("b1", 0.9), cfg.get("b2", 0.98)),
      scalar_lr_scale=cfg.get("scalar_lr_scale", 0.1),
      eps=cfg.get("eps", 1e-8),
      param_min_rms=cfg.get("param_min_rms", 1e-5),
      param_max_rms=cfg.get("param_max_rms", 3.0),
      scalar_max=cfg.get("scalar_max", 10.0),
      size_update_period=cfg.get("size_update_period", 4),
      clipping_update_period=cfg.get("clipping_update_period", 100))


OPTIMIZERS: dict[str, Callable[..., optax.GradientTransformation]] = {
    "adamw": _adamw,
    "scaled_adam": _scaled_adam,
}


def build_optimizer(cfg, num_steps: int
                    ) -> tuple[optax.GradientTransformation, optax.Schedule]:
  """Builds (optimizer with clipping, schedule) from the `optimizer` section."""
  if cfg.name not in OPTIMIZERS:
    raise ValueError(f"config optimizer.name={cfg.name!r}; valid: "
                     f"{sorted(OPTIMIZERS)}")
  schedule = build_schedule(cfg, num_steps)
  parts = []
  if cfg.get("clip_norm", 0.0) > 0:
    parts.append(optax.clip_by_global_norm(cfg.clip_norm))
  parts.append(OPTIMIZERS[cfg.name](cfg, schedule))
  return optax.chain(*parts), schedule
