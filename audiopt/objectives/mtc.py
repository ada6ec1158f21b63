"""Multi-label tag classification (MTC), the paper's main objective.

Dropout and a linear head on every encoder frame; the frame logits are
averaged over valid frames and scored with binary cross-entropy summed over
the classes (PAPER.md section 3). The target is either the UTS tags
(`target="tags"`) or the weak AudioSet-style labels (`target="weak_labels"`),
the paper's weak-label baseline.
"""

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

from audiopt.objectives import base


class MultiLabelTagClassification(base.Objective):
  """MTC head and loss.

  Attributes:
    num_classes: size of the target vocabulary.
    target: batch key holding the padded class ids, "tags" or "weak_labels".
    dropout_rate: dropout on the frames before the head.
  """

  num_classes: int
  target: str = "tags"
  dropout_rate: float = 0.1

  def setup(self):
    self.dropout = nn.Dropout(self.dropout_rate)
    self.head = nn.Dense(
        self.num_classes,
        kernel_init=nn.with_logical_partitioning(
            nn.initializers.xavier_uniform(), ("embed", "vocab")),
        bias_init=nn.with_logical_partitioning(
            nn.initializers.zeros_init(), ("vocab",)),
        dtype=jnp.float32, name="head")

  def logits(self, encoded, *, train: bool = False) -> jax.Array:
    """Clip logits [B, C]: frame logits averaged over valid frames."""
    frames = self.dropout(encoded.frames, deterministic=not train)
    frame_logits = self.head(frames.astype(jnp.float32))
    return base.mean_over_frames(frame_logits, encoded.mask)

  def tag_scores(self, encoded) -> jax.Array:
    """Predicted tag probabilities [B, C] (sigmoid of the clip logits)."""
    return jax.nn.sigmoid(self.logits(encoded, train=False))

  def __call__(self, encoded, batch, *, train: bool):
    logits = self.logits(encoded, train=train)
    targets = base.ids_to_multi_hot(batch[self.target], self.num_classes)
    per_clip = optax.sigmoid_binary_cross_entropy(logits, targets).sum(-1)
    valid = batch.get("valid", jnp.ones(per_clip.shape, bool))
    loss = base.masked_mean(per_clip, valid)
    return loss, {"mtc_loss": loss}


@base.register_objective("mtc")
def _build(cfg, info: base.DatasetInfo) -> MultiLabelTagClassification:
  target = cfg.get("target", "tags")
  sizes = {"tags": info.num_tags, "weak_labels": info.num_weak_labels}
  if target not in sizes:
    raise ValueError(f"config objective.target={target!r}; valid: {sorted(sizes)}")
  if sizes[target] <= 0:
    raise ValueError(f"objective.target={target!r} but the training records "
                     f"have no {target} vocabulary in their metadata")
  return MultiLabelTagClassification(
      num_classes=sizes[target], target=target,
      dropout_rate=cfg.get("dropout_rate", 0.1))
