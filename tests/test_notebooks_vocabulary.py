"""The vocabulary notebook runs on a vocabulary built by the labels code."""

from audiopt.labels import vocabulary
from test_notebooks import _execute
from test_notebooks import _text


def test_explore_vocabulary(tmp_path):
  tag_sets = [["dog", "dog-bark", "outdoor"], ["dog", "car-horn"],
              ["car-horn", "outdoor"], ["piano"], ["Dogs"]]
  vocab = vocabulary.build_vocabulary(tag_sets, 5)
  path = tmp_path / vocabulary.vocabulary_filename(5)
  vocabulary.save_vocabulary(vocab, str(path))
  text = _text(_execute("explore_vocabulary.ipynb",
                        {"AUDIOPT_VOCAB": str(path),
                         "AUDIOPT_VOCAB_QUERY": "dog"}))
  assert f"{path}: 5 tags" in text
  assert "words per tag: {1: 3, 2: 2}" in text
  # "Dogs" was never normalised when this vocabulary was built.
  assert "1 tags not in normal form: [('Dogs', 'dog')]" in text
  assert "tags containing 'dog':" in text and "'dog-bark'" in text
