"""Zero-shot classification from class-name prompts (CLAP-style).

Each class name becomes a prompt ("This is a sound of {label}.", the class
name as words: "Crying_and_sobbing" -> "crying and sobbing"); the run's
text tower embeds the prompts, the frozen audio tower embeds the clips,
and cosine similarity scores every (clip, class) pair. No training.

  multiclass: accuracy of the argmax class (and mAP over classes, which
              does not depend on a threshold);
  multilabel: mAP, macro ROC-AUC and d-prime of the similarity scores.

Study-runner entry point: `evaluate_zero_shot_task(restored, spec, split)`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from audiopt.evaluate import probes
from audiopt.evaluate import retrieval

TEMPLATE = "This is a sound of {label}."


def label_words(name: str) -> str:
  """A class name as words for a prompt.

  Underscores become spaces and the first letter is lower-cased unless the
  name starts with an acronym: "Crying_and_sobbing" -> "crying and sobbing",
  "TV" -> "TV".
  """
  words = " ".join(name.replace("_", " ").split())
  if words and not (len(words) > 1 and words[:2].isupper()):
    words = words[0].lower() + words[1:]
  return words


def class_prompts(classes: Sequence[str], template: str = TEMPLATE
                  ) -> list[str]:
  """One prompt per class: `template.format(label=label_words(name))`."""
  if "{label}" not in template:
    raise ValueError(f"template {template!r} has no {{label}} field")
  return [template.format(label=label_words(c)) for c in classes]


def zero_shot_scores(audio_emb: np.ndarray, class_emb: np.ndarray
                     ) -> np.ndarray:
  """Cosine similarities [N, C] of clip [N, E] and prompt [C, E] embeddings."""
  a = np.asarray(audio_emb, np.float32)
  c = np.asarray(class_emb, np.float32)
  a = a / np.maximum(np.linalg.norm(a, axis=1, keepdims=True), 1e-12)
  c = c / np.maximum(np.linalg.norm(c, axis=1, keepdims=True), 1e-12)
  return a @ c.T


def zero_shot_metrics(scores: np.ndarray, targets: np.ndarray, kind: str
                      ) -> dict[str, float]:
  """Metrics of similarity scores [N, C] against probe-style targets.

  Args:
    scores: [N, C] similarities.
    targets: int ids [N] (multiclass) or multi-hot [N, C] (multilabel).
    kind: "multiclass" or "multilabel".
  """
  scores = np.asarray(scores, np.float64)
  if kind == "multiclass":
    ids = np.asarray(targets)
    multi_hot = np.zeros_like(scores)
    multi_hot[np.arange(len(ids)), ids] = 1.0
    return {"accuracy": float(np.mean(scores.argmax(axis=1) == ids)),
            "mAP": probes.mean_average_precision(scores, multi_hot)}
  if kind == "multilabel":
    auc = probes.macro_roc_auc(scores, targets)
    return {"mAP": probes.mean_average_precision(scores, targets),
            "roc_auc": auc, "d_prime": probes.d_prime(auc)}
  raise ValueError(f"kind {kind!r}: zero-shot needs a classification task")


def evaluate_zero_shot(restored, clips: Sequence[np.ndarray],
                       targets: np.ndarray, classes: Sequence[str], kind: str,
                       *, template: str = TEMPLATE, tokenizer=None,
                       batch_size: int = 16,
                       max_seconds: float | None = 10.0) -> dict[str, Any]:
  """Zero-shot metrics of a run on clips.

  Args:
    restored: a `Restored` audio-text run (contrastive / SigLIP objective).
    clips: [N_i] float32 waveforms at the run's sample rate.
    targets: int ids [N] or multi-hot [N, C].
    classes: class names in id order.
    kind: "multiclass" or "multilabel".
    template: the prompt, with a {label} field.
    tokenizer: default the run's own.
    batch_size, max_seconds: see `retrieval.embed_audio`.

  Returns:
    `zero_shot_metrics` plus "num_clips".
  """
  prompts = class_prompts(classes, template)
  class_emb = retrieval.embed_text(restored, prompts, tokenizer=tokenizer)
  audio_emb = retrieval.embed_audio(restored, clips, batch_size=batch_size,
                                    max_seconds=max_seconds)
  metrics = zero_shot_metrics(zero_shot_scores(audio_emb, class_emb),
                              targets, kind)
  return {**metrics, "num_clips": len(clips)}


def evaluate_zero_shot_task(restored, spec, split: str | Sequence[str] = "test",
                            **kwargs) -> dict[str, Any]:
  """`evaluate_zero_shot` on a classification `TaskSpec` split (or splits,
  e.g. all ESC-50 folds: zero-shot needs no training data); the audio is
  streamed. kwargs: template, tokenizer, batch_size, max_seconds."""
  rate = int(restored.config.frontend.fbank.sample_rate)
  template = kwargs.pop("template", TEMPLATE)
  tokenizer = kwargs.pop("tokenizer", None)
  class_emb = retrieval.embed_text(
      restored, class_prompts(spec.classes, template), tokenizer=tokenizer)
  audio_emb, _ = retrieval.stream_audio_embeddings(
      restored, spec.iter_audio(split, rate), **kwargs)
  metrics = zero_shot_metrics(zero_shot_scores(audio_emb, class_emb),
                              spec.targets(split), spec.kind)
  return {**metrics, "num_clips": len(audio_emb)}
