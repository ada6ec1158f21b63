"""The UTS vocabulary score and file format."""

import math
import os

import pytest

from audiopt.labels import vocabulary


def test_score_matches_paper_formula():
  tag_sets = [["speech", "male"], ["speech", "female"], ["music"],
              ["speech", "music"], ["rain"]]
  df, n = vocabulary.document_frequencies(tag_sets)
  assert n == 5 and df["speech"] == 3
  assert vocabulary.tag_score(3, 5) == pytest.approx(3 * math.log(6 / 4))
  vocab = vocabulary.build_vocabulary(tag_sets, k=3)
  scores = {t: df[t] * math.log((n + 1) / (df[t] + 1)) for t in df}
  expected = sorted(scores, key=lambda t: (-scores[t], t))[:3]
  assert vocab == expected


def test_ids_and_json_round_trip(tmp_path):
  vocab = ["speech", "music", "rain"]
  assert vocabulary.to_ids(["rain", "dog", "speech", "rain"], vocab) == [2, 0]
  path = tmp_path / "label.json"
  vocabulary.save_vocabulary(vocab, str(path))
  assert vocabulary.load_vocabulary(str(path)) == vocab


RELEASED = os.path.join(os.path.dirname(__file__), "..", "..", "shared",
                        "reference", "uts_labels", "label_1k.json")


@pytest.mark.skipif(not os.path.exists(RELEASED),
                    reason="the shared reference folder is not beside the repo")
def test_released_label_files_load():
  assert len(vocabulary.load_vocabulary(RELEASED)) == 1000


def test_gap_in_ids_names_file(tmp_path):
  path = tmp_path / "bad.json"
  path.write_text('{"0": "a", "2": "b"}')
  with pytest.raises(ValueError, match="bad.json"):
    vocabulary.load_vocabulary(str(path))
