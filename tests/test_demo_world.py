"""Tests of the embedded demo world (audiopt.data.demo_world) and its records.

Requirement 6 of the demo-world issue: determinism; every event of a scene
appears in its caption; measured label-noise rates match the configured
ones; audio is finite, within [-1, 1] and not silent; each evaluation task
is learnable (a probe on the front end's own features beats chance). And
the bad-input rule: unknown event, instrument or attribute names in a
config fail with the list of valid names.
"""

import json
import os

import numpy as np
import pytest

from audiopt import config as config_lib
from audiopt.data import demo_world as dw
from audiopt.data import prepare
from audiopt.data import records
from audiopt.data.demo_world import corpus
from audiopt.data.demo_world import labels
from audiopt.data.demo_world import scene as scene_lib
from audiopt.data.demo_world import speech
from audiopt.labels import captioner
from audiopt.labels import vocabulary

SR = dw.SAMPLE_RATE
# Words a caption must use for an event of each kind (any one of them).
_MENTIONS = {
    "speech": ("speak", "talk", "speech", "voice", "conversation"),
    "rain": ("rain",), "wind": ("wind",), "engine": ("engine",),
    "siren": ("siren",), "dog_bark": ("dog",), "birdsong": ("bird",),
    "footsteps": ("footstep",), "knocking": ("knock",), "alarm": ("alarm",),
    "crowd": ("crowd", "babble", "chatter"),
}
_INSTRUMENT_MENTIONS = {
    "guitar": ("guitar",), "piano": ("piano",), "organ": ("organ",),
    "flute": ("flute",), "bass": ("bass",), "synth": ("synth",),
    "strings": ("string",), "marimba": ("marimba",),
    "voice": ("vocal", "singer"), "drums": ("drum",)}


def _mentioned(text, event):
  words = (_INSTRUMENT_MENTIONS[event.attributes["instrument"]]
           if event.kind == "music" else _MENTIONS[event.kind])
  return any(w in text.lower() for w in words)


def _scenes(count, seed=0, duration_s=None):
  rng = np.random.default_rng(seed)
  return [dw.sample_scene(rng, f"s{i}", duration_s=duration_s)
          for i in range(count)]


def _task_scenes(count, seed=0):
  rng = np.random.default_rng(seed)
  out = []
  for task in dw.TASK_NAMES:
    for i in range(count):
      for split in ("train", "test"):
        out.append(dw.sample_task_clip(task, rng, f"{task}{i}{split}",
                                       split=split)[0])
  return out


# ----------------------------------------------------------------------------
# Determinism.


def test_generation_is_bit_identical_for_a_seed():
  def make(seed):
    clips = list(dw.generate_corpus(4, seed, duration_range=(1.5, 3.0)))
    for task in dw.TASK_NAMES:
      clips += list(dw.generate_task(task, 1, seed, split="test",
                                     duration_range=(1.5, 3.0)))
    return clips
  a, b, c = make(3), make(3), make(4)
  for x, y in zip(a, b):
    assert x["audio"].dtype == np.float32
    assert x["audio"].tobytes() == y["audio"].tobytes()
    assert {k: v for k, v in x.items() if k != "audio"} == \
        {k: v for k, v in y.items() if k != "audio"}
  assert all(x["audio"].tobytes() != z["audio"].tobytes()
             for x, z in zip(a, c))
  assert all(x["caption_full"] != z["caption_full"] for x, z in zip(a, c))


def test_worker_processes_make_the_same_clips():
  world = dw.WorldConfig(seed=5, duration_range=(1.0, 2.0),
                         task_duration_range=(1.0, 2.0))
  jobs = [corpus.ClipJob(world, i, flac=True) for i in range(5)]
  jobs += [corpus.ClipJob(world, 0, task, "train", flac=True)
           for task in dw.TASK_NAMES]
  here = [corpus.make_clip(j) for j in jobs]
  with dw.ClipPool(2) as pool:
    there = list(pool.imap(corpus.make_clip, jobs))
  assert here == there  # FLAC bytes, captions, labels and truth alike


def test_corpus_extends_and_streams_are_disjoint():
  short = list(dw.generate_corpus(2, 9, duration_range=(1.0, 1.5)))
  longer = list(dw.generate_corpus(3, 9, duration_range=(1.0, 1.5)))
  assert [c["caption_full"] for c in short] == [
      c["caption_full"] for c in longer[:2]]
  train = list(dw.generate_task("scene", 3, 9, split="train",
                                duration_range=(1.0, 1.5)))
  test = list(dw.generate_task("scene", 3, 9, split="test",
                               duration_range=(1.0, 1.5)))
  ids = [c["clip_id"] for c in longer + train + test]
  assert len(set(ids)) == len(ids)
  audio = {c["audio"].tobytes() for c in longer + train + test}
  assert len(audio) == len(ids)


def test_held_out_speakers_are_not_pre_training_speakers():
  pre = {a["speaker"] for a in speech.population(1234, 0, 240)}
  rng = np.random.default_rng(0)
  for task in ("speaker_id", "emotion", "scene"):
    for _ in range(20):
      scene, _ = dw.sample_task_clip(task, rng, "x", seed=1234)
      ids = {e.attributes["speaker"] for e in scene.events
             if e.kind == "speech"}
      assert not ids & pre


def test_emotion_train_and_test_speakers_are_disjoint():
  rng = np.random.default_rng(1)

  def speakers(split):
    out = set()
    for _ in range(60):
      scene, _ = dw.sample_task_clip("emotion", rng, "x", split=split)
      out |= {e.attributes["speaker"] for e in scene.events
              if e.kind == "speech"}
    return out
  assert not speakers("train") & speakers("test")


# ----------------------------------------------------------------------------
# Captions.


def test_every_event_appears_in_the_full_and_the_strong_caption():
  rng = np.random.default_rng(0)
  scenes = _scenes(150) + _task_scenes(4)
  kinds = {e.kind for s in scenes for e in s.events}
  assert kinds == set(dw.EVENT_KINDS)
  for scene in scenes:
    full, strong = dw.caption_scene(scene, rng)
    for event in scene.events:
      assert _mentioned(full, event), (event, full)
      assert _mentioned(strong, event), (event, strong)


def test_caption_layout_is_the_captioners():
  rng = np.random.default_rng(1)
  for scene in _scenes(40):
    full, strong = dw.caption_scene(scene, rng)
    paragraphs = full.split("\n\n")
    assert len(paragraphs) >= 4
    assert strong == captioner.strong_caption(full)
    # The last paragraph after its lead-in ("In summary, the ...").
    assert paragraphs[-1].lower().endswith(strong.lower())
    assert len(full.split()) > 3 * len(strong.split()) > 0
    # The production paragraph states the telephone channel when there is one.
    if scene.traits["telephone"]:
      assert "telephone" in full


def test_caption_wording_varies_but_is_deterministic():
  scene = _scenes(1, seed=3)[0]
  a = dw.caption_scene(scene, np.random.default_rng(0))
  b = dw.caption_scene(scene, np.random.default_rng(0))
  assert a == b
  texts = {dw.caption_scene(scene, np.random.default_rng(s))[0]
           for s in range(8)}
  assert len(texts) == 8
  # Many different openings across scenes: not one template.
  rng = np.random.default_rng(2)
  openings = {dw.caption_scene(s, rng)[0].split()[0:3].__str__()
              for s in _scenes(60)}
  assert len(openings) >= 6


def test_captions_state_speaker_and_music_attributes():
  rng = np.random.default_rng(4)
  seen = set()
  for scene in _scenes(200):
    full, _ = dw.caption_scene(scene, rng)
    text = full.lower()
    for e in scene.events:
      a = e.attributes
      if e.kind == "speech":
        assert a["language"] in text
        seen.add("speech")
      elif e.kind == "music" and a["instrument"] != "drums":
        assert a["genre"] in text
        assert f"{a['tempo_bpm']:.0f}" in text
        seen.add("music")
  assert seen == {"speech", "music"}


# ----------------------------------------------------------------------------
# Labels.


@pytest.mark.parametrize("drop_rate,swap_rate", [(0.0, 0.0), (0.1, 0.05),
                                                 (0.3, 0.2)])
def test_measured_label_noise_matches_configured_rates(drop_rate, swap_rate):
  rng = np.random.default_rng(0)
  scenes = _scenes(1500, seed=5, duration_s=3.0)
  true_total = dropped = swapped = 0
  for scene in scenes:
    true = set(dw.true_weak_labels(scene))
    noisy = set(dw.weak_labels(scene, rng, drop_rate=drop_rate,
                               swap_rate=swap_rate))
    true_total += len(true)
    swapped += len(noisy - true)
    dropped += len(true - noisy) - len(noisy - true)
  for measured, rate in ((dropped / true_total, drop_rate),
                         (swapped / true_total, swap_rate)):
    sigma = np.sqrt(max(rate * (1 - rate), 1e-4) / true_total)
    assert abs(measured - rate) < 4 * sigma + 1e-9, (measured, rate)


def test_weak_labels_are_coarse_classes_of_the_events():
  for scene in _scenes(100):
    names = {dw.WEAK_LABEL_NAMES[i] for i in dw.true_weak_labels(scene)}
    assert names == {labels.KIND_WEAK[e.kind] for e in scene.events}
  assert set(labels.KIND_WEAK) == set(dw.EVENT_KINDS)
  assert {"Speech", "Music", "Vehicle", "Animal"} <= set(dw.WEAK_LABEL_NAMES)
  assert len(dw.WEAK_LABEL_NAMES) < 12  # coarse: no instruments, no speakers


def test_ground_truth_is_json_and_matches_the_scene():
  for scene in _scenes(30):
    truth = json.loads(json.dumps(dw.ground_truth(scene)))
    assert truth["kinds"] == sorted({e.kind for e in scene.events})
    assert truth["traits"]["scene"] == scene.traits["scene"]
    assert len(truth["events"]) == len(scene.events)


def test_task_targets_match_the_scene():
  rng = np.random.default_rng(0)
  for _ in range(15):
    scene, ids = dw.sample_task_clip("sound_events", rng, "a")
    names = dw.TASKS["sound_events"].classes
    assert sorted(names[i] for i in ids) == sorted(
        {e.kind for e in scene.events})
    scene, ids = dw.sample_task_clip("instrument", rng, "b")
    assert [e.attributes["instrument"] for e in scene.events] == [
        dw.TASKS["instrument"].classes[ids[0]]]
    scene, ids = dw.sample_task_clip("emotion", rng, "c")
    assert {e.attributes["emotion"] for e in scene.events
            if e.kind == "speech"} == {dw.EMOTIONS[ids[0]]}
    scene, ids = dw.sample_task_clip("scene", rng, "d")
    assert scene.traits["scene"] == dw.SCENES[ids[0]]
    scene, ids = dw.sample_task_clip("music_tags", rng, "e")
    tags = {dw.TASKS["music_tags"].classes[i] for i in ids}
    assert {e.attributes["instrument"] for e in scene.events} <= tags
    assert scene.events[0].attributes["genre"] in tags


# ----------------------------------------------------------------------------
# Audio.


def test_audio_is_finite_bounded_and_not_silent():
  scenes = _scenes(60, seed=11) + _task_scenes(2, seed=11)
  traits = {(k, s.traits[k]) for s in scenes for k in ("telephone", "room")}
  assert {("telephone", True), ("room", "outdoor"), ("room", "large")} <= \
      traits
  assert any(s.traits["clipping_db"] > 0 for s in scenes)
  assert any(s.traits["hum_hz"] for s in scenes)
  for i, scene in enumerate(scenes):
    audio = dw.render_scene(scene, seed=i)
    assert audio.dtype == np.float32
    assert audio.shape == (int(round(scene.duration_s * SR)),)
    assert np.all(np.isfinite(audio))
    assert np.abs(audio).max() <= 1.0
    frames = audio[:audio.size // 800 * 800].reshape(-1, 800)
    assert np.sqrt(np.mean(frames ** 2, axis=1)).max() > 1e-3, scene


def test_every_kind_and_instrument_renders_on_its_own():
  for kind in dw.EVENT_KINDS:
    if kind == "music":
      continue
    for seed in range(2):
      d = dw.Draw(np.random.default_rng(seed))
      if kind == "speech":
        events = scene_lib.speech_events(
            d, 2.0, [speech.population(0, 0, 5)[seed]])
      else:
        events = [scene_lib.environment_event(d, kind, 2.0)]
      scene = scene_lib.make_scene(d, "x", 2.0, "studio", events, clean=True)
      audio = dw.render_scene(scene, seed=seed)
      assert np.all(np.isfinite(audio)) and np.abs(audio).max() > 0.01
  for instrument in dw.INSTRUMENTS:
    d = dw.Draw(np.random.default_rng(0))
    events = scene_lib.music_events(d, 2.0, instruments=[instrument])
    scene = scene_lib.make_scene(d, "x", 2.0, "studio", events, clean=True)
    audio = dw.render_scene(scene, seed=1)
    assert np.all(np.isfinite(audio)) and np.abs(audio).max() > 0.01


def test_telephone_trait_band_limits_the_audio():
  d = dw.Draw(np.random.default_rng(0))
  events = [scene_lib.environment_event(d, "rain", 2.0, intensity="heavy")]
  scene = scene_lib.make_scene(d, "x", 2.0, "street", events)

  def high_band_share(phone):
    s = dw.Scene("x", 2.0, "sound", scene.events,
                 dict(scene.traits, telephone=phone, clipping_db=0.0,
                      hiss_db=-90.0))
    spec = np.abs(np.fft.rfft(dw.render_scene(s, seed=0))) ** 2
    freqs = np.fft.rfftfreq(2 * SR, 1 / SR)
    return spec[freqs > 4500].sum() / spec.sum()
  assert high_band_share(True) < 0.01 < high_band_share(False)


# ----------------------------------------------------------------------------
# Learnable tasks.


def _front_end_features(audios):
  """Mean and std over time of the model's own log-mel front end."""
  import jax  # pylint: disable=g-import-not-at-top
  from audiopt.audio import frontend  # pylint: disable=g-import-not-at-top
  n = max(a.size for a in audios)
  wav = np.zeros((len(audios), n), np.float32)
  mask = np.zeros((len(audios), n), bool)
  for i, a in enumerate(audios):
    wav[i, :a.size], mask[i, :a.size] = a, True
  feats, fmask = jax.jit(frontend.fbank)(wav, mask)
  feats, fmask = np.asarray(feats), np.asarray(fmask)[..., None]
  count = fmask.sum(1)
  mean = (feats * fmask).sum(1) / count
  std = np.sqrt(((feats - mean[:, None]) ** 2 * fmask).sum(1) / count)
  return np.concatenate([mean, std], axis=1)


def _fit(x, y, *, softmax, steps=300, lr=0.5, l2=1e-2):
  """Full-batch gradient descent on a linear probe; y [N, C] 0/1."""
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


def _average_precision(scores, labels_):
  order = np.argsort(-scores)
  hits = labels_[order]
  precision = np.cumsum(hits) / np.arange(1, len(hits) + 1)
  return (precision * hits).sum() / max(hits.sum(), 1)


@pytest.mark.parametrize("task", dw.PROBE_TASKS)
def test_each_task_is_learnable_from_front_end_features(task):
  spec = dw.TASKS[task]
  world = dw.WorldConfig(seed=21, task_duration_range=(2.0, 3.0))
  num_train, num_test = 160, 80
  train = [corpus.make_clip(corpus.ClipJob(world, i, task, "train"))
           for i in range(num_train)]
  test = [corpus.make_clip(corpus.ClipJob(world, i, task, "test"))
          for i in range(num_test)]
  x = _front_end_features([r["audio"] for r in train + test])
  x = (x - x[:num_train].mean(0)) / (x[:num_train].std(0) + 1e-6)
  y = np.zeros((len(x), len(spec.classes)))
  for i, r in enumerate(train + test):
    y[i, r["label_ids"]] = 1.0
  multiclass = spec.kind == "multiclass"
  w, b = _fit(x[:num_train], y[:num_train], softmax=multiclass)
  scores, y_test = x[num_train:] @ w + b, y[num_train:]
  if multiclass:
    accuracy = np.mean(scores.argmax(1) == y_test.argmax(1))
    assert accuracy > 1.5 / len(spec.classes) + 0.05, accuracy
  else:
    present = [c for c in range(y.shape[1]) if y_test[:, c].any()]
    ap = np.mean([_average_precision(scores[:, c], y_test[:, c])
                  for c in present])
    prior = np.mean([y_test[:, c].mean() for c in present])
    assert ap > prior + 0.2, (ap, prior)


# ----------------------------------------------------------------------------
# Bad input.


def test_unknown_names_in_the_config_fail_listing_valid_names():
  def check(**demo):
    c = config_lib.base_config()
    c.data.source = "demo"
    for k, v in demo.items():
      c.data.demo[k] = v
    config_lib.validate(c)

  with pytest.raises(ValueError, match=r"unknown event kind 'thunder'; "
                     r"valid event kinds: speech, music, rain, wind"):
    check(events="speech,thunder")
  with pytest.raises(ValueError, match=r"unknown instrument 'banjo'; valid "
                     r"instruments: guitar, piano, .*drums"):
    check(instruments="piano,banjo")
  with pytest.raises(ValueError, match=r"unknown attribute 'mood' of "
                     r"'speech'; valid attributes: age, emotion, .*sex"):
    check(attributes="speech.mood=happy")
  with pytest.raises(ValueError, match=r"unknown value 'bored' of "
                     r"speech.emotion; valid values: neutral, happy, sad"):
    check(attributes="speech.emotion=bored")
  with pytest.raises(ValueError, match=r"unknown kind 'cat'; valid kinds: "
                     r"speech, .*scene"):
    check(attributes="cat.size=small")
  with pytest.raises(ValueError, match=r"unknown value 'moon' of scene.scene"
                     r"; valid values: street, park"):
    check(attributes="scene.scene=moon")
  with pytest.raises(ValueError, match="weak_drop_rate|drop_rate"):
    check(weak_drop_rate=1.5)
  check(events="speech,rain", instruments="piano",
        attributes="speech.emotion=sad|happy,scene.room=outdoor")


def test_unknown_names_in_scenes_fail_listing_valid_names():
  with pytest.raises(ValueError, match="valid event kinds: speech, music"):
    dw.Event("thunder", 0.0, 1.0)
  with pytest.raises(ValueError, match="valid attributes: .*emotion"):
    dw.Event("speech", 0.0, 1.0, {"mood": "happy"})
  with pytest.raises(ValueError, match="valid values: 'guitar', 'piano'"):
    dw.Event("music", 0.0, 1.0, {"instrument": "banjo"})
  with pytest.raises(ValueError, match="valid values: 'neutral', 'happy'"):
    dw.Event("speech", 0.0, 1.0, {"emotion": "bored"})
  with pytest.raises(ValueError, match=r"must be a number in \[9.0, 22.0\]"):
    dw.Event("speech", 0.0, 1.0, {"vtl_cm": 40.0})
  with pytest.raises(ValueError, match="valid attributes: clipping_db"):
    dw.Scene("x", 2.0, "sound", [dw.Event("rain", 0.0, 1.0)],
             {"weather": "sunny"})
  with pytest.raises(ValueError, match="after the clip"):
    dw.Scene("x", 2.0, "sound", [dw.Event("rain", 0.0, 3.0)])
  with pytest.raises(ValueError, match="make it 'sound'"):
    dw.Scene("x", 2.0, "speech", [dw.Event("rain", 0.0, 1.0)])
  with pytest.raises(ValueError, match="valid tasks: speaker_id"):
    dw.sample_task_clip("speaker_sex", np.random.default_rng(0), "x")


def test_restrictions_narrow_the_pre_training_world():
  restrictions = dw.parse_restrictions(
      "speech,music,rain", "piano,drums",
      "speech.emotion=sad,scene.scene=home|studio")
  d = dw.Draw(np.random.default_rng(0), restrictions)
  for i in range(40):
    scene = dw.sample_scene(d, f"r{i}", duration_s=3.0)
    assert scene.traits["scene"] in ("home", "studio")
    for e in scene.events:
      assert e.kind in ("speech", "music", "rain")
      if e.kind == "music":
        assert e.attributes["instrument"] in ("piano", "drums")
      if e.kind == "speech":
        assert e.attributes["emotion"] == "sad"


# ----------------------------------------------------------------------------
# Records, written once a session by the `demo_data_dir` fixture.


def test_demo_records_come_through_the_labelling_stages(demo_data_dir):
  data_dir = str(demo_data_dir)
  source = records.open_records(data_dir, prepare.DEMO_NAME, "train")
  stages = os.path.join(data_dir, prepare.STAGES_DIR, prepare.DEMO_NAME)
  vocab_files = [f for f in os.listdir(os.path.join(stages, "vocab"))
                 if f.startswith("label_")]
  assert len(vocab_files) == 1
  vocab = vocabulary.load_vocabulary(os.path.join(stages, "vocab",
                                                  vocab_files[0]))
  assert source.metadata["tag_names"] == vocab
  assert source.metadata["weak_label_names"] == list(dw.WEAK_LABEL_NAMES)
  tag_rows = {}
  for name in sorted(os.listdir(os.path.join(stages, "tag"))):
    if name.startswith("results"):
      with open(os.path.join(stages, "tag", name)) as f:
        tag_rows.update({r["id"]: r for r in map(json.loads, f)})
  # The vocabulary is the top K of the lexical tagger's tags of the captions.
  assert len(vocab) == 32
  assert set(vocab) <= {t for r in tag_rows.values() for t in r["tags"]}
  assert {r["tagger"] for r in tag_rows.values()} == {"lexical"}
  for i in range(len(source)):
    r = source[i]
    assert r["tags"].size and r["tags"].max() < len(vocab)
    # The record's tags are the tag stage's, in the vocabulary.
    assert [vocab[t] for t in r["tags"]] == [
        t for t in tag_rows[r["clip_id"]]["tags"] if t in vocab]
    assert r["caption"] and r["caption_full"].lower().endswith(
        r["caption"].lower())


def test_demo_task_records(demo_data_dir):
  data_dir = str(demo_data_dir)
  assert set(prepare.demo_task_names()) == {
      prepare.demo_task_name(t) for t in dw.PROBE_TASKS}
  for task in dw.TASK_NAMES:
    name = prepare.demo_task_name(task)
    ids = []
    for split in ("train", "test"):
      source = records.open_records(data_dir, name, split)
      assert source.metadata["task"] == dw.TASKS[task].kind
      assert source.metadata["label_names"] == list(dw.TASKS[task].classes)
      assert len(source) > 0
      for i in range(len(source)):
        r = source[i]
        ids.append(r["clip_id"])
        if task == "retrieval":
          assert r["caption"] and not r["label_ids"].size
        else:
          assert r["label_ids"].size and r["label_ids"].max() < len(
              dw.TASKS[task].classes)
      truth = os.path.join(data_dir, prepare.STAGES_DIR, name,
                           f"truth-{split}.jsonl")
      with open(truth) as f:
        assert len(f.readlines()) == len(source)
    assert len(set(ids)) == len(ids)
