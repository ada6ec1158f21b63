"""Pre-training objectives; importing this package registers all of them."""

# Each import registers its objective names (see base.register_objective).
from audiopt.objectives import captioning  # noqa: F401  ("captioning")
from audiopt.objectives import contrastive  # noqa: F401  (+ "siglip")
from audiopt.objectives import masked  # noqa: F401  ("masked")
from audiopt.objectives import mtc  # noqa: F401  ("mtc")
from audiopt.objectives import multitask  # noqa: F401  ("multitask")
from audiopt.objectives import par  # noqa: F401  ("par")
from audiopt.objectives.base import (DatasetInfo, Objective, build_objective,
                                     list_objectives, register_objective)
