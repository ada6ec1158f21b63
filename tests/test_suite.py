"""The probe suite (audiopt.evaluate.suite) on embeddings and on a run."""

import json
import os

import numpy as np
import pytest

from conftest import quick_demo_config
from audiopt.evaluate import embeddings
from audiopt.evaluate import suite
from audiopt.train import trainer


def test_targets_from_padded_label_ids():
  ids = np.array([[2, -1], [0, 1], [1, -1]])
  np.testing.assert_array_equal(suite.targets(ids, "multiclass", 3), [2, 0, 1])
  np.testing.assert_array_equal(suite.targets(ids, "multilabel", 3),
                                [[0, 0, 1], [1, 1, 0], [0, 1, 0]])
  with pytest.raises(ValueError, match="row 0: label id 5"):
    suite.targets(np.array([[5]]), "multiclass", 3)
  with pytest.raises(ValueError, match="row 1: a multiclass clip without"):
    suite.targets(np.array([[0], [-1]]), "multiclass", 3)


def _split(rng, n, centres):
  y = rng.integers(len(centres), size=n)
  frames = (centres[y][:, None] + rng.normal(size=(n, 5, 8))).astype(
      np.float32)
  mask = np.ones((n, 5), bool)
  mask[:, 3:] = rng.random((n, 2)) < 0.5
  return {"frames": frames, "mask": mask, "label_ids": y[:, None]}


def test_probe_embeddings_runs_both_poolings_and_knn():
  rng = np.random.default_rng(0)
  centres = rng.normal(size=(3, 8)) * 3
  train, val, test = (_split(rng, n, centres) for n in (120, 30, 60))
  config = quick_demo_config("/unused")
  config.eval.probes = "knn,attention,mean"
  config.eval.probe_epochs = 20
  config.eval.probe_learning_rate = 1e-2
  got = suite.probe_embeddings(train, test, kind="multiclass", num_classes=3,
                               config=config, validation=val)
  assert list(got) == ["mean", "attention", "knn"]
  assert all(r["accuracy"] > 0.9 for r in got.values())
  multi = {k: dict(v, label_ids=np.concatenate(
      [v["label_ids"], (v["label_ids"] + 1) % 3], axis=1)) for k, v in
           (("train", train), ("test", test))}
  got = suite.probe_embeddings(multi["train"], multi["test"],
                               kind="multilabel", num_classes=3, config=config)
  for r in got.values():
    assert set(r) == {"mAP", "roc_auc", "d_prime"} and r["mAP"] > 0.8


def test_trained_run_is_probed_with_cached_embeddings(demo_data_dir, tmp_path):
  config = quick_demo_config(demo_data_dir, num_steps=2, checkpoint_every=2)
  config.eval.tasks = "audiopt_demo_emotion,audiopt_demo_sound_events"
  config.eval.probe_epochs = 3
  results = trainer.train_and_evaluate(config, str(tmp_path))
  assert set(results) == {"pretrained", "random_init"}
  for encoder in results.values():
    assert set(encoder["audiopt_demo_emotion"]["probes"]) == {
        "mean", "attention", "knn"}
    assert "d_prime" in encoder["audiopt_demo_sound_events"]["probes"]["mean"]
  table = (tmp_path / "probe_results.md").read_text()
  assert table.count("### ") == 4  # three probes, d-prime
  assert "| pretrained | " in table and "| random_init | " in table
  assert json.loads((tmp_path / "probe_results.json").read_text()) == results
  # Evaluating the same parameters again reads every embedding from disk.
  setup, state = trainer.train(config, str(tmp_path))  # restores step 2
  cache = suite.cache_of(config, str(tmp_path))
  again = suite.evaluate_params(setup, state.params, config,
                                str(demo_data_dir), cache=cache,
                                model_id=None)
  assert cache.misses == 4 and cache.hits == 0  # no step in the id: new key
  again = suite.evaluate_params(
      setup, state.params, config, str(demo_data_dir), cache=cache,
      model_id=suite.cache_lib.model_id(state.params, 2))
  assert cache.misses == 4 and cache.hits == 4
  assert again == {t: dict(r, seconds=again[t]["seconds"])
                   for t, r in results["pretrained"].items()}
  # Any checkpoint, restored on the mesh, finds the same cache entries.
  got = embeddings.checkpoint_embeddings(
      str(tmp_path), str(demo_data_dir), "audiopt_demo_emotion", "test",
      cache_dir=cache.directory)
  fresh = embeddings.checkpoint_embeddings(
      str(tmp_path), str(demo_data_dir), "audiopt_demo_emotion", "test")
  np.testing.assert_allclose(got["frames"], fresh["frames"], atol=1e-5)
  np.testing.assert_array_equal(got["mask"], fresh["mask"])
  assert len(os.listdir(os.path.join(cache.directory))) == 3  # no new model
