"""What the text objectives need: captions in the batch and a text tower.

  needs_captions(objective_cfg)  whether a run must tokenize captions
  caption_tokenizer(config, ..)  the run's tokenizer and the pipeline's
                                 `caption -> (ids, mask)` callable
  check_caption_batch(batch)     a clear error when the batch has no tokens
  text_settings(cfg)             (vocab_size, max_len) of the `text` section
  special_ids(cfg)               pad, bos, eos and mask ids of the tokenizer
  build_text_encoder(cfg)        the BERT-style text tower of a config

The objective config these read is `AudioModel`'s `objective_config(config)`:
the objective section with the `text` section under "text".
"""

from collections.abc import Callable, Iterable, Mapping
import functools
from typing import Any

import flax.linen as nn

from audiopt.objectives import multitask
from audiopt.text import tokenizer as tokenizer_lib

# Objectives that read `caption_ids` / `caption_mask`.
TEXT_OBJECTIVES = frozenset({"contrastive", "siglip", "captioning"})


def needs_captions(objective_cfg: Mapping[str, Any]) -> bool:
  """Whether the objective (or a task of a multitask one) reads captions."""
  name = objective_cfg["name"]
  if name == "multitask":
    names = [n for n, _, _ in multitask.parse_tasks(
        objective_cfg.get("tasks", ""))]
  else:
    names = [name]
  return any(n in TEXT_OBJECTIVES for n in names)


def caption_tokenizer(config, captions: Callable[[], Iterable[str]]
                      ) -> tuple[Any, Callable[[str], tuple[Any, Any]]] | None:
  """The tokenizer of a run whose objective reads captions, else None.

  Loads `config.text.tokenizer` (a tokenizer.json) or, when that is empty,
  trains a WordPiece vocabulary of `config.text.vocab_size` on the captions.
  Then sets `config.text.vocab_size` to the tokenizer's true size (a trained
  vocabulary may come out smaller) and `config.text.{pad,bos,eos,mask}_id`
  to its special ids, so the text tower, the decoder and the checkpoint's
  config match it. Call it before building the model.

  Args:
    config: the experiment config (sections objective and text).
    captions: returns the training captions; called only when training.

  Returns:
    None when no objective reads captions; else (the `TextTokenizer`, a
    picklable `caption -> (ids [max_len] int32, mask [max_len] bool)` for
    `PipelineOptions.tokenizer`).
  """
  if not needs_captions(config.objective):
    return None
  if config.text.tokenizer:
    tok = tokenizer_lib.TextTokenizer.from_file(config.text.tokenizer)
  else:
    tok = tokenizer_lib.TextTokenizer.train_wordpiece(
        (c for c in captions() if c), config.text.vocab_size)
  config.text.vocab_size = tok.vocab_size
  config.text.pad_id, config.text.bos_id = tok.pad_id, tok.bos_id
  config.text.eos_id, config.text.mask_id = tok.eos_id, tok.mask_id
  return tok, functools.partial(tok.encode, max_len=config.text.max_len)


def check_caption_batch(batch: Mapping[str, Any]) -> None:
  """Raises ValueError when `caption_ids` / `caption_mask` are missing."""
  missing = [k for k in ("caption_ids", "caption_mask") if k not in batch]
  if missing:
    raise ValueError(
        f"this objective needs caption tokens but the batch has no "
        f"{missing}: give `PipelineOptions` a tokenizer (config.text)")


def text_settings(cfg: Mapping[str, Any]) -> tuple[int, int]:
  """(vocab_size, max_len) from the objective config's "text" section."""
  text = cfg.get("text")
  if not text:
    raise ValueError("a text objective needs the config's `text` section "
                     "(build the model with model.build_model, which adds it)")
  vocab_size, max_len = int(text["vocab_size"]), int(text["max_len"])
  if vocab_size < 1 or max_len < 1:
    raise ValueError(f"config text.vocab_size={vocab_size} and "
                     f"text.max_len={max_len} must be >= 1")
  return vocab_size, max_len


def special_ids(cfg: Mapping[str, Any]) -> dict[str, int]:
  """{"pad", "bos", "eos", "mask"} ids from the objective config's "text"."""
  text_settings(cfg)
  return {k: int(cfg["text"][f"{k}_id"]) for k in ("pad", "bos", "eos", "mask")}


def build_text_encoder(cfg: Mapping[str, Any]) -> nn.Module:
  """The BERT-style text tower of `objective.text_encoder_size`.

  Args:
    cfg: the objective config with its "text" section.

  Returns:
    An unbound module `(ids [B, L], mask [B, L], train) -> (hidden
    [B, L, Dt], pooled [B, Dt])`.
  """
  from audiopt.models import text_encoder  # pylint: disable=g-import-not-at-top
  vocab_size, max_len = text_settings(cfg)
  size = cfg.get("text_encoder_size", "base")
  return text_encoder.build_text_encoder(size, vocab_size=vocab_size,
                                         max_len=max_len)
