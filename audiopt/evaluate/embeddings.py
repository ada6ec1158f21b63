"""Frozen-encoder embeddings of a record set, computed on the mesh."""

from typing import Any

import jax
import numpy as np

from audiopt.data import pipeline
from audiopt.train import sharding


def make_embed_fn(model, mesh, rules, *, layer: str | None = None):
  """Returns a jitted fn (params, batch) -> replicated frames and labels.

  Args:
    model: an `AudioModel`.
    mesh: the device mesh; the batch is sharded over its data axes.
    rules: logical axis rules.
    layer: None for the last layer, else a key of the encoder's
      intermediates (for example "layer_3").
  """

  def embed(params, batch):
    out = model.apply({"params": params}, batch["audio"], batch["audio_mask"],
                      train=False, method=model.embed)
    frames = out.frames if layer is None else out.intermediates[layer]
    return {"frames": frames.astype(np.float32), "mask": out.mask,
            "label_ids": batch["label_ids"], "valid": batch["valid"]}

  del rules  # the caller enters the rules context around calls
  return jax.jit(embed, out_shardings=sharding.replicated(mesh))


def extract(embed_fn, params, source, *, batch_size: int, clip_seconds: float,
            sample_rate: int, mesh) -> dict[str, Any]:
  """Embeds every record of `source` once, in record order.

  Args:
    embed_fn: from `make_embed_fn`.
    params: the model parameters (any sharding).
    source: a record source from `audiopt.data.records.open_records`.
    batch_size: global batch size (divisible by the mesh's batch shards).
    clip_seconds: records are cropped from the start or padded to this.
    sample_rate: audio sample rate.
    mesh: the device mesh.

  Returns:
    {"frames": [N, T', D] float32, "mask": [N, T'] bool,
     "label_ids": [N, L] int32 padded with -1}; in a multi-process job every
    process gets all rows.
  """
  opts = pipeline.PipelineOptions(
      global_batch_size=batch_size, clip_seconds=clip_seconds,
      sample_rate=sample_rate, seed=0, shuffle=False, repeat=False,
      random_crop=False, drop_remainder=False)
  out = {"frames": [], "mask": [], "label_ids": []}
  for local in pipeline.iterate_eval(source, opts,
                                     process_index=jax.process_index(),
                                     process_count=jax.process_count()):
    got = jax.device_get(embed_fn(params, sharding.shard_batch(local, mesh)))
    valid = got.pop("valid")
    for k, v in got.items():
      out[k].append(v[valid])
  return {k: np.concatenate(v) for k, v in out.items()}
