"""audiopt.labels."""
