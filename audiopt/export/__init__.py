"""audiopt.export."""
