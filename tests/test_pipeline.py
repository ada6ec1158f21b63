"""Tests of the Grain input pipeline over ArrayRecord training records."""

import dataclasses
import itertools
import json

import numpy as np
import pytest

from audiopt.audio import io as audio_io
from audiopt.data import pipeline
from audiopt.data import records

SR = 16000
NUM_RECORDS = 10
OPTS = pipeline.PipelineOptions(global_batch_size=4, clip_seconds=1.0,
                                max_tags=4, max_weak_labels=2,
                                max_label_ids=3, seed=3)


def _wave(i: int) -> np.ndarray:
  # 0.5 s to 2.3 s: some clips get padded, some cropped.
  n = int((0.5 + 0.2 * i) * SR)
  return np.random.default_rng(i).uniform(-0.5, 0.5, n).astype(np.float32)


def _record(i: int) -> dict:
  return {
      "clip_id": f"clip{i:02d}",
      "audio": _wave(i),
      "source": "synthetic",
      "domain": "sound",
      "tags": list(range(i % 7)),  # Up to 6 tags: some exceed max_tags=4.
      "weak_labels": [i],
      "label_ids": [i % 3],
  }


@pytest.fixture(scope="module")
def source(tmp_path_factory):
  data_dir = str(tmp_path_factory.mktemp("records"))
  records.write_records(
      data_dir, "toy",
      {"train": lambda: [_record(i) for i in range(NUM_RECORDS)]},
      metadata={"tag_names": [f"t{i}" for i in range(7)]})
  return records.open_records(data_dir, "toy", "train")


@pytest.fixture(scope="module")
def decoded(source):
  return {r["clip_id"]: audio_io.decode_audio(r["audio"]) for r in source}


def _take(it, n):
  return list(itertools.islice(it, n))


def _ids(batches):
  return [list(b["clip_id"]) for b in batches]


def _assert_batches_equal(a, b):
  assert len(a) == len(b)
  for x, y in zip(a, b):
    assert x.keys() == y.keys()
    for key in x:
      np.testing.assert_array_equal(x[key], y[key], err_msg=key)


def test_shapes_dtypes_padding_and_masks(source, decoded):
  batches = _take(pipeline.make_iterator(source, OPTS), 5)
  s = OPTS.clip_samples
  for batch in batches:
    assert batch["audio"].shape == (4, s) and batch["audio"].dtype == np.float32
    assert batch["audio_mask"].shape == (4, s)
    assert batch["audio_mask"].dtype == np.bool_
    assert batch["tags"].shape == (4, 4) and batch["tags"].dtype == np.int32
    assert batch["weak_labels"].shape == (4, 2)
    assert batch["label_ids"].shape == (4, 3)
    assert batch["clip_id"].dtype == object and batch["valid"].all()
    for row, clip_id in enumerate(batch["clip_id"]):
      i = int(clip_id[4:])
      wav, mask, audio = decoded[clip_id], batch["audio_mask"][row], (
          batch["audio"][row])
      if wav.size <= s:
        assert mask.sum() == wav.size and mask[:wav.size].all()
        np.testing.assert_array_equal(audio[:wav.size], wav)
        assert not audio[wav.size:].any()
      else:  # A contiguous crop of the clip.
        assert mask.all()
        windows = np.lib.stride_tricks.sliding_window_view(wav, s)
        assert (windows == audio).all(axis=1).any()
      tags = list(range(i % 7))[:4]
      assert batch["tags"][row].tolist() == tags + [-1] * (4 - len(tags))
      assert batch["weak_labels"][row].tolist() == [i, -1]
      assert batch["label_ids"][row].tolist() == [i % 3, -1, -1]
  assert pipeline.truncation_counts().get("tags", 0) >= 1


def test_same_seed_same_batches_other_seed_other_order(source):
  a = _take(pipeline.make_iterator(source, OPTS), 6)
  b = _take(pipeline.make_iterator(source, OPTS), 6)
  _assert_batches_equal(a, b)
  other = dataclasses.replace(OPTS, seed=4)
  c = _take(pipeline.make_iterator(source, other), 6)
  assert _ids(a) != _ids(c)


def test_each_epoch_is_a_fresh_permutation(source):
  opts = dataclasses.replace(OPTS, global_batch_size=2)
  ids = sum(_ids(_take(pipeline.make_iterator(source, opts), 15)), [])
  epochs = [ids[k:k + NUM_RECORDS] for k in range(0, 30, NUM_RECORDS)]
  for epoch in epochs:
    assert sorted(epoch) == [f"clip{i:02d}" for i in range(NUM_RECORDS)]
  assert epochs[0] != epochs[1] != epochs[2]


@pytest.mark.parametrize("process_count", [2, 4])
def test_process_slices_partition_the_global_batch(source, process_count):
  whole = _take(pipeline.make_iterator(source, OPTS), 6)
  parts = [
      _take(pipeline.make_iterator(source, OPTS, process_index=p,
                                   process_count=process_count), 6)
      for p in range(process_count)
  ]
  for k, global_batch in enumerate(whole):
    local = [part[k] for part in parts]
    assert all(len(b["clip_id"]) == 4 // process_count for b in local)
    # Concatenated in process order, the local batches are the global batch
    # row for row (clip ids, crops and all), as jax assembles the array.
    for key in ("clip_id", "audio", "audio_mask", "tags"):
      np.testing.assert_array_equal(
          np.concatenate([b[key] for b in local]), global_batch[key])
  # Within the first epoch (global batches 0 and 1) no clip is on two
  # processes.
  first_epoch = [{c for b in part[:2] for c in b["clip_id"]} for part in parts]
  assert sum(map(len, first_epoch)) == len(set().union(*first_epoch)) == 8


def test_global_batch_must_divide_among_processes(source):
  with pytest.raises(ValueError, match="divisible"):
    pipeline.make_iterator(source, OPTS, process_index=0, process_count=3)


@pytest.mark.parametrize("skip", [3, 4])  # Batch 5 starts the second epoch.
def test_state_round_trip_resumes_exactly(source, skip):
  opts = dataclasses.replace(OPTS, global_batch_size=2)
  it = pipeline.make_iterator(source, opts)
  _take(it, skip)
  state = json.loads(json.dumps(it.get_state()))
  expected = _take(it, 4)
  resumed = pipeline.make_iterator(source, opts)
  resumed.set_state(state)
  _assert_batches_equal(_take(resumed, 4), expected)


@pytest.mark.parametrize("process_count", [1, 2, 4])
def test_eval_covers_every_record_once(source, process_count):
  opts = dataclasses.replace(OPTS, global_batch_size=8)
  per_process = [
      list(pipeline.iterate_eval(source, opts, process_index=p,
                                 process_count=process_count))
      for p in range(process_count)
  ]
  assert len({len(batches) for batches in per_process}) == 1
  assert len(per_process[0]) == 2  # 10 records -> 2 batches of 8.
  seen, invalid = [], 0
  for batches in per_process:
    for b in batches:
      assert b["audio"].shape == (8 // process_count, opts.clip_samples)
      seen += list(b["clip_id"][b["valid"]])
      invalid += int((~b["valid"]).sum())
      pad = ~b["valid"]
      assert not b["audio_mask"][pad].any() and (b["tags"][pad] == -1).all()
      assert all(c == "" for c in b["clip_id"][pad])
  assert sorted(seen) == [f"clip{i:02d}" for i in range(NUM_RECORDS)]
  assert invalid == 6


def test_eval_crops_from_the_start(source, decoded):
  batch = next(pipeline.iterate_eval(source, OPTS))
  for clip_id, audio in zip(batch["clip_id"], batch["audio"]):
    wav = decoded[clip_id][:OPTS.clip_samples]
    np.testing.assert_array_equal(audio[:wav.size], wav)


def test_one_pass_with_drop_remainder_drops_it(source):
  opts = dataclasses.replace(OPTS, repeat=False, shuffle=False)
  batches = list(pipeline.make_iterator(source, opts))
  assert _ids(batches) == [[f"clip{i:02d}" for i in range(k, k + 4)]
                           for k in (0, 4)]


def test_undecodable_record_names_the_clip(source):
  bad = [dict(r) for r in source]
  bad[2]["audio"] = b"not audio at all"
  opts = dataclasses.replace(OPTS, shuffle=False)
  with pytest.raises(audio_io.AudioDecodeError, match="clip02"):
    _take(pipeline.make_iterator(bad, opts), 1)
