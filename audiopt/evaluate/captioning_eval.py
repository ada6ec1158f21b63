"""Captioning evaluation: frozen encoder, caption decoder's cross-attention
fine-tuned, captions scored with the standard metrics.

Protocol (PAPER.md section 4): the audio encoder of the evaluated run is
frozen; a pre-trained caption decoder (the run's own when it has one, else
the one of `decoder_from`, e.g. a captioning run's checkpoint) is
fine-tuned on the task's training captions with only the parameters whose
path matches `CaptionFinetuneConfig.trainable` updated (default: every
cross-attention projection, "cross_attn"); then it decodes the test clips
(greedy or beam search) and the captions are scored.

Training: autoregressive teacher forcing (causal), label-smoothed token
cross-entropy, AdamW with linear warm-up and cosine decay, one random
(clip, caption) pair per batch row, seeded. Encoder frames are computed
once (the encoder is frozen), clips cropped to `max_seconds`. Dropout is
off so that results depend on the seed only. Parameters of the decoder
whose shape does not fit the new encoder (the cross-attention key/value
kernels when the encoder width differs) are initialised afresh when they
are trainable, and refused otherwise.

Metrics (`score_captions`) come from pycocoevalcap (the `captioning`
extra), the reference implementation of the COCO caption metrics that AAC
papers report:

  BLEU_1..4, ROUGE_L, CIDEr-D   pure Python: run everywhere
  METEOR                         needs Java (the jar ships with the package)
  SPICE, SPIDEr                  need Java and Stanford CoreNLP 3.6.0's jars
                                 in pycocoevalcap/spice/lib (SPICE's own
                                 script downloads them; nothing is
                                 downloaded here)
  FENSE                          not available: it needs sentence-BERT and
                                 an error-detector checkpoint from the
                                 Hugging Face hub, and aac-metrics (its
                                 maintained packaging) pins numpy < 2 and
                                 transformers < 5 through msclap, which
                                 conflict with JAX here

Captions are tokenized with the Stanford PTB tokenizer bundled with
pycocoevalcap when Java is present (the standard), else by a Python
tokenizer (lower case, PTB punctuation removed); the result says which.
Metrics that cannot run are listed under "unavailable" with the reason.

Study-runner entry point: `evaluate_captioning_task(restored, spec,
train_split, test_split, config)`.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import os
import re
import shutil
import subprocess
from collections.abc import Sequence
from typing import Any

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from audiopt.objectives import token_losses
from audiopt.train import sharding

ALL_METRICS = ("BLEU_1", "BLEU_2", "BLEU_3", "BLEU_4", "METEOR", "ROUGE_L",
               "CIDEr-D", "SPICE", "SPIDEr", "FENSE")
_PUNCTUATION = {"''", "'", "``", "`", "-LRB-", "-RRB-", "-LCB-", "-RCB-",
                "-lrb-", "-rrb-", "-lcb-", "-rcb-", ".", "?", "!", ",", ":",
                "-", "--", "...", ";"}


@dataclasses.dataclass(frozen=True)
class CaptionFinetuneConfig:
  """Settings of the captioning evaluation.

  Attributes:
    trainable: regular expressions; a decoder parameter trains when its path
      ("layer_0/cross_attn/key/kernel") matches one. ("cross_attn",): only
      cross-attention; (".",): the whole decoder.
    steps: optimizer steps.
    batch_size: (clip, caption) pairs per step.
    learning_rate: peak AdamW learning rate.
    warmup_steps: linear warm-up steps.
    weight_decay: AdamW weight decay.
    label_smoothing: of the token cross-entropy.
    max_seconds: clips are cropped to this many seconds.
    encode_batch_size: clips per encoder call.
    beam_size: 1: greedy decoding; more: beam search.
    length_penalty: beam search's alpha.
    max_decode_len: tokens generated; None: the decoder's caption width.
    seed: seeds the initialisation of re-made parameters and the batches.
  """

  trainable: tuple[str, ...] = ("cross_attn",)
  steps: int = 2000
  batch_size: int = 32
  learning_rate: float = 1e-4
  warmup_steps: int = 100
  weight_decay: float = 0.0
  label_smoothing: float = 0.1
  max_seconds: float = 10.0
  encode_batch_size: int = 16
  beam_size: int = 1
  length_penalty: float = 0.0
  max_decode_len: int | None = None
  seed: int = 0


@dataclasses.dataclass
class CaptionDecoder:
  """A caption decoder taken out of a run.

  Attributes:
    module: the unbound `TransformerDecoder`.
    params: its parameters.
    tokenizer: the run's `TextTokenizer`.
    bos_id, eos_id, pad_id: its special ids.
    source: "<objective path> of step <n>" for reports.
  """

  module: Any
  params: Any
  tokenizer: Any
  bos_id: int
  eos_id: int
  pad_id: int
  source: str


def find_caption_decoder(restored) -> CaptionDecoder | None:
  """The caption decoder of a run (captioning or multi-task), else None."""
  objective = restored.setup.model.objective
  candidates = [((), objective)]
  if hasattr(objective, "tasks"):
    candidates += [((f"tasks_{name}",), task)
                   for name, task in objective.tasks.items()]
  for path, module in candidates:
    if hasattr(module, "generate_captions") and hasattr(module, "decoder") \
        and hasattr(module, "bos_id"):
      params = restored.params["objective"]
      for key in path:
        params = params[key]
      if restored.tokenizer is None:
        return None
      return CaptionDecoder(
          module=module.decoder.clone(parent=None),
          params=jax.device_get(params["decoder"]),
          tokenizer=restored.tokenizer, bos_id=int(module.bos_id),
          eos_id=int(module.eos_id), pad_id=int(module.pad_id),
          source=f"objective/{'/'.join(path + ('decoder',))} of step "
          f"{restored.step}")
  return None


# ----------------------------------------------------------------------------
# Frozen encoder frames.


def encoder_frames(restored, wavs: Sequence[np.ndarray], *,
                   max_seconds: float = 10.0, batch_size: int = 16
                   ) -> tuple[np.ndarray, np.ndarray]:
  """Frames of the frozen encoder: [N, T', D] float32 and mask [N, T'].

  Clips are cropped to `max_seconds` and padded to the longest one (rounded
  up to a second), so the frames of all clips share one width.
  """
  rate = int(restored.config.frontend.fbank.sample_rate)
  limit = int(max_seconds * rate)
  wavs = [np.asarray(w, np.float32)[:limit] for w in wavs]
  length = -(-max(len(w) for w in wavs) // rate) * rate
  model = restored.setup.model
  fn = jax.jit(lambda params, audio, mask: model.apply(
      {"params": params}, audio, mask, train=False, method=model.embed))
  frames, masks = [], []
  with sharding.mesh_and_rules(restored.setup.mesh, restored.setup.rules):
    for start in range(0, len(wavs), batch_size):
      chunk = wavs[start:start + batch_size]
      audio = np.zeros((batch_size, length), np.float32)
      mask = np.zeros((batch_size, length), bool)
      for i, w in enumerate(chunk):
        audio[i, :len(w)], mask[i, :len(w)] = w, True
      out = fn(restored.params, audio, mask)
      frames.append(np.asarray(out.frames, np.float32)[:len(chunk)])
      masks.append(np.asarray(out.mask)[:len(chunk)])
  return np.concatenate(frames), np.concatenate(masks)


# ----------------------------------------------------------------------------
# Fine-tuning.


def _path(key: tuple[str, ...]) -> str:
  return "/".join(str(k) for k in key)


def trainable_paths(params: Any, patterns: Sequence[str]) -> list[str]:
  """Paths of the parameters that match any of `patterns` (re.search)."""
  flat = flax.traverse_util.flatten_dict(flax.core.unfreeze(
      nn.unbox(params)))
  regexes = [re.compile(p) for p in patterns]
  return [_path(k) for k in flat if any(r.search(_path(k)) for r in regexes)]


def _fit_params(decoder: CaptionDecoder, memory_dim: int, trainable: set[str],
                rng: jax.Array) -> tuple[dict, list[str]]:
  """The decoder's parameters shaped for `memory_dim` (see module doc)."""
  fresh = decoder.module.init(
      rng, jnp.zeros((1, 2), jnp.int32), jnp.ones((1, 2), bool),
      jnp.zeros((1, 3, memory_dim), jnp.float32), jnp.ones((1, 3), bool),
      causal=True)["params"]
  fresh = nn.unbox(fresh)
  old = flax.traverse_util.flatten_dict(
      flax.core.unfreeze(nn.unbox(decoder.params)))
  new = flax.traverse_util.flatten_dict(flax.core.unfreeze(fresh))
  out, remade, refused = {}, [], []
  for key, value in new.items():
    path = _path(key)
    if key in old and np.shape(old[key]) == np.shape(value):
      out[key] = np.asarray(old[key])
    elif path in trainable:
      out[key] = np.asarray(value)
      remade.append(path)
    else:
      refused.append(f"{path}: {np.shape(old.get(key))} vs {np.shape(value)}")
  if refused:
    raise ValueError(
        f"the decoder of {decoder.source} does not fit encoder frames of "
        f"width {memory_dim}, and these frozen parameters would need new "
        f"shapes: {refused}; make them trainable (CaptionFinetuneConfig."
        "trainable)")
  return out, remade


def finetune_decoder(decoder: CaptionDecoder, frames: np.ndarray,
                     frame_mask: np.ndarray, captions: Sequence[Sequence[str]],
                     config: CaptionFinetuneConfig
                     ) -> tuple[Any, dict[str, Any]]:
  """Fine-tunes the trainable decoder parameters on (clip, caption) pairs.

  Args:
    decoder: from `find_caption_decoder`.
    frames: [N, T', D] frozen encoder frames of the training clips.
    frame_mask: [N, T'] their mask.
    captions: the captions of each clip.
    config: the settings.

  Returns:
    (decoder params, info): info holds "losses" (per step), "trainable"
    (paths), "num_trainable" (parameter count), "reinitialised" (paths).
  """
  if config.steps < 0 or config.batch_size < 1:
    raise ValueError("steps must be >= 0 and batch_size >= 1")
  pairs = [(i, c) for i, caps in enumerate(captions) for c in caps if c]
  if not pairs:
    raise ValueError("no training captions")
  max_len = int(decoder.module.max_len)
  ids, mask = decoder.tokenizer.encode_batch([c for _, c in pairs], max_len)
  owner = np.asarray([i for i, _ in pairs], np.int32)
  rng = jax.random.key(config.seed)
  names = set(trainable_paths(
      jax.eval_shape(lambda: decoder.module.init(
          jax.random.key(0), jnp.zeros((1, 2), jnp.int32),
          jnp.ones((1, 2), bool),
          jnp.zeros((1, 3, frames.shape[-1]), jnp.float32),
          jnp.ones((1, 3), bool), causal=True))["params"], config.trainable))
  if not names:
    raise ValueError(f"no decoder parameter matches trainable="
                     f"{config.trainable}")
  flat, remade = _fit_params(decoder, frames.shape[-1], names,
                             jax.random.fold_in(rng, 1))
  train = {k: v for k, v in flat.items() if _path(k) in names}
  frozen = {k: v for k, v in flat.items() if _path(k) not in names}
  module = decoder.module

  def loss_fn(train_params, frozen_params, batch):
    params = flax.traverse_util.unflatten_dict({**frozen_params,
                                                **train_params})
    tok, tok_mask, mem, mem_mask = batch
    logits = module.apply({"params": params}, tok[:, :-1], tok_mask[:, :-1],
                          mem, mem_mask, causal=True, train=False)
    loss, _ = token_losses.token_cross_entropy(
        logits, tok[:, 1:], tok_mask[:, 1:], config.label_smoothing)
    return loss

  schedule = optax.warmup_cosine_decay_schedule(
      0.0, config.learning_rate, max(min(config.warmup_steps,
                                         config.steps - 1), 0) or 1,
      max(config.steps, 2))
  optimizer = optax.adamw(schedule, weight_decay=config.weight_decay)
  train_keys = list(train)
  # Flattened dicts with tuple keys are pytrees with string-ish leaves; use
  # index-keyed dicts so that jit sees plain structures.
  to_tree = lambda d: {"/".join(k): v for k, v in d.items()}  # noqa: E731
  from_tree = lambda t: {tuple(k.split("/")): v for k, v in t.items()}  # noqa: E731
  train_tree, frozen_tree = to_tree(train), to_tree(frozen)
  opt_state = optimizer.init(train_tree)

  @jax.jit
  def step(train_tree, opt_state, frozen_tree, batch):
    loss, grads = jax.value_and_grad(
        lambda t: loss_fn(from_tree(t), from_tree(frozen_tree), batch))(
            train_tree)
    updates, opt_state = optimizer.update(grads, opt_state, train_tree)
    return optax.apply_updates(train_tree, updates), opt_state, loss

  order = np.random.default_rng(config.seed)
  losses = []
  for _ in range(config.steps):
    rows = order.integers(len(pairs), size=config.batch_size)
    clips = owner[rows]
    batch = (ids[rows], mask[rows], frames[clips], frame_mask[clips])
    train_tree, opt_state, loss = step(train_tree, opt_state, frozen_tree,
                                       batch)
    losses.append(float(loss))
  params = flax.traverse_util.unflatten_dict({**frozen,
                                              **from_tree(train_tree)})
  count = int(sum(np.size(v) for v in train.values()))
  return jax.device_get(params), {
      "losses": losses, "trainable": sorted(_path(k) for k in train_keys),
      "num_trainable": count, "reinitialised": remade}


def generate_captions(decoder: CaptionDecoder, params: Any,
                      frames: np.ndarray, frame_mask: np.ndarray, *,
                      beam_size: int = 1, length_penalty: float = 0.0,
                      max_len: int | None = None,
                      batch_size: int = 16) -> list[str]:
  """Decodes one caption per clip from frames [N, T', D] with mask."""
  module = decoder.module
  max_len = max_len or int(module.max_len) - 1
  kw = dict(bos_id=decoder.bos_id, eos_id=decoder.eos_id, max_len=max_len,
            pad_id=decoder.pad_id)
  out = []
  for start in range(0, len(frames), batch_size):
    mem = frames[start:start + batch_size]
    mem_mask = frame_mask[start:start + batch_size]
    n = len(mem)
    if n < batch_size:  # one compiled shape
      mem = np.concatenate([mem, np.zeros((batch_size - n,) + mem.shape[1:],
                                          mem.dtype)])
      mem_mask = np.concatenate([mem_mask, np.ones(
          (batch_size - n,) + mem_mask.shape[1:], bool)])
    if beam_size == 1:
      ids = module.greedy_decode(params, mem, mem_mask, **kw)
    else:
      ids, _ = module.beam_search(params, mem, mem_mask, beam_size=beam_size,
                                  length_penalty=length_penalty, **kw)
    out.extend(decoder.tokenizer.decode_batch(np.asarray(ids)[:n]))
  return out


# ----------------------------------------------------------------------------
# Metrics.


def _java() -> str | None:
  return shutil.which("java")


def _coco() -> str | None:
  """pycocoevalcap's folder (a namespace package), or None."""
  spec = importlib.util.find_spec("pycocoevalcap")
  if spec is None or not spec.submodule_search_locations:
    return None
  return list(spec.submodule_search_locations)[0]


def _spice_ready(coco_dir: str) -> bool:
  lib = os.path.join(coco_dir, "spice", "lib")
  return all(os.path.exists(os.path.join(lib, f"stanford-corenlp-3.6.0{s}.jar"))
             for s in ("", "-models"))


def metric_availability() -> dict[str, str | None]:
  """Metric -> None when it runs here, else why not."""
  coco = _coco()
  if coco is None:
    reason = ("pycocoevalcap is not installed (pip install "
              "'audiopt[captioning]')")
    out = {m: reason for m in ALL_METRICS}
  else:
    out = {m: None for m in ("BLEU_1", "BLEU_2", "BLEU_3", "BLEU_4",
                             "ROUGE_L", "CIDEr-D")}
    no_java = "needs Java (apt-get install default-jre-headless)"
    out["METEOR"] = None if _java() else no_java
    if not _java():
      out["SPICE"] = out["SPIDEr"] = no_java
    elif not _spice_ready(coco):
      out["SPICE"] = out["SPIDEr"] = (
          "needs Stanford CoreNLP 3.6.0 (stanford-corenlp-3.6.0.jar and "
          "-models.jar) in " + os.path.join(coco, "spice", "lib"))
    else:
      out["SPICE"] = out["SPIDEr"] = None
  out["FENSE"] = ("not available: needs sentence-BERT and an error-detector "
                  "checkpoint from the Hugging Face hub; aac-metrics pins "
                  "numpy<2 and transformers<5 (through msclap), which "
                  "conflict with JAX")
  return out


def tokenize_captions(texts: Sequence[str]) -> tuple[list[str], str]:
  """Lower-cased, punctuation-free token strings, and the tokenizer used.

  With Java: the Stanford PTB tokenizer jar of pycocoevalcap ("ptb"), as
  the COCO evaluation; otherwise a Python approximation ("simple").
  """
  texts = [t.replace("\n", " ") for t in texts]
  coco = _coco()
  if _java() and coco is not None and texts:
    jar = os.path.join(coco, "tokenizer", "stanford-corenlp-3.4.1.jar")
    proc = subprocess.run(
        ["java", "-cp", jar, "edu.stanford.nlp.process.PTBTokenizer",
         "-preserveLines", "-lowerCase"],
        input="\n".join(texts).encode(), capture_output=True, check=False)
    lines = proc.stdout.decode().split("\n")
    if proc.returncode == 0 and len(lines) >= len(texts):
      return [" ".join(w for w in line.split() if w not in _PUNCTUATION)
              for line in lines[:len(texts)]], "ptb"
  out = []
  for t in texts:
    words = re.findall(r"[a-z0-9]+(?:'[a-z]+)?|n't|'[a-z]+", t.lower())
    out.append(" ".join(w for w in words if w not in _PUNCTUATION))
  return out, "simple"


def score_captions(predictions: Sequence[str],
                   references: Sequence[Sequence[str]],
                   metrics: Sequence[str] | None = None) -> dict[str, Any]:
  """Corpus-level caption metrics.

  Args:
    predictions: one caption per clip.
    references: the reference captions of each clip.
    metrics: which of `ALL_METRICS`; None: every one that runs here.

  Returns:
    {metric: float} for the metrics computed, plus "tokenizer" ("ptb" or
    "simple") and "unavailable": {metric: reason} for those requested (or,
    with None, all) that cannot run here.
  """
  if len(predictions) != len(references):
    raise ValueError(f"{len(predictions)} predictions but {len(references)} "
                     "reference lists")
  if not predictions:
    raise ValueError("no captions to score")
  if any(not refs for refs in references):
    raise ValueError("every clip needs at least one reference caption")
  unknown = sorted(set(metrics or ()) - set(ALL_METRICS))
  if unknown:
    raise ValueError(f"unknown metrics {unknown}; valid: {ALL_METRICS}")
  available = metric_availability()
  wanted = list(metrics) if metrics is not None else list(ALL_METRICS)
  run = [m for m in wanted if available[m] is None]
  out: dict[str, Any] = {"unavailable": {m: available[m] for m in wanted
                                         if available[m] is not None}}
  flat = list(predictions) + [r for refs in references for r in refs]
  tokens, out["tokenizer"] = tokenize_captions(flat)
  res = {i: [tokens[i] or " "] for i in range(len(predictions))}
  gts, at = {}, len(predictions)
  for i, refs in enumerate(references):
    gts[i] = tokens[at:at + len(refs)]
    at += len(refs)
  if not run:
    return out
  # pylint: disable=g-import-not-at-top
  from pycocoevalcap.bleu.bleu import Bleu
  from pycocoevalcap.cider.cider import Cider
  from pycocoevalcap.rouge.rouge import Rouge
  # pylint: enable=g-import-not-at-top
  if any(m.startswith("BLEU") for m in run):
    bleu, _ = Bleu(4).compute_score(gts, res, verbose=0)
    for n in range(4):
      if f"BLEU_{n + 1}" in run:
        out[f"BLEU_{n + 1}"] = float(bleu[n])
  if "ROUGE_L" in run:
    out["ROUGE_L"] = float(Rouge().compute_score(gts, res)[0])
  if "CIDEr-D" in run or "SPIDEr" in run:
    cider = float(Cider().compute_score(gts, res)[0])
    if "CIDEr-D" in run:
      out["CIDEr-D"] = cider
  if "METEOR" in run:
    from pycocoevalcap.meteor.meteor import Meteor  # pylint: disable=g-import-not-at-top
    meteor = Meteor()
    try:
      out["METEOR"] = float(meteor.compute_score(gts, res)[0])
    finally:
      meteor.meteor_p.kill()
      meteor.meteor_p.wait()
  if "SPICE" in run or "SPIDEr" in run:
    from pycocoevalcap.spice.spice import Spice  # pylint: disable=g-import-not-at-top
    spice = float(Spice().compute_score(gts, res)[0])
    if "SPICE" in run:
      out["SPICE"] = spice
    if "SPIDEr" in run:
      out["SPIDEr"] = (cider + spice) / 2
  return out


# ----------------------------------------------------------------------------
# End to end.


def evaluate_captioning(restored, train_clips: Sequence[np.ndarray],
                        train_captions: Sequence[Sequence[str]],
                        test_clips: Sequence[np.ndarray],
                        test_captions: Sequence[Sequence[str]],
                        config: CaptionFinetuneConfig = CaptionFinetuneConfig(),
                        *, decoder_from=None,
                        metrics: Sequence[str] | None = None
                        ) -> dict[str, Any]:
  """Fine-tunes a caption decoder on a frozen encoder and scores it.

  Args:
    restored: the `Restored` run whose encoder is evaluated (frozen).
    train_clips, train_captions: training waveforms (the run's sample rate)
      and their captions.
    test_clips, test_captions: test waveforms and reference captions.
    config: the settings.
    decoder_from: a `Restored` run with a caption decoder (captioning or
      multi-task) to start from; default: `restored` itself.
    metrics: as `score_captions`.

  Returns:
    {"metrics": score_captions(...), "predictions": [str], "losses":
    [per step], "trainable": [paths], "num_trainable": int,
    "reinitialised": [paths], "decoder": its source}.
  """
  source = decoder_from if decoder_from is not None else restored
  decoder = find_caption_decoder(source)
  if decoder is None:
    raise ValueError(
        f"run step {source.step} (objective "
        f"{source.config.objective.name!r}) has no caption decoder and "
        "tokenizer: pass decoder_from=<a captioning run's Restored>")
  frames, mask = encoder_frames(restored, train_clips,
                                max_seconds=config.max_seconds,
                                batch_size=config.encode_batch_size)
  params, info = finetune_decoder(decoder, frames, mask, train_captions,
                                  config)
  frames, mask = encoder_frames(restored, test_clips,
                                max_seconds=config.max_seconds,
                                batch_size=config.encode_batch_size)
  predictions = generate_captions(
      decoder, params, frames, mask, beam_size=config.beam_size,
      length_penalty=config.length_penalty, max_len=config.max_decode_len,
      batch_size=config.encode_batch_size)
  scores = score_captions(predictions, test_captions, metrics)
  return {"metrics": scores, "predictions": predictions, **info,
          "decoder": decoder.source}


def evaluate_captioning_task(restored, spec, train_split: str = "train",
                             test_split: str = "test",
                             config: CaptionFinetuneConfig = (
                                 CaptionFinetuneConfig()),
                             **kwargs) -> dict[str, Any]:
  """`evaluate_captioning` on a caption `TaskSpec` (AudioCaps, Clotho...)."""
  if spec.kind != "captions":
    raise ValueError(f"task {spec.name!r} is {spec.kind}, not a caption task")
  rate = int(restored.config.frontend.fbank.sample_rate)
  limit = int(config.max_seconds * rate)
  data = {}
  for split in (train_split, test_split):
    pairs = [(wav[:limit], e.captions) for e, wav in spec.iter_audio(split,
                                                                     rate)]
    data[split] = ([w for w, _ in pairs], [c for _, c in pairs])
  return evaluate_captioning(restored, *data[train_split], *data[test_split],
                             config, **kwargs)
