"""PAR and CapPa captioning: sequences, losses against numpy, a PAR run.

Captioning trains on 8 devices in tests/test_multitask.py (MTC + captioning,
the paper's multi-task model).
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from audiopt import objectives
from audiopt.models.outputs import EncoderOutput
from audiopt.objectives import par
from audiopt.objectives import text_inputs
from audiopt.objectives import token_losses
from audiopt.train import trainer
from objective_training import tiny_config, train_losses

TEXT = {"vocab_size": 40, "max_len": 9, "pad_id": 0, "bos_id": 2,
        "eos_id": 3, "mask_id": 4}


def _np_ce(logits, targets, weights, eps=0.0):
  v = logits.shape[-1]
  m = logits.max(-1, keepdims=True)
  logp = logits - m - np.log(np.exp(logits - m).sum(-1, keepdims=True))
  labels = np.eye(v)[targets] * (1 - eps) + eps / v
  per_token = -(labels * logp).sum(-1)
  return (per_token * weights).sum() / weights.sum()


def _encoded(b=3, t=5, d=8, seed=0):
  rng = np.random.default_rng(seed)
  return EncoderOutput(
      frames=jnp.asarray(rng.normal(size=(b, t, d)), jnp.float32),
      mask=jnp.arange(t)[None] < jnp.array([[5], [3], [1]])[:b],
      intermediates={})


def test_token_cross_entropy_matches_numpy():
  rng = np.random.default_rng(0)
  logits = rng.normal(size=(2, 4, 7)).astype(np.float32)
  targets = rng.integers(0, 7, (2, 4))
  weights = rng.random((2, 4)) < 0.6
  weights[0, 0] = True
  for eps in (0.0, 0.1):
    loss, acc = token_losses.token_cross_entropy(
        jnp.asarray(logits), jnp.asarray(targets), jnp.asarray(weights), eps)
    np.testing.assert_allclose(float(loss),
                               _np_ce(logits, targets, weights, eps),
                               rtol=1e-5)
  want_acc = ((logits.argmax(-1) == targets) * weights).sum() / weights.sum()
  np.testing.assert_allclose(float(acc), want_acc, rtol=1e-6)


def test_tag_sequence_is_canonical():
  tags = np.array([[7, 2, -1, 2, 0], [-1, -1, -1, -1, -1], [4, 3, 1, 0, 9]])
  tokens, weights = map(np.asarray, par.tag_sequence(jnp.asarray(tags)))
  for row, tok, w in zip(tags, tokens, weights):
    distinct = sorted(set(row[row >= 0].tolist()))
    want = [t + par.NUM_SPECIALS for t in distinct] + [par.EOS_ID]
    want += [par.PAD_ID] * (6 - len(want))
    np.testing.assert_array_equal(tok, want)
    np.testing.assert_array_equal(w, np.arange(6) <= len(distinct))


def _par():
  return objectives.build_objective(
      {"name": "par", "decoder_size": "tiny", "data": {"max_tags": 4}},
      objectives.DatasetInfo(num_tags=6))


def test_par_loss_matches_numpy_and_predicts_sets():
  obj = _par()
  enc = _encoded()
  tags = np.array([[5, 1, -1, -1], [0, -1, -1, -1], [2, 3, 4, 2]])
  batch = {"tags": jnp.asarray(tags), "valid": jnp.array([True, True, False])}
  variables = obj.init(jax.random.key(0), enc, batch, train=False)
  loss, metrics = obj.apply(variables, enc, batch, train=False)
  logits = np.asarray(obj.apply(
      variables, enc, 5, False,
      method=lambda m, *a: m._logits(*a)))  # pylint: disable=protected-access
  # All-[MASK] input: the decoder sees nothing of the targets.
  targets = np.array([[4, 8, 2, 0, 0], [3, 2, 0, 0, 0], [5, 6, 7, 2, 0]])
  weights = np.array([[1, 1, 1, 0, 0], [1, 1, 0, 0, 0], [0] * 5], bool)
  np.testing.assert_allclose(float(loss), _np_ce(logits, targets, weights),
                             rtol=1e-5)
  assert float(metrics["par_loss"]) == pytest.approx(float(loss))
  sets = np.asarray(obj.apply(variables, enc, method="predict_tags"))
  scores = np.asarray(obj.apply(variables, enc, method="tag_scores"))
  assert sets.shape == scores.shape == (3, 6) and sets.dtype == np.bool_
  assert ((scores >= 0) & (scores <= 1)).all()


def _captioning(**keys):
  cfg = {"name": "captioning", "decoder_size": "tiny", "text": TEXT,
         "ar_fraction": 0.25, "label_smoothing": 0.1, **keys}
  return objectives.build_objective(cfg, objectives.DatasetInfo())


def _caption_batch():
  ids = np.array([[2, 10, 11, 12, 3, 0, 0, 0, 0],
                  [2, 20, 3, 0, 0, 0, 0, 0, 0],
                  [2, 30, 31, 32, 33, 34, 35, 36, 3]], np.int32)
  return {"caption_ids": jnp.asarray(ids), "caption_mask": jnp.asarray(ids > 0),
          "valid": jnp.array([True, True, True])}


def test_captioning_loss_matches_numpy_in_both_modes():
  obj = _captioning()
  enc, batch = _encoded(), _caption_batch()
  variables = obj.init(jax.random.key(0), enc, batch, train=False)
  loss, metrics = obj.apply(variables, enc, batch, train=False)
  ids, mask = np.asarray(batch["caption_ids"]), np.asarray(
      batch["caption_mask"])
  dec = {"params": variables["params"]["decoder"]}
  ar_logits = obj.decoder.apply(dec, ids[:, :-1], mask[:, :-1], enc.frames,
                                enc.mask, causal=True)
  par_logits = obj.decoder.apply(dec, np.full((3, 8), 4), np.ones((3, 8), bool),
                                 enc.frames, enc.mask, causal=False)
  want_ar = _np_ce(np.asarray(ar_logits), ids[:, 1:], mask[:, 1:], 0.1)
  want_par = _np_ce(np.asarray(par_logits), ids[:, 1:], mask[:, 1:], 0.1)
  np.testing.assert_allclose(float(metrics["caption_ar_loss"]), want_ar,
                             rtol=1e-5)
  np.testing.assert_allclose(float(metrics["caption_parallel_loss"]),
                             want_par, rtol=1e-5)
  np.testing.assert_allclose(float(loss), 0.25 * want_ar + 0.75 * want_par,
                             rtol=1e-5)


def test_captioning_training_mixes_modes():
  obj = _captioning(ar_fraction=0.5)
  enc, batch = _encoded(), _caption_batch()
  variables = obj.init(jax.random.key(0), enc, batch, train=False)
  _, eval_metrics = obj.apply(variables, enc, batch, train=False)
  step = jax.jit(lambda key: obj.apply(variables, enc, batch, train=True,
                                       rngs={"dropout": key}))
  modes = set()
  for seed in range(12):
    loss, m = step(jax.random.key(seed))
    modes.add(float(m["caption_autoregressive"]))
    assert np.isfinite(float(loss))
  assert modes == {0.0, 1.0}
  with pytest.raises(ValueError, match="ar_fraction"):
    _captioning(ar_fraction=1.5)
  with pytest.raises(ValueError, match="mask_id"):
    _captioning(text=dict(TEXT, mask_id=99))
  assert text_inputs.needs_captions({"name": "captioning"})
  assert "caption_ar_accuracy" in eval_metrics


def test_generate_captions_greedy_and_beam():
  obj = _captioning()
  enc, batch = _encoded(), _caption_batch()
  variables = obj.init(jax.random.key(0), enc, batch, train=False)
  greedy = obj.apply(variables, enc, method="generate_captions")
  assert greedy.shape == (3, 8) and greedy.dtype == jnp.int32
  beams = obj.apply(variables, enc, 6, 3, method="generate_captions")
  assert beams.shape == (3, 6)


def test_par_trains_on_8_devices(demo_data_dir):
  config = tiny_config(demo_data_dir, "par", decoder_size="tiny")
  losses, metrics = train_losses(config, demo_data_dir)
  assert losses[-1] < losses[0], losses
  assert 0.0 <= metrics["par_token_accuracy"] <= 1.0



def test_captioning_trains_on_8_devices(demo_data_dir):
  config = tiny_config(demo_data_dir, "captioning", decoder_size="tiny")
  config.text.vocab_size, config.text.max_len = 300, 16
  source = trainer.pipeline_source(config, str(demo_data_dir))
  _, encode = text_inputs.caption_tokenizer(
      config, lambda: (r["caption"] for r in source))
  losses, metrics = train_losses(config, demo_data_dir, tokenizer=encode)
  assert losses[-1] < losses[0], losses
  assert 0.0 <= metrics["caption_accuracy"] <= 1.0
