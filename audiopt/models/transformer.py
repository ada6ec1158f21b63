"""Plain pre-LayerNorm transformer encoder over Conv2d-subsampled fbank frames.

features [B, T, F] -> Conv2dSubsampling (x4, 40 ms hop) -> + sinusoidal
absolute positions -> num_layers x [x + MHSA(LN(x)); x + MLP(LN(x))] -> LN.

Sinusoidal positions are used because clips run from 1 to 60 s: a fixed table
extends to any length and adds no parameters.
"""

from typing import Any, ClassVar

import flax.linen as nn
import jax
import jax.numpy as jnp

from audiopt.models import layers
from audiopt.models import registry
from audiopt.models import subsampling
from audiopt.models.outputs import EncoderOutput

Dtype = Any

# Named size presets; "base" with 80 mel bins has 89.4M parameters.
SIZES: dict[str, dict[str, Any]] = {
    "tiny": dict(num_layers=2, width=64, num_heads=4, mlp_dim=256,
                 conv_channels=32),
    # Laptop-CPU size of the embedded demo (about 1.5M parameters).
    "mini": dict(num_layers=4, width=160, num_heads=4, mlp_dim=640,
                 conv_channels=32),
    "small": dict(num_layers=12, width=384, num_heads=6, mlp_dim=1536,
                  conv_channels=256),
    "base": dict(num_layers=12, width=768, num_heads=12, mlp_dim=3072,
                 conv_channels=256),
}


class TransformerBlock(nn.Module):
  """One pre-LN block: x + Drop(MHSA(LN(x))), then x + Drop(MLP(LN(x))).

  Attributes:
    num_heads: attention heads.
    mlp_dim: hidden width of the MLP.
    dropout_rate: dropout on both residual branches and inside the MLP.
    attention_dropout_rate: dropout on attention weights.
    dtype: compute dtype.
    param_dtype: parameter dtype.
    attention_impl: `layers.MultiHeadSelfAttention.attention_impl`.
  """

  num_heads: int
  mlp_dim: int
  dropout_rate: float = 0.0
  attention_dropout_rate: float = 0.0
  dtype: Dtype = jnp.float32
  param_dtype: Dtype = jnp.float32
  attention_impl: str = "xla"

  @nn.compact
  def __call__(self, x: jax.Array, mask: jax.Array,
               train: bool = False) -> jax.Array:
    """Maps x [B, T, D] with key mask [B, T] to [B, T, D] in `dtype`."""
    kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
    h = layers.LayerNorm(name="norm_attn", **kw)(x)
    h = layers.MultiHeadSelfAttention(
        self.num_heads, dropout_rate=self.attention_dropout_rate,
        attention_impl=self.attention_impl, name="attn", **kw)(h, mask, train)
    x = x + nn.Dropout(self.dropout_rate)(h, deterministic=not train)
    h = layers.LayerNorm(name="norm_mlp", **kw)(x)
    h = layers.Mlp(self.mlp_dim, dropout_rate=self.dropout_rate, name="mlp",
                   **kw)(h, train)
    x = x + nn.Dropout(self.dropout_rate)(h, deterministic=not train)
    return nn.with_logical_constraint(x, layers.BATCH_TIME_EMBED)


class _ScanBlock(TransformerBlock):
  """`TransformerBlock` with the (carry, output) signature `nn.scan` wants."""

  @nn.compact
  def __call__(self, x: jax.Array, mask: jax.Array,
               train: bool = False) -> tuple[jax.Array, None]:
    return super().__call__(x, mask, train), None


@registry.register_encoder("transformer")
class TransformerEncoder(nn.Module):
  """Conv2d-subsampling front + pre-LN transformer; 40 ms output hop.

  Attributes:
    num_layers: number of blocks L.
    width: model width D (= output_dim).
    num_heads: attention heads (must divide width).
    mlp_dim: MLP hidden width.
    dropout_rate: dropout after positions, on residual branches and in MLPs.
    attention_dropout_rate: dropout on attention weights.
    conv_channels: channels of the two subsampling convolutions.
    dtype: compute dtype ("float32" or "bfloat16" via the registry);
      `frames` and `intermediates` come out in this dtype. Parameters,
      LayerNorm statistics and softmax stay in float32.
    param_dtype: parameter dtype.
    remat: rematerialise each block in the backward pass.
    remat_policy: name of a `jax.checkpoint_policies` entry: what a remat
      block keeps. The default keeps weight matmul outputs and recomputes
      attention and elementwise ops; "nothing_saveable" saves most memory.
    scan_layers: run blocks with `nn.scan`; parameters are then stacked under
      "layers" with a leading [L] axis named "layers", and `intermediates`
      holds only the last block's output.
  """

  num_layers: int
  width: int
  num_heads: int
  mlp_dim: int
  dropout_rate: float = 0.1
  attention_dropout_rate: float = 0.0
  conv_channels: int = 256
  dtype: Dtype = jnp.float32
  param_dtype: Dtype = jnp.float32
  remat: bool = False
  remat_policy: str = "dots_with_no_batch_dims_saveable"
  scan_layers: bool = False
  attention_impl: str = "xla"

  hop_ms: ClassVar[float] = 40.0
  SIZES: ClassVar[dict[str, dict[str, Any]]] = SIZES

  @property
  def output_dim(self) -> int:
    """Feature size D of `frames`."""
    return self.width

  def _block_class(self) -> type[nn.Module]:
    block = _ScanBlock if self.scan_layers else TransformerBlock
    if not self.remat:
      return block
    policy = getattr(jax.checkpoint_policies, self.remat_policy, None)
    if policy is None:
      raise ValueError(f"unknown remat_policy {self.remat_policy!r}")
    # `train` is a Python bool: static. Linen counts `self` as argument 0.
    return nn.remat(block, policy=policy, prevent_cse=not self.scan_layers,
                    static_argnums=(3,))

  @nn.compact
  def __call__(self, features: jax.Array, mask: jax.Array,
               train: bool = False) -> EncoderOutput:
    """Encodes log-mel frames.

    Args:
      features: [B, T, F] float32 log-mel frames at 10 ms, T >= 7.
      mask: [B, T] bool, True on valid frames (padding at the end).
      train: enables dropout (rng "dropout").

    Returns:
      EncoderOutput with frames [B, T', D] (final LayerNorm), mask [B, T']
      with T' = ((T - 1) // 2 - 1) // 2, and intermediates
      {"layer_i": [B, T', D]} holding block i's output (0-based, before the
      final LayerNorm) for every block, or only i = L - 1 when scan_layers.
      Padded frames are zero.
    """
    kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
    x, mask = subsampling.Conv2dSubsampling(
        self.width, channels=self.conv_channels, name="subsampling",
        **kw)(features, mask)
    x = x + layers.sinusoidal_positions(x.shape[1], self.width).astype(x.dtype)
    x = nn.Dropout(self.dropout_rate)(x, deterministic=not train)
    block_kw = dict(num_heads=self.num_heads, mlp_dim=self.mlp_dim,
                    dropout_rate=self.dropout_rate,
                    attention_dropout_rate=self.attention_dropout_rate,
                    attention_impl=self.attention_impl, **kw)
    block_cls = self._block_class()
    keep = lambda y: jnp.where(mask[..., None], y, jnp.zeros((), y.dtype))
    intermediates = {}
    if self.scan_layers:
      stack = nn.scan(
          block_cls, variable_axes={"params": 0},
          split_rngs={"params": True, "dropout": True},
          in_axes=(nn.broadcast, nn.broadcast), length=self.num_layers,
          metadata_params={nn.PARTITION_NAME: "layers"})
      x, _ = stack(name="layers", **block_kw)(x, mask, train)
      intermediates[f"layer_{self.num_layers - 1}"] = keep(x)
    else:
      for i in range(self.num_layers):
        x = block_cls(name=f"layer_{i}", **block_kw)(x, mask, train)
        intermediates[f"layer_{i}"] = keep(x)
    frames = layers.LayerNorm(name="norm_out", **kw)(x)
    return EncoderOutput(frames=keep(frames), mask=mask,
                         intermediates=intermediates)
