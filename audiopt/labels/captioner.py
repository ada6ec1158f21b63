"""The caption stage: one detailed caption per clip, and its strong caption.

A `Captioner` turns a clip's FLAC bytes into a `Caption`: the full caption
(several paragraphs in the Qwen3-Omni-Captioner style) and the strong caption
used as text supervision, its closing summary paragraph (`strong_caption`).
Backends:

- `OpenAICaptioner`: the paper's set-up, Qwen3-Omni-30B-A3B-Captioner served
  by vLLM, one chat request per clip with the audio as the only content (the
  model takes no text prompt).
- `CheckpointCaptioner`: a local model behind a `generate(waveforms)`
  callable. The captioning objective will provide that callable from a
  trained checkpoint; until it exists this is the interface it plugs into.

`run_caption_stage` captions every clip of a record source once, resumable
through the stage journal; clips that cannot be captioned (endpoint errors
after retries, empty or truncated captions, unreadable audio) are quarantined
with the reason.
"""

from __future__ import annotations

import abc
import base64
import concurrent.futures
import dataclasses
import io
import itertools
import os
import re
import zlib
from typing import Any, Callable, Iterable, Iterator, Mapping, Sequence

from absl import logging
import numpy as np
import soundfile
import tqdm

from audiopt import atomic_files
from audiopt.audio import io as audio_io
from audiopt.data import journal as journal_lib
from audiopt.labels import client as client_lib

SAMPLE_RATE = 16000
DEFAULT_CAPTIONER_MODEL = "Qwen/Qwen3-Omni-30B-A3B-Captioner"
# PAPER.md section 1: the data card's sampling, and the released script's.
SAMPLING_PRESETS: dict[str, dict[str, Any]] = {
    "data_card": {"temperature": 0.6, "top_p": 0.95, "max_tokens": 8192},
    "released_script": {"temperature": 0.8, "top_p": 0.9, "top_k": 20,
                        "max_tokens": 8192},
}


@dataclasses.dataclass(frozen=True)
class Caption:
  """A clip's captions.

  Attributes:
    full: the complete caption as the captioner wrote it (stripped).
    strong: its closing summary, `strong_caption(full)`.
  """
  full: str
  strong: str


class CaptionError(RuntimeError):
  """A clip that could not be captioned.

  Attributes:
    kind: short class of the failure, counted in stage summaries:
      "endpoint", "empty", "truncated", "audio" or "model".
  """

  def __init__(self, kind: str, message: str):
    super().__init__(message)
    self.kind = kind


# ----------------------------------------------------------------------------
# Strong captions.

_PARAGRAPH_BREAK = re.compile(r"\n[ \t]*\n+")
_SENTENCE_END = re.compile(
    r"(?:(?<=[.!?])|(?<=[.!?][\"')\]]))\s+(?=[\"'(\[]?[A-Z0-9])")
_MARKUP = re.compile(r"\*\*|__|`|^#+\s*|^\s*(?:[-*+]|\d+[.)])\s+", re.M)
_HEADING = re.compile(r"^(?:summary|overall summary|conclusion|in summary|"
                      r"overall|final summary)\s*[:.\-]?\s*$", re.I)
_LEAD_IN = re.compile(
    r"^(?:in summary|in sum|to summarize|to summarise|to sum up|overall|"
    r"all in all|in conclusion|in short|in essence|summary)\s*[,:\-]\s*",
    re.I)


def _clean_paragraph(paragraph: str) -> str:
  """Drops markdown markup and a heading line; joins lines with spaces."""
  lines = [_MARKUP.sub("", line).strip() for line in paragraph.splitlines()]
  lines = [line for line in lines if line]
  if len(lines) > 1 and _HEADING.match(lines[0]):
    lines = lines[1:]
  return " ".join(lines)


def strong_caption(full: str, *, strip_lead_in: bool = True,
                   fallback_words: int = 25) -> str:
  """Extracts the strong caption (the closing summary) from a full caption.

  The rule:
  1. Paragraphs are separated by blank lines (lines holding only spaces
     count as blank). Markdown emphasis, bullets and a leading heading line
     such as "**Summary:**" are removed; a paragraph that is only such a
     heading does not count.
  2. With two or more paragraphs, the strong caption is the last one.
  3. With a single paragraph, it runs from the last sentence that opens
     with a summary lead-in ("In summary,", "Overall,", ...) to the end;
     without one, it is the shortest run of final sentences holding at least
     `fallback_words` words (the whole paragraph if shorter): captioners
     close with a summary sentence or two.
  4. With `strip_lead_in`, a leading "In summary,", "Overall,", "To sum
     up,", "In conclusion," (and similar) is removed and the next letter
     capitalised: it is boilerplate, the same in every caption, and would
     only teach a text model to emit it.

  Args:
    full: the full caption.
    strip_lead_in: apply step 4.
    fallback_words: minimum length of the step-3 fallback.

  Returns:
    The strong caption; "" when `full` holds no text.
  """
  text = full.replace("\r\n", "\n").replace("\r", "\n").strip()
  paragraphs = [_clean_paragraph(p) for p in _PARAGRAPH_BREAK.split(text)]
  paragraphs = [p for p in paragraphs if p and not _HEADING.match(p)]
  if not paragraphs:
    return ""
  if len(paragraphs) > 1:
    strong = paragraphs[-1]
  else:
    sentences = [s for s in _SENTENCE_END.split(paragraphs[0]) if s.strip()]
    leads = [i for i, s in enumerate(sentences) if _LEAD_IN.match(s)]
    if leads:
      taken = sentences[leads[-1]:]
    else:
      taken = []
      while sentences and sum(len(s.split()) for s in taken) < fallback_words:
        taken.insert(0, sentences.pop())
    strong = " ".join(taken)
  if strip_lead_in:
    stripped = _LEAD_IN.sub("", strong, count=1)
    if stripped and stripped != strong:
      strong = stripped[0].upper() + stripped[1:]
  return strong.strip()


# ----------------------------------------------------------------------------
# Captioners.


class Captioner(abc.ABC):
  """Turns clips into captions.

  Attributes:
    name: identifies the captioner in stage results ("openai:<model>", ...).
  """

  name: str = "captioner"

  @abc.abstractmethod
  def caption_batch(self, items: Sequence[tuple[str, bytes]]
                    ) -> list[Caption | CaptionError]:
    """Captions several clips.

    Args:
      items: (clip_id, FLAC bytes of 16 kHz mono audio) pairs.

    Returns:
      One entry per item, in order: its `Caption`, or the `CaptionError`
      that kept it from being captioned (one clip's failure does not fail
      the batch).
    """

  def caption(self, clip_id: str, flac_bytes: bytes) -> Caption:
    """Captions one clip; raises its `CaptionError` on failure."""
    result = self.caption_batch([(clip_id, flac_bytes)])[0]
    if isinstance(result, CaptionError):
      raise result
    return result


def _make_caption(text: str, finish_reason: str | None = None, *,
                  accept_truncated: bool = False) -> Caption | CaptionError:
  """Builds a Caption from model text, or the error that rejects it."""
  full = (text or "").strip()
  if not full:
    return CaptionError("empty", "the captioner returned an empty caption")
  if finish_reason == "length" and not accept_truncated:
    return CaptionError("truncated", "caption cut at max_tokens "
                        "(finish_reason=length); its summary is missing")
  strong = strong_caption(full)
  if not strong:
    return CaptionError("empty", "no strong caption in the caption")
  return Caption(full=full, strong=strong)


def _check_audio(data: bytes, clip_id: str) -> None:
  """Raises AudioDecodeError unless `data` has a readable audio header."""
  try:
    info = soundfile.info(io.BytesIO(data))
  except (soundfile.LibsndfileError, RuntimeError, TypeError) as e:
    raise audio_io.AudioDecodeError(clip_id, str(e)) from None
  if info.frames <= 0:
    raise audio_io.AudioDecodeError(clip_id, "no samples")


def _wav_bytes(flac_bytes: bytes, clip_id: str) -> bytes:
  """Re-encodes FLAC audio as 16-bit WAV."""
  wav = audio_io.decode_audio(flac_bytes, name=clip_id,
                              target_sample_rate=SAMPLE_RATE)
  buf = io.BytesIO()
  soundfile.write(buf, wav, SAMPLE_RATE, format="WAV", subtype="PCM_16")
  return buf.getvalue()


class OpenAICaptioner(Captioner):
  """Captions through an OpenAI-compatible endpoint (vLLM), audio only.

  Each request holds one user message whose only content part is the audio,
  base64-encoded, as an `input_audio` part; no text prompt.

  Args:
    client: the chat client (its pool bounds the concurrency).
    model: the served model name.
    preset: "data_card" (temperature 0.6, top-p 0.95, max 8192 tokens) or
      "released_script" (0.8, 0.9, top-k 20, 8192); see `SAMPLING_PRESETS`.
    audio_format: "flac" (send the record's bytes) or "wav" (re-encode).
    accept_truncated: keep captions cut at max_tokens (default: quarantine
      them, since their closing summary is missing).
    **sampling: overrides of the preset (temperature=..., top_p=...,
      top_k=..., max_tokens=..., seed=...).
  """

  def __init__(self, client: client_lib.ChatClient, *,
               model: str = DEFAULT_CAPTIONER_MODEL,
               preset: str = "data_card", audio_format: str = "flac",
               accept_truncated: bool = False, **sampling: Any):
    if preset not in SAMPLING_PRESETS:
      raise ValueError(f"unknown sampling preset {preset!r}; presets: "
                       f"{sorted(SAMPLING_PRESETS)}")
    if audio_format not in ("flac", "wav"):
      raise ValueError(f"audio_format must be 'flac' or 'wav', got "
                       f"{audio_format!r}")
    self.client = client
    self.model = model
    self.sampling = {**SAMPLING_PRESETS[preset], **sampling}
    self.audio_format = audio_format
    self.accept_truncated = accept_truncated
    self.name = f"openai:{model}"

  def messages(self, clip_id: str, flac_bytes: bytes) -> list[dict[str, Any]]:
    """The chat messages of one clip's request.

    Raises:
      audio_io.AudioDecodeError: the bytes are not readable audio (checked
        here so that a broken clip costs no request).
    """
    if self.audio_format == "flac":
      _check_audio(flac_bytes, clip_id)
      data = flac_bytes
    else:
      data = _wav_bytes(flac_bytes, clip_id)
    part = {"type": "input_audio",
            "input_audio": {"data": base64.b64encode(data).decode("ascii"),
                            "format": self.audio_format}}
    return [{"role": "user", "content": [part]}]

  def caption_batch(self, items: Sequence[tuple[str, bytes]]
                    ) -> list[Caption | CaptionError]:
    """Sends every clip's request concurrently; results in item order, a
    failed request or undecodable clip as its CaptionError."""
    futures: list[concurrent.futures.Future | CaptionError] = []
    for clip_id, flac_bytes in items:
      try:
        messages = self.messages(clip_id, flac_bytes)
      except audio_io.AudioDecodeError as e:
        futures.append(CaptionError("audio", str(e)))
        continue
      futures.append(self.client.submit(messages, model=self.model,
                                        **self.sampling))
    results: list[Caption | CaptionError] = []
    for future in futures:
      if isinstance(future, CaptionError):
        results.append(future)
        continue
      try:
        response = future.result()
      except client_lib.ChatError as e:
        results.append(CaptionError("endpoint", str(e)))
        continue
      results.append(_make_caption(response.text, response.finish_reason,
                                   accept_truncated=self.accept_truncated))
    return results


class CheckpointCaptioner(Captioner):
  """Captions with a local model through a `generate` callable.

  `from_checkpoint` builds `generate` from a run of the captioning objective
  (or a multitask run with a captioning task); this class decodes the audio,
  batches it and turns the texts into `Caption`s.

  Args:
    generate: waveforms -> captions: takes a list of float32 [N_i] 16 kHz
      mono waveforms and returns one string per waveform, in order.
    name: identifies the model in stage results.
  """

  def __init__(self, generate: Callable[[list[np.ndarray]], list[str]], *,
               name: str = "checkpoint"):
    self.generate = generate
    self.name = name

  @classmethod
  def from_checkpoint(cls, path: str, *, step: int | None = None,
                      beam_size: int = 1) -> "CheckpointCaptioner":
    """A captioner decoding with a trained run of this project.

    Args:
      path: the run's workdir or its checkpoints directory.
      step: the checkpoint step; the newest when None.
      beam_size: 1: greedy decoding; more: beam search.
    """
    from audiopt.train import restore  # pylint: disable=g-import-not-at-top
    model = restore.load_checkpoint(path, step)
    if model.tokenizer is None:
      raise ValueError(f"{path}: checkpoint step {model.step} has no caption "
                       "decoder (objective "
                       f"{model.config.objective.name!r})")
    return cls(lambda wavs: model.captions(wavs, beam_size=beam_size),
               name=f"{os.path.abspath(path)}@{model.step}")

  def caption_batch(self, items: Sequence[tuple[str, bytes]]
                    ) -> list[Caption | CaptionError]:
    """Decodes the clips and captions them in one padded batch; a clip that
    does not decode becomes its CaptionError, in order."""
    results: list[Caption | CaptionError | None] = [None] * len(items)
    waveforms, slots = [], []
    for i, (clip_id, flac_bytes) in enumerate(items):
      try:
        waveforms.append(audio_io.decode_audio(
            flac_bytes, name=clip_id, target_sample_rate=SAMPLE_RATE))
        slots.append(i)
      except audio_io.AudioDecodeError as e:
        results[i] = CaptionError("audio", str(e))
    if waveforms:
      try:
        texts = list(self.generate(waveforms))
        if len(texts) != len(waveforms):
          raise ValueError(f"generate returned {len(texts)} captions for "
                           f"{len(waveforms)} waveforms")
      except Exception as e:  # pylint: disable=broad-exception-caught
        error = CaptionError("model", f"{type(e).__name__}: {e}")
        texts = [error] * len(waveforms)
      for i, text in zip(slots, texts):
        results[i] = (text if isinstance(text, CaptionError)
                      else _make_caption(text))
    return results  # type: ignore[return-value]


# ----------------------------------------------------------------------------
# The stage.


def in_shard(item_id: str, shard_index: int, num_shards: int) -> bool:
  """Whether an item belongs to a shard: crc32(id) mod num_shards.

  Every labelling stage shards by this rule, so shard i of the tag stage
  reads the clips shard i of the caption stage wrote.
  """
  return zlib.crc32(str(item_id).encode("utf-8")) % num_shards == shard_index


def batched(iterable: Iterable[Any], size: int) -> Iterator[list[Any]]:
  """Yields lists of up to `size` consecutive items."""
  iterator = iter(iterable)
  while batch := list(itertools.islice(iterator, size)):
    yield batch


def _flac_of(record: Mapping[str, Any]) -> bytes:
  """The record's audio as FLAC bytes (waveforms are encoded)."""
  audio = record.get("audio")
  if isinstance(audio, (bytes, bytearray, memoryview)):
    return bytes(audio)
  if audio is None:
    raise audio_io.AudioDecodeError(str(record.get("clip_id")), "no audio")
  try:
    return audio_io.encode_flac(np.asarray(audio, dtype=np.float32))
  except ValueError as e:
    raise audio_io.AudioDecodeError(str(record.get("clip_id")), str(e)) \
        from None


def write_stage_summary(stage_dir: str, shard_index: int, num_shards: int,
                        summary: Mapping[str, Any]) -> None:
  """Writes summary-<shard>.json beside a stage's journal, atomically.

  Temporary copies of it that a killed run of this shard left are removed
  (one process runs a shard of a stage at a time).
  """
  name = f"summary{journal_lib.shard_suffix(shard_index, num_shards)}.json"
  atomic_files.write_json_atomic(os.path.join(stage_dir, name), dict(summary),
                                 indent=1, remove_stale=True)


def run_caption_stage(records_source: Iterable[Mapping[str, Any]],
                      stage_dir: str, captioner: Captioner, *,
                      shard_index: int = 0, num_shards: int = 1,
                      batch_size: int = 64, progress: bool = True
                      ) -> dict[str, Any]:
  """Captions every clip of this shard once; resumable.

  Clips already in the journal (captioned or quarantined) are skipped, so a
  run killed at any point and started again ends with exactly one line per
  clip. Results are journaled as each batch completes.

  Args:
    records_source: records with "clip_id" and "audio" (FLAC bytes, or a
      float waveform at 16 kHz), optionally "domain" and "source" (carried
      into the results); e.g. `records.open_records(...)` or a list.
    stage_dir: the caption stage directory.
    captioner: the captioner.
    shard_index: this shard, in [0, num_shards).
    num_shards: how many shards split the clips (`in_shard`).
    batch_size: clips handed to the captioner at once (keep it a few times
      the client's max_concurrency so the pool stays busy).
    progress: show a progress bar.

  Returns:
    Summary: "results", "quarantined", "resumed" (as the journal counts
    them), "captioned" and "failed" (in this run), "failures" (kind ->
    count in this run), "captioner". Also written to
    `<stage_dir>/summary-<shard>.json`.

  Result rows: {"id", "caption", "strong_caption", "domain", "source",
  "captioner"}; quarantine rows: {"id", "reason", "kind", "captioner"}.
  """
  total = len(records_source) if hasattr(records_source, "__len__") else None
  captioned = failed = 0
  failures: dict[str, int] = {}
  with journal_lib.Journal(stage_dir, shard_index, num_shards) as journal:
    seen: set[str] = set()
    bar = tqdm.tqdm(total=total, disable=not progress, unit="record",
                    desc=f"caption {shard_index}/{num_shards}")

    def pending() -> Iterator[Mapping[str, Any]]:
      for record in records_source:
        bar.update(1)
        clip_id = str(record["clip_id"])
        if (in_shard(clip_id, shard_index, num_shards)
            and not journal.is_done(clip_id) and clip_id not in seen):
          seen.add(clip_id)
          yield record

    with bar:
      for batch in batched(pending(), batch_size):
        items, metadata = [], []
        for record in batch:
          clip_id = str(record["clip_id"])
          try:
            items.append((clip_id, _flac_of(record)))
            metadata.append(record)
          except audio_io.AudioDecodeError as e:
            journal.quarantine(clip_id, str(e), kind="audio",
                               captioner=captioner.name)
            failed += 1
            failures["audio"] = failures.get("audio", 0) + 1
        for (clip_id, _), record, result in zip(
            items, metadata, captioner.caption_batch(items)):
          if isinstance(result, CaptionError):
            journal.quarantine(clip_id, str(result), kind=result.kind,
                               captioner=captioner.name)
            failed += 1
            failures[result.kind] = failures.get(result.kind, 0) + 1
          else:
            journal.add_result(clip_id, caption=result.full,
                               strong_caption=result.strong,
                               domain=str(record.get("domain") or ""),
                               source=str(record.get("source") or ""),
                               captioner=captioner.name)
            captioned += 1
    summary = {**journal.summary(), "captioned": captioned, "failed": failed,
               "failures": failures, "captioner": captioner.name}
  write_stage_summary(stage_dir, shard_index, num_shards, summary)
  logging.info("caption stage %s shard %d/%d: %s", stage_dir, shard_index,
               num_shards, summary)
  return summary
