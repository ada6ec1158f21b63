"""audiopt: data-centric pre-training of general-purpose audio encoders in JAX."""

__version__ = "0.1.0"


def load_encoder(path: str):
  """Loads an exported encoder (see `audiopt.export.encoder.load_encoder`).

  Args:
    path: a directory written by `python -m audiopt.export`.

  Returns:
    A callable (waveform float32 [B, T] 16 kHz, lengths [B] | None) ->
    (frames [B, T', D], mask [B, T']), free of the training code.
  """
  from audiopt.export import encoder  # pylint: disable=g-import-not-at-top
  return encoder.load_encoder(path)
