"""Manifest readers on tiny files laid out like the official releases."""

import gzip
import json

import pytest

from audiopt.data import manifests
from audiopt.data.manifests import ManifestError, ManifestRow


def _cut(cut_id, source="audioset", tags=("dog", "bark"), caption="A dog.",
         start=0.0, duration=10.0):
  """A MonoCut line as released with UTS."""
  return {
      "id": cut_id, "start": start, "duration": duration, "channel": 0,
      "supervisions": [{
          "id": cut_id, "recording_id": cut_id, "start": 0.0,
          "duration": duration, "channel": 0,
          "custom": {"audio_tag": list(tags) if isinstance(tags, tuple)
                     else tags, "caption": caption}}],
      "recording": {"id": cut_id, "sources": [
          {"type": "file", "channels": [0], "source": source}],
                    "sampling_rate": 16000, "num_samples": 160000,
                    "duration": duration, "channel_ids": [0]},
      "type": "MonoCut"}


def _write_gz_lines(path, lines):
  with gzip.open(path, "wt", encoding="utf-8") as f:
    for line in lines:
      f.write(line + "\n")


def _split(items):
  rows = [i for i in items if isinstance(i, ManifestRow)]
  errors = [i for i in items if isinstance(i, ManifestError)]
  return rows, errors


def test_lhotse_uts_cuts(tmp_path):
  path = tmp_path / "uts_cuts.jsonl.gz"
  _write_gz_lines(path, [
      json.dumps(_cut("Y--0w1YA1Hm4_30.000_40.000")),
      json.dumps(_cut("sp1", source="paraspeechcaps", tags="male; calm,speech",
                      start=1.5, duration=4.0)),
      "",
      "{not json",
      json.dumps({"id": "norec", "supervisions": []}),
      json.dumps(_cut("local", source="clips/x.flac")),
      json.dumps(_cut("badtags", tags=7)),
  ])
  rows, errors = _split(list(manifests.read_lhotse_cuts(
      str(path), audio_root="/audio")))
  assert [r.clip_id for r in rows] == ["Y--0w1YA1Hm4_30.000_40.000", "sp1",
                                       "local"]
  first = rows[0]
  assert first.path == "/audio/audioset/Y--0w1YA1Hm4_30.000_40.000"
  assert first.tags == ("dog", "bark") and first.caption == "A dog."
  assert first.source == "audioset" and first.duration_s == 10.0
  assert first.row_ref == f"{path}:1"
  assert rows[1].tags == ("male", "calm", "speech")
  assert (rows[1].start_s, rows[1].duration_s) == (1.5, 4.0)
  # A source that is already a path is used as one.
  assert rows[2].path == "/audio/clips/x.flac" and rows[2].source == ""
  assert [e.row_ref for e in errors] == [f"{path}:{n}" for n in (4, 5, 7)]
  assert "not a JSON line" in errors[0].reason
  assert errors[1].clip_id == "norec" and errors[1].item_id == "norec"
  assert errors[2].clip_id == "badtags" and "audio_tag" in errors[2].reason
  assert manifests.detect_format(str(path)) == "lhotse"


def test_lhotse_custom_path_rule(tmp_path):
  path = tmp_path / "cuts.jsonl"
  path.write_text(json.dumps(_cut("abc")) + "\n")
  rows = list(manifests.read_manifest(
      str(path), audio_root="/a", path_template="{source}/wav/{id}.wav",
      source="uts"))
  assert rows[0].path == "/a/audioset/wav/abc.wav"
  assert rows[0].source == "uts"
  rule = lambda f: f"{f['recording_id'][:1]}/{f['recording_id']}.flac"
  rows = list(manifests.read_lhotse_cuts(str(path), audio_root="/a",
                                         path_template=rule))
  assert rows[0].path == "/a/a/abc.flac"
  rows = list(manifests.read_lhotse_cuts(str(path),
                                         path_template="{nope}"))
  assert isinstance(rows[0], ManifestError) and "nope" in rows[0].reason


def test_truncated_gzip_yields_an_error_not_a_crash(tmp_path):
  good = tmp_path / "good.jsonl.gz"
  _write_gz_lines(good, [json.dumps(_cut(f"c{i}", caption="x" * 2000))
                         for i in range(50)])
  data = good.read_bytes()
  bad = tmp_path / "bad.jsonl.gz"
  bad.write_bytes(data[:len(data) // 2])
  rows, errors = _split(list(manifests.read_lhotse_cuts(str(bad))))
  assert len(errors) == 1 and "unreadable from here on" in errors[0].reason
  assert str(bad) in errors[0].row_ref
  assert 0 < len(rows) < 50


AUDIOCAPS_VAL = """audiocap_id,youtube_id,start_time,caption
97151,vfY_TJq7n_U,130,Rustling occurs  ducks quack and water splashes
97152,vfY_TJq7n_U,130,"Ducks quack, water splashes"
105310,OMxZ5XmG9bk,30,A man speaks as a motor runs
97153,vfY_TJq7n_U,130,Birds quack near water
105311,OMxZ5XmG9bk,notanumber,Bad row
105312,,30,No video id
"""


def test_audiocaps_groups_captions(tmp_path):
  path = tmp_path / "val.csv"
  path.write_text(AUDIOCAPS_VAL)
  assert manifests.detect_format(str(path)) == "audiocaps"
  rows, errors = _split(list(manifests.read_audiocaps_csv(
      str(path), audio_root="/ac")))
  assert [r.clip_id for r in rows] == ["vfY_TJq7n_U", "OMxZ5XmG9bk"]
  ducks = rows[0]
  assert ducks.captions == ("Rustling occurs  ducks quack and water splashes",
                            "Ducks quack, water splashes",
                            "Birds quack near water")
  assert ducks.caption == ducks.captions[0]
  assert ducks.path == "/ac/vfY_TJq7n_U" and ducks.source == "audiocaps"
  assert (ducks.start_s, ducks.duration_s) == (0.0, None)
  assert ducks.row_ref == f"{path}:2"
  assert len(errors) == 2
  assert f"{path}:6" in errors[0].reason and "start_time" in errors[0].reason
  assert "youtube_id" in errors[1].reason
  rows, _ = _split(list(manifests.read_audiocaps_csv(
      str(path), path_template="{youtube_id}_{start_ms}.wav",
      segment_in_file=True)))
  assert rows[0].path == "vfY_TJq7n_U_130000.wav"
  assert (rows[0].start_s, rows[0].duration_s) == (130.0, 10.0)


def test_audiocaps_one_video_two_clips(tmp_path):
  path = tmp_path / "train.csv"
  path.write_text("audiocap_id,youtube_id,start_time,caption\n"
                  "1,abc,0,first\n2,abc,30,second\n")
  rows = list(manifests.read_audiocaps_csv(str(path)))
  assert [r.clip_id for r in rows] == ["abc_0", "abc_30000"]


CLOTHO = """file_name,caption_1,caption_2,caption_3,caption_4,caption_5
"Distorted AM Radio noise.wav","A radio, badly tuned, hisses.",static noise,"a b",c,d
Footsteps on Gravel.wav,Someone walks on gravel,steps,crunch,walk,feet
only_two_fields.wav,one
"""


def test_clotho(tmp_path):
  path = tmp_path / "clotho_captions_development.csv"
  path.write_text(CLOTHO)
  assert manifests.detect_format(str(path)) == "clotho"
  rows, errors = _split(list(manifests.read_manifest(
      str(path), audio_root="/clotho/development")))
  assert [r.clip_id for r in rows] == ["Distorted AM Radio noise",
                                       "Footsteps on Gravel"]
  assert rows[0].path == "/clotho/development/Distorted AM Radio noise.wav"
  assert rows[0].captions[0] == "A radio, badly tuned, hisses."
  assert len(rows[0].captions) == 5 and rows[0].source == "clotho"
  assert len(errors) == 1 and f"{path}:4" in errors[0].reason


AUDIOSET = """# Segments csv created Sun Mar  5 10:54:31 2017
# num_ytids=4, num_segs=4, num_unique_labels=3, num_positive_labels=5
# YTID, start_seconds, end_seconds, positive_labels
--PJHxphWEs, 30.000, 40.000, "/m/09x0r,/t/dd00088"
--ZhevVpy1s, 50.000, 60.000, "/m/012xff"
--aE2O5G5WE, 0.000, 10.000, "/m/03fwl,/m/04rlf,/m/09x0r"
--aO5cdqSAg, 30.000, 20.000, "/m/04rlf"
--bad, 30.000
--unknown, 0.000, 10.000, "/m/zzzzz"
"""

CLASS_LABELS = """index,mid,display_name
0,/m/09x0r,"Speech"
1,/m/012xff,"Toothbrush"
2,/t/dd00088,"Male speech, man speaking"
3,/m/03fwl,"Goat"
4,/m/04rlf,"Music"
"""


def test_audioset_segments(tmp_path):
  path = tmp_path / "balanced_train_segments.csv"
  path.write_text(AUDIOSET)
  labels_path = tmp_path / "class_labels_indices.csv"
  labels_path.write_text(CLASS_LABELS)
  assert manifests.detect_format(str(path)) == "audioset"
  assert manifests.read_class_labels(str(labels_path))[2] == (
      "/t/dd00088", "Male speech, man speaking")
  rows, errors = _split(list(manifests.read_audioset_csv(
      str(path), audio_root="/as", path_template="Y{ytid}",
      class_labels_path=str(labels_path))))
  assert [r.clip_id for r in rows] == ["--PJHxphWEs", "--ZhevVpy1s",
                                       "--aE2O5G5WE"]
  assert rows[0].labels == ("Speech", "Male speech, man speaking")
  assert rows[0].path == "/as/Y--PJHxphWEs" and rows[0].row_ref == f"{path}:4"
  assert [e.clip_id for e in errors] == ["--aO5cdqSAg", "--bad", "--unknown"]
  assert "end_seconds" in errors[0].reason and f"{path}:7" in errors[0].reason
  assert "4" in errors[1].reason and "/m/zzzzz" in errors[2].reason
  raw, _ = _split(list(manifests.read_audioset_csv(str(path),
                                                   segment_in_file=True)))
  assert raw[0].labels == ("/m/09x0r", "/t/dd00088")
  assert (raw[0].start_s, raw[0].duration_s) == (30.0, 10.0)


def test_plain_jsonl_and_csv(tmp_path):
  jsonl = tmp_path / "clips.jsonl"
  jsonl.write_text("\n".join([
      json.dumps({"path": "a/one.wav", "caption": "hi", "tags": ["x", "y"],
                  "labels": ["Speech"], "domain": "speech"}),
      json.dumps({"id": "two", "path": "/abs/two.flac", "start": 1,
                  "duration": 2.5, "source": "mine"}),
      json.dumps({"id": "nopath"}),
      json.dumps(["a list"]),
      json.dumps({"path": "x.wav", "duration": -1}),
  ]) + "\n")
  assert manifests.detect_format(str(jsonl)) == "jsonl"
  rows, errors = _split(list(manifests.read_manifest(
      str(jsonl), audio_root="/r", source="default")))
  assert rows[0] == ManifestRow(
      clip_id="a/one", path="/r/a/one.wav", caption="hi", tags=("x", "y"),
      labels=("Speech",), source="default", row_ref=f"{jsonl}:1",
      captions=("hi",), domain="speech")
  assert rows[1].path == "/abs/two.flac" and rows[1].source == "mine"
  assert (rows[1].start_s, rows[1].duration_s) == (1.0, 2.5)
  assert [e.row_ref for e in errors] == [f"{jsonl}:{n}" for n in (3, 4, 5)]
  assert errors[0].clip_id == "nopath"
  csv_path = tmp_path / "clips.csv"
  csv_path.write_text('path,caption,tags,labels\n'
                      'b.wav,"a, b",dog;bark,"Male speech, man speaking;Dog"\n'
                      ',no path,,\n')
  assert manifests.detect_format(str(csv_path)) == "csv"
  rows, errors = _split(list(manifests.read_manifest(str(csv_path))))
  assert rows[0].tags == ("dog", "bark")
  assert rows[0].labels == ("Male speech, man speaking", "Dog")
  assert rows[0].caption == "a, b" and rows[0].clip_id == "b"
  assert len(errors) == 1 and f"{csv_path}:3" in errors[0].reason


def test_resolve_audio_path(tmp_path):
  (tmp_path / "clip.flac").write_bytes(b"x")
  assert manifests.resolve_audio_path(str(tmp_path / "clip")) == str(
      tmp_path / "clip.flac")
  assert manifests.resolve_audio_path(str(tmp_path / "none")) == str(
      tmp_path / "none")


def test_unknown_format(tmp_path):
  path = tmp_path / "x.csv"
  path.write_text("a,b\n1,2\n")
  with pytest.raises(ValueError, match="unknown manifest format"):
    manifests.detect_format(str(path))
