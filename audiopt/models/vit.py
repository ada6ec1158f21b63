"""ViT/AST-style patch encoder over the log-mel spectrogram.

features [B, T, F] -> normalise with fixed statistics -> zero padded frames
-> non-overlapping (patch_time x patch_freq) patches -> linear patch embedding
-> + learned time position (per time patch) + learned frequency position (per
frequency patch) -> pre-LN transformer blocks over all T' x F' patches
(`transformer.TransformerBlock`) -> mean over the F' frequency patches of each
time step -> LayerNorm -> frames [B, T', D].

Choices:
  * Output frames: the patches of one time step are merged by their mean
    (then the final LayerNorm), not by concatenation + linear, so the head
    adds no parameters and does not depend on the mel count. Intermediates
    are the frequency means of each block's output, at the same hop.
  * Time: T' = ceil(T / patch_time) and hop_ms = 10 * patch_time (160 ms by
    default). The time table covers `max_seconds` (60 s) of audio.
  * Mask: a time patch is valid iff its first input frame is valid. Padded
    input frames are zeroed (the normalised mean level) before patching, and
    attention keys of invalid patches are masked, so padding never changes
    valid frames, even the last patch's, which may reach into the padding.
"""

import math
from typing import Any, ClassVar

import flax.linen as nn
import jax
import jax.numpy as jnp

from audiopt.models import layers
from audiopt.models import registry
from audiopt.models import transformer
from audiopt.models.outputs import EncoderOutput

Dtype = Any

FRAME_MS = 10.0  # Hop of the input log-mel frames.

# ViT-S/B/L widths and depths; with 80 mel bins s/b/l have 21.5M/85.5M/303.0M
# parameters.
SIZES: dict[str, dict[str, Any]] = {
    "tiny": dict(num_layers=2, width=64, num_heads=4, mlp_dim=256),
    "s": dict(num_layers=12, width=384, num_heads=6, mlp_dim=1536),
    "b": dict(num_layers=12, width=768, num_heads=12, mlp_dim=3072),
    "l": dict(num_layers=24, width=1024, num_heads=16, mlp_dim=4096),
}


def num_time_patches(frames: Any, patch_time: int) -> Any:
  """Time patches (= output frames) of `frames` input frames: ceil(T / p)."""
  return -(-frames // patch_time)


@registry.register_encoder("vit")
class VitEncoder(nn.Module):
  """Patch transformer over log-mel frames; hop 10 ms x patch_time.

  Attributes:
    num_layers: number of blocks L.
    width: model width D (= output_dim).
    num_heads: attention heads (must divide width).
    mlp_dim: MLP hidden width.
    patch_time: frames per patch, also the time stride.
    patch_freq: mel bins per patch; must divide the mel count F.
    max_seconds: longest input the time position table covers.
    feature_mean: subtracted from the log-mel input (AST's AudioSet mean).
    feature_std: the input is divided by it after the mean (AST's std).
    dropout_rate: dropout after positions, on residual branches and in MLPs.
    attention_dropout_rate: dropout on attention weights.
    dtype: compute dtype ("float32" or "bfloat16" via the registry);
      `frames` and `intermediates` come out in this dtype. Parameters,
      LayerNorm statistics and softmax stay in float32.
    param_dtype: parameter dtype.
    remat: rematerialise each block in the backward pass.
    remat_policy: name of a `jax.checkpoint_policies` entry.
    scan_layers: run blocks with `nn.scan`; parameters are then stacked under
      "layers" with a leading [L] axis named "layers", and `intermediates`
      holds only the last block's output.
    attention_impl: "xla" or "cudnn" (fused flash attention on GPU, for
      bfloat16 without attention dropout); see
      `layers.MultiHeadSelfAttention`.
  """

  num_layers: int
  width: int
  num_heads: int
  mlp_dim: int
  patch_time: int = 16
  patch_freq: int = 16
  max_seconds: float = 60.0
  feature_mean: float = -4.27
  feature_std: float = 4.57
  dropout_rate: float = 0.1
  attention_dropout_rate: float = 0.0
  dtype: Dtype = jnp.float32
  param_dtype: Dtype = jnp.float32
  remat: bool = False
  remat_policy: str = "dots_with_no_batch_dims_saveable"
  scan_layers: bool = False
  attention_impl: str = "xla"

  SIZES: ClassVar[dict[str, dict[str, Any]]] = SIZES

  @property
  def hop_ms(self) -> float:
    """Time between output frames: one time patch."""
    return FRAME_MS * self.patch_time

  @property
  def output_dim(self) -> int:
    """Feature size D of `frames`."""
    return self.width

  @property
  def max_time_patches(self) -> int:
    """Length of the learned time position table."""
    return math.ceil(self.max_seconds * 1000.0 / self.hop_ms)

  def _block_class(self) -> type[nn.Module]:
    # pylint: disable-next=protected-access
    block = (transformer._ScanBlock if self.scan_layers
             else transformer.TransformerBlock)
    if not self.remat:
      return block
    policy = getattr(jax.checkpoint_policies, self.remat_policy, None)
    if policy is None:
      raise ValueError(f"unknown remat_policy {self.remat_policy!r}")
    # `train` is a Python bool: static. Linen counts `self` as argument 0.
    return nn.remat(block, policy=policy, prevent_cse=not self.scan_layers,
                    static_argnums=(3,))

  def _patches(self, features: jax.Array, mask: jax.Array
               ) -> tuple[jax.Array, jax.Array]:
    """[B, T, F] -> patches [B, T', F', pt, pf] and time-patch mask [B, T']."""
    b, t, f = features.shape
    pt, pf = self.patch_time, self.patch_freq
    if f % pf:
      raise ValueError(f"patch_freq {pf} does not divide {f} mel bins")
    t_out = num_time_patches(t, pt)
    if t_out > self.max_time_patches:
      raise ValueError(
          f"{t} frames make {t_out} time patches; the position table holds "
          f"{self.max_time_patches} ({self.max_seconds} s). Raise max_seconds")
    x = (features.astype(jnp.float32) - self.feature_mean) / self.feature_std
    x = jnp.where(mask[..., None], x, 0.0)
    pad = t_out * pt - t
    x = jnp.pad(x, ((0, 0), (0, pad), (0, 0)))
    mask = jnp.pad(mask, ((0, 0), (0, pad)))
    x = x.reshape(b, t_out, pt, f // pf, pf).transpose(0, 1, 3, 2, 4)
    return x, mask[:, ::pt]

  @nn.compact
  def __call__(self, features: jax.Array, mask: jax.Array,
               train: bool = False) -> EncoderOutput:
    """Encodes log-mel frames.

    Args:
      features: [B, T, F] float32 log-mel frames at 10 ms; F divisible by
        patch_freq, ceil(T / patch_time) <= max_time_patches.
      mask: [B, T] bool, True on valid frames.
      train: enables dropout (rng "dropout").

    Returns:
      EncoderOutput with frames [B, T', D] (frequency mean, then LayerNorm),
      mask [B, T'] with T' = ceil(T / patch_time), and intermediates
      {"layer_i": [B, T', D]} holding the frequency mean of block i's output
      (0-based) for every block, or only i = L - 1 when scan_layers. Invalid
      frames are zero.
    """
    kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
    patches, mask = self._patches(features, mask)
    b, t, nf = patches.shape[:3]
    x = layers.DenseGeneral(self.width, (None, None, "embed"), axis=(-2, -1),
                            name="patch_embed", **kw)(patches)
    pos_init = nn.initializers.normal(stddev=0.02)
    time_pos = self.param(
        "time_pos", nn.with_logical_partitioning(pos_init, (None, "embed")),
        (self.max_time_patches, self.width), self.param_dtype)
    freq_pos = self.param(
        "freq_pos", nn.with_logical_partitioning(pos_init, (None, "embed")),
        (nf, self.width), self.param_dtype)
    x = (x + time_pos[:t, None, :].astype(x.dtype) +
         freq_pos[None, :, :].astype(x.dtype))
    # Tokens in time-major order: the F' patches of a time step are adjacent.
    x = x.reshape(b, t * nf, self.width)
    x = nn.with_logical_constraint(x, layers.BATCH_TIME_EMBED)
    token_mask = jnp.repeat(mask, nf, axis=1)
    x = nn.Dropout(self.dropout_rate)(x, deterministic=not train)

    def merge(y):
      y = y.reshape(b, t, nf, self.width).astype(jnp.float32).mean(axis=2)
      return nn.with_logical_constraint(y.astype(self.dtype),
                                        layers.BATCH_TIME_EMBED)

    keep = lambda y: jnp.where(mask[..., None], y, jnp.zeros((), y.dtype))
    block_kw = dict(num_heads=self.num_heads, mlp_dim=self.mlp_dim,
                    dropout_rate=self.dropout_rate,
                    attention_dropout_rate=self.attention_dropout_rate,
                    attention_impl=self.attention_impl, **kw)
    block_cls = self._block_class()
    intermediates = {}
    if self.scan_layers:
      stack = nn.scan(
          block_cls, variable_axes={"params": 0},
          split_rngs={"params": True, "dropout": True},
          in_axes=(nn.broadcast, nn.broadcast), length=self.num_layers,
          metadata_params={nn.PARTITION_NAME: "layers"})
      x, _ = stack(name="layers", **block_kw)(x, token_mask, train)
      intermediates[f"layer_{self.num_layers - 1}"] = keep(merge(x))
    else:
      for i in range(self.num_layers):
        x = block_cls(name=f"layer_{i}", **block_kw)(x, token_mask, train)
        intermediates[f"layer_{i}"] = keep(merge(x))
    frames = layers.LayerNorm(name="norm_out", **kw)(merge(x))
    return EncoderOutput(frames=keep(frames), mask=mask,
                         intermediates=intermediates)
