"""Audio-text retrieval: text-to-audio and audio-to-text R@1/5/10, mAP@10.

The frozen audio encoder and the run's text tower (a contrastive or SigLIP
objective, alone or in a multi-task run) embed clips and captions into
their shared unit-norm space; cosine similarity ranks the candidates.

Metrics (`retrieval_metrics`), with several captions per clip (AudioCaps
and Clotho test sets: 5; MusicCaps: 1):

  t2a_R@k     share of captions whose clip is among the k best clips;
  t2a_mAP@10  mean over captions of 1/rank of their clip when rank <= 10,
              else 0 (average precision with one relevant item, DCASE);
  a2t_R@k     share of clips with at least one of their captions among
              the k best captions;
  a2t_mAP@10  mean over clips of AP@10 over all their captions:
              sum over relevant captions at rank r <= 10 of
              (relevant captions up to r) / r, divided by min(#captions, 10).

Ranks are 1-based positions in a sort by descending similarity; equal
similarities are ordered by candidate index (a stable sort), so results are
deterministic.

Study-runner entry point: `evaluate_retrieval_task(restored, spec, split)`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax
import numpy as np

from audiopt.train import sharding

KS = (1, 5, 10)


# ----------------------------------------------------------------------------
# Metrics.


def _ranks(sims: np.ndarray, rows: np.ndarray, cols: np.ndarray,
           chunk: int = 1024) -> np.ndarray:
  """0-based rank of candidate cols[i] in row rows[i] of `sims`."""
  out = np.empty(len(rows), np.int64)
  index = np.arange(sims.shape[1])
  for start in range(0, len(rows), chunk):
    r, c = rows[start:start + chunk], cols[start:start + chunk]
    scores = sims[r]                                     # [n, candidates]
    target = scores[np.arange(len(r)), c][:, None]
    greater = (scores > target).sum(axis=1)
    ties_before = ((scores == target) & (index[None, :] < c[:, None])).sum(1)
    out[start:start + chunk] = greater + ties_before
  return out


def retrieval_metrics(audio_emb: np.ndarray, text_emb: np.ndarray,
                      text_to_audio: Sequence[int]) -> dict[str, float]:
  """Text-to-audio and audio-to-text retrieval metrics (see module doc).

  Args:
    audio_emb: [N, E] clip embeddings.
    text_emb: [M, E] caption embeddings.
    text_to_audio: [M] index of each caption's clip in [0, N); every clip
      needs at least one caption.

  Returns:
    {"t2a_R@1", "t2a_R@5", "t2a_R@10", "t2a_mAP@10", "a2t_R@1", "a2t_R@5",
    "a2t_R@10", "a2t_mAP@10"} as floats in [0, 1].
  """
  audio = np.asarray(audio_emb, np.float32)
  text = np.asarray(text_emb, np.float32)
  owner = np.asarray(text_to_audio, np.int64)
  if audio.ndim != 2 or text.ndim != 2 or audio.shape[1] != text.shape[1]:
    raise ValueError(f"embeddings must be [N, E] and [M, E], got "
                     f"{audio.shape} and {text.shape}")
  if owner.shape != (text.shape[0],):
    raise ValueError(f"text_to_audio must be [M={text.shape[0]}], got "
                     f"{owner.shape}")
  n = audio.shape[0]
  if owner.size and (owner.min() < 0 or owner.max() >= n):
    raise ValueError(f"text_to_audio must lie in [0, {n})")
  counts = np.bincount(owner, minlength=n)
  if n == 0 or (counts == 0).any():
    raise ValueError(f"every clip needs a caption; clips without: "
                     f"{np.flatnonzero(counts == 0)[:10].tolist()}")
  sims = text @ audio.T                                   # [M, N]
  t2a = _ranks(sims, np.arange(len(owner)), owner)
  out = {f"t2a_R@{k}": float(np.mean(t2a < k)) for k in KS}
  out["t2a_mAP@10"] = float(np.mean(np.where(t2a < 10, 1.0 / (t2a + 1), 0.0)))
  # Audio to text: the rank of every caption in its clip's row.
  a2t = _ranks(np.ascontiguousarray(sims.T), owner, np.arange(len(owner)))
  best = np.full(n, np.iinfo(np.int64).max)
  np.minimum.at(best, owner, a2t)
  out.update({f"a2t_R@{k}": float(np.mean(best < k)) for k in KS})
  ap = np.zeros(n)
  order = np.lexsort((a2t, owner))       # by clip, then by rank
  hits = np.zeros(n, np.int64)
  for i in order:
    a, r = owner[i], a2t[i]
    hits[a] += 1
    if r < 10:
      ap[a] += hits[a] / (r + 1)
  out["a2t_mAP@10"] = float(np.mean(ap / np.minimum(counts, 10)))
  return out


# ----------------------------------------------------------------------------
# Embedding clips and texts with a restored run.


def _padded(wavs: Sequence[np.ndarray], batch_size: int, bucket: int
            ) -> tuple[np.ndarray, np.ndarray]:
  longest = max(max(len(w) for w in wavs), 1)
  length = -(-longest // bucket) * bucket
  audio = np.zeros((batch_size, length), np.float32)
  mask = np.zeros((batch_size, length), bool)
  for i, w in enumerate(wavs):
    audio[i, :len(w)], mask[i, :len(w)] = w, True
  return audio, mask


# Jitted apply functions by (id(model), kind, method); the model is kept
# in the entry so that its id stays unique (Flax modules are unhashable).
_JITTED: dict[tuple[int, str, str], tuple[Any, Any]] = {}


def _cached(model, kind: str, method: str, make):
  key = (id(model), kind, method)
  if key not in _JITTED:
    _JITTED[key] = (model, make())
  return _JITTED[key][1]


def _predict_fn(model, method: str):
  """jit((params, audio [B, N], mask) -> model.predict(method))."""
  return _cached(model, "audio", method, lambda: jax.jit(
      lambda params, audio, mask: model.apply(
          {"params": params}, audio, mask, method, method=model.predict)))


def _predict_text_fn(model, method: str):
  """jit((params, ids [B, L], mask) -> model.predict_text(method))."""
  return _cached(model, "text", method, lambda: jax.jit(
      lambda params, ids, mask: model.apply(
          {"params": params}, method, ids, mask, method=model.predict_text)))


def _chunks(wav: np.ndarray, size: int) -> list[np.ndarray]:
  if len(wav) <= size:
    return [wav]
  starts = range(0, len(wav), size)
  parts = [wav[s:s + size] for s in starts]
  if len(parts) > 1 and len(parts[-1]) < size // 4:
    parts = parts[:-1]  # a short tail adds little but padding
  return parts


def embed_audio(restored, wavs: Sequence[np.ndarray], *,
                batch_size: int = 16, max_seconds: float | None = 10.0
                ) -> np.ndarray:
  """Unit-norm audio embeddings [N, E] of waveforms (`audio_embedding`).

  Args:
    restored: a `Restored` run with an audio-text objective.
    wavs: [N_i] float32 waveforms at the run's sample rate.
    batch_size: clips per call.
    max_seconds: longer clips are cut into chunks of this length whose
      embeddings are averaged and renormalised; None: whole clips.

  Returns:
    [N, E] float32.
  """
  rate = int(restored.config.frontend.fbank.sample_rate)
  size = int(max_seconds * rate) if max_seconds else None
  pieces, owner = [], []
  for i, w in enumerate(wavs):
    for part in (_chunks(np.asarray(w, np.float32), size) if size else [w]):
      pieces.append(part)
      owner.append(i)
  vectors = _run_audio(restored, pieces, "audio_embedding", batch_size, rate)
  out = np.zeros((len(wavs), vectors.shape[-1]), np.float64)
  np.add.at(out, np.asarray(owner), vectors)
  out /= np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)
  return out.astype(np.float32)


def _run_audio(restored, wavs: Sequence[np.ndarray], method: str,
               batch_size: int, rate: int) -> np.ndarray:
  model = restored.setup.model
  fn = _predict_fn(model, method)
  out = []
  with sharding.mesh_and_rules(restored.setup.mesh, restored.setup.rules):
    for start in range(0, len(wavs), batch_size):
      chunk = wavs[start:start + batch_size]
      audio, mask = _padded(chunk, batch_size, rate)
      out.append(np.asarray(fn(restored.params, audio, mask))[:len(chunk)])
  return np.concatenate(out).astype(np.float32)


def run_tokenizer(restored, tokenizer=None):
  """The run's caption tokenizer (or the one given); a clear error if none."""
  tok = tokenizer if tokenizer is not None else restored.tokenizer
  if tok is None:
    raise ValueError(
        f"run step {restored.step} (objective "
        f"{restored.config.objective.name!r}) has no caption tokenizer: "
        "retrieval and zero-shot need an audio-text objective")
  return tok


def embed_text(restored, texts: Sequence[str], *, tokenizer=None,
               batch_size: int = 64) -> np.ndarray:
  """Unit-norm text embeddings [M, E] of texts (`text_embedding`).

  Args:
    restored: a `Restored` run with an audio-text objective.
    texts: the texts.
    tokenizer: default the run's own (`restored.tokenizer`).
    batch_size: texts per call.
  """
  tok = run_tokenizer(restored, tokenizer)
  max_len = int(restored.config.text.max_len)
  fn = _predict_text_fn(restored.setup.model, "text_embedding")
  out = []
  with sharding.mesh_and_rules(restored.setup.mesh, restored.setup.rules):
    for start in range(0, len(texts), batch_size):
      chunk = list(texts[start:start + batch_size])
      ids, mask = tok.encode_batch(chunk + [""] * (batch_size - len(chunk)),
                                   max_len)
      out.append(np.asarray(fn(restored.params, ids, mask))[:len(chunk)])
  if not out:
    raise ValueError("no texts to embed")
  return np.concatenate(out).astype(np.float32)


def evaluate_retrieval(restored, clips: Sequence[np.ndarray],
                       captions: Sequence[Sequence[str]], *,
                       tokenizer=None, batch_size: int = 16,
                       max_seconds: float | None = 10.0) -> dict[str, Any]:
  """Retrieval metrics of a run on clips and their captions.

  Args:
    restored: a `Restored` audio-text run.
    clips: [N_i] float32 waveforms at the run's sample rate.
    captions: the captions of each clip (one or more).
    tokenizer: default the run's own.
    batch_size: clips per encoder call.
    max_seconds: see `embed_audio`.

  Returns:
    `retrieval_metrics` plus "num_clips" and "num_captions".
  """
  if len(clips) != len(captions):
    raise ValueError(f"{len(clips)} clips but {len(captions)} caption lists")
  texts, owner = [], []
  for i, caps in enumerate(captions):
    if not caps:
      raise ValueError(f"clip {i} has no caption")
    texts.extend(caps)
    owner.extend([i] * len(caps))
  audio = embed_audio(restored, clips, batch_size=batch_size,
                      max_seconds=max_seconds)
  text = embed_text(restored, texts, tokenizer=tokenizer)
  metrics = retrieval_metrics(audio, text, owner)
  return {**metrics, "num_clips": len(clips), "num_captions": len(texts)}


def evaluate_retrieval_task(restored, spec, split: str = "test", *,
                            tokenizer=None, batch_size: int = 16,
                            max_seconds: float | None = 10.0
                            ) -> dict[str, Any]:
  """`evaluate_retrieval` on a caption task's split (AudioCaps, Clotho...).

  Args:
    restored: a `Restored` audio-text run.
    spec: a `TaskSpec` of kind "captions" (`audiopt.evaluate.tasks`).
    split: which split.
    tokenizer, batch_size, max_seconds: see `evaluate_retrieval`.
  """
  if spec.kind != "captions":
    raise ValueError(f"task {spec.name!r} is {spec.kind}, not a caption task")
  rate = int(restored.config.frontend.fbank.sample_rate)
  audio, captions = stream_audio_embeddings(
      restored, spec.iter_audio(split, rate), batch_size=batch_size,
      max_seconds=max_seconds)
  texts, owner = [], []
  for i, caps in enumerate(captions):
    texts.extend(caps)
    owner.extend([i] * len(caps))
  text = embed_text(restored, texts, tokenizer=tokenizer)
  return {**retrieval_metrics(audio, text, owner), "num_clips": len(audio),
          "num_captions": len(texts)}


def stream_audio_embeddings(restored, pairs, *, batch_size: int = 16,
                            max_seconds: float | None = 10.0,
                            clips_per_call: int = 256):
  """Embeds (example, waveform) pairs a few hundred clips at a time.

  Returns:
    ([N, E] audio embeddings, [the examples' captions]) without holding
    more than `clips_per_call` waveforms in memory.
  """
  vectors, captions, pending = [], [], []

  def flush():
    if pending:
      vectors.append(embed_audio(restored, pending, batch_size=batch_size,
                                 max_seconds=max_seconds))
      pending.clear()

  for example, wav in pairs:
    pending.append(wav)
    captions.append(example.captions)
    if len(pending) >= clips_per_call:
      flush()
  flush()
  if not vectors:
    raise ValueError("no clips to embed")
  return np.concatenate(vectors), captions
