"""Records stage: clips + captions + tags + weak labels -> TFDS records."""

import json
import os

import numpy as np
import pytest
import soundfile

from audiopt.data import ingest
from audiopt.data import journal
from audiopt.data import records
from audiopt.data import records_stage
from audiopt.data.manifests import ManifestRow

SR = 16000
VOCAB = ["dog", "bark", "engine", "speech", "high-fidelity"]
WEAK = ["Speech", "Dog", "Vehicle"]


@pytest.fixture(scope="module")
def ingest_dir(tmp_path_factory):
  """Five manifest clips ingested: one splits into two chunks, one is bad."""
  root = tmp_path_factory.mktemp("records_stage")
  audio = root / "audio"
  audio.mkdir()
  rng = np.random.RandomState(1)
  rows = []
  specs = {"dog": (2.0, ("Dog",), "audioset", ("Dogs", "barking")),
           "car": (3.0, ("Vehicle", "Unknown"), "audioset", ("engine",)),
           "talk": (2.5, ("Speech",), "paraspeechcaps", ("speech",)),
           "long": (5.0, (), "musiccaps", ("high_fidelity",)),
           "quiet": (1.5, (), "clotho", ("silence",))}
  for name, (seconds, labels, source, tags) in specs.items():
    soundfile.write(audio / f"{name}.wav",
                    0.1 * rng.randn(int(seconds * SR)).astype(np.float32), SR)
    rows.append(ManifestRow(
        clip_id=name, path=str(audio / name), labels=labels, source=source,
        tags=tags, caption=f"Details of {name}.\n\nIn summary, {name}."))
  (audio / "broken.wav").write_bytes(b"garbage" * 10)
  rows.append(ManifestRow("broken", str(audio / "broken.wav")))
  out = root / "ingest"
  ingest.run_ingest(rows, str(out), max_seconds=3.0, num_workers=1,
                    progress=False)
  return str(out)


def _stage(directory, rows):
  with journal.Journal(str(directory)) as j:
    for row in rows:
      j.add_result(row.pop("id"), **row)
  return str(directory)


@pytest.fixture(scope="module")
def label_stages(ingest_dir, tmp_path_factory):
  """Caption and tag stage results, a vocabulary and its variants map."""
  root = tmp_path_factory.mktemp("labels")
  captions = _stage(root / "caption", [
      {"id": "dog", "full": "A long text.\n\nA dog barks.",
       "strong": "A dog barks."},
      {"id": "car", "full": "Engine.", "strong": "An engine idles.",
       "domain": "sound"},
      {"id": "talk", "caption": "Full text.", "strong_caption": "A man talks."},
      {"id": "long#000", "full": "Music.", "strong": "Music plays."},
      {"id": "long#001", "full": "Music.", "strong": "More music."},
      # "quiet" has no caption: dropped as "no_caption".
  ])
  tags = _stage(root / "tag", [
      {"id": "dog", "tags": ["Dogs", "bark", "pet"]},
      {"id": "car", "tags": ["engine", "engine"], "domain": "sound"},
      {"id": "talk", "tags": ["chatter"]},  # nothing in the vocabulary
      {"id": "long#000", "tags": ["high_fidelity"]},
      {"id": "long#001", "tags": ["highfidelity", "dog"]},
      {"id": "quiet", "tags": ["dog"]},
  ])
  vocab_dir = root / "vocab"
  vocab_dir.mkdir()
  (vocab_dir / "label_5.json").write_text(
      json.dumps({str(i): t for i, t in enumerate(VOCAB)}))
  (vocab_dir / "variants.json").write_text(json.dumps(
      {"Dogs": "dog", "high_fidelity": "high-fidelity",
       "highfidelity": "high-fidelity", "pet": None}))
  return captions, tags, str(vocab_dir / "label_5.json")


def _read_all(data_dir, name, split):
  source = records.open_records(str(data_dir), name, split)
  return {r["clip_id"]: r for r in source}, source.metadata


def test_joins_captions_tags_and_weak_labels(ingest_dir, label_stages,
                                             tmp_path):
  captions, tags, vocab = label_stages
  data_dir = tmp_path / "data"
  summary = records_stage.run_records_stage(
      ingest_dir, captions, tags, vocab, str(data_dir), "uts_test",
      weak_label_names=WEAK, progress=False)
  assert summary["clips"] == 6  # dog, car, talk, long#000, long#001, quiet
  assert summary["written"] == {"train": 4}
  assert summary["dropped"] == {"no_tags": 1, "no_caption": 1}
  assert summary["unknown_weak_labels"] == 1  # "Unknown" of the car
  got, metadata = _read_all(data_dir, "uts_test", "train")
  assert sorted(got) == ["car", "dog", "long#000", "long#001"]
  assert metadata["tag_names"] == VOCAB
  assert metadata["weak_label_names"] == WEAK
  dog = got["dog"]
  assert dog["caption"] == "A dog barks."
  assert dog["caption_full"] == "A long text.\n\nA dog barks."
  assert dog["tags"].tolist() == [0, 1]  # Dogs -> dog, pet dropped
  assert dog["weak_labels"].tolist() == [1]
  assert dog["domain"] == "mixed" and dog["source"] == "audioset"
  assert dog["duration"] == 2.0
  wav, rate = soundfile.read(__import__("io").BytesIO(dog["audio"]))
  assert rate == SR and len(wav) == 2 * SR
  assert got["car"]["tags"].tolist() == [2]
  assert got["car"]["weak_labels"].tolist() == [2]
  assert got["car"]["domain"] == "sound"
  assert got["long#000"]["tags"].tolist() == [4]
  assert got["long#001"]["tags"].tolist() == [4, 0]
  assert got["long#001"]["domain"] == "music"  # musiccaps
  assert got["long#000"]["duration"] == 2.5
  stage_dir = data_dir / "_records_stage" / "uts_test-1.0.0"
  quarantine = {r["id"]: r for r in journal.read_quarantine(str(stage_dir))}
  assert {k: v["kind"] for k, v in quarantine.items()} == {
      "talk": "no_tags", "quiet": "no_caption"}
  assert len(list(journal.read_results(str(stage_dir)))) == 4
  # A rerun leaves the complete data set as it is.
  info = data_dir / "uts_test" / "1.0.0" / "dataset_info.json"
  mtime = os.path.getmtime(info)
  again = records_stage.run_records_stage(
      ingest_dir, captions, tags, vocab, str(data_dir), "uts_test",
      weak_label_names=WEAK, progress=False)
  assert again["written"] == summary["written"]
  assert again["resumed"] == 6 and os.path.getmtime(info) == mtime


def test_journal_filled_in_after_a_kill(ingest_dir, label_stages, tmp_path):
  """Records complete, journal lost: the rerun rebuilds it, nothing else."""
  captions, tags, vocab = label_stages
  data_dir = tmp_path / "data"
  kwargs = dict(weak_label_names=WEAK, progress=False)
  records_stage.run_records_stage(ingest_dir, captions, tags, vocab,
                                  str(data_dir), "killed", **kwargs)
  stage_dir = data_dir / "_records_stage" / "killed-1.0.0"
  for name in os.listdir(stage_dir):
    os.remove(stage_dir / name)
  summary = records_stage.run_records_stage(
      ingest_dir, captions, tags, vocab, str(data_dir), "killed", **kwargs)
  assert summary["results"] == 4 and summary["quarantined"] == 2


def test_manifest_labels_only(ingest_dir, label_stages, tmp_path):
  """UTS-style: tags and full captions from the manifest, no LLM stages."""
  _, _, vocab = label_stages
  data_dir = tmp_path / "data"
  summary = records_stage.run_records_stage(
      ingest_dir, None, None, vocab, str(data_dir), "from_manifest",
      manifest_caption="full", split_rules={"train": 0.5, "validation": 0.5},
      progress=False)
  assert summary["dropped"] == {"no_tags": 1}  # quiet: "silence"
  assert summary["weak_label_names"] == 4  # sorted names found in clips
  merged = {}
  for split in summary["written"]:
    got, metadata = _read_all(data_dir, "from_manifest", split)
    merged.update({k: (split, v) for k, v in got.items()})
  assert metadata["weak_label_names"] == ["Dog", "Speech", "Unknown",
                                          "Vehicle"]
  assert sorted(merged) == ["car", "dog", "long#000", "long#001", "talk"]
  split, dog = merged["dog"]
  assert dog["caption"] == "Dog."  # the summary, lead-in stripped
  assert dog["caption_full"].startswith("Details of dog.")
  assert dog["tags"].tolist() == [0]  # Dogs -> dog (variants.json)
  # Chunks of one file share its split.
  assert merged["long#000"][0] == merged["long#001"][0]


def test_split_rules():
  clip = {"clip_id": "x#001", "row_id": "x"}
  rules = {"train": 0.8, "validation": 0.1, "test": 0.1}
  first = records_stage.assign_split(clip, rules)
  assert first == records_stage.assign_split({"clip_id": "x#000",
                                               "row_id": "x"}, rules)
  counts = {}
  for i in range(2000):
    split = records_stage.assign_split({"clip_id": f"c{i}"}, rules)
    counts[split] = counts.get(split, 0) + 1
  assert 1500 < counts["train"] < 1700 and 120 < counts["test"] < 280
  assert records_stage.assign_split(clip, None) == "train"
  assert records_stage.assign_split(clip, lambda c: c["row_id"]) == "x"
  with pytest.raises(ValueError, match="sum to 1"):
    records_stage.Joiner(vocab=None, variants={}, weak_label_names=[],
                         split_rules={"train": 0.5})


def test_tag_stage_needs_a_vocabulary(ingest_dir, label_stages, tmp_path):
  _, tags, _ = label_stages
  with pytest.raises(ValueError, match="vocab"):
    records_stage.run_records_stage(ingest_dir, None, tags, None,
                                    str(tmp_path), "x", progress=False)


def test_beam_records_match_local(ingest_dir, label_stages, tmp_path):
  pytest.importorskip("apache_beam")
  from audiopt.data import beam_pipeline  # pylint: disable=g-import-not-at-top
  captions, tags, vocab = label_stages
  kwargs = dict(weak_label_names=WEAK, progress=False)
  beam_summary = beam_pipeline.run_records_pipeline(
      ingest_dir, captions, tags, vocab, str(tmp_path / "beam"), "beamed",
      beam_options=["--runner=DirectRunner"], **kwargs)
  local_summary = records_stage.run_records_stage(
      ingest_dir, captions, tags, vocab, str(tmp_path / "local"), "beamed",
      **kwargs)
  for key in ("written", "dropped", "results", "quarantined"):
    assert beam_summary[key] == local_summary[key]
  beam, _ = _read_all(tmp_path / "beam", "beamed", "train")
  local, _ = _read_all(tmp_path / "local", "beamed", "train")
  assert list(beam) == list(local)
  for clip_id, record in beam.items():
    assert record["audio"] == local[clip_id]["audio"]
    assert record["tags"].tolist() == local[clip_id]["tags"].tolist()
    assert record["caption"] == local[clip_id]["caption"]
