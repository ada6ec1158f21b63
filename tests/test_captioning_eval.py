"""Captioning evaluation: cross-attention fine-tuning and caption metrics."""

import shutil
import types

import flax
import numpy as np
import pytest

from audiopt.evaluate import captioning_eval as ce
from audiopt.evaluate import tasks
from test_retrieval import train_audio_text_run
from test_tasks_layouts import write_audiocaps

needs_coco = pytest.mark.skipif(
    ce._coco() is None, reason="pycocoevalcap (the captioning extra) is not "
    "installed")
needs_java = pytest.mark.skipif(shutil.which("java") is None,
                                reason="METEOR and the PTB tokenizer need Java")


@pytest.fixture(scope="module")
def run(demo_data_dir, tmp_path_factory):
  return train_audio_text_run(demo_data_dir,
                              tmp_path_factory.mktemp("captioning_eval_run"))


REFS = [["a dog barks loudly", "a dog is barking", "dogs bark nearby"],
        ["rain falls on a tin roof", "heavy rain on a roof"],
        ["a man speaks", "a man is talking quietly"]]


@needs_coco
def test_identical_captions_score_perfectly():
  got = ce.score_captions([r[0] for r in REFS], REFS)
  for n in range(1, 5):
    assert got[f"BLEU_{n}"] == pytest.approx(1.0, abs=1e-6)
  assert got["ROUGE_L"] == pytest.approx(1.0)
  assert got["CIDEr-D"] > 1.0
  assert "FENSE" in got["unavailable"]
  assert set(got) - {"unavailable", "tokenizer"} == {
      m for m in ce.ALL_METRICS if m not in got["unavailable"]}


@needs_coco
def test_unrelated_captions_score_low_and_order_holds():
  bad = ce.score_captions(["xylophone zebra quartz"] * 3, REFS)
  assert bad["BLEU_1"] < 1e-6 and bad["CIDEr-D"] == pytest.approx(0.0)
  near = ce.score_captions(["a dog barks", "rain on a roof", "a man talks"],
                           REFS, metrics=["BLEU_1", "CIDEr-D", "ROUGE_L"])
  assert set(near) == {"BLEU_1", "CIDEr-D", "ROUGE_L", "unavailable",
                       "tokenizer"}
  assert near["CIDEr-D"] > bad["CIDEr-D"] and near["BLEU_1"] > 0.5


@needs_coco
def test_cider_d_matches_pycocoevalcap_directly():
  from pycocoevalcap.cider.cider import Cider
  preds = ["a dog barks", "rain on a roof", "a man talks"]
  got = ce.score_captions(preds, REFS, metrics=["CIDEr-D"])
  tokens, _ = ce.tokenize_captions(preds + [r for refs in REFS for r in refs])
  gts = {0: tokens[3:6], 1: tokens[6:8], 2: tokens[8:10]}
  res = {i: [tokens[i]] for i in range(3)}
  assert got["CIDEr-D"] == pytest.approx(Cider().compute_score(gts, res)[0])


@needs_coco
@needs_java
def test_meteor_and_ptb_tokenizer_with_java():
  got = ce.score_captions(["A dog, barking!", "rain on a roof", "a man"],
                          REFS, metrics=["METEOR", "BLEU_1"])
  assert got["tokenizer"] == "ptb"
  assert 0.0 < got["METEOR"] < 1.0
  tokens, kind = ce.tokenize_captions(["A dog, barking!", "It's raining."])
  assert kind == "ptb" and tokens == ["a dog barking", "it 's raining"]


def test_score_captions_bad_input():
  with pytest.raises(ValueError, match="2 predictions but 3"):
    ce.score_captions(["a", "b"], REFS)
  with pytest.raises(ValueError, match="reference"):
    ce.score_captions(["a"], [[]])
  with pytest.raises(ValueError, match="unknown metrics"):
    ce.score_captions(["a"], [["a"]], metrics=["BLEURT"])


def test_finetuning_moves_only_cross_attention(run):
  decoder = ce.find_caption_decoder(run)
  assert decoder is not None and "tasks_captioning" in decoder.source
  rng = np.random.default_rng(0)
  clips = [rng.uniform(-0.3, 0.3, n).astype(np.float32)
           for n in (16000, 12000, 16000, 8000)]
  frames, mask = ce.encoder_frames(run, clips, max_seconds=1.0)
  assert frames.shape[0] == 4 and mask[3].sum() < mask[0].sum()
  config = ce.CaptionFinetuneConfig(steps=12, batch_size=4,
                                    learning_rate=3e-3, warmup_steps=2)
  captions = [["a dog barks"], ["rain falls"], ["a dog barks loudly"],
              ["a bell rings"]]
  params, info = ce.finetune_decoder(decoder, frames, mask, captions, config)
  assert info["trainable"] and all("cross_attn" in p
                                   for p in info["trainable"])
  assert info["reinitialised"] == []
  assert info["losses"][-1] < info["losses"][0]
  before = flax.traverse_util.flatten_dict(decoder.params)
  after = flax.traverse_util.flatten_dict(params)
  assert before.keys() == after.keys()
  for key, old in before.items():
    changed = not np.array_equal(np.asarray(old), np.asarray(after[key]))
    assert changed == ("cross_attn" in key), key
  # Same seed, same parameters.
  again, _ = ce.finetune_decoder(decoder, frames, mask, captions, config)
  for key, value in flax.traverse_util.flatten_dict(again).items():
    np.testing.assert_array_equal(value, after[key])
  text = ce.generate_captions(decoder, params, frames, mask, batch_size=3)
  assert len(text) == 4 and all(isinstance(t, str) for t in text)


def test_new_encoder_width_remakes_trainable_projections(run):
  decoder = ce.find_caption_decoder(run)
  rng = np.random.default_rng(1)
  frames = rng.normal(size=(3, 5, 48)).astype(np.float32)
  mask = np.ones((3, 5), bool)
  config = ce.CaptionFinetuneConfig(steps=2, batch_size=2)
  _, info = ce.finetune_decoder(decoder, frames, mask, [["a"], ["b"], ["c"]],
                                config)
  assert info["reinitialised"] and all(
      "cross_attn/key" in p or "cross_attn/value" in p
      for p in info["reinitialised"])
  frozen = ce.CaptionFinetuneConfig(steps=2, batch_size=2,
                                    trainable=("self_attn",))
  with pytest.raises(ValueError, match="cross_attn/key/kernel"):
    ce.finetune_decoder(decoder, frames, mask, [["a"], ["b"], ["c"]], frozen)
  with pytest.raises(ValueError, match="no decoder parameter matches"):
    ce.finetune_decoder(decoder, frames, mask, [["a"]] * 3,
                        ce.CaptionFinetuneConfig(trainable=("nothing",)))


def test_run_without_decoder_needs_decoder_from(run):
  fake = types.SimpleNamespace(
      step=3, config=types.SimpleNamespace(objective=types.SimpleNamespace(
          name="mtc")), tokenizer=None,
      setup=types.SimpleNamespace(model=types.SimpleNamespace(
          objective=object())), params={"objective": {}})
  assert ce.find_caption_decoder(fake) is None
  with pytest.raises(ValueError, match="decoder_from"):
    ce.evaluate_captioning(fake, [np.zeros(100)], [["a"]], [np.zeros(100)],
                           [["a"]])


@needs_coco
def test_captioning_on_an_audiocaps_layout(run, tmp_path):
  spec = tasks.load_task("audiocaps", str(write_audiocaps(tmp_path)))
  config = ce.CaptionFinetuneConfig(steps=3, batch_size=2, max_seconds=1.0)
  got = ce.evaluate_captioning_task(run, spec, "train", "test", config,
                                    decoder_from=run)
  assert len(got["predictions"]) == 1 and len(got["losses"]) == 3
  assert set(got["metrics"]) >= {"BLEU_4", "ROUGE_L", "CIDEr-D",
                                 "unavailable", "tokenizer"}
  assert all(np.isfinite(got["metrics"][m]) for m in ("BLEU_4", "CIDEr-D"))
  assert got["num_trainable"] > 0
