"""Tests of the record schema and the TFDS ArrayRecord writer/reader."""

import os
import shutil

import numpy as np
import pytest

from audiopt.audio import io as audio_io
from audiopt.data import records
from audiopt.data import schema

SR = schema.SAMPLE_RATE
METADATA = {
    "tag_names": ["dog", "bark", "music"],
    "weak_label_names": ["Dog", "Music"],
    "label_names": [],
    "task": "pretrain",
}


def _wave(seconds: float, freq: float, seed: int) -> np.ndarray:
  t = np.arange(int(seconds * SR)) / SR
  noise = np.random.default_rng(seed).normal(0, 0.01, t.shape)
  return (0.3 * np.sin(2 * np.pi * freq * t) + noise).astype(np.float32)


def _examples(prefix: str, n: int) -> list[dict]:
  out = []
  for i in range(n):
    wav = _wave(0.5 + 0.4 * i, 220.0 * (i + 1), i)
    out.append({
        "clip_id": f"{prefix}{i:02d}",
        # One record arrives already encoded, the others as waveforms.
        "audio": audio_io.encode_flac(wav) if i == 1 else wav,
        "source": "synthetic",
        "domain": schema.DOMAINS[i % len(schema.DOMAINS)],
        "caption": f"a tone at {220 * (i + 1)} hz" if i % 2 == 0 else "",
        "caption_full": "" if i % 2 == 0 else "long caption ü",
        "tags": list(range(i % 4)),
        "weak_labels": [i % 2],
        "label_ids": [],
    })
  return out


@pytest.fixture(scope="module")
def written(tmp_path_factory):
  data_dir = str(tmp_path_factory.mktemp("records"))
  train, test = _examples("tr", 5), _examples("te", 2)
  records.write_records(data_dir, "toy", {"train": lambda: train,
                                          "test": lambda: test},
                        metadata=METADATA, description="toy corpus")
  return data_dir, {"train": train, "test": test}


def _copy(data_dir, tmp_path) -> str:
  dst = str(tmp_path / "copy")
  shutil.copytree(data_dir, dst)
  return dst


def test_round_trip(written):
  data_dir, inputs = written
  for split, expected in inputs.items():
    source = records.open_records(data_dir, "toy", split)
    assert source.num_records == len(source) == len(expected)
    assert source.metadata == METADATA
    for got, want in zip(source, expected):  # Written order is kept.
      for key in ("clip_id", "source", "domain", "caption", "caption_full"):
        assert got[key] == want[key], key
      for key in schema.ID_FIELDS:
        assert got[key].dtype == np.int64
        np.testing.assert_array_equal(got[key], want[key])
      wav = want["audio"]
      if isinstance(wav, bytes):
        assert got["audio"] == wav
        wav = audio_io.decode_audio(wav)
      decoded = audio_io.decode_audio(got["audio"])
      assert decoded.shape == wav.shape
      np.testing.assert_allclose(decoded, wav, atol=1.5 / 32768)
      assert got["duration"] == pytest.approx(wav.size / SR, abs=1e-6)


def test_rewrite_is_a_no_op(written):
  data_dir, _ = written
  info = os.path.join(data_dir, "toy", "1.0.0", "dataset_info.json")
  before = os.stat(info).st_mtime_ns

  def boom():
    raise AssertionError("split function called for a complete data set")

  records.write_records(data_dir, "toy", {"train": boom}, metadata={})
  assert os.stat(info).st_mtime_ns == before


def test_missing_paths_name_what_exists(written, tmp_path):
  data_dir, _ = written
  with pytest.raises(FileNotFoundError, match="nowhere"):
    records.open_records(str(tmp_path / "nowhere"), "toy", "train")
  with pytest.raises(FileNotFoundError, match=r"other.*\['toy'\]"):
    records.open_records(data_dir, "other", "train")
  with pytest.raises(FileNotFoundError, match=r"valid.*\['test', 'train'\]"):
    records.open_records(data_dir, "toy", "valid")
  with pytest.raises(FileNotFoundError, match=r"2\.0\.0.*\['1\.0\.0'\]"):
    records.open_records(data_dir, "toy", "train", version="2.0.0")


def test_deleted_shard_is_named(written, tmp_path):
  data_dir = _copy(written[0], tmp_path)
  shard = records.open_records(data_dir, "toy", "train").shard_files[0]
  os.remove(shard)
  with pytest.raises(FileNotFoundError, match=os.path.basename(shard)):
    records.open_records(data_dir, "toy", "train")


@pytest.mark.parametrize("damage", ["truncate", "overwrite"])
def test_corrupted_shard_is_named(written, tmp_path, damage):
  data_dir = _copy(written[0], tmp_path)
  shard = records.open_records(data_dir, "toy", "train").shard_files[0]
  with open(shard, "rb") as f:
    data = f.read()
  with open(shard, "wb") as f:
    f.write(data[:len(data) // 2] if damage == "truncate" else
            b"\x5a" * len(data))
  source = records.open_records(data_dir, "toy", "train")
  with pytest.raises(records.ShardReadError, match=os.path.basename(shard)):
    source[0]  # pylint: disable=pointless-statement


def test_bad_record_fails_the_write_and_names_the_clip(tmp_path):
  examples = _examples("x", 3)
  examples[2]["tags"] = [1, -4]
  with pytest.raises(ValueError, match=r"'x02'.*'tags'"):
    records.write_records(str(tmp_path), "bad", {"train": lambda: examples},
                          metadata={})
  with pytest.raises(FileNotFoundError):
    records.open_records(str(tmp_path), "bad", "train")


def test_write_removes_what_a_killed_write_left(tmp_path):
  stale = tmp_path / "toy" / "incomplete.AB12CD_1.0.0"
  stale.mkdir(parents=True)
  (stale / "toy-train.array_record-00000-of-00001").write_bytes(b"partial")
  other = tmp_path / "toy" / "incomplete.AB12CD_2.0.0"  # another version's
  other.mkdir()
  examples = _examples("x", 2)
  records.write_records(str(tmp_path), "toy", {"train": lambda: examples},
                        metadata={})
  assert sorted(os.listdir(tmp_path / "toy")) == [
      "1.0.0", "incomplete.AB12CD_2.0.0"]
  assert len(records.open_records(str(tmp_path), "toy", "train")) == 2


def test_duplicate_clip_ids_are_refused(tmp_path):
  examples = _examples("x", 2)
  examples[1]["clip_id"] = "x00"
  with pytest.raises(ValueError, match=r"'x00'.*duplicate"):
    records.write_records(str(tmp_path), "dup", {"train": lambda: examples},
                          metadata={})


def test_make_example_normalises():
  wav = _wave(1.0, 440.0, 0)
  ex = schema.make_example(clip_id="a", audio=wav, source="s", domain="sound",
                           tags=np.array([3, 1]), caption=None)
  assert set(ex) == set(schema.FIELDS)
  assert ex["audio"].startswith(b"fLaC")
  assert ex["duration"] == pytest.approx(1.0)
  assert ex["caption"] == ""
  assert ex["tags"].dtype == np.int64 and ex["tags"].tolist() == [3, 1]
  assert ex["label_ids"].shape == (0,)


@pytest.mark.parametrize("change, key", [
    ({"domain": "noise"}, "domain"),
    ({"tags": [1.5]}, "tags"),
    ({"weak_labels": [[1, 2]]}, "weak_labels"),
    ({"audio": np.zeros((2, 100), np.float32)}, "audio"),
    ({"audio": np.zeros((100,), np.int16)}, "audio"),
    ({"audio": b"RIFF0000"}, "audio"),
    ({"audio": audio_io.encode_flac(np.zeros(800, np.float32), 8000)},
     "audio"),
    ({"duration": 3.0}, "duration"),
    ({"caption": 5}, "caption"),
    ({"colour": "red"}, "colour"),
    ({"source": None}, "source"),
])
def test_validate_example_names_clip_and_key(change, key):
  example = {"clip_id": "clip7", "audio": _wave(0.5, 300.0, 1),
             "source": "s", "domain": "music"}
  example.update(change)
  with pytest.raises(ValueError, match=rf"'clip7'.*'{key}'"):
    schema.validate_example(example, index_or_id=3)


def test_validate_example_without_clip_id_names_the_index():
  with pytest.raises(ValueError, match=r"#3.*'clip_id'"):
    schema.validate_example({"audio": b"", "source": "s", "domain": "music"},
                            index_or_id=3)
