"""Pre-training objectives; importing this package registers all of them."""

from audiopt.objectives import mtc  # noqa: F401  (registers "mtc")
from audiopt.objectives.base import (DatasetInfo, Objective, build_objective,
                                     list_objectives, register_objective)
