"""Tests of the embedded demo corpus (audiopt.data.demo_corpus)."""

import re

import numpy as np
import pytest

from audiopt.data import demo_corpus as dc

SR = dc.SAMPLE_RATE
# Words a caption must use for an event of each kind (any one of them).
_MENTIONS = {
    "speech": ("speak", "talk"),
    "rain": ("rain",),
    "siren": ("siren",),
    "dog_bark": ("dog", "bark"),
    "alarm": ("alarm",),
    "engine": ("engine", "motor"),
}
_INSTRUMENT_MENTIONS = {"guitar": ("guitar",), "organ": ("organ",),
                        "piano": ("piano",), "drums": ("drum",)}


def _scenes(count, seed=0):
  rng = np.random.default_rng(seed)
  return [dc.sample_scene(rng, f"s{i}") for i in range(count)]


def _mention_words(event):
  if event.kind == "music":
    return _INSTRUMENT_MENTIONS[event.attributes["instrument"]]
  return _MENTIONS[event.kind]


def _log_mel_stats(audio, n_mels=40, nfft=512):
  """Mean and std over time of a 25 ms / 10 ms log-mel spectrogram [2 M]."""
  top = 2595 * np.log10(1 + SR / 2 / 700)
  low = 2595 * np.log10(1 + 20 / 700)
  edges = 700 * (10 ** (np.linspace(low, top, n_mels + 2) / 2595) - 1)
  bins = np.fft.rfftfreq(nfft, 1 / SR)
  lo, mid, hi = edges[:-2, None], edges[1:-1, None], edges[2:, None]
  bank = np.clip(np.minimum((bins - lo) / (mid - lo), (hi - bins) / (hi - mid)),
                 0, None)
  frames = np.lib.stride_tricks.sliding_window_view(audio, 400)[::160]
  power = np.abs(np.fft.rfft(frames * np.hanning(400), nfft)) ** 2
  log_mel = np.log(power @ bank.T + 1e-8)
  return np.concatenate([log_mel.mean(0), log_mel.std(0)])


def _logistic_regression(x, y, *, softmax, steps=500, lr=0.1, l2=1e-2):
  """Full-batch gradient descent; x [N, D] standardised, y [N, C] 0/1."""
  w, b = np.zeros((x.shape[1], y.shape[1])), np.zeros(y.shape[1])
  for _ in range(steps):
    logits = x @ w + b
    if softmax:
      p = np.exp(logits - logits.max(1, keepdims=True))
      p /= p.sum(1, keepdims=True)
    else:
      p = 1 / (1 + np.exp(-logits))
    grad = (p - y) / len(x)
    w -= lr * (x.T @ grad + l2 * w)
    b -= lr * grad.sum(0)
  return w, b


def _auc(scores, labels):
  ranks = scores.argsort().argsort() + 1.0
  pos = labels.sum()
  return (ranks[labels > 0].sum() - pos * (pos + 1) / 2) / (
      pos * (len(labels) - pos))


def test_generate_corpus_is_deterministic():
  a = list(dc.generate_corpus(6, seed=3))
  b = list(dc.generate_corpus(6, seed=3))
  c = list(dc.generate_corpus(6, seed=4))
  for x, y in zip(a, b):
    assert x.keys() == y.keys()
    assert x["audio"].dtype == np.float32
    assert x["audio"].tobytes() == y["audio"].tobytes()
    for key in ("clip_id", "caption", "caption_full", "tag_words",
                "weak_labels", "domain", "duration"):
      assert x[key] == y[key]
  assert [x["caption_full"] for x in a] != [x["caption_full"] for x in c]
  # Clip i depends only on (seed, i).
  assert next(iter(dc.generate_corpus(1, seed=3)))["audio"].tobytes() == (
      a[0]["audio"].tobytes())


def test_records_have_valid_audio_and_fields():
  for record in dc.generate_corpus(24, seed=0, duration_range=(1.0, 3.0)):
    audio = record["audio"]
    assert audio.dtype == np.float32 and audio.ndim == 1
    assert np.all(np.isfinite(audio))
    assert np.abs(audio).max() <= 1.0
    assert np.sqrt(np.mean(audio ** 2)) > 1e-3
    assert 1.0 <= record["duration"] <= 3.0
    assert audio.size == round(record["duration"] * SR)
    assert record["source"] == "audiopt-demo"
    assert record["domain"] in dc.DOMAINS
    assert record["caption_full"].endswith("\n\n" + record["caption"])
    assert all(0 <= i < len(dc.WEAK_LABEL_NAMES)
               for i in record["weak_labels"])


def test_render_scene_is_seeded_and_handles_every_kind():
  events = [
      dc.Event("speech", 0.1, 1.4, {"sex": "female", "pitch_hz": 210.0}),
      dc.Event("music", 0.0, 3.0, {"instrument": "guitar", "gain_db": -10.0}),
      dc.Event("music", 0.5, 3.0, {"instrument": "organ"}),
      dc.Event("music", 0.0, 1.0, {"instrument": "piano"}),
      dc.Event("music", 1.0, 2.0, {"instrument": "drums"}),
      dc.Event("rain", 0.0, 3.0, {"intensity": "heavy"}),
      dc.Event("siren", 0.0, 3.0, {"pattern": "yelp", "motion": "passing"}),
      dc.Event("dog_bark", 1.5, 2.9, {"count": 3, "size": "small"}),
      dc.Event("alarm", 2.0, 3.0, {"pattern": "two-tone"}),
      dc.Event("engine", 0.0, 3.0, {"state": "accelerating"}),
  ]
  scene = dc.Scene("all", 3.0, "mixed", events,
                   {"setting": "indoor", "rt60_s": 0.5, "telephone": True})
  y = dc.render_scene(scene, seed=5)
  assert y.shape == (3 * SR,) and y.dtype == np.float32
  assert np.all(np.isfinite(y)) and np.abs(y).max() <= 1.0
  assert y.tobytes() == dc.render_scene(scene, seed=5).tobytes()
  assert y.tobytes() != dc.render_scene(scene, seed=6).tobytes()
  assert dc.render_scene(scene, sample_rate=8000, seed=5).shape == (3 * 8000,)


def test_telephone_trait_band_limits_the_audio():
  event = dc.Event("speech", 0.0, 2.0, {"sex": "male", "pitch_hz": 100.0})

  def band_fraction(telephone):
    scene = dc.Scene("t", 2.0, "speech", [event],
                     {"telephone": telephone, "noise_db": -70.0})
    power = np.abs(np.fft.rfft(dc.render_scene(scene, seed=0))) ** 2
    freqs = np.fft.rfftfreq(2 * SR, 1 / SR)
    return power[(freqs < 200) | (freqs > 4000)].sum() / power.sum()

  assert band_fraction(True) < 0.02 < band_fraction(False)


def test_captions_mention_every_event_and_end_with_summary():
  rng = np.random.default_rng(1)
  first_sentences = set()
  for scene in _scenes(300):
    full, strong = dc.caption_scene(scene, rng)
    assert full.endswith("\n\n" + strong)
    assert strong and "\n" not in strong
    assert len(re.findall(r"[.!?](\s|$)", full)) >= 4
    first_sentences.add(full.split(". ")[0].split(" ")[0])
    for event in scene.events:
      words = _mention_words(event)
      assert any(w in full.lower() for w in words), (event, full)
      assert any(w in strong.lower() for w in words), (event, strong)
  assert len(first_sentences) >= 3  # several phrasings, not one template


def test_caption_wording_varies_with_rng_but_is_deterministic():
  scene = _scenes(1, seed=7)[0]
  texts = {dc.caption_scene(scene, np.random.default_rng(s))[0]
           for s in range(10)}
  assert len(texts) > 5
  assert (dc.caption_scene(scene, np.random.default_rng(0)) ==
          dc.caption_scene(scene, np.random.default_rng(0)))


def test_tags_are_derived_from_the_scene():
  for scene in _scenes(300, seed=2):
    tags = dc.scene_tags(scene)
    assert 5 <= len(tags) <= 10
    assert len(set(tags)) == len(tags)
    assert all(re.fullmatch(r"[a-z]+(-[a-z]+)*", t) for t in tags), tags
    assert scene.traits["setting"] in tags
    assert dc.domain_of(scene.events) == scene.domain
    kinds = {e.kind for e in scene.events}
    assert ("speech" in tags) == ("speech" in kinds)
    for event in scene.events:
      if event.kind == "music":
        assert event.attributes["instrument"] in tags
      elif event.kind != "speech":
        assert _mention_words(event)[0] in tags


def test_weak_labels_are_true_classes_without_noise():
  for scene in _scenes(100, seed=3):
    labels = dc.weak_labels(scene, np.random.default_rng(0), drop_rate=0.0,
                            swap_rate=0.0)
    names = {dc.WEAK_LABEL_NAMES[i] for i in labels}
    kinds = {e.kind for e in scene.events}
    assert ("Speech" in names) == ("speech" in kinds)
    assert ("Music" in names) == ("music" in kinds)
    assert ("Dog" in names) == ("dog_bark" in kinds)
    assert ("Vehicle" in names) == ("engine" in kinds)
    assert ("Water" in names) == ("rain" in kinds)


@pytest.mark.parametrize("drop_rate,swap_rate", [(0.1, 0.05), (0.3, 0.15)])
def test_weak_label_noise_rates_match_configuration(drop_rate, swap_rate):
  rng = np.random.default_rng(0)
  true_total = missing = spurious = 0
  for scene in _scenes(2000, seed=4):
    true = set(dc.true_weak_labels(scene))
    noisy = set(dc.weak_labels(scene, rng, drop_rate=drop_rate,
                               swap_rate=swap_rate))
    true_total += len(true)
    missing += len(true - noisy)
    spurious += len(noisy - true)
  # A true label is missing when dropped or swapped; each swap adds one.
  assert abs(missing / true_total - (drop_rate + swap_rate)) < 0.015
  assert abs(spurious / true_total - swap_rate) < 0.01
  assert abs((missing - spurious) / true_total - drop_rate) < 0.015


def test_unknown_names_raise_listing_valid_names():
  with pytest.raises(ValueError, match="valid kinds: speech, music, rain"):
    dc.Event("violin", 0.0, 1.0)
  with pytest.raises(ValueError, match="'guitar', 'organ', 'piano', 'drums'"):
    dc.Event("music", 0.0, 1.0, {"instrument": "violin"})
  with pytest.raises(ValueError, match="valid attributes: .*pitch_hz"):
    dc.Event("speech", 0.0, 1.0, {"accent": "scottish"})
  with pytest.raises(ValueError, match="'female', 'male'"):
    dc.Event("speech", 0.0, 1.0, {"sex": "robot"})
  with pytest.raises(ValueError, match="valid domains: speech, music"):
    dc.Scene("x", 2.0, "podcast", [dc.Event("rain", 0.0, 1.0)])
  with pytest.raises(ValueError, match="valid attributes: .*telephone"):
    dc.Scene("x", 2.0, "sound", [dc.Event("rain", 0.0, 1.0)], {"wind": 1.0})
  with pytest.raises(ValueError, match="valid tasks: speaker_sex"):
    dc.sample_task_clip("genre", np.random.default_rng(0), "x")
  with pytest.raises(ValueError, match="valid tasks"):
    next(dc.generate_task("genre", 1, 0))
  # Values mutated after construction are caught when the scene is used.
  scene = dc.Scene("x", 2.0, "sound", [dc.Event("rain", 0.0, 1.0)])
  scene.events[0].attributes["intensity"] = "biblical"
  with pytest.raises(ValueError, match="'light', 'heavy'"):
    dc.render_scene(scene, seed=0)


def test_out_of_range_values_raise():
  with pytest.raises(ValueError, match="duration_s"):
    dc.Scene("x", 12.0, "sound", [dc.Event("rain", 0.0, 1.0)])
  with pytest.raises(ValueError, match="after the clip"):
    dc.Scene("x", 2.0, "sound", [dc.Event("rain", 0.0, 3.0)])
  with pytest.raises(ValueError, match="make it 'sound'"):
    dc.Scene("x", 2.0, "speech", [dc.Event("rain", 0.0, 1.0)])
  with pytest.raises(ValueError, match="drop_rate"):
    dc.weak_labels(_scenes(1)[0], np.random.default_rng(0), drop_rate=1.5)


def test_sample_task_clip_targets_match_scene():
  rng = np.random.default_rng(0)
  for _ in range(30):
    scene, labels = dc.sample_task_clip("speaker_sex", rng, "a")
    assert [scene.events[0].attributes["sex"]] == [
        dc.EVAL_TASKS["speaker_sex"][1][i] for i in labels]
    scene, labels = dc.sample_task_clip("instrument", rng, "b")
    assert [e.attributes["instrument"] for e in scene.events] == [
        dc.INSTRUMENTS[i] for i in labels]
    scene, labels = dc.sample_task_clip("sound_event", rng, "c")
    assert sorted({e.kind for e in scene.events}) == sorted(
        dc.EVAL_TASKS["sound_event"][1][i] for i in labels)


@pytest.mark.parametrize("task", sorted(dc.EVAL_TASKS))
def test_eval_task_is_learnable_from_log_mel_statistics(task):
  kind, names = dc.EVAL_TASKS[task]
  records = list(dc.generate_task(task, 300, seed=0,
                                  duration_range=(1.5, 2.5)))
  assert all("label_ids" in r for r in records)
  x = np.stack([_log_mel_stats(r["audio"]) for r in records])
  y = np.zeros((len(records), len(names)))
  for i, r in enumerate(records):
    y[i, r["label_ids"]] = 1.0
  x = (x - x[:200].mean(0)) / (x[:200].std(0) + 1e-6)
  w, b = _logistic_regression(x[:200], y[:200], softmax=kind == "multiclass")
  scores, y_test = x[200:] @ w + b, y[200:]
  if kind == "multiclass":
    accuracy = np.mean(scores.argmax(1) == y_test.argmax(1))
    assert accuracy > 1 / len(names) + 0.3, accuracy
  else:
    aucs = [_auc(scores[:, c], y_test[:, c]) for c in range(len(names))]
    assert min(aucs) > 0.75 and np.mean(aucs) > 0.85, aucs
