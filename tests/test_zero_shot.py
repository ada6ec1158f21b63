"""Zero-shot classification from class-name prompts."""

import numpy as np
import pytest

from audiopt.evaluate import probes
from audiopt.evaluate import retrieval
from audiopt.evaluate import tasks
from audiopt.evaluate import zero_shot
from test_retrieval import train_audio_text_run
from test_tasks_layouts import write_esc50
from test_tasks_layouts import write_fsd50k


@pytest.fixture(scope="module")
def run(demo_data_dir, tmp_path_factory):
  return train_audio_text_run(demo_data_dir,
                              tmp_path_factory.mktemp("zero_shot_run"))


def test_prompts_from_class_names():
  assert zero_shot.class_prompts(["chirping_birds", "Crying_and_sobbing",
                                  "TV"]) == [
      "This is a sound of chirping birds.",
      "This is a sound of crying and sobbing.", "This is a sound of TV."]
  assert zero_shot.class_prompts(["dog"], "a {label} barking") == [
      "a dog barking"]
  with pytest.raises(ValueError, match="label"):
    zero_shot.class_prompts(["dog"], "no field")


def test_metrics_of_known_scores():
  scores = np.array([[0.9, 0.1, 0.0], [0.2, 0.3, 0.5], [0.1, 0.8, 0.1],
                     [0.6, 0.3, 0.1]])
  got = zero_shot.zero_shot_metrics(scores, np.array([0, 2, 0, 1]),
                                    "multiclass")
  assert got["accuracy"] == 0.5
  multi_hot = np.array([[1, 0, 0], [0, 0, 1], [1, 0, 0], [0, 1, 0]])
  assert got["mAP"] == pytest.approx(
      probes.mean_average_precision(scores, multi_hot))
  got = zero_shot.zero_shot_metrics(scores, multi_hot, "multilabel")
  assert set(got) == {"mAP", "roc_auc", "d_prime"}
  with pytest.raises(ValueError, match="classification"):
    zero_shot.zero_shot_metrics(scores, multi_hot, "captions")


def test_scores_are_prompt_similarities(monkeypatch):
  """The prompts of the classes, in order, meet the clips' embeddings."""
  seen = {}
  class_emb = np.eye(3, dtype=np.float32)

  def fake_text(restored, texts, tokenizer=None):
    seen["texts"] = list(texts)
    return class_emb

  audio_emb = np.array([[0.1, 2.0, 0.0], [3.0, 0.0, 0.1]], np.float32)
  monkeypatch.setattr(retrieval, "embed_text", fake_text)
  monkeypatch.setattr(retrieval, "embed_audio",
                      lambda restored, clips, **kw: audio_emb)
  got = zero_shot.evaluate_zero_shot(
      None, [np.zeros(10)] * 2, np.array([1, 0]), ["dog", "sea_waves", "cat"],
      "multiclass")
  assert seen["texts"] == ["This is a sound of dog.",
                           "This is a sound of sea waves.",
                           "This is a sound of cat."]
  assert got["accuracy"] == 1.0 and got["num_clips"] == 2


def test_zero_shot_on_esc50_and_fsd50k_layouts(run, tmp_path):
  spec = tasks.load_task("esc50", str(write_esc50(tmp_path / "esc")))
  folds = list(spec.folds)
  got = zero_shot.evaluate_zero_shot_task(run, spec, folds)
  assert got["num_clips"] == 10 and 0.0 <= got["accuracy"] <= 1.0
  # The same number by hand from the two towers.
  clips = [w for _, w in spec.iter_audio(folds)]
  scores = (retrieval.embed_audio(run, clips) @ retrieval.embed_text(
      run, zero_shot.class_prompts(spec.classes)).T)
  assert got["accuracy"] == pytest.approx(
      np.mean(scores.argmax(1) == spec.targets(folds)))
  fsd = tasks.load_task("fsd50k", str(write_fsd50k(tmp_path / "fsd")))
  got = zero_shot.evaluate_zero_shot_task(run, fsd, "train")
  assert got["num_clips"] == 2 and 0.0 <= got["mAP"] <= 1.0
