"""Contrastive and SigLIP objectives: towers, loss, predict, sharded runs.

The loss tests use a stand-in text tower (an embedding table, masked mean)
so that numpy can follow them; the sharded runs use the real tiny BERT-style
tower and a WordPiece tokenizer trained on the demo captions.
"""

import json

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from audiopt import objectives
from audiopt.models.outputs import EncoderOutput
from audiopt.objectives import contrastive
from audiopt.objectives import text_inputs
from audiopt.train import checkpoint as checkpoint_lib
from audiopt.train import restore
from audiopt.train import trainer
from objective_training import tiny_config, train_losses
from test_contrastive_losses import _np_info_nce, _np_siglip

VOCAB = 50
WIDTH = 12


class StubTextEncoder(nn.Module):
  """Token embeddings and their masked mean: (hidden, pooled)."""

  vocab_size: int = VOCAB

  @nn.compact
  def __call__(self, ids, mask, train=False):
    del train
    hidden = nn.Embed(self.vocab_size, 16, name="embed")(ids)
    m = mask[..., None].astype(jnp.float32)
    return hidden, (hidden * m).sum(1) / jnp.maximum(m.sum(1), 1.0)


@pytest.fixture
def stub_text_tower(monkeypatch):
  monkeypatch.setattr(text_inputs, "build_text_encoder",
                      lambda cfg: StubTextEncoder(text_inputs.text_settings(
                          cfg)[0]))


def _setup(loss):
  rng = np.random.default_rng(0)
  b, t, d = 8, 5, 6
  frames = rng.normal(size=(b, t, d)).astype(np.float32)
  mask = np.arange(t)[None] < rng.integers(1, t + 1, (b, 1))
  ids = rng.integers(1, VOCAB, (b, 7)).astype(np.int32)
  tmask = np.arange(7)[None] < rng.integers(1, 8, (b, 1))
  valid = np.ones(b, bool)
  valid[5] = False
  obj = contrastive.ContrastiveObjective(text_encoder=StubTextEncoder(),
                                         loss=loss, embed_dim=4)
  enc = EncoderOutput(frames=jnp.asarray(frames), mask=jnp.asarray(mask),
                      intermediates={})
  batch = {"caption_ids": jnp.asarray(ids), "caption_mask": jnp.asarray(tmask),
           "valid": jnp.asarray(valid)}
  variables = obj.init(jax.random.key(0), enc, batch, train=False)
  p = jax.tree.map(np.asarray, nn.meta.unbox(variables["params"]))
  m = mask[..., None]
  audio = (frames * m).sum(1) / m.sum(1) @ p["audio_proj"]["kernel"] + (
      p["audio_proj"]["bias"])
  emb = p["text_encoder"]["embed"]["embedding"][ids]
  tm = tmask[..., None]
  text = (emb * tm).sum(1) / tm.sum(1) @ p["text_proj"]["kernel"] + (
      p["text_proj"]["bias"])
  return obj, variables, enc, batch, audio, text, valid, p


def test_info_nce_objective_matches_numpy():
  obj, variables, enc, batch, audio, text, valid, p = _setup("info_nce")
  np.testing.assert_allclose(p["log_scale"], np.log(1 / 0.07), rtol=1e-6)
  loss, metrics = obj.apply(variables, enc, batch, train=False)
  np.testing.assert_allclose(float(loss),
                             _np_info_nce(audio, text, p["log_scale"], valid),
                             rtol=1e-5)
  assert float(metrics["info_nce_loss"]) == pytest.approx(float(loss))
  got_a = obj.apply(variables, enc, method="audio_embedding")
  got_t = obj.apply(variables, batch["caption_ids"], batch["caption_mask"],
                    method="text_embedding")
  unit = lambda x: x / np.linalg.norm(x, axis=-1, keepdims=True)  # noqa: E731
  np.testing.assert_allclose(np.asarray(got_a), unit(audio), atol=1e-5)
  np.testing.assert_allclose(np.asarray(got_t), unit(text), atol=1e-5)


def test_siglip_objective_matches_numpy():
  obj, variables, enc, batch, audio, text, valid, p = _setup("siglip")
  assert float(p["bias"]) == -10.0
  np.testing.assert_allclose(p["log_scale"], np.log(10.0), rtol=1e-6)
  loss, metrics = obj.apply(variables, enc, batch, train=False)
  np.testing.assert_allclose(
      float(loss), _np_siglip(audio, text, p["log_scale"], p["bias"], valid),
      rtol=1e-5)
  assert float(metrics["logit_bias"]) == -10.0


def test_builders_and_errors(stub_text_tower):
  del stub_text_tower
  text = {"vocab_size": VOCAB, "max_len": WIDTH}
  info = objectives.DatasetInfo()
  obj = objectives.build_objective(
      {"name": "siglip", "chunked": True, "embed_dim": 8, "text": text}, info)
  assert obj.loss == "siglip" and obj.chunked and obj.embed_dim == 8
  with pytest.raises(ValueError, match="chunked"):
    objectives.build_objective({"name": "contrastive", "chunked": True,
                                "text": text}, info)
  with pytest.raises(ValueError, match="text"):
    objectives.build_objective({"name": "contrastive"}, info)
  enc = EncoderOutput(frames=jnp.zeros((2, 3, 4)), mask=jnp.ones((2, 3), bool),
                      intermediates={})
  with pytest.raises(ValueError, match="tokenizer"):
    obj.init(jax.random.key(0), enc, {"valid": jnp.ones(2, bool)},
             train=False)
  assert text_inputs.needs_captions({"name": "siglip"})
  assert text_inputs.needs_captions({"name": "multitask",
                                     "tasks": "mtc:1,captioning:0.5"})
  assert not text_inputs.needs_captions({"name": "multitask",
                                         "tasks": "mtc:1,masked:0.5"})


def _demo_tokenizer(config, data_dir):
  source = trainer.pipeline_source(config, str(data_dir))
  return text_inputs.caption_tokenizer(
      config, lambda: (r["caption"] for r in source))


def test_caption_tokenizer(demo_data_dir, tmp_path):
  config = tiny_config(demo_data_dir, "mtc")
  assert _demo_tokenizer(config, demo_data_dir) is None
  config = tiny_config(demo_data_dir, "multitask", tasks="mtc,contrastive:1")
  config.text.vocab_size, config.text.max_len = 300, 16
  tok, encode = _demo_tokenizer(config, demo_data_dir)
  assert config.text.vocab_size == tok.vocab_size <= 300
  ids, mask = encode("a dog barks")
  assert ids.shape == mask.shape == (16,) and ids[0] == tok.bos_id
  tok.save(str(tmp_path / "tokenizer.json"))
  config.text.tokenizer = str(tmp_path / "tokenizer.json")
  config.text.vocab_size = 9
  loaded, _ = _demo_tokenizer(config, demo_data_dir)
  assert loaded.to_json() == tok.to_json()
  assert config.text.vocab_size == tok.vocab_size


@pytest.mark.parametrize("name,chunked", [("contrastive", False),
                                          ("siglip", True)])
def test_trains_on_8_devices(demo_data_dir, name, chunked):
  config = tiny_config(demo_data_dir, name, embed_dim=32, chunked=chunked,
                       text_encoder_size="tiny")
  config.text.vocab_size, config.text.max_len = 300, 24
  _, encode = _demo_tokenizer(config, demo_data_dir)
  losses, metrics = train_losses(config, demo_data_dir, tokenizer=encode)
  assert losses[-1] < losses[0], losses
  assert np.isfinite(metrics["logit_scale"])



def test_trainer_saves_tokenizer_and_resumes_with_it(demo_data_dir, tmp_path):
  def config():
    c = tiny_config(demo_data_dir, "contrastive", embed_dim=32,
                    text_encoder_size="tiny")
    c.train.num_steps, c.train.checkpoint_every = 2, 2
    c.text.vocab_size, c.text.max_len = 300, 16
    return c

  first = config()
  trainer.train(first, str(tmp_path))
  saved = tmp_path / "tokenizer.json"
  assert first.text.tokenizer == str(saved) and saved.exists()
  _, meta = checkpoint_lib.read_metadata(str(tmp_path / "checkpoints"))
  assert meta["config"]["text"]["tokenizer"] == str(saved)
  assert meta["config"]["text"]["vocab_size"] == first.text.vocab_size <= 300
  text = saved.read_text()

  again = config()
  again.train.num_steps = 3
  _, state = trainer.train(again, str(tmp_path))
  assert int(state.step) == 3 and again.text.tokenizer == str(saved)
  assert saved.read_text() == text
  restored = restore.load_checkpoint(str(tmp_path))
  assert restored.step == 3
  assert json.loads(restored.tokenizer.to_json()) == json.loads(text)
