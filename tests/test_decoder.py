"""Transformer decoder: cached decoding, greedy and beam search, training."""

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from audiopt.models import decoder as decoder_lib
from audiopt.train import sharding

VOCAB, MAX_LEN, MEM_DIM = 24, 12, 16  # VOCAB splits over tensor = 2
PAD, BOS, EOS = 0, 1, 2


@functools.partial(jax.jit, static_argnums=0, static_argnames="causal")
def _apply(model, params, tokens, token_mask, memory, memory_mask, *,
           causal):
  """One compiled forward per (model, shapes, causal), shared by tests."""
  return model.apply({"params": params}, tokens, token_mask, memory,
                     memory_mask, causal=causal)


def _memory(batch=3, frames=5, seed=0):
  rng = np.random.default_rng(seed)
  memory = rng.normal(size=(batch, frames, MEM_DIM)).astype(np.float32)
  lengths = rng.integers(1, frames + 1, (batch, 1))
  lengths[0] = frames
  return jnp.asarray(memory), jnp.asarray(np.arange(frames)[None] < lengths)


def _decoder(**kw):
  return decoder_lib.build_decoder("tiny", vocab_size=VOCAB, max_len=MAX_LEN,
                                   dropout_rate=0.0, **kw)


def _abstract_init(model, batch=1, length=MAX_LEN, frames=5,
                   mem_dim=MEM_DIM):
  """Boxed parameter shapes of `model`, traced, not compiled."""
  return jax.eval_shape(lambda: model.init(
      jax.random.key(0), jnp.zeros((batch, length), jnp.int32),
      jnp.ones((batch, length), bool), jnp.zeros((batch, frames, mem_dim)),
      jnp.ones((batch, frames), bool), causal=True))["params"]


def _numpy_params(model, seed=0):
  """Params of `model` drawn in numpy: XLA's CPU RNG compiles slowly."""
  rng = np.random.default_rng(seed)

  def draw(path, x):
    name, parent = path[-1].key, path[-2].key if len(path) > 1 else ""
    if name == "scale":
      return np.ones(x.shape, np.float32)
    if "bias" in name:
      return np.zeros(x.shape, np.float32)
    if name == "kernel":
      fan_in = np.prod(x.shape[:2 if parent == "out" else 1])
      return rng.normal(0, fan_in ** -0.5, x.shape).astype(np.float32)
    return rng.normal(0, 0.02, x.shape).astype(np.float32)

  return jax.tree_util.tree_map_with_path(
      draw, nn.unbox(_abstract_init(model)))


@pytest.fixture(scope="module")
def tiny():
  """The tiny decoder, its params and a memory batch."""
  model = _decoder()
  return model, _numpy_params(model), *_memory()


def test_cached_steps_match_full_causal_forward(tiny):
  model, params, memory, memory_mask = tiny
  variables = {"params": params}
  rng = np.random.default_rng(1)
  tokens = jnp.asarray(rng.integers(3, VOCAB, (3, MAX_LEN)), jnp.int32)
  full = _apply(model, params, tokens, tokens >= 0, memory, memory_mask,
                causal=True)
  cache = model.apply(variables, memory, memory_mask, MAX_LEN,
                      method=model.init_cache)
  step = jax.jit(lambda t, i, c: model.apply(variables, t, i, c,
                                             method=model.decode_step))
  for i in range(MAX_LEN):
    logits, cache = step(tokens[:, i], jnp.int32(i), cache)
    # Equal up to float32 rounding: XLA picks other matmul kernels for one
    # query row than for L rows.
    np.testing.assert_allclose(logits, full[:, i], rtol=0, atol=1e-5)
    np.testing.assert_array_equal(jnp.argmax(logits, -1),
                                  jnp.argmax(full[:, i], -1))


def test_masks_causal_and_parallel(tiny):
  model, params, memory, memory_mask = tiny
  rng = np.random.default_rng(2)
  tokens = jnp.asarray(rng.integers(3, VOCAB, (3, MAX_LEN)), jnp.int32)
  mask = jnp.asarray(np.arange(MAX_LEN)[None] < np.array([[12], [6], [4]]))
  run = lambda t, m, c: _apply(model, params, t, mask, m, memory_mask,
                               causal=c)
  edited = tokens.at[:, 3].set(PAD)
  noisy_memory = jnp.where(memory_mask[..., None], memory, 7.0)
  causal, parallel = run(tokens, memory, True), run(tokens, memory, False)
  assert causal.shape == (3, MAX_LEN, VOCAB) and causal.dtype == jnp.float32
  # Causal: positions before 3 do not see it; parallel: they do.
  np.testing.assert_array_equal(run(edited, memory, True)[:, :3],
                                causal[:, :3])
  assert not np.allclose(run(edited, memory, False)[:, :3], parallel[:, :3])
  # Padded memory frames and padded tokens are never attended to.
  np.testing.assert_allclose(run(tokens, noisy_memory, False), parallel,
                             atol=1e-6)
  padded = jnp.where(mask, tokens, 5)
  np.testing.assert_allclose(
      np.where(mask[..., None], run(padded, memory, False), 0),
      np.where(mask[..., None], parallel, 0), atol=1e-6)


def test_greedy_equals_beam_size_one_and_beam_scores(tiny):
  model, params, memory, memory_mask = tiny
  kw = dict(bos_id=BOS, eos_id=EOS, max_len=MAX_LEN)
  greedy = model.greedy_decode(params, memory, memory_mask, **kw)
  beam1, score1 = model.beam_search(params, memory, memory_mask,
                                    beam_size=1, **kw)
  beam4, score4 = model.beam_search(params, memory, memory_mask,
                                    beam_size=4, **kw)
  assert greedy.shape == beam4.shape == (3, MAX_LEN)
  np.testing.assert_array_equal(greedy, beam1)
  rescore = lambda t: model.sequence_scores(params, memory, memory_mask, t,
                                            bos_id=BOS, eos_id=EOS)
  np.testing.assert_allclose(score1, rescore(greedy), atol=1e-4)
  np.testing.assert_allclose(score4, rescore(beam4), atol=1e-4)
  assert (score4 >= score1 - 1e-5).all()
  with pytest.raises(ValueError, match="max_len"):
    model.greedy_decode(params, memory, memory_mask, bos_id=BOS, eos_id=EOS,
                        max_len=MAX_LEN + 1)


def _markov_step(log_table):
  """A step function whose next-token log-probs depend on the last token."""
  table = jnp.asarray(log_table, jnp.float32)
  return lambda tokens, index, state: (table[tokens], state)


def test_beam_search_beats_greedy_on_a_constructed_chain():
  # After BOS, "a" (3) is likelier than "b" (4), but "a" is followed by one
  # of five equally likely tokens, "b" almost surely by EOS.
  probs = np.full((10, 10), 1e-6)
  probs[BOS, 3], probs[BOS, 4] = 0.55, 0.45
  probs[3, 5:] = 0.2
  probs[4, EOS] = 0.9
  probs[4, 5:] = 0.02
  probs[5:, EOS] = 1.0
  probs[EOS, PAD] = probs[PAD, PAD] = 1.0
  log_table = np.log(probs / probs.sum(1, keepdims=True))
  step = _markov_step(log_table)
  kw = dict(bos_id=BOS, eos_id=EOS, max_len=6)

  def score(seq, alpha=0.0):
    prev, total, n = BOS, 0.0, 0
    for token in seq:
      total, n, prev = total + log_table[prev, token], n + 1, token
      if token == EOS:
        break
    return total / n ** alpha

  greedy = jax.jit(lambda s: decoder_lib.greedy_search(
      step, s, batch_size=2, **kw))(jnp.zeros((2,)))
  np.testing.assert_array_equal(greedy[0], [3, 5, EOS, PAD, PAD, PAD])
  for alpha in (0.0, 1.0):
    tokens, scores = jax.jit(lambda s, a=alpha: decoder_lib.beam_search(
        step, s, batch_size=2, beam_size=3, length_penalty=a, **kw))(
            jnp.zeros((6,)))
    np.testing.assert_array_equal(tokens[0], [4, EOS, PAD, PAD, PAD, PAD])
    np.testing.assert_allclose(scores, score(tokens[0], alpha), rtol=1e-5)
    assert scores[0] > score(np.asarray(greedy[0]), alpha) + 0.2


def test_memorises_captions_on_8_devices():
  mesh = sharding.make_mesh({"data": 2, "fsdp": 2, "tensor": 2})
  rules = sharding.DEFAULT_RULES
  rng = np.random.default_rng(3)
  model = _decoder(num_layers=1)  # one block keeps the compile short
  params = _numpy_params(model)
  batch, length = 8, 8
  lengths = rng.integers(3, length - 1, batch)
  tokens = np.full((batch, length), PAD, np.int32)
  for row, n in enumerate(lengths):
    tokens[row, 0] = BOS
    tokens[row, 1:n + 1] = rng.integers(3, VOCAB, n)
    tokens[row, n + 1] = EOS
  memory, memory_mask = _memory(batch, 6, seed=4)
  inputs, targets = tokens[:, :-1], tokens[:, 1:]
  data = dict(inputs=inputs, input_mask=inputs != PAD, targets=targets,
              target_mask=targets != PAD, memory=np.asarray(memory),
              memory_mask=np.asarray(memory_mask))

  def loss_fn(params, b):
    logits = model.apply({"params": params}, b["inputs"], b["input_mask"],
                         b["memory"], b["memory_mask"], causal=True)
    ce = optax.softmax_cross_entropy_with_integer_labels(logits, b["targets"])
    return jnp.sum(ce * b["target_mask"]) / jnp.sum(b["target_mask"])

  tx = optax.adam(1e-2)

  @jax.jit
  def train_step(params, opt_state, b):
    loss, grads = jax.value_and_grad(loss_fn)(params, b)
    updates, opt_state = tx.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, loss

  with sharding.mesh_and_rules(mesh, rules):
    b = sharding.shard_batch(data, mesh)
    shardings = sharding.logical_to_shardings(_abstract_init(model), mesh,
                                              rules)
    params = jax.device_put(params, shardings)
    assert params["token_embed"]["embedding"].sharding.spec == (
        jax.sharding.PartitionSpec("tensor", "fsdp"))
    opt_state = tx.init(params)
    losses = []
    for _ in range(30):
      params, opt_state, loss = train_step(params, opt_state, b)
      losses.append(float(loss))
    decoded = model.greedy_decode(params, b["memory"], b["memory_mask"],
                                  bos_id=BOS, eos_id=EOS, max_len=length - 1)
  assert losses[-1] < 0.05 * losses[0], losses[::10]
  np.testing.assert_array_equal(decoded, targets)


def test_sizes_and_logical_axes():
  model = decoder_lib.build_decoder("base", vocab_size=30522, max_len=64)
  assert (model.num_layers, model.width, model.num_heads, model.mlp_dim) == (
      6, 768, 8, 3072)
  shapes = _abstract_init(model, length=4, frames=4, mem_dim=512)
  boxes = jax.tree.leaves(shapes, is_leaf=lambda x: isinstance(
      x, nn.Partitioned))
  assert all(isinstance(x, nn.LogicallyPartitioned) for x in boxes)
  cross = shapes["layer_0"]["cross_attn"]
  assert cross["key"]["kernel"].value.shape == (512, 8, 96)
  assert cross["key"]["kernel"].names == ("embed", "heads", "kv")
  assert shapes["layer_5"]["mlp"]["wi"]["kernel"].value.shape == (768, 3072)
  assert "logits" not in shapes and shapes["logits_bias"].names == ("vocab",)
  untied = _abstract_init(_decoder(tie_embeddings=False))
  assert untied["logits"]["kernel"].names == ("embed", "vocab")
  assert "logits_bias" not in untied
  with pytest.raises(ValueError, match="unknown decoder size"):
    decoder_lib.build_decoder("huge", vocab_size=5, max_len=4)


def test_remat_traces_with_dropout(tiny):
  model, params, memory, memory_mask = tiny
  tokens = jnp.ones((3, 6), jnp.int32)

  def loss(p):
    return jnp.sum(remat.apply(
        {"params": p}, tokens, tokens > 0, memory, memory_mask, causal=True,
        train=True, rngs={"dropout": jax.random.key(0)}) ** 2)

  remat = model.clone(remat=True, dropout_rate=0.1)
  grads = jax.eval_shape(jax.grad(loss), params)
  assert jax.tree.map(jnp.shape, grads) == jax.tree.map(jnp.shape, params)
  # Cached decoding reaches the blocks' other methods through remat.
  tokens = jax.eval_shape(lambda: remat.greedy_decode(
      params, memory, memory_mask, bos_id=BOS, eos_id=EOS, max_len=4))
  assert tokens.shape == (3, 4)
