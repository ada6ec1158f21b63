"""audiopt.models."""
