"""audiopt.evaluate."""
