"""The one output contract every encoder honours."""

import flax.struct
import jax


@flax.struct.dataclass
class EncoderOutput:
  """Frames of an encoder and their validity mask.

  Attributes:
    frames: [B, T', D] output frames at the encoder's `hop_ms`.
    mask: [B, T'] bool, True where a frame covers real (unpadded) audio.
    intermediates: name -> [B, T', D_i] frames of named inner layers
      (for example "layer_3"), at the same hop as `frames`, so evaluators
      can probe any layer.
  """

  frames: jax.Array
  mask: jax.Array
  intermediates: dict[str, jax.Array]
