"""audiopt: data-centric pre-training of general-purpose audio encoders in JAX."""

__version__ = "0.1.0"
