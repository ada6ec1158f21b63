"""Masked-frame prediction: a self-supervised baseline (no labels at all).

Design, within the encoder contract (the encoder sees log-mel frames
[B, T, 80] at 10 ms and returns frames [B, T', D] at its hop of k input
frames, k = `frames_per_step`, 4 for the 40 ms transformer and Zipformer):

  1. `mask_features` (called by `AudioModel` before the encoder) masks spans
     of whole encoder steps: each step starts a span of `mask_span` steps
     with the probability that makes the expected masked fraction
     `mask_ratio` (wav2vec 2.0's span sampling), and every input frame of a
     masked step is replaced by one learned vector [F]. Masking whole steps
     keeps a step's k frames from being copied from their visible neighbours.
  2. The encoder runs on the whole sequence, masked frames included.
  3. A light head (MLP D -> hidden -> k * F) regresses, from each encoder
     frame, the k log-mel frames of its step.
  4. Targets are the unmasked log-mel frames normalised per clip and mel bin
     over the clip's valid frames; the loss is the squared error averaged
     over masked, valid input frames only.

Relation to the field. Like MAE / Audio-MAE the target is the normalised
input itself (per-clip instead of per-patch normalisation) and only masked
positions are scored. Unlike MAE the encoder also sees the masked positions
(as a learned mask vector, like BEiT, wav2vec 2.0 or data2vec), because the
encoders here take a dense frame sequence, and the decoder is a per-frame MLP
rather than a transformer. EAT and data2vec 2.0 regress the
exponential-moving-average teacher's layer outputs (with a light CNN decoder
and an utterance-level loss); swapping the target for a teacher's frames
would turn this objective into that family; it is not implemented here.

SpecAugment should be off with this objective (`configs/masked.py` turns it
off): the targets are the features the hook receives.
"""

import flax.linen as nn
import jax
import jax.numpy as jnp

from audiopt.objectives import base

# Keys that `mask_features` adds to the batch.
TARGET_KEY = "masked_target_features"
FEATURE_MASK_KEY = "masked_feature_mask"
MASKED_FRAMES_KEY = "masked_frames"


def span_mask(rng: jax.Array, batch: int, steps: int, ratio: float,
              span: int) -> jax.Array:
  """Random spans of masked steps, [batch, steps] bool.

  Every step starts a span of `span` steps with probability
  p = 1 - (1 - ratio) ** (1 / span), so a step is masked (covered by a span
  starting at one of the `span` steps up to it) with probability `ratio`.
  """
  if not 0.0 < ratio < 1.0 or span < 1:
    raise ValueError(f"mask_ratio must be in (0, 1) and mask_span >= 1, got "
                     f"{ratio}, {span}")
  p = 1.0 - (1.0 - ratio) ** (1.0 / span)
  starts = jax.random.uniform(rng, (batch, steps)) < p
  count = jnp.cumsum(starts.astype(jnp.int32), axis=1)
  before = jnp.pad(count, ((0, 0), (span, 0)))[:, :steps]
  return count - before > 0


def normalize_per_clip(feats: jax.Array, mask: jax.Array,
                       eps: float = 1e-5) -> jax.Array:
  """(x - mean) / std per clip and bin over valid frames; [B, T, F] float32."""
  x = feats.astype(jnp.float32)
  m = mask.astype(jnp.float32)[..., None]
  n = jnp.maximum(m.sum(axis=1, keepdims=True), 1.0)
  mean = (x * m).sum(axis=1, keepdims=True) / n
  var = (jnp.square(x - mean) * m).sum(axis=1, keepdims=True) / n
  return (x - mean) * jax.lax.rsqrt(var + eps)


def frames_per_step_for(encoder_cfg, frame_shift_ms: float = 10.0) -> int:
  """Input frames per encoder frame (hop / frame shift) of an encoder config.

  Args:
    encoder_cfg: the `encoder` config section (name, size, overrides).
    frame_shift_ms: the front end's frame shift.

  Returns:
    round(encoder hop_ms / frame_shift_ms); the hop does not depend on the
    size preset, so an unknown size (reported by config validation) falls
    back to the encoder's first preset.
  """
  from audiopt.models import registry  # pylint: disable=g-import-not-at-top
  cfg = dict(encoder_cfg.to_dict() if hasattr(encoder_cfg, "to_dict")
             else encoder_cfg)
  sizes = registry.get_encoder_class(cfg["name"]).SIZES
  if cfg.get("size") not in sizes:
    cfg["size"] = next(iter(sizes))
  return round(registry.build_encoder(cfg).hop_ms / frame_shift_ms)


class _MaskVector(nn.Module):
  """The learned vector [F] that replaces masked input frames."""

  @nn.compact
  def __call__(self, feats: jax.Array, masked: jax.Array) -> jax.Array:
    vec = self.param("mask_vector", nn.with_logical_partitioning(
        nn.initializers.zeros_init(), (None,)), (feats.shape[-1],))
    return jnp.where(masked[..., None], vec.astype(feats.dtype), feats)


class _StepHead(nn.Module):
  """MLP from encoder frames [B, T', D] to k frames each, [B, T' * k, F]."""

  frames_per_step: int
  hidden_dim: int

  @nn.compact
  def __call__(self, frames: jax.Array, num_bins: int) -> jax.Array:
    b, t, _ = frames.shape
    x = frames.astype(jnp.float32)
    if self.hidden_dim:
      x = nn.Dense(self.hidden_dim, kernel_init=nn.with_logical_partitioning(
          nn.initializers.xavier_uniform(), ("embed", "mlp")),
                   bias_init=nn.with_logical_partitioning(
                       nn.initializers.zeros_init(), ("mlp",)),
                   name="hidden")(x)
      x = nn.gelu(x)
    out_axis = "mlp" if self.hidden_dim else "embed"
    x = nn.Dense(self.frames_per_step * num_bins,
                 kernel_init=nn.with_logical_partitioning(
                     nn.initializers.xavier_uniform(), (out_axis, None)),
                 bias_init=nn.with_logical_partitioning(
                     nn.initializers.zeros_init(), (None,)),
                 name="out")(x)
    return x.reshape(b, t * self.frames_per_step, num_bins)


class MaskedFramePrediction(base.Objective):
  """Masked log-mel frame regression (see module doc).

  Attributes:
    frames_per_step: input frames per encoder frame (hop / 10 ms).
    mask_ratio: expected fraction of masked encoder steps.
    mask_span: span length in encoder steps.
    hidden_dim: width of the head's hidden layer; 0: a linear head.
  """

  frames_per_step: int = 4
  mask_ratio: float = 0.5
  mask_span: int = 5
  hidden_dim: int = 512

  def setup(self):
    self.mask_vector = _MaskVector()
    self.head = _StepHead(self.frames_per_step, self.hidden_dim)

  def mask_features(self, rng: jax.Array, feats: jax.Array, mask: jax.Array
                    ) -> tuple[jax.Array, dict[str, jax.Array]]:
    """Masks spans of encoder steps in the log-mel input.

    Args:
      rng: key of the random spans.
      feats: [B, T, F] log-mel frames.
      mask: [B, T] bool, True on valid frames.

    Returns:
      feats_in [B, T, F] with masked frames replaced by the learned vector,
      and the batch extras: the clean targets [B, T, F], their mask [B, T]
      and the masked (valid) frames [B, T] bool.
    """
    b, t, _ = feats.shape
    k = self.frames_per_step
    steps = span_mask(rng, b, -(-t // k), self.mask_ratio, self.mask_span)
    masked = jnp.repeat(steps, k, axis=1)[:, :t] & mask
    extras = {TARGET_KEY: feats, FEATURE_MASK_KEY: mask,
              MASKED_FRAMES_KEY: masked}
    return self.mask_vector(feats, masked), extras

  def reconstruct(self, encoded, num_bins: int = 80) -> jax.Array:
    """Predicted per-clip normalised log-mel frames [B, T' * k, num_bins]."""
    return self.head(encoded.frames, num_bins)

  def __call__(self, encoded, batch, *, train: bool):
    if TARGET_KEY not in batch:
      raise ValueError("the masked objective needs AudioModel to call its "
                       "mask_features hook (batch has no masked targets)")
    target = batch[TARGET_KEY]
    b, t, f = target.shape
    k = self.frames_per_step
    t_out = encoded.frames.shape[1]
    if abs(t_out * k - t) > k + 8:
      raise ValueError(
          f"objective.frames_per_step={k} does not match the encoder: {t} "
          f"input frames gave {t_out} encoder frames (about "
          f"{t / max(t_out, 1):.1f} per frame); set it to hop_ms / 10 ms")
    pred = self.head(encoded.frames, f)  # [B, T'k, F]
    target = normalize_per_clip(target, batch[FEATURE_MASK_KEY])
    weight = batch[MASKED_FRAMES_KEY]
    valid = batch.get("valid", jnp.ones((b,), bool))
    weight = weight & valid[:, None]
    n = t_out * k
    if n >= t:
      pad = ((0, 0), (0, n - t))
      target = jnp.pad(target, pad + ((0, 0),))
      weight = jnp.pad(weight, pad)
    else:
      target, weight = target[:, :n], weight[:, :n]
    per_frame = jnp.mean(jnp.square(pred - target), axis=-1)
    w = weight.astype(jnp.float32)
    loss = (per_frame * w).sum() / jnp.maximum(w.sum(), 1.0)
    frac = w.sum() / jnp.maximum(
        (batch[FEATURE_MASK_KEY] & valid[:, None]).sum(), 1)
    return loss, {"masked_loss": loss, "masked_fraction": frac}


@base.register_objective("masked")
def _build(cfg, info: base.DatasetInfo) -> MaskedFramePrediction:
  del info  # Self-supervised: no vocabulary.
  k = int(cfg.get("frames_per_step", 4))
  ratio = float(cfg.get("mask_ratio", 0.5))
  span = int(cfg.get("mask_span", 5))
  if k < 1:
    raise ValueError(f"objective.frames_per_step={k} must be >= 1")
  if not 0.0 < ratio < 1.0:
    raise ValueError(f"objective.mask_ratio={ratio} must be in (0, 1)")
  if span < 1:
    raise ValueError(f"objective.mask_span={span} must be >= 1")
  hidden = cfg.get("head_hidden_dim", 512)
  return MaskedFramePrediction(frames_per_step=k, mask_ratio=ratio,
                               mask_span=span,
                               hidden_dim=int(512 if hidden is None
                                              else hidden))

