"""Task readers on tiny copies laid out exactly like the official releases.

Each `write_*` helper makes the release's folders, file names and metadata
(same CSV headers, separators and quoting) with short synthesised audio in
the release's format; the bad-input tests (test_tasks_bad_input.py) reuse
them.
"""

import json
import os
import shutil
import subprocess

import numpy as np
import pytest
import soundfile

from audiopt.evaluate import tasks
from audiopt.evaluate.tasks import music
from audiopt.evaluate.tasks import sound
from audiopt.evaluate.tasks import speech

HAS_FFMPEG = shutil.which("ffmpeg") is not None


def tone(path, seconds=0.1, rate=16000, freq=440.0, fmt=None, subtype=None):
  """Writes a short sine tone (format from the extension unless given)."""
  os.makedirs(os.path.dirname(path), exist_ok=True)
  t = np.arange(int(seconds * rate)) / rate
  wav = (0.3 * np.sin(2 * np.pi * freq * t)).astype(np.float32)
  soundfile.write(path, wav, rate, format=fmt, subtype=subtype)
  return path


def write_lines(path, lines):
  os.makedirs(os.path.dirname(path), exist_ok=True)
  with open(path, "w", encoding="utf-8", newline="") as f:
    f.write("".join(l + "\n" for l in lines))
  return path


# ----------------------------------------------------------------------------
# Layouts.


def write_esc50(root):
  """ESC-50-master: meta/esc50.csv and audio/, 44.1 kHz WAV, two per fold."""
  rows = ["filename,fold,target,category,esc10,src_file,take"]
  for fold in range(1, 6):
    for target, category, esc10 in ((0, "dog", "True"),
                                    (14, "chirping_birds", "False")):
      name = f"{fold}-1000{target:02d}-A-{target}.wav"
      rows.append(f"{name},{fold},{target},{category},{esc10},1000{target:02d},A")
      tone(os.path.join(root, "audio", name), rate=44100)
  write_lines(os.path.join(root, "meta", "esc50.csv"), rows)
  return root


def write_fsd50k(root):
  """FSD50K: ground truth CSVs (quoted label lists) and dev/eval audio."""
  truth = os.path.join(root, "FSD50K.ground_truth")
  write_lines(os.path.join(truth, "vocabulary.csv"), [
      "0,Accelerating_and_revving_and_vroom,/m/07q2z82",
      "1,Accordion,/m/0mkg", "2,Acoustic_guitar,/m/042v_gx"])
  write_lines(os.path.join(truth, "dev.csv"), [
      "fname,labels,mids,split",
      '64760,"Accordion,Acoustic_guitar","/m/0mkg,/m/042v_gx",train',
      "16399,Accordion,/m/0mkg,train",
      "16401,Acoustic_guitar,/m/042v_gx,val"])
  write_lines(os.path.join(truth, "eval.csv"), [
      "fname,labels,mids",
      '37199,"Accelerating_and_revving_and_vroom,Accordion",'
      '"/m/07q2z82,/m/0mkg"'])
  for fname in ("64760", "16399", "16401"):
    tone(os.path.join(root, "FSD50K.dev_audio", fname + ".wav"), rate=44100)
  tone(os.path.join(root, "FSD50K.eval_audio", "37199.wav"), rate=44100)
  return root


def write_vggsound(root):
  """vggsound.csv (no header, labels may hold commas) and video/ clips."""
  rows = ["---g-f_I2yQ,1,people marching,test",
          '--0PQM4-hqg,30,"cattle, bovinae cowbell",train',
          "--56QUhyDQM,185,playing tennis,train",
          "--5OkAjCI7g,40,people marching,train"]
  write_lines(os.path.join(root, "vggsound.csv"), rows)
  for row in rows:
    ytid, start = row.split(",")[0], int(row.split(",")[1])
    tone(os.path.join(root, "video", f"{ytid}_{start:06d}.flac"))
  return root


def write_voxceleb1(root):
  """iden_split.txt and wav/<speaker>/<video>/<utt>.wav."""
  lines = []
  for speaker in ("id10001", "id10002"):
    for split, video in ((1, "1zcIwhmdeo4"), (1, "7gWzIy6yIIk"),
                         (2, "9mQ11vBs1wc"), (3, "DvP0ynYg4Dk")):
      rel = f"{speaker}/{video}/00001.wav"
      lines.append(f"{split} {rel}")
      tone(os.path.join(root, "wav", rel))
  write_lines(os.path.join(root, "iden_split.txt"), lines)
  return root


def write_voxceleb2(root, ext=".m4a"):
  """dev/aac/<speaker>/<video>/<utt>.m4a (AAC through ffmpeg) or .wav."""
  for speaker, videos in (("id00012", ("21Uxsk56VDQ", "2DLq_Kkc1r8",
                                       "Tr7U8tGiE0U")),
                          ("id00015", ("0fijmz4vTVU", "6dpeOWAr4TI"))):
    for video in videos:
      for utt in ("00001", "00002"):
        path = os.path.join(root, "dev", "aac", speaker, video, utt + ext)
        if ext == ".m4a":
          os.makedirs(os.path.dirname(path), exist_ok=True)
          subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-f", "lavfi",
                          "-i", "sine=frequency=300:duration=0.2", "-c:a",
                          "aac", "-ar", "16000", path], check=True)
        else:
          tone(path)
  return root


def write_crema_d(root):
  """AudioWAV/<actor>_<sentence>_<emotion>_<level>.wav for ten actors."""
  for actor in range(1001, 1011):
    for emotion in ("ANG", "NEU"):
      tone(os.path.join(root, "AudioWAV", f"{actor}_DFA_{emotion}_XX.wav"))
  return root


def write_speech_commands(root):
  """Word folders, _background_noise_/ and the two list files."""
  names = {}
  for word in ("yes", "no", "marvin"):
    names[word] = [f"{h}_nohash_0.wav" for h in ("0a7c2a8d", "0b09edd3",
                                                   "0c40e715")]
    for name in names[word]:
      tone(os.path.join(root, word, name))
  tone(os.path.join(root, "_background_noise_", "white_noise.wav"),
       seconds=6.0)
  write_lines(os.path.join(root, "validation_list.txt"),
              [f"{w}/{names[w][1]}" for w in names])
  write_lines(os.path.join(root, "testing_list.txt"),
              [f"{w}/{names[w][2]}" for w in names])
  write_lines(os.path.join(root, "README.md"), ["Speech Commands v0.02"])
  return root


def write_magnatagatune(root):
  """annotations_final.csv (tab-separated, quoted) and mp3/<0-f>/*.mp3."""
  tags = ["no voice", "singer", "guitar", "classical"]
  header = "\t".join(f'"{c}"' for c in ["clip_id"] + tags + ["mp3_path"])
  rows = [header]
  clips = (("2", "0/american_bach_soloists-j_s__bach-01-bwv54-0-29.mp3",
            [1, 0, 0, 1]),
           ("6", "c/a_cappella-1-29.mp3", [0, 1, 0, 0]),
           ("10", "f/jacob_heringman-josquin-05-29.mp3", [1, 0, 1, 1]),
           ("12", "d/nothing_tagged-0-29.mp3", [0, 0, 0, 0]))
  for clip_id, rel, values in clips:
    rows.append("\t".join(f'"{v}"' for v in [clip_id] + values + [rel]))
    tone(os.path.join(root, "mp3", rel), rate=16000, fmt="MP3")
  write_lines(os.path.join(root, "annotations_final.csv"), rows)
  return root


def write_nsynth(root):
  """nsynth-{train,valid,test}/examples.json and audio/<note_str>.wav."""
  for folder in ("nsynth-train", "nsynth-valid", "nsynth-test"):
    notes = {}
    for family, fid, pitch in (("guitar", 3, 60), ("keyboard", 4, 64)):
      note_str = f"{family}_acoustic_001-0{pitch}-100"
      notes[note_str] = {
          "note": 1, "note_str": note_str, "instrument": 1,
          "instrument_str": f"{family}_acoustic_001", "pitch": pitch,
          "velocity": 100, "sample_rate": 16000, "qualities": [0] * 10,
          "qualities_str": ["bright"] if family == "guitar" else [],
          "instrument_family": fid, "instrument_family_str": family,
          "instrument_source": 0, "instrument_source_str": "acoustic"}
      tone(os.path.join(root, folder, "audio", note_str + ".wav"))
    os.makedirs(os.path.join(root, folder), exist_ok=True)
    with open(os.path.join(root, folder, "examples.json"), "w") as f:
      json.dump(notes, f)
  return root


def write_gtzan(root, genres=("blues", "rock"),
                numbers=(0, 1, 10, 20, 30, 40, 50, 60, 70, 80, 95)):
  """genres/<genre>/<genre>.000NN.au (22,050 Hz AU) from genres.tar.gz."""
  for genre in genres:
    for n in numbers:
      tone(os.path.join(root, "genres", genre, f"{genre}.{n:05d}.au"),
           rate=22050, subtype="PCM_16")
  return root


def write_audiocaps(root):
  """dataset/{train,val,test}.csv and downloaded clips under audio/<split>/."""
  header = "audiocap_id,youtube_id,start_time,caption"
  write_lines(os.path.join(root, "dataset", "train.csv"), [
      header, "91139,r1nicOVtvkQ,130,A woman talks nearby as water pours",
      "58146,UDGBjjwyaqE,20,Multiple clanging and clanking sounds"])
  for split, ytid in (("val", "rqfQRErjfk8"), ("test", "--0w1YA1Hm4")):
    write_lines(os.path.join(root, "dataset", f"{split}.csv"), [header] + [
        f"{100 + i},{ytid},170,\"A caption, number {i}\"" for i in range(5)])
    tone(os.path.join(root, "audio", split, ytid + ".wav"))
  for ytid in ("r1nicOVtvkQ", "UDGBjjwyaqE"):
    tone(os.path.join(root, "audio", "train", ytid + ".wav"))
  return root


def write_clotho(root):
  """clotho_captions_<split>.csv and the <split>/ audio folders."""
  for split in ("development", "validation", "evaluation"):
    name = f"{split}_clip 1.wav"
    write_lines(os.path.join(root, f"clotho_captions_{split}.csv"), [
        "file_name,caption_1,caption_2,caption_3,caption_4,caption_5",
        f"{name}," + ",".join(f'"Birds chirp, take {i}."' for i in range(5))])
    tone(os.path.join(root, split, name), rate=44100)
  return root


def write_musiccaps(root):
  """musiccaps-public.csv and downloaded clips under audio/."""
  write_lines(os.path.join(root, "musiccaps-public.csv"), [
      "ytid,start_s,end_s,audioset_positive_labels,aspect_list,caption,"
      "author_id,is_balanced_subset,is_audioset_eval",
      '-0Gj8-vB1q4,30,40,"/m/0140xf,/m/02cjck","[\'low quality\']",'
      '"The low quality recording features a ballad.",4,False,True',
      '-0SdAVK79lg,30,40,/m/0155w,"[\'guitar\']",'
      '"This song features an electric guitar.",0,False,False'])
  for ytid in ("-0Gj8-vB1q4", "-0SdAVK79lg"):
    tone(os.path.join(root, "audio", ytid + ".wav"))
  return root


# ----------------------------------------------------------------------------
# Tests.


def test_esc50_folds_and_classes(tmp_path):
  spec = tasks.load_task("esc50", str(write_esc50(tmp_path)))
  assert spec.kind == tasks.MULTICLASS
  assert spec.classes == sound.ESC50_CLASSES and len(spec.classes) == 50
  assert list(spec.splits) == [f"fold{i}" for i in range(1, 6)]
  assert all(len(v) == 2 for v in spec.splits.values())
  rounds = spec.fold_splits()
  assert rounds[0] == (["fold2", "fold3", "fold4", "fold5"], "fold1")
  np.testing.assert_array_equal(spec.targets("fold1"), [0, 14])
  example, wav = next(spec.iter_audio("fold3", 16000))
  assert example.labels == ("dog",) and wav.dtype == np.float32
  assert wav.shape == (1600,)  # 0.1 s resampled from 44.1 kHz
  esc10 = tasks.load_task("esc50", str(tmp_path), esc10=True)
  assert esc10.name == "esc10" and len(esc10.classes) == 10
  assert all(len(v) == 1 for v in esc10.splits.values())


def test_fsd50k_multilabel(tmp_path):
  spec = tasks.load_task("fsd50k", str(write_fsd50k(tmp_path)))
  assert spec.kind == tasks.MULTILABEL and len(spec.classes) == 3
  assert {s: len(v) for s, v in spec.splits.items()} == {
      "train": 2, "validation": 1, "test": 1}
  np.testing.assert_array_equal(spec.targets("train"),
                                [[0, 1, 1], [0, 1, 0]])
  assert spec.examples("test")[0].labels == (
      "Accelerating_and_revving_and_vroom", "Accordion")
  assert tasks.label_text("Accelerating_and_revving_and_vroom") == (
      "Accelerating and revving and vroom")


def test_vggsound_quoted_labels_and_template(tmp_path):
  spec = tasks.load_task("vggsound", str(write_vggsound(tmp_path)))
  assert spec.classes == ("cattle, bovinae cowbell", "people marching",
                          "playing tennis")
  assert len(spec.splits["train"]) == 3 and len(spec.splits["test"]) == 1
  assert spec.examples("test")[0].path.endswith("video/---g-f_I2yQ_000001.flac")


def test_voxceleb1_iden_split(tmp_path):
  spec = tasks.load_task("voxceleb1", str(write_voxceleb1(tmp_path)))
  assert spec.classes == ("id10001", "id10002")
  assert {s: len(v) for s, v in spec.splits.items()} == {
      "train": 4, "validation": 2, "test": 2}
  assert spec.examples("test")[0].clip_id == "id10001/DvP0ynYg4Dk/00001"


@pytest.mark.parametrize("ext", [
    pytest.param(".m4a", marks=pytest.mark.skipif(
        not HAS_FFMPEG, reason="ffmpeg is needed to write and decode AAC")),
    ".wav"])
def test_voxceleb2_video_split(tmp_path, ext):
  spec = tasks.load_task("voxceleb2", str(write_voxceleb2(tmp_path, ext)))
  assert spec.classes == ("id00012", "id00015")
  sizes = {s: len(v) for s, v in spec.splits.items()}
  # id00012: 3 videos -> train, validation, test; id00015: 2 -> train, test.
  assert sizes == {"train": 4, "validation": 2, "test": 4}
  videos = {s: {e.clip_id.split("/")[1] for e in v}
            for s, v in spec.splits.items()}
  assert not videos["train"] & videos["test"]
  _, wav = next(spec.iter_audio("test"))
  assert wav.dtype == np.float32 and wav.size > 1000


def test_crema_d_speaker_disjoint(tmp_path):
  spec = tasks.load_task("crema_d", str(write_crema_d(tmp_path)))
  assert spec.classes == ("anger", "disgust", "fear", "happy", "neutral",
                          "sad")
  actors = {s: {e.clip_id[:4] for e in v} for s, v in spec.splits.items()}
  assert len(actors["train"]) == 7 and len(actors["validation"]) == 1
  assert len(actors["test"]) == 2
  assert not (actors["train"] & actors["test"])
  again = tasks.load_task("crema_d", str(tmp_path))
  assert again.splits == spec.splits


def test_speech_commands_lists_and_12_class_task(tmp_path):
  root = str(write_speech_commands(tmp_path))
  spec = tasks.load_task("speech_commands", root)
  assert len(spec.classes) == 35
  assert {s: len(v) for s, v in spec.splits.items()} == {
      "train": 3, "validation": 3, "test": 3}
  assert spec.splits["validation"][0].row_ref.endswith(
      "validation_list.txt:3")  # marvin's line; words come in sorted order
  kws = tasks.load_task("speech_commands", root, task="12")
  assert kws.classes == speech.SPEECH_COMMANDS_12
  labels = {e.labels[0] for e in kws.examples(["train", "validation", "test"])}
  assert labels == {"yes", "no", "_unknown_", "_silence_"}
  silence = [e for e in kws.examples("train") if e.labels == ("_silence_",)]
  # 6 s of noise: segment 0 validation, 5 test, the rest train.
  assert len(silence) == 4
  assert [e.start_s for e in kws.examples("test")
          if e.labels == ("_silence_",)] == [5.0]
  assert tasks.load_audio(silence[0]).shape == (16000,)


def test_magnatagatune_top_k_and_folder_splits(tmp_path):
  spec = tasks.load_task("magnatagatune", str(write_magnatagatune(tmp_path)),
                         top_k=3)
  # classical and no voice twice; singer and guitar once (column order).
  assert spec.classes == ("no voice", "classical", "singer")
  assert {s: len(v) for s, v in spec.splits.items()} == {
      "train": 1, "validation": 1, "test": 2}
  np.testing.assert_array_equal(spec.targets("test"), [[1, 1, 0], [0, 0, 0]])
  _, wav = next(spec.iter_audio("train"))  # MP3 through libsndfile
  assert wav.size > 800


@pytest.mark.parametrize("target,kind,num", [
    ("instrument_family", tasks.MULTICLASS, 11),
    ("pitch", tasks.MULTICLASS, 128),
    ("qualities", tasks.MULTILABEL, 10)])
def test_nsynth_targets(tmp_path, target, kind, num):
  spec = tasks.load_task("nsynth", str(write_nsynth(tmp_path)), target=target)
  assert spec.kind == kind and len(spec.classes) == num
  assert {s: len(v) for s, v in spec.splits.items()} == {
      "train": 2, "validation": 2, "test": 2}
  if target == "instrument_family":
    np.testing.assert_array_equal(spec.targets("test"), [3, 4])
    assert spec.classes == music.NSYNTH_FAMILIES


def test_gtzan_folds_and_filtered_lists(tmp_path):
  root = str(write_gtzan(tmp_path))
  spec = tasks.load_task("gtzan", root)
  assert spec.folds == music.GTZAN_FOLDS and spec.classes[0] == "blues"
  assert [e.clip_id for e in spec.splits["fold01"]] == [
      "blues.00000", "blues.00001", "rock.00000", "rock.00001"]
  assert len(spec.splits["fold02"]) == 2 and len(spec.splits["fold10"]) == 2
  _, wav = next(spec.iter_audio("fold10"))  # AU at 22,050 Hz
  assert wav.shape == (1600,)
  lists = tmp_path / "splits"
  write_lines(str(lists / "train_filtered.txt"),
              ["blues/blues.00000.au", "rock/rock.00001.au"])
  write_lines(str(lists / "valid_filtered.txt"), ["blues/blues.00010.au"])
  write_lines(str(lists / "test_filtered.txt"), ["rock/rock.00095.wav"])
  spec = tasks.load_task("gtzan", root, split_dir=str(lists))
  assert {s: len(v) for s, v in spec.splits.items()} == {
      "train": 2, "validation": 1, "test": 1}
  assert spec.examples("test")[0].path.endswith("rock.00095.au")


def test_audiocaps_groups_five_captions(tmp_path):
  spec = tasks.load_task("audiocaps", str(write_audiocaps(tmp_path)))
  assert spec.kind == tasks.CAPTIONS and spec.classes == ()
  assert [len(e.captions) for e in spec.examples("train")] == [1, 1]
  test = spec.examples("test")
  assert len(test) == 1 and len(test[0].captions) == 5
  assert test[0].captions[0] == "A caption, number 0"
  with pytest.raises(ValueError, match="caption task"):
    spec.targets("test")


def test_clotho_five_captions(tmp_path):
  spec = tasks.load_task("clotho", str(write_clotho(tmp_path)))
  assert {s: len(v) for s, v in spec.splits.items()} == {
      "train": 1, "validation": 1, "test": 1}
  example = spec.examples("test")[0]
  assert len(example.captions) == 5 and example.clip_id == "evaluation_clip 1"


def test_musiccaps_eval_flag(tmp_path):
  spec = tasks.load_task("musiccaps", str(write_musiccaps(tmp_path)))
  assert [e.clip_id for e in spec.examples("test")] == ["-0Gj8-vB1q4"]
  assert spec.examples("train")[0].captions == (
      "This song features an electric guitar.",)


def test_tfds_builder_is_used_when_prepared(monkeypatch):
  tfds = pytest.importorskip("tensorflow_datasets")
  monkeypatch.setattr(tfds.core.DatasetBuilder, "is_prepared",
                      lambda self: True)
  with tfds.testing.mock_data(num_examples=4,
                              policy=tfds.testing.MockPolicy.USE_CODE):
    spec = tasks.load_task("speech_commands", tfds_data_dir="/nonexistent")
    assert spec.name == "speech_commands_12" and len(spec.classes) == 12
    assert {s: len(v) for s, v in spec.splits.items()} == {
        "train": 4, "validation": 4, "test": 4}
    pairs = list(spec.iter_audio("test", 16000))
    assert [e for e, _ in pairs] == spec.splits["test"]
    assert all(w.dtype == np.float32 and np.abs(w).max() <= 1.0
               for _, w in pairs)
    crema = tasks.load_task("crema_d", tfds_data_dir="/nonexistent")
    assert set(crema.classes) == set(speech.CREMA_D_EMOTIONS.values())


def test_tfds_unprepared_fails_with_the_command(tmp_path):
  pytest.importorskip("tensorflow_datasets")
  with pytest.raises(tasks.TaskDataError, match="tfds build nsynth"):
    tasks.load_task("nsynth", tfds_data_dir=str(tmp_path))
