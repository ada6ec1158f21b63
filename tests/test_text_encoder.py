"""BERT-style text tower and the Hugging Face BERT importer."""

import math

import flax.linen as nn
import flax.traverse_util
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from audiopt.models import bert_import
from audiopt.models import text_encoder

VOCAB, MAX_LEN = 99, 16
TINY = dict(num_layers=2, width=32, num_heads=4, mlp_dim=64)


def _padded_batch():
  rng = np.random.default_rng(0)
  lengths = np.array([[10], [6], [3]])
  mask = np.arange(10)[None] < lengths
  ids = np.where(mask, rng.integers(1, VOCAB, (3, 10)), 0).astype(np.int32)
  return ids, mask


def _random_params(model, seed=0):
  """Random params of `model`'s shapes, with no compilation."""
  rng = np.random.default_rng(seed)
  return flax.traverse_util.unflatten_dict({
      path: rng.normal(size=shape).astype(np.float32)
      for path, shape in bert_import.param_shapes(model).items()})


def _model(**kw):
  fields = {**TINY, "dropout_rate": 0.0, "attention_dropout_rate": 0.0, **kw}
  return text_encoder.TextEncoder(vocab_size=VOCAB, max_len=MAX_LEN,
                                  **fields)


def _to_hf(params):
  """Flax params -> Hugging Face layout state dict (the importer's inverse)."""
  state = {}
  for path, x in flax.traverse_util.flatten_dict(params).items():
    x = np.asarray(x)
    if path[-1] == "kernel":
      n_in = 2 if path[-2] == "out" else 1
      x = x.reshape(math.prod(x.shape[:n_in]), -1).T
    elif path[-1] == "bias":
      x = x.reshape(-1)
    state["bert." + bert_import.hf_key(path)] = x
  return state


@pytest.fixture(scope="module")
def hf_bert(tmp_path_factory):
  """A tiny seeded transformers.BertModel saved as safetensors."""
  torch = pytest.importorskip("torch")
  transformers = pytest.importorskip("transformers")
  torch.manual_seed(0)
  config = transformers.BertConfig(
      vocab_size=VOCAB, hidden_size=TINY["width"],
      num_hidden_layers=TINY["num_layers"],
      num_attention_heads=TINY["num_heads"],
      intermediate_size=TINY["mlp_dim"], max_position_embeddings=40)
  model = transformers.BertModel(config).eval()
  path = tmp_path_factory.mktemp("bert")
  model.save_pretrained(str(path), safe_serialization=True)
  ids, mask = _padded_batch()
  with torch.no_grad():
    out = model(input_ids=torch.tensor(ids, dtype=torch.long),
                attention_mask=torch.tensor(mask.astype(np.int64)))
  return path, out.last_hidden_state.numpy(), out.pooler_output.numpy()


def test_import_matches_transformers_bert(hf_bert):
  path, want_hidden, want_pooled = hf_bert
  model = _model(pooling="pooler")
  params = bert_import.import_bert_safetensors(path, model)
  ids, mask = _padded_batch()
  hidden, pooled = model.apply({"params": params}, ids, mask)
  diff = np.abs(np.asarray(hidden) - want_hidden)[mask]
  assert diff.max() <= 1e-4
  assert np.abs(np.asarray(pooled) - want_pooled).max() <= 1e-4
  assert (np.asarray(hidden)[~mask] == 0).all()
  # Without the pooler its keys are skipped, not reported.
  cls_params = bert_import.import_bert_safetensors(
      path / "model.safetensors", _model())
  assert "pooler" not in cls_params


def test_importer_round_trips_and_names_bad_keys():
  model = _model(pooling="pooler")
  params = _random_params(model, 1)
  state = _to_hf(params)
  state["bert.embeddings.position_ids"] = np.arange(MAX_LEN)[None]
  state["cls.predictions.bias"] = np.zeros(VOCAB)
  imported = bert_import.import_bert_safetensors(state, model)
  jax.tree.map(np.testing.assert_array_equal, imported, params)

  bad = dict(state)
  del bad["bert.encoder.layer.1.output.dense.bias"]
  bad["bert.embeddings.word_embeddings.weight"] = np.zeros((VOCAB + 1, 32))
  bad["bert.encoder.layer.2.output.dense.bias"] = np.zeros(32)
  with pytest.raises(bert_import.BertImportError) as err:
    bert_import.import_bert_safetensors(bad, model)
  message = str(err.value)
  assert "missing keys: encoder.layer.1.output.dense.bias" in message
  assert ("mis-shaped keys: embeddings.word_embeddings.weight (100, 32) != "
          "expected (99, 32)") in message
  assert "unexpected keys: encoder.layer.2.output.dense.bias" in message


def test_position_table_is_cut_to_max_len():
  long_model = _model(pooling="cls").clone(max_len=40)
  params = _random_params(long_model, 2)
  imported = bert_import.import_bert_safetensors(_to_hf(params), _model())
  np.testing.assert_array_equal(
      imported["position_embeddings"]["embedding"],
      np.asarray(params["position_embeddings"]["embedding"])[:MAX_LEN])
  with pytest.raises(bert_import.BertImportError, match="mis-shaped"):
    bert_import.import_bert_safetensors(_to_hf(params),
                                        _model().clone(max_len=41))


def test_pooling_padding_and_axes():
  ids, mask = _padded_batch()
  model = _model(pooling="mean")
  params = _random_params(model)
  apply = jax.jit(lambda i, m: model.apply({"params": params}, i, m))
  hidden, pooled = apply(ids, mask)
  assert hidden.shape == (3, 10, 32) and pooled.shape == (3, 32)
  m = mask[..., None]
  np.testing.assert_allclose(pooled, (hidden * m).sum(1) / m.sum(1),
                             rtol=1e-5, atol=1e-5)
  # Extra padding changes nothing at valid positions.
  wide_hidden, wide_pooled = apply(np.pad(ids, ((0, 0), (0, 4))),
                                   np.pad(mask, ((0, 0), (0, 4))))
  np.testing.assert_allclose(wide_hidden[:, :10], hidden, atol=1e-4)
  np.testing.assert_allclose(wide_pooled, pooled, atol=1e-4)
  # Every parameter carries logical axis names.
  boxed = jax.eval_shape(model.init, jax.random.key(0), ids, mask)["params"]
  boxes = jax.tree.leaves(boxed,
                          is_leaf=lambda x: isinstance(x, nn.Partitioned))
  assert boxes and all(isinstance(b, nn.LogicallyPartitioned) for b in boxes)
  assert boxed["word_embeddings"]["embedding"].names == ("vocab", "embed")
  assert boxed["layer_1"]["attn"]["query"]["kernel"].names == (
      "embed", "heads", "kv")


def test_remat_and_bfloat16_trace():
  ids, mask = _padded_batch()
  model = _model(remat=True, dropout_rate=0.1, dtype=jnp.bfloat16)
  params = _random_params(model)

  def loss(p):
    _, pooled = model.apply({"params": p}, ids, mask, train=True,
                            rngs={"dropout": jax.random.key(0)})
    assert pooled.dtype == jnp.bfloat16
    return jnp.sum(pooled.astype(jnp.float32) ** 2)

  grads = jax.eval_shape(jax.grad(loss), params)
  assert jax.tree.map(np.shape, grads) == jax.tree.map(np.shape, params)


def test_base_size_is_bert_base():
  model = text_encoder.build_text_encoder("base", vocab_size=30522,
                                          max_len=512, pooling="pooler")
  shapes = jax.eval_shape(model.init, jax.random.key(0),
                          jnp.zeros((1, 4), jnp.int32), jnp.ones((1, 4), bool))
  n = sum(x.size for x in jax.tree.leaves(nn.unbox(shapes)))
  assert n == 109_482_240  # transformers.BertModel(bert-base-uncased)
  with pytest.raises(ValueError, match="unknown text encoder size"):
    text_encoder.build_text_encoder("huge", vocab_size=10, max_len=4)
