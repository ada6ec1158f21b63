"""audiopt.data."""
