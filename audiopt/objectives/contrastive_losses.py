"""Audio-text contrastive losses: symmetric InfoNCE (CLAP) and SigLIP.

All losses take one embedding per clip from each tower, audio [B, D] and
text [B, D] (row i of both is a matching pair), L2-normalise them, and score
every audio row against every text row of the GLOBAL batch: inside the jitted
train step the arrays are global and sharded over the batch mesh axes, so the
negatives of a clip are all other clips of the step on every device.

  info_nce_loss         CLAP/CLIP: softmax cross-entropy over the B x B
                        similarity logits, averaged over audio->text and
                        text->audio. XLA gathers what it needs.
  siglip_loss           SigLIP: an independent sigmoid for each of the B x B
                        pairs, positive on the diagonal; summed over pairs,
                        divided by B (Zhai et al. 2023, eq. 1).
  siglip_loss_chunked   The same value without ever holding the B x B logits
                        on one device: each device keeps its audio block and
                        passes its text block around a ring of devices with
                        `ppermute`, scoring one b x b block per step.

Rows whose `valid` is False (padding) take part in no pair at all.
"""

from collections.abc import Sequence
import math

import jax
import jax.numpy as jnp

BATCH_AXES = ("data", "fsdp")
INFO_NCE_INIT_LOG_SCALE = math.log(1 / 0.07)
SIGLIP_INIT_LOG_SCALE = math.log(10.0)
SIGLIP_INIT_BIAS = -10.0
# CLIP clips its learned logit scale at 100 so training cannot blow it up.
MAX_LOG_SCALE = math.log(100.0)
_NEG = -1e9


def l2_normalize(x: jax.Array, eps: float = 1e-6) -> jax.Array:
  """Scales each row of x [..., D] to unit L2 norm, in float32."""
  x = x.astype(jnp.float32)
  return x * jax.lax.rsqrt(jnp.maximum(jnp.sum(x * x, -1, keepdims=True),
                                       eps * eps))


def _valid_or_all(valid: jax.Array | None, batch: int) -> jax.Array:
  return jnp.ones((batch,), bool) if valid is None else valid.astype(bool)


def info_nce_loss(audio_emb: jax.Array, text_emb: jax.Array,
                  log_scale: jax.Array, valid: jax.Array | None = None, *,
                  max_log_scale: float = MAX_LOG_SCALE) -> jax.Array:
  """Symmetric InfoNCE of CLAP over the global batch.

  Args:
    audio_emb: [B, D] audio embeddings (normalised here).
    text_emb: [B, D] text embeddings of the same clips (normalised here).
    log_scale: [] learnable log of the inverse temperature (init
      `INFO_NCE_INIT_LOG_SCALE`, i.e. temperature 0.07); clipped to
      [0, max_log_scale].
    valid: [B] bool, False on padding rows; None means all valid.
    max_log_scale: upper clip of `log_scale`.

  Returns:
    [] mean over valid rows of (CE(audio->text) + CE(text->audio)) / 2.
  """
  a, t = l2_normalize(audio_emb), l2_normalize(text_emb)
  valid = _valid_or_all(valid, a.shape[0])
  scale = jnp.exp(jnp.clip(log_scale.astype(jnp.float32), 0.0, max_log_scale))
  logits = scale * (a @ t.T)
  pair = valid[:, None] & valid[None, :]
  logits = jnp.where(pair, logits, _NEG)
  diag = jnp.diagonal(logits)
  a2t = jax.nn.logsumexp(logits, axis=1) - diag
  t2a = jax.nn.logsumexp(logits, axis=0) - diag
  per_row = jnp.where(valid, 0.5 * (a2t + t2a), 0.0)
  return per_row.sum() / jnp.maximum(valid.sum(), 1)


def _siglip_block(a: jax.Array, t: jax.Array, pair: jax.Array,
                  scale: jax.Array, bias: jax.Array,
                  positive_diagonal: bool) -> jax.Array:
  """Sum of -log sigmoid(z * logit) over the pairs of one block; z = +-1."""
  logits = scale * (a @ t.T) + bias
  z = -jnp.ones_like(logits)
  if positive_diagonal:
    z = z + 2.0 * jnp.eye(logits.shape[0], logits.shape[1])
  return -jnp.sum(jnp.where(pair, jax.nn.log_sigmoid(z * logits), 0.0))


def siglip_loss(audio_emb: jax.Array, text_emb: jax.Array,
                log_scale: jax.Array, bias: jax.Array,
                valid: jax.Array | None = None) -> jax.Array:
  """SigLIP pairwise sigmoid loss, dense form (B x B logits).

  Args:
    audio_emb: [B, D] audio embeddings (normalised here).
    text_emb: [B, D] text embeddings of the same clips (normalised here).
    log_scale: [] learnable log temperature (init `SIGLIP_INIT_LOG_SCALE`).
    bias: [] learnable logit bias (init `SIGLIP_INIT_BIAS`).
    valid: [B] bool, False on padding rows; None means all valid.

  Returns:
    [] -sum over valid pairs (i, j) of log sigmoid(z_ij * (e^s a_i.t_j + b)),
    z_ij = 1 if i == j else -1, divided by the number of valid rows.
  """
  a, t = l2_normalize(audio_emb), l2_normalize(text_emb)
  valid = _valid_or_all(valid, a.shape[0])
  pair = valid[:, None] & valid[None, :]
  total = _siglip_block(a, t, pair, jnp.exp(log_scale.astype(jnp.float32)),
                        bias.astype(jnp.float32), positive_diagonal=True)
  return total / jnp.maximum(valid.sum(), 1)


def _ring_axes(mesh, batch_axes: Sequence[str], batch: int
               ) -> tuple[tuple[str, ...], int]:
  """The mesh axes that split the batch and their device count (1: none)."""
  if mesh is None or mesh.empty:
    return (), 1
  axes = tuple(a for a in batch_axes if a in mesh.axis_names)
  n = math.prod(mesh.shape[a] for a in axes)
  if n <= 1 or batch % n:
    return (), 1
  return axes, n


def siglip_loss_chunked(audio_emb: jax.Array, text_emb: jax.Array,
                        log_scale: jax.Array, bias: jax.Array,
                        valid: jax.Array | None = None, *, mesh=None,
                        batch_axes: Sequence[str] = BATCH_AXES) -> jax.Array:
  """SigLIP loss computed block by block around a ring of devices.

  Under `jax.shard_map` over `batch_axes`, device k holds audio and text
  rows of its batch block. It scores its own block (the positives sit on its
  diagonal), then n - 1 times passes its current text block to the next
  device (`ppermute`) and scores the block it received (all negatives). Each
  device therefore materialises b x b logits (b = B / n), never B x B. The
  block sums are added over devices with `psum`. Equal to `siglip_loss` up
  to float summation order, in value and gradients.

  Args:
    audio_emb: [B, D] audio embeddings, B divisible by the batch devices.
    text_emb: [B, D] text embeddings of the same clips.
    log_scale: [] learnable log temperature.
    bias: [] learnable logit bias.
    valid: [B] bool, False on padding rows; None means all valid.
    mesh: the device mesh; None takes the current one (`jax.set_mesh`). With
      no mesh, no batch axis of size > 1, or B not divisible by the batch
      devices, this is `siglip_loss` (the same value, computed densely).
    batch_axes: mesh axes that split the batch (leading axis).

  Returns:
    [] the SigLIP loss, as `siglip_loss`.
  """
  if mesh is None:
    mesh = jax.sharding.get_abstract_mesh()
  axes, n = _ring_axes(mesh, batch_axes, audio_emb.shape[0])
  if n == 1:
    return siglip_loss(audio_emb, text_emb, log_scale, bias, valid)
  valid = _valid_or_all(valid, audio_emb.shape[0])
  ring = [(i, (i + 1) % n) for i in range(n)]
  rows = jax.sharding.PartitionSpec(axes)
  whole = jax.sharding.PartitionSpec()

  def local(a, t, v, log_scale, bias):
    a, t = l2_normalize(a), l2_normalize(t)
    scale = jnp.exp(log_scale.astype(jnp.float32))
    bias = bias.astype(jnp.float32)
    total = _siglip_block(a, t, v[:, None] & v[None, :], scale, bias,
                          positive_diagonal=True)

    def step(carry, _):
      t_blk, v_blk, acc = carry
      t_blk = jax.lax.ppermute(t_blk, axes, ring)
      v_blk = jax.lax.ppermute(v_blk, axes, ring)
      acc = acc + _siglip_block(a, t_blk, v[:, None] & v_blk[None, :], scale,
                                bias, positive_diagonal=False)
      return (t_blk, v_blk, acc), None

    (_, _, total), _ = jax.lax.scan(step, (t, v, total), None, length=n - 1)
    total = jax.lax.psum(total, axes)
    count = jax.lax.psum(v.sum(), axes)
    return total / jnp.maximum(count, 1)

  return jax.shard_map(local, mesh=mesh,
                       in_specs=(rows, rows, rows, whole, whole),
                       out_specs=whole)(audio_emb, text_emb, valid,
                                        jnp.asarray(log_scale),
                                        jnp.asarray(bias))
