"""audiopt.train."""
