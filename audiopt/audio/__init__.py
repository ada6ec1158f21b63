"""audiopt.audio."""
