"""Caption tokens in pipeline batches (`PipelineOptions.tokenizer`)."""

import dataclasses
import itertools

import numpy as np

from audiopt.data import pipeline
from audiopt.data import records

WIDTH = 6


def word_ids(text: str) -> tuple[np.ndarray, np.ndarray]:
  """A stand-in tokenizer: word lengths + 1 as ids, fixed width WIDTH."""
  words = text.split()[:WIDTH]
  ids = np.zeros(WIDTH, np.int32)
  ids[:len(words)] = [len(w) + 1 for w in words]
  return ids, ids > 0


def _records():
  rng = np.random.default_rng(0)
  return [{"clip_id": f"c{i}", "audio": rng.uniform(-.5, .5, 8000).astype(
      np.float32), "source": "s", "domain": "sound",
           "caption": " ".join(["word"] * i), "tags": [i]} for i in range(5)]


def test_caption_keys_only_with_a_tokenizer(tmp_path):
  data_dir = str(tmp_path)
  records.write_records(data_dir, "caps", {"train": _records}, metadata={})
  source = records.open_records(data_dir, "caps", "train")
  opts = pipeline.PipelineOptions(global_batch_size=4, clip_seconds=0.5,
                                  shuffle=False)
  plain = next(pipeline.make_iterator(source, opts))
  assert "caption_ids" not in plain

  with_tok = dataclasses.replace(opts, tokenizer=word_ids)
  assert with_tok == opts and hash(with_tok) == hash(opts)
  batches = list(itertools.islice(
      pipeline.iterate_eval(source, with_tok), 2))
  ids = np.concatenate([b["caption_ids"] for b in batches])
  mask = np.concatenate([b["caption_mask"] for b in batches])
  clip_ids = np.concatenate([b["clip_id"] for b in batches])
  assert ids.dtype == np.int32 and mask.dtype == np.bool_
  assert ids.shape == (8, WIDTH)
  for row_ids, row_mask, clip in zip(ids, mask, clip_ids):
    if not clip:  # padding rows of the eval remainder
      assert not row_mask.any() and not row_ids.any()
      continue
    n = min(int(clip[1:]), WIDTH)
    np.testing.assert_array_equal(row_mask, np.arange(WIDTH) < n)
    np.testing.assert_array_equal(row_ids[:n], 5)
  first = next(pipeline.iterate_eval(source, opts))
  for key in ("audio", "tags", "valid"):
    np.testing.assert_array_equal(batches[0][key], first[key])
