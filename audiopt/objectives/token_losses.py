"""Token-level cross-entropy of the decoder objectives (captioning, PAR)."""

import jax
import jax.numpy as jnp
import optax


def token_cross_entropy(logits: jax.Array, targets: jax.Array,
                        weights: jax.Array, label_smoothing: float = 0.0
                        ) -> tuple[jax.Array, jax.Array]:
  """Mean (label-smoothed) cross-entropy over the weighted target tokens.

  Args:
    logits: [B, L, V] float logits.
    targets: [B, L] int target ids.
    weights: [B, L] bool, True on the tokens that count.
    label_smoothing: eps; the target distribution is (1 - eps) on the target
      plus eps / V on every id (optax.smooth_labels).

  Returns:
    (loss [], accuracy []): the mean over counted tokens of the cross-entropy
    and of argmax == target (both 0 when no token counts).
  """
  vocab = logits.shape[-1]
  labels = jax.nn.one_hot(targets, vocab, dtype=jnp.float32)
  if label_smoothing:
    labels = optax.smooth_labels(labels, label_smoothing)
  per_token = optax.softmax_cross_entropy(logits.astype(jnp.float32), labels)
  w = weights.astype(jnp.float32)
  count = jnp.maximum(w.sum(), 1.0)
  correct = (jnp.argmax(logits, axis=-1) == targets).astype(jnp.float32)
  return (per_token * w).sum() / count, (correct * w).sum() / count
