"""Zipformer-M (Yao et al. 2023) as the Auden/icefall code builds it, in Flax.

A port of `ZipformerEncoderModel` from reference/ZIPFORMER.md (section 7):

  fbank [B, T, 80] at 100 Hz
    -> Conv2dSubsampling (8/32/128 channels, ConvNeXt, BiasNorm)  50 Hz, 192
    -> 6 stacks at 50 / 25 / 12.5 / 6.25 / 12.5 / 25 Hz; each stack with
       factor ds > 1 downsamples (softmax-weighted), runs its layers, repeats
       frames back to 50 Hz and mixes with its input (learnt bypass)
    -> full-dim output (dims 0:256 from stack 5, 256:384 from stack 4,
       384:512 from stack 3) -> SimpleDownsample x2          25 Hz, 512

Eval-mode math is the reference's (checked by benchmarks/zipformer_parity.py).
Training reproduces section 7.9: the ScheduledFloat schedules (driven by the
optional `batch_count` argument), dropout with time-shared masks, pos-emb
dropout, layer / attention / conv / feed-forward skips, constant attention,
pos-emb skip, feature masks, ConvNeXt layerdrop, and the gradient-only hooks
that are cheap and act on parameters or scores: bypass and BiasNorm scale
limits, ScaleGrad(0.2) and the attention-score penalty.

Left out, all identities in the forward pass (ZIPFORMER.md 7.10 marks them
optional): Balancer and Whiten gradient regularisers, and the 8-bit
SwooshL/R derivative (a memory saving; the exact derivative is used). The
causal/streaming mode is not ported (the paper's model is non-causal).

Layers of a stack share their shapes, so `scan_layers=True` runs each stack
with `nn.scan`: its parameters then sit under "layers" with a leading [L] axis
(logical name "layers") instead of under "layers_0" ... "layers_{L-1}".
`stack_layers` and `unstack_layers` convert between the two layouts; the
importer (`zipformer_import`) reads and writes either.

Padding: with `reference_padding=False` (default) every padded sequence gives
the reference's output for that sequence alone, so padding never changes
valid frames. The reference itself lets padded frames leak into the last
valid frames of a padded batch (ConvNeXt context, SimpleDownsample's last
group); `reference_padding=True` reproduces that for batch-level parity.
"""

from collections.abc import Mapping, Sequence
import dataclasses
import re
from typing import Any, ClassVar

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from audiopt.models import layers
from audiopt.models import registry
from audiopt.models import zipformer_frontend as frontend
from audiopt.models import zipformer_modules as zm
from audiopt.models import zipformer_ops as ops
from audiopt.models.outputs import EncoderOutput

Dtype = Any

SIZES: dict[str, dict[str, Any]] = {
    # Two stacks, the second downsampled and narrower, so the full-dim output
    # concatenates both; every named axis is even (a 2x2x2 mesh divides it).
    "tiny": dict(
        num_encoder_layers=(1, 1), downsampling_factor=(1, 2),
        encoder_dim=(48, 32), feedforward_dim=(96, 64), num_heads=(2, 2),
        encoder_unmasked_dim=(32, 32), cnn_module_kernel=(7, 5),
        query_head_dim=8, value_head_dim=4, pos_head_dim=2, pos_dim=8,
        frontend_channels=(4, 8, 16)),
    # The paper's Zipformer-M: Auden's default ZipformerConfig.
    "m": dict(
        num_encoder_layers=(2, 2, 3, 4, 3, 2),
        downsampling_factor=(1, 2, 4, 8, 4, 2),
        encoder_dim=(192, 256, 384, 512, 384, 256),
        feedforward_dim=(576, 768, 1152, 1536, 1152, 768),
        num_heads=(4, 4, 4, 8, 4, 4),
        encoder_unmasked_dim=(192, 192, 256, 256, 256, 192),
        cnn_module_kernel=(31, 31, 15, 15, 15, 31), query_head_dim=32,
        value_head_dim=12, pos_head_dim=4, pos_dim=48,
        frontend_channels=(8, 32, 128)),
}

_FEATURE_MASK_PROB = 0.125
_POS_EMB_DROPOUT = 0.15


@dataclasses.dataclass(frozen=True)
class StackConfig:
  """Hyper-parameters of one stack (hashable, so modules can hold it).

  Attributes:
    num_layers: layers in the stack.
    dim: channels C.
    num_heads: attention heads.
    query_head_dim: per-head query/key size.
    pos_head_dim: per-head positional size.
    value_head_dim: per-head value size.
    feedforward_dim: F.
    kernel_size: depthwise conv kernel.
    pos_dim: relative positional encoding size.
    downsample: frame-rate factor relative to 50 Hz.
    warmup_begin: batch at which the first layer's skip rate starts to fall.
    warmup_end: batch at which the last layer's skip rate reaches its final
      value 0.035 * sqrt(downsample).
    dropout_schedule: feed-forward dropout schedule.
  """

  num_layers: int
  dim: int
  num_heads: int
  query_head_dim: int
  pos_head_dim: int
  value_head_dim: int
  feedforward_dim: int
  kernel_size: int
  pos_dim: int
  downsample: int
  warmup_begin: float
  warmup_end: float
  dropout_schedule: ops.Schedule

  def skip_schedules(self) -> list[ops.Schedule]:
    """Each layer's layer-skip schedule: 0.5 falling to the final rate.

    Layer j's window is the j-th of `num_layers` equal slices of
    [warmup_begin, warmup_end], so deeper layers warm up later.
    """
    delta = (self.warmup_end - self.warmup_begin) / self.num_layers
    final_skip = 0.035 * self.downsample ** 0.5
    begins = [self.warmup_begin + j * delta for j in range(self.num_layers)]
    return [((b, 0.5), (b + delta, final_skip)) for b in begins]


class _ScanLayer(zm.ZipformerLayer):
  """`ZipformerLayer` then the feature mask, in the form `nn.scan` wants.

  The carry is x; `skip_rate` is the scanned per-layer input; the rest are
  broadcast to every layer.
  """

  @nn.compact
  def __call__(  # pylint: disable=arguments-differ
      self, x: jax.Array, skip_rate: jax.Array, pos_emb: jax.Array,
      mask: jax.Array, feature_mask: jax.Array | None,
      batch_count: jax.Array, train: bool = False) -> tuple[jax.Array, None]:
    x = super().__call__(x, pos_emb, mask, batch_count, train, skip_rate)
    if feature_mask is not None:
      x = x * feature_mask
    return x, None


def _layer_class(remat: bool, policy_name: str,
                 scan: bool) -> type[nn.Module]:
  layer = _ScanLayer if scan else zm.ZipformerLayer
  if not remat:
    return layer
  policy = getattr(jax.checkpoint_policies, policy_name, None)
  if policy is None:
    raise ValueError(f"unknown remat_policy {policy_name!r}")
  # Linen counts `self` as argument 0; `train` is static. Unscanned: self, x,
  # pos_emb, mask, batch_count, train. Scanned: self, x, skip_rate, pos_emb,
  # mask, feature_mask, batch_count, train.
  return nn.remat(layer, policy=policy, prevent_cse=not scan,
                  static_argnums=(7,) if scan else (5,))


class ZipformerEncoder(nn.Module):
  """A stack of layers at one frame rate (the reference's Zipformer2Encoder).

  Attributes:
    config: the stack's hyper-parameters.
    remat: rematerialise each layer in the backward pass.
    remat_policy: a `jax.checkpoint_policies` name.
    scan_layers: run the layers with `nn.scan`, parameters stacked under
      "layers" on a leading [num_layers] axis.
    dtype: compute dtype.
    param_dtype: parameter dtype.
  """

  config: StackConfig
  remat: bool = False
  remat_policy: str = "nothing_saveable"
  scan_layers: bool = False
  dtype: Dtype = jnp.float32
  param_dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, mask: jax.Array,
               feature_mask: jax.Array | None, batch_count: jax.Array,
               train: bool = False) -> jax.Array:
    """Maps x [B, T, C] (mask [B, T], feature_mask [B, 1, C]) to [B, T, C]."""
    cfg = self.config
    pos_emb = jnp.asarray(ops.compact_rel_positions(x.shape[1], cfg.pos_dim))
    if train:
      pos_emb = ops.dropout(self.make_rng("dropout"), pos_emb,
                            jnp.float32(_POS_EMB_DROPOUT))
    pos_emb = pos_emb.astype(self.dtype)
    if feature_mask is not None:
      x = x * feature_mask
    layer_cls = _layer_class(self.remat, self.remat_policy, self.scan_layers)
    layer_kw = dict(
        num_heads=cfg.num_heads, query_head_dim=cfg.query_head_dim,
        pos_head_dim=cfg.pos_head_dim, value_head_dim=cfg.value_head_dim,
        feedforward_dim=cfg.feedforward_dim, kernel_size=cfg.kernel_size,
        dropout_schedule=cfg.dropout_schedule, dtype=self.dtype,
        param_dtype=self.param_dtype)
    schedules = cfg.skip_schedules()
    if self.scan_layers:
      # The one thing that differs between layers besides their weights.
      skip_rates = jnp.stack([ops.scheduled(batch_count, s)
                              for s in schedules])
      stack = nn.scan(
          layer_cls, variable_axes={"params": 0},
          split_rngs={"params": True, "dropout": True},
          in_axes=(0,) + (nn.broadcast,) * 5, length=cfg.num_layers,
          metadata_params={nn.PARTITION_NAME: "layers"})
      x, _ = stack(name="layers", **layer_kw)(
          x, skip_rates, pos_emb, mask, feature_mask, batch_count, train)
      return x
    for j, schedule in enumerate(schedules):
      x = layer_cls(skip_schedule=schedule, name=f"layers_{j}", **layer_kw)(
          x, pos_emb, mask, batch_count, train)
      if feature_mask is not None:
        x = x * feature_mask
    return x


class DownsampledZipformerEncoder(nn.Module):
  """Downsample -> ZipformerEncoder -> repeat frames -> bypass with the input.

  Attributes:
    config: the inner stack's hyper-parameters (config.downsample > 1).
    reference_padding: downsample as the reference does (see `Zipformer`).
    remat: rematerialise each layer.
    remat_policy: a `jax.checkpoint_policies` name.
    scan_layers: scan over the inner stack's layers.
    dtype: compute dtype.
    param_dtype: parameter dtype.
  """

  config: StackConfig
  reference_padding: bool = False
  remat: bool = False
  remat_policy: str = "nothing_saveable"
  scan_layers: bool = False
  dtype: Dtype = jnp.float32
  param_dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, lengths: jax.Array, mask: jax.Array,
               feature_mask: jax.Array | None, batch_count: jax.Array,
               train: bool = False) -> jax.Array:
    """Maps x [B, T, C] at 50 Hz (lengths [B], mask [B, T]) to [B, T, C]."""
    ds, t = self.config.downsample, x.shape[1]
    kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
    h = zm.SimpleDownsample(ds, name="downsample", **kw)(
        x, None if self.reference_padding else lengths)
    # The mask is decimated, not pooled: frame k is valid iff frame k*ds is.
    h = ZipformerEncoder(self.config, remat=self.remat,
                         remat_policy=self.remat_policy,
                         scan_layers=self.scan_layers, name="encoder",
                         **kw)(h, mask[:, ::ds], feature_mask, batch_count,
                               train)
    h = jnp.repeat(h, ds, axis=1)[:, :t]
    return zm.Bypass(name="out_combiner", **kw)(x, h, batch_count, train)


def _per_stack(value: int | Sequence[int], n: int,
               name: str) -> tuple[int, ...]:
  values = (value,) if isinstance(value, int) else tuple(value)
  if len(values) == 1:
    values = values * n
  if len(values) != n:
    raise ValueError(f"{name} has {len(values)} entries for {n} stacks")
  return values


@registry.register_encoder("zipformer")
class Zipformer(nn.Module):
  """Zipformer encoder: 100 Hz fbank -> 25 Hz frames of max(encoder_dim).

  Attributes:
    num_encoder_layers: layers per stack.
    downsampling_factor: frame-rate factor of each stack relative to 50 Hz.
    encoder_dim: channels per stack.
    feedforward_dim: F per stack (feed-forwards use 3F/4, F, 5F/4).
    num_heads: attention heads per stack.
    encoder_unmasked_dim: channels per stack never hit by feature masking.
    cnn_module_kernel: depthwise conv kernel per stack.
    query_head_dim: per-head query/key size (int or per stack).
    value_head_dim: per-head value size (int or per stack).
    pos_head_dim: per-head positional size (int or per stack).
    pos_dim: relative positional encoding size.
    output_downsampling_factor: final downsampling (2: 50 -> 25 Hz).
    frontend_channels: channels of the three front-end convolutions.
    warmup_batches: batches over which the stacks' layer skips warm up.
    dropout_schedule: (batch_count, rate) points of the feed-forward and
      front-end dropout.
    reference_padding: reproduce the reference's leak of padded frames into
      valid ones (for parity on padded batches); False keeps every valid
      frame independent of padding.
    dtype: compute dtype ("bfloat16" via the registry); `frames` come out in
      it. BiasNorm statistics, attention scores and softmax stay float32.
    param_dtype: parameter dtype.
    remat: rematerialise each layer in the backward pass.
    remat_policy: a `jax.checkpoint_policies` name for remat.
    scan_layers: run each stack's layers with `nn.scan` (composes with
      remat); a stack's layer parameters are then stacked under "layers"
      with a leading [L] axis named "layers" (see `stack_layers`).
      Per-layer skip schedules are passed to the scan as per-layer rates.
      Eval outputs and gradients equal the unscanned model's; training
      randomness differs. `scaled_adam` takes each leaf as one tensor, so
      on stacked leaves its per-tensor RMS and scalar rules span a stack's
      layers: train with scan_layers=False to match the reference.
  """

  num_encoder_layers: Sequence[int]
  downsampling_factor: Sequence[int]
  encoder_dim: Sequence[int]
  feedforward_dim: Sequence[int]
  num_heads: Sequence[int]
  encoder_unmasked_dim: Sequence[int]
  cnn_module_kernel: Sequence[int]
  query_head_dim: int | Sequence[int] = 32
  value_head_dim: int | Sequence[int] = 12
  pos_head_dim: int | Sequence[int] = 4
  pos_dim: int = 48
  output_downsampling_factor: int = 2
  frontend_channels: Sequence[int] = (8, 32, 128)
  warmup_batches: float = 4000.0
  dropout_schedule: ops.Schedule = ops.DROPOUT
  reference_padding: bool = False
  dtype: Dtype = jnp.float32
  param_dtype: Dtype = jnp.float32
  remat: bool = False
  remat_policy: str = "nothing_saveable"
  scan_layers: bool = False

  hop_ms: ClassVar[float] = 40.0
  # AudioModel passes the training batch count to encoders that set this.
  takes_batch_count: ClassVar[bool] = True
  SIZES: ClassVar[dict[str, dict[str, Any]]] = SIZES

  @property
  def output_dim(self) -> int:
    """Feature size of `frames`: max(encoder_dim)."""
    return max(self.encoder_dim)

  def stack_configs(self) -> list[StackConfig]:
    """The per-stack hyper-parameters, with the reference's warm-up windows."""
    n = len(self.downsampling_factor)

    def per(value, name):
      return _per_stack(value, n, name)

    layers_ = per(self.num_encoder_layers, "num_encoder_layers")
    dims = per(self.encoder_dim, "encoder_dim")
    ff = per(self.feedforward_dim, "feedforward_dim")
    heads = per(self.num_heads, "num_heads")
    kernels = per(self.cnn_module_kernel, "cnn_module_kernel")
    dq = per(self.query_head_dim, "query_head_dim")
    dv = per(self.value_head_dim, "value_head_dim")
    dp = per(self.pos_head_dim, "pos_head_dim")
    w = float(self.warmup_batches)
    schedule = tuple((float(a), float(b)) for a, b in self.dropout_schedule)
    return [
        StackConfig(
            num_layers=layers_[i], dim=dims[i], num_heads=heads[i],
            query_head_dim=dq[i], pos_head_dim=dp[i], value_head_dim=dv[i],
            feedforward_dim=ff[i], kernel_size=kernels[i],
            pos_dim=self.pos_dim, downsample=int(self.downsampling_factor[i]),
            warmup_begin=w * (i + 1) / (n + 1),
            warmup_end=w * (i + 2) / (n + 1), dropout_schedule=schedule)
        for i in range(n)
    ]

  def _feature_masks(self, batch: int, configs: list[StackConfig],
                     train: bool) -> list[jax.Array | None]:
    """Per-sequence [B, 1, C] channel masks (None in eval), one per stack."""
    if not train:
      return [None] * len(configs)
    rng = self.make_rng("dropout")
    keep1 = jax.random.uniform(rng, (batch, 1, 1)) > _FEATURE_MASK_PROB
    keep2 = keep1 & (jax.random.uniform(jax.random.fold_in(rng, 1),
                                        (batch, 1, 1)) > _FEATURE_MASK_PROB)
    unmasked = _per_stack(self.encoder_unmasked_dim, len(configs),
                          "encoder_unmasked_dim")
    masks = []
    for cfg, u1 in zip(configs, unmasked):
      u2 = u1 + (cfg.dim - u1) // 2
      ch = jnp.arange(cfg.dim)[None, None, :]
      m = jnp.where(ch < u1, True, jnp.where(ch < u2, keep1, keep2))
      masks.append(m.astype(self.dtype))
    return masks

  @staticmethod
  def _full_dim_output(outputs: list[jax.Array]) -> jax.Array:
    """Takes each channel from the latest stack that has it."""
    pieces, cur = [outputs[-1]], outputs[-1].shape[-1]
    for out in reversed(outputs[:-1]):
      if out.shape[-1] > cur:
        pieces.append(out[..., cur:])
        cur = out.shape[-1]
    return jnp.concatenate(pieces, axis=-1)

  @nn.compact
  def __call__(self, features: jax.Array, mask: jax.Array,
               train: bool = False,
               batch_count: jax.Array | float | None = None) -> EncoderOutput:
    """Encodes log-mel frames.

    Args:
      features: [B, T, F] float32 log-mel frames at 10 ms, T >= 9.
      mask: [B, T] bool, True on valid frames (a prefix of each row).
      train: enables the stochastic training behaviour (rng "dropout").
      batch_count: training batches seen so far (the reference's
        model_batch_count), a scalar that may be traced; it drives dropout
        and skip schedules. None uses their final values (batch >= 50000).

    Returns:
      EncoderOutput with frames [B, T_out, max(encoder_dim)] where
      T_out = ((T - 7) // 2 + 1) // 2 (1000 -> 248), mask [B, T_out] with
      (((len - 7) // 2) + 1) // 2 valid frames, and intermediates
      {"stack_i": [B, T_out, encoder_dim[i]]}: stack i's output, downsampled
      to the output rate by the same output downsampler. Padded frames are 0.
    """
    if features.shape[1] < 9:
      raise ValueError(f"Zipformer needs >= 9 input frames, got "
                       f"{features.shape[1]}")
    kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
    configs = self.stack_configs()
    if batch_count is None:
      batch_count = ops.SATURATED_BATCH_COUNT
    batch_count = jnp.asarray(batch_count, jnp.float32)
    lengths = jnp.sum(mask.astype(jnp.int32), axis=-1)
    x, lengths = frontend.Conv2dSubsampling(
        configs[0].dim, channels=tuple(self.frontend_channels),
        dropout_schedule=configs[0].dropout_schedule,
        reference_padding=self.reference_padding, name="encoder_embed",
        **kw)(features, lengths, batch_count, train)
    mask = ops.lengths_to_mask(lengths, x.shape[1])
    feature_masks = self._feature_masks(x.shape[0], configs, train)
    outputs = []
    for i, cfg in enumerate(configs):
      x = ops.convert_num_channels(x, cfg.dim)
      common = dict(remat=self.remat, remat_policy=self.remat_policy,
                    scan_layers=self.scan_layers, name=f"encoders_{i}", **kw)
      if cfg.downsample == 1:
        x = ZipformerEncoder(cfg, **common)(x, mask, feature_masks[i],
                                            batch_count, train)
      else:
        x = DownsampledZipformerEncoder(
            cfg, reference_padding=self.reference_padding, **common)(
                x, lengths, mask, feature_masks[i], batch_count, train)
      x = nn.with_logical_constraint(x, layers.BATCH_TIME_EMBED)
      outputs.append(x)
    ds = self.output_downsampling_factor
    downsample = zm.SimpleDownsample(ds, name="downsample_output", **kw)
    down_lengths = None if self.reference_padding else lengths
    frames = downsample(self._full_dim_output(outputs), down_lengths)
    out_lengths = ops.downsample_lengths(lengths, ds)
    out_mask = ops.lengths_to_mask(out_lengths, frames.shape[1])
    keep = lambda y: jnp.where(out_mask[..., None], y, jnp.zeros((), y.dtype))
    intermediates = {f"stack_{i}": keep(downsample(out, down_lengths))
                     for i, out in enumerate(outputs)}
    frames = nn.with_logical_constraint(keep(frames), layers.BATCH_TIME_EMBED)
    return EncoderOutput(frames=frames, mask=out_mask,
                         intermediates=intermediates)


# ------------------------------------------------- scanned params layout

_LAYER_KEY = re.compile(r"^layers_(\d+)$")
_SCANNED_KEY = "layers"


def _is_box(x: Any) -> bool:
  return isinstance(x, nn.meta.AxisMetadata)


def _stack_leaves(*leaves: Any) -> Any:
  if _is_box(leaves[0]):
    stacked = _stack_leaves(*(leaf.unbox() for leaf in leaves))
    return leaves[0].replace_boxed(stacked).add_axis(
        0, {nn.PARTITION_NAME: _SCANNED_KEY})
  if isinstance(leaves[0], jax.ShapeDtypeStruct):
    return jax.ShapeDtypeStruct((len(leaves),) + leaves[0].shape,
                                leaves[0].dtype)
  if all(isinstance(v, np.ndarray | np.generic) for v in leaves):
    return np.stack(leaves)
  return jnp.stack(leaves)


def _take_layer(leaf: Any, j: int) -> Any:
  if _is_box(leaf):
    return leaf.replace_boxed(_take_layer(leaf.unbox(), j)).remove_axis(
        0, {nn.PARTITION_NAME: _SCANNED_KEY})
  if isinstance(leaf, jax.ShapeDtypeStruct):
    return jax.ShapeDtypeStruct(leaf.shape[1:], leaf.dtype)
  return leaf[j]


def stack_layers(params: Mapping[str, Any]) -> dict[str, Any]:
  """Unscanned -> scanned layout: "layers_j" subtrees -> one "layers" subtree.

  Args:
    params: a Zipformer params tree (or one shaped like it, e.g. gradients)
      of a `scan_layers=False` model; leaves are arrays, abstract
      `jax.ShapeDtypeStruct`s, or boxed (`nn.Partitioned`) ones, which gain
      a leading "layers" axis name.

  Returns:
    The tree a `scan_layers=True` model of the same config uses: in every
    dict holding "layers_0" ... "layers_{L-1}", those keys are replaced by
    "layers", whose leaves are the layers' leaves stacked on a new axis 0.
    Numpy leaves stay numpy. Trees already scanned come back unchanged.
  """
  out = {}
  layers_ = {}
  for key, value in params.items():
    hit = _LAYER_KEY.match(key)
    if hit:
      layers_[int(hit.group(1))] = value
    elif isinstance(value, Mapping):
      out[key] = stack_layers(value)
    else:
      out[key] = value
  if layers_:
    if sorted(layers_) != list(range(len(layers_))):
      raise ValueError(f"layer keys are not layers_0 ... layers_{{L-1}}: "
                       f"{sorted(layers_)}")
    if _SCANNED_KEY in out:
      raise ValueError("tree holds both 'layers' and 'layers_j' keys")
    out[_SCANNED_KEY] = jax.tree.map(
        _stack_leaves, *(layers_[j] for j in range(len(layers_))),
        is_leaf=_is_box)
  return out


def unstack_layers(params: Mapping[str, Any]) -> dict[str, Any]:
  """Scanned -> unscanned layout: the inverse of `stack_layers`.

  Args:
    params: a Zipformer params tree (or one shaped like it) of a
      `scan_layers=True` model; leaves as for `stack_layers`.

  Returns:
    The tree with each "layers" subtree ([L, ...] leaves) split into
    "layers_0" ... "layers_{L-1}". Trees already unscanned come back
    unchanged.
  """
  out = {}
  for key, value in params.items():
    if not isinstance(value, Mapping):
      out[key] = value
    elif key == _SCANNED_KEY:
      leaves = jax.tree.leaves(value, is_leaf=_is_box)
      n = np.shape(leaves[0].unbox() if _is_box(leaves[0]) else leaves[0])[0]
      for j in range(n):
        out[f"layers_{j}"] = jax.tree.map(lambda v, j=j: _take_layer(v, j),
                                          dict(value), is_leaf=_is_box)
    else:
      out[key] = unstack_layers(value)
  return out
