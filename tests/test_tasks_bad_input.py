"""Bad task folders fail with every missing file, or the file and row."""

import os

import pytest

from audiopt.evaluate import tasks
from test_tasks_layouts import write_esc50
from test_tasks_layouts import write_fsd50k
from test_tasks_layouts import write_gtzan
from test_tasks_layouts import write_lines
from test_tasks_layouts import write_speech_commands
from test_tasks_layouts import write_voxceleb1


def _rewrite(path, old, new):
  with open(path, encoding="utf-8") as f:
    text = f.read()
  assert old in text
  with open(path, "w", encoding="utf-8") as f:
    f.write(text.replace(old, new))


def test_missing_and_unreadable_files_are_all_listed(tmp_path):
  root = write_esc50(tmp_path)
  audio = tmp_path / "audio"
  os.remove(audio / "2-100000-A-0.wav")
  os.remove(audio / "4-100014-A-14.wav")
  (audio / "3-100000-A-0.wav").write_bytes(b"RIFF....not a wave file")
  (audio / "5-100014-A-14.wav").write_bytes(b"")
  with pytest.raises(tasks.TaskDataError, match="4 missing or unreadable") as e:
    tasks.load_task("esc50", str(root))
  problems = e.value.problems
  assert len(problems) == 4
  text = "\n".join(problems)
  assert f"{audio / '2-100000-A-0.wav'}: missing" in text
  assert f"{audio / '4-100014-A-14.wav'}: missing" in text
  assert f"{audio / '3-100000-A-0.wav'}: unreadable" in text
  assert f"{audio / '5-100014-A-14.wav'}: empty" in text
  for p in problems:
    assert p.split(":")[0] in str(e.value)
  # "exists" only looks for the files; the corrupt one passes it.
  with pytest.raises(tasks.TaskDataError) as e:
    tasks.load_task("esc50", str(root), check="exists")
  assert len(e.value.problems) == 3


def test_many_missing_files_are_counted_in_the_message(tmp_path):
  root = write_gtzan(tmp_path, genres=("blues", "rock", "jazz"))
  for genre in ("blues", "rock", "jazz"):
    for name in os.listdir(tmp_path / "genres" / genre):
      (tmp_path / "genres" / genre / name).write_bytes(b"x")
  with pytest.raises(tasks.TaskDataError, match="and 13 more") as e:
    tasks.load_task("gtzan", str(root))
  assert len(e.value.problems) == 33


def test_empty_fold_names_split_and_file(tmp_path):
  root = write_esc50(tmp_path)
  meta = tmp_path / "meta" / "esc50.csv"
  lines = meta.read_text().splitlines()
  meta.write_text("\n".join(l for l in lines if ",5," not in l) + "\n")
  with pytest.raises(tasks.TaskDataError, match="empty split") as e:
    tasks.load_task("esc50", str(root))
  assert e.value.problems == [f"split 'fold5' has no examples (defined by "
                              f"{meta})"]


def test_empty_validation_split_of_fsd50k(tmp_path):
  root = write_fsd50k(tmp_path)
  dev = tmp_path / "FSD50K.ground_truth" / "dev.csv"
  _rewrite(dev, "Acoustic_guitar,/m/042v_gx,val", "Acoustic_guitar,/m/042v_gx,train")
  with pytest.raises(tasks.TaskDataError, match="'validation'") as e:
    tasks.load_task("fsd50k", str(root))
  assert str(dev) in str(e.value)


def test_label_outside_classes_names_file_and_row(tmp_path):
  root = write_fsd50k(tmp_path)
  dev = tmp_path / "FSD50K.ground_truth" / "dev.csv"
  _rewrite(dev, "16399,Accordion,", "16399,Kazoo_solo,")
  with pytest.raises(tasks.TaskDataError, match="Kazoo_solo") as e:
    tasks.load_task("fsd50k", str(root))
  assert e.value.problems[0].startswith(f"{dev}:3: label(s) ['Kazoo_solo']")


def test_esc50_unknown_category_and_bad_fold(tmp_path):
  root = write_esc50(tmp_path)
  meta = tmp_path / "meta" / "esc50.csv"
  _rewrite(meta, "3-100000-A-0.wav,3,0,dog", "3-100000-A-0.wav,3,0,unicorn")
  _rewrite(meta, "4-100000-A-0.wav,4,", "4-100000-A-0.wav,9,")
  with pytest.raises(tasks.TaskDataError) as e:
    tasks.load_task("esc50", str(root))
  problems = e.value.problems
  assert any(p.startswith(f"{meta}:8: fold '9'") for p in problems)
  assert any(p.startswith(f"{meta}:6: label(s) ['unicorn']") for p in problems)


def test_speech_commands_list_with_unknown_word(tmp_path):
  root = write_speech_commands(tmp_path)
  with open(tmp_path / "testing_list.txt", "a") as f:
    f.write("hello/0a7c2a8d_nohash_0.wav\n")
  with pytest.raises(tasks.TaskDataError, match="'hello'") as e:
    tasks.load_task("speech_commands", str(root))
  assert e.value.problems[0].startswith(f"{tmp_path / 'testing_list.txt'}:4")


def test_speech_commands_listed_clip_missing(tmp_path):
  root = write_speech_commands(tmp_path)
  os.remove(tmp_path / "yes" / "0c40e715_nohash_0.wav")
  with pytest.raises(tasks.TaskDataError, match="1 missing") as e:
    tasks.load_task("speech_commands", str(root))
  assert e.value.problems == [
      f"{tmp_path / 'yes' / '0c40e715_nohash_0.wav'}: missing"]


def test_voxceleb1_test_speaker_unseen_in_training(tmp_path):
  root = write_voxceleb1(tmp_path)
  split = tmp_path / "iden_split.txt"
  with open(split, "a") as f:
    f.write("3 id10999/abcdefghijk/00001.wav\n")
  with pytest.raises(tasks.TaskDataError, match="id10999") as e:
    tasks.load_task("voxceleb1", str(root))
  assert e.value.problems[0].startswith(f"{split}:9: label(s) ['id10999']")


def test_gtzan_unknown_genre_folder(tmp_path):
  root = write_gtzan(tmp_path, genres=("blues", "polka"))
  with pytest.raises(tasks.TaskDataError, match="polka") as e:
    tasks.load_task("gtzan", str(root))
  assert all("polka" in p for p in e.value.problems)
  assert e.value.problems[0].startswith(str(tmp_path / "genres" / "polka"))


def test_missing_metadata_and_bad_header(tmp_path):
  with pytest.raises(tasks.TaskDataError, match="not found") as e:
    tasks.load_task("esc50", str(tmp_path))
  assert e.value.problems == [f"{tmp_path / 'meta' / 'esc50.csv'}: missing"]
  write_lines(str(tmp_path / "meta" / "esc50.csv"), ["file,fold", "a.wav,1"])
  with pytest.raises(tasks.TaskDataError, match="header") as e:
    tasks.load_task("esc50", str(tmp_path))
  assert e.value.problems[0].startswith(f"{tmp_path / 'meta' / 'esc50.csv'}:1")


def test_row_with_wrong_field_count(tmp_path):
  root = write_fsd50k(tmp_path)
  with open(tmp_path / "FSD50K.ground_truth" / "eval.csv", "a") as f:
    f.write("12345,Accordion\n")
  with pytest.raises(tasks.TaskDataError, match="malformed") as e:
    tasks.load_task("fsd50k", str(root))
  assert ":3: 2 fields" in e.value.problems[0]


def test_unknown_task_and_options():
  with pytest.raises(ValueError, match="unknown task"):
    tasks.load_task("audioset_strong", "/x")
  with pytest.raises(ValueError, match="no TFDS builder"):
    tasks.load_task("esc50", tfds_data_dir="/x")
