"""Retrieval metrics against a brute-force reference, and on a trained run."""

import numpy as np
import pytest

from audiopt.evaluate import retrieval
from audiopt.evaluate import tasks
from audiopt.train import restore
from audiopt.train import trainer
from objective_training import tiny_config
from test_tasks_layouts import write_clotho


def train_audio_text_run(data_dir, workdir, steps=2):
  """A tiny multi-task run (contrastive + captioning) on the demo records."""
  config = tiny_config(data_dir, "multitask",
                       tasks="contrastive:1.0,captioning:1.0", embed_dim=32,
                       text_encoder_size="tiny", decoder_size="tiny")
  config.mesh.data, config.mesh.fsdp = -1, 1
  config.train.num_steps = config.train.checkpoint_every = steps
  config.text.vocab_size, config.text.max_len = 300, 16
  trainer.train(config, str(workdir))
  return restore.load_checkpoint(str(workdir))


@pytest.fixture(scope="module")
def run(demo_data_dir, tmp_path_factory):
  return train_audio_text_run(demo_data_dir,
                              tmp_path_factory.mktemp("audio_text_run"))


def brute_force(audio, text, owner):
  """The metrics by sorting every row explicitly (ties by index)."""
  sims = text @ audio.T
  n, m = audio.shape[0], text.shape[0]
  out = {}
  t2a_ranks = []
  for j in range(m):
    order = sorted(range(n), key=lambda i: (-sims[j, i], i))
    t2a_ranks.append(order.index(owner[j]) + 1)
  a2t_best, a2t_ap = [], []
  for i in range(n):
    order = sorted(range(m), key=lambda j: (-sims[j, i], j))
    relevant = [j for j in range(m) if owner[j] == i]
    positions = sorted(order.index(j) + 1 for j in relevant)
    a2t_best.append(positions[0])
    hits, total = 0, 0.0
    for rank in range(1, min(10, m) + 1):
      if order[rank - 1] in relevant:
        hits += 1
        total += hits / rank
    a2t_ap.append(total / min(len(relevant), 10))
  for k in (1, 5, 10):
    out[f"t2a_R@{k}"] = np.mean([r <= k for r in t2a_ranks])
    out[f"a2t_R@{k}"] = np.mean([r <= k for r in a2t_best])
  out["t2a_mAP@10"] = np.mean([1 / r if r <= 10 else 0 for r in t2a_ranks])
  out["a2t_mAP@10"] = np.mean(a2t_ap)
  return out


@pytest.mark.parametrize("captions_per_clip,levels", [(5, None), (5, 3),
                                                       (1, None), (1, 2)])
def test_metrics_match_brute_force(captions_per_clip, levels):
  rng = np.random.default_rng(captions_per_clip * 10 + (levels or 0))
  n, dim = 30, 8
  audio = rng.normal(size=(n, dim))
  owner = np.repeat(np.arange(n), captions_per_clip)
  # Captions near their clip, with noise so that ranks spread over 1..30.
  text = audio[owner] + rng.normal(size=(len(owner), dim)) * 1.5
  if levels:  # coarse values make many exact ties
    audio, text = np.round(audio / 2) * levels, np.round(text / 2) * levels
  got = retrieval.retrieval_metrics(audio, text, owner)
  want = brute_force(audio.astype(np.float32), text.astype(np.float32), owner)
  assert set(got) == set(want)
  for key in want:
    assert got[key] == pytest.approx(want[key], abs=1e-9), key
  assert 0 < got["t2a_R@1"] < got["t2a_R@10"] < 1


def test_uneven_caption_counts_and_perfect_scores():
  audio = np.eye(4)
  owner = np.array([0, 0, 1, 2, 2, 2, 3])
  got = retrieval.retrieval_metrics(audio, audio[owner], owner)
  assert all(v == 1.0 for v in got.values()), got
  want = brute_force(audio, audio[owner] + 0.01 * np.arange(7)[:, None],
                     owner)
  got = retrieval.retrieval_metrics(audio, audio[owner] +
                                    0.01 * np.arange(7)[:, None], owner)
  for key in want:
    assert got[key] == pytest.approx(want[key]), key


def test_bad_inputs():
  with pytest.raises(ValueError, match="every clip needs a caption"):
    retrieval.retrieval_metrics(np.eye(3), np.eye(3)[:2], [0, 1])
  with pytest.raises(ValueError, match=r"\[0, 3\)"):
    retrieval.retrieval_metrics(np.eye(3), np.eye(3), [0, 1, 3])
  with pytest.raises(ValueError, match="must be"):
    retrieval.retrieval_metrics(np.eye(3), np.eye(4), [0, 1, 2, 2])


def test_embeddings_match_one_clip_at_a_time(run):
  rng = np.random.default_rng(0)
  wavs = [rng.uniform(-0.3, 0.3, n).astype(np.float32)
          for n in (16000, 7000, 20000)]
  got = retrieval.embed_audio(run, wavs, batch_size=2, max_seconds=None)
  for wav, row in zip(wavs, got):
    np.testing.assert_allclose(row, run.predict(wav, "audio_embedding"),
                               atol=2e-5)
  np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, rtol=1e-5)
  text = retrieval.embed_text(run, ["a dog barks", "rain falls"])
  assert text.shape == (2, 32)
  np.testing.assert_allclose(np.linalg.norm(text, axis=1), 1.0, rtol=1e-5)
  # A long clip is embedded in chunks whose embeddings are averaged.
  long = rng.uniform(-0.3, 0.3, 32000).astype(np.float32)
  parts = retrieval.embed_audio(run, [long[:16000], long[16000:]],
                                max_seconds=None)
  mean = parts.mean(0) / np.linalg.norm(parts.mean(0))
  np.testing.assert_allclose(
      retrieval.embed_audio(run, [long], max_seconds=1.0)[0], mean, atol=2e-5)


def test_retrieval_on_a_clotho_layout(run, tmp_path):
  spec = tasks.load_task("clotho", str(write_clotho(tmp_path)))
  got = retrieval.evaluate_retrieval_task(run, spec, "test")
  assert got["num_clips"] == 1 and got["num_captions"] == 5
  # One clip: every caption finds it first.
  assert got["t2a_R@1"] == got["a2t_R@1"] == got["a2t_mAP@10"] == 1.0
  clips = [np.sin(np.arange(16000) * f).astype(np.float32) * 0.3
           for f in (0.01, 0.05, 0.2)]
  captions = [["low hum", "a low hum"], ["a tone"], ["a high whistle"]]
  got = retrieval.evaluate_retrieval(run, clips, captions)
  assert got["num_captions"] == 4
  assert all(0.0 <= got[k] <= 1.0 for k in got if "@" in k)
  assert got["t2a_R@10"] == got["a2t_R@10"] == 1.0


def test_run_without_text_tower_is_refused(run):
  class NoText:
    tokenizer = None
    step = 1
    config = run.config
  with pytest.raises(ValueError, match="no caption tokenizer"):
    retrieval.embed_text(NoText(), ["x"])
