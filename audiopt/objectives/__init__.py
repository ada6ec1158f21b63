"""audiopt.objectives."""
