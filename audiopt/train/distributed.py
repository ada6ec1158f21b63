"""Multi-process start-up: `jax.distributed` from flags or the environment.

Called by main.py before any other JAX call. Three ways to describe a job:
  * explicit: AUDIOPT_COORDINATOR=host:port AUDIOPT_NUM_PROCESSES=n
    AUDIOPT_PROCESS_ID=i (the local multi-process launcher and tests);
  * a cluster JAX detects itself (TPU VM pods, SLURM, GKE/JobSet):
    set AUDIOPT_DISTRIBUTED=auto (the launch/ scripts do);
  * neither: a single process, nothing to initialise.
On CPU the cross-process collectives go through gloo.
"""

import os

from absl import logging
import jax


def maybe_initialize() -> bool:
  """Initialises `jax.distributed` when the environment asks for it.

  Returns:
    True if a multi-process runtime was initialised.
  """
  coordinator = os.environ.get("AUDIOPT_COORDINATOR")
  if coordinator:
    num = int(os.environ["AUDIOPT_NUM_PROCESSES"])
    pid = int(os.environ["AUDIOPT_PROCESS_ID"])
    if os.environ.get("JAX_PLATFORMS", "") == "cpu":
      jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(coordinator_address=coordinator,
                               num_processes=num, process_id=pid)
  elif os.environ.get("AUDIOPT_DISTRIBUTED") == "auto":
    jax.distributed.initialize()
  else:
    return False
  logging.info("process %d of %d, %d local / %d global devices",
               jax.process_index(), jax.process_count(),
               jax.local_device_count(), jax.device_count())
  return True
