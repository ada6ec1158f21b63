"""Tests of the shared layers, Conv2d subsampling, transformer and registry."""

import functools
from unittest import mock

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from audiopt.models import layers
from audiopt.models import registry
from audiopt.models import subsampling
from audiopt.models import transformer

F = 80


def _tiny(**overrides):
  return registry.build_encoder(dict(name="transformer", size="tiny",
                                     **overrides))


def _inputs(batch, frames, seed=0):
  x = jax.random.normal(jax.random.key(seed), (batch, frames, F))
  return x, jnp.ones((batch, frames), bool)


def _init(enc, batch=2, frames=64):
  x, m = _inputs(batch, frames)
  init = jax.jit(functools.partial(enc.init, train=False))
  return init(jax.random.key(0), x, m)["params"]


def _n_params(tree):
  return sum(int(np.prod(p.shape)) for p in jax.tree.leaves(tree))


@pytest.fixture(scope="module")
def tiny_params():
  return _init(_tiny())


@pytest.mark.parametrize("frames", [7, 8, 1000, 1001])
def test_subsampled_length_matches_conv_shapes(frames):
  front = subsampling.Conv2dSubsampling(width=16, channels=4)
  x, m = _inputs(1, frames)
  (y, ym), _ = front.init_with_output(jax.random.key(0), x, m)
  expected = ((frames - 1) // 2 - 1) // 2
  assert subsampling.subsampled_length(frames) == expected
  assert y.shape == (1, expected, 16) and ym.shape == (1, expected)
  assert bool(ym.all())


def test_output_shapes_and_hop(tiny_params):
  enc = _tiny()
  x, m = _inputs(2, 1000)
  m = m.at[1, 600:].set(False)
  out = enc.apply({"params": tiny_params}, x, m, train=False)
  assert enc.hop_ms == 40 and enc.output_dim == 64
  assert out.frames.shape == (2, 249, 64)  # 1000 frames x 10 ms / 40 ms.
  assert out.frames.dtype == jnp.float32
  assert sorted(out.intermediates) == ["layer_0", "layer_1"]
  assert out.intermediates["layer_1"].shape == (2, 249, 64)
  assert out.mask.shape == (2, 249)
  np.testing.assert_array_equal(out.mask.sum(-1),
                                [249, subsampling.subsampled_length(600)])
  assert float(jnp.abs(out.frames[1, 149:]).max()) == 0.0


def test_padding_invariance(tiny_params):
  enc = _tiny()
  apply = jax.jit(functools.partial(enc.apply, train=False))
  x, _ = _inputs(2, 200, seed=1)
  alone = apply({"params": tiny_params}, x[:1, :150], jnp.ones((1, 150), bool))
  # Padded frames hold garbage: valid frames must not see it.
  mask = jnp.ones((2, 200), bool).at[0, 150:].set(False)
  x = x.at[0, 150:].set(1e3)
  batched = apply({"params": tiny_params}, x, mask)
  n = int(alone.mask.sum())
  assert n == int(batched.mask[0].sum()) == subsampling.subsampled_length(150)
  np.testing.assert_allclose(batched.frames[0, :n], alone.frames[0, :n],
                             atol=1e-5)
  for name in alone.intermediates:
    np.testing.assert_allclose(batched.intermediates[name][0, :n],
                               alone.intermediates[name][0, :n], atol=1e-5)


def _loss(enc, params, x, m, rng):
  out = enc.apply({"params": params}, x, m, train=True, rngs={"dropout": rng})
  w = jax.random.normal(jax.random.key(7), out.frames.shape[1:])
  return jnp.sum(out.frames * w * out.mask[..., None]) / out.mask.sum()


def test_gradients_reach_every_parameter(tiny_params):
  enc = _tiny()
  x, m = _inputs(2, 64)
  grads = jax.jit(jax.grad(functools.partial(_loss, enc)))(
      tiny_params, x, m, jax.random.key(3))
  norms = {jax.tree_util.keystr(k): float(jnp.linalg.norm(nn.unbox(g)))
           for k, g in jax.tree_util.tree_leaves_with_path(
               nn.unbox(grads))}
  assert len(norms) == len(jax.tree.leaves(nn.unbox(tiny_params)))
  assert all(v > 0 for v in norms.values()), {
      k: v for k, v in norms.items() if v <= 0}


def test_param_counts_of_presets():
  counts = {}
  for size in transformer.SIZES:
    enc = registry.build_encoder(dict(name="transformer", size=size))
    shapes = jax.eval_shape(functools.partial(enc.init, train=False),
                            jax.random.key(0), *_inputs(1, 100))
    counts[size] = _n_params(shapes)
  print("transformer parameter counts (80 mel bins):", counts)
  assert 80e6 <= counts["base"] <= 100e6
  assert counts["tiny"] < 1e6


def test_remat_equals_plain(tiny_params):
  x, m = _inputs(2, 64)
  plain, remat = _tiny(), _tiny(remat=True)
  rng = jax.random.key(5)
  out_p = plain.apply({"params": tiny_params}, x, m, train=False)
  out_r = remat.apply({"params": tiny_params}, x, m, train=False)
  np.testing.assert_allclose(out_r.frames, out_p.frames, atol=1e-6)
  g_p = jax.grad(functools.partial(_loss, plain))(tiny_params, x, m, rng)
  g_r = jax.grad(functools.partial(_loss, remat))(tiny_params, x, m, rng)
  for a, b in zip(jax.tree.leaves(nn.unbox(g_p)),
                  jax.tree.leaves(nn.unbox(g_r))):
    np.testing.assert_allclose(a, b, atol=1e-5)


def test_scan_layers_stack_params_and_train():
  enc = _tiny(scan_layers=True, remat=True)
  x, m = _inputs(2, 64)
  boxed = enc.init(jax.random.key(0), x, m, train=False)["params"]
  wi = boxed["layers"]["mlp"]["wi"]["kernel"]
  assert wi.names == ("layers", "embed", "mlp")
  assert wi.value.shape == (2, 64, 256)
  params = nn.unbox(boxed)
  assert _n_params(params) == _n_params(_init(_tiny()))
  out = enc.apply({"params": params}, x, m, train=False)
  assert out.frames.shape == (2, 15, 64)
  assert list(out.intermediates) == ["layer_1"]

  @jax.jit
  def step(p, rng):
    loss, g = jax.value_and_grad(functools.partial(_loss, enc))(p, x, m, rng)
    return jax.tree.map(lambda a, b: a - 0.05 * b, p, g), loss

  losses = []
  for i in range(4):
    params, loss = step(params, jax.random.key(i))
    losses.append(float(loss))
  assert np.all(np.isfinite(losses)) and losses[-1] < losses[0], losses


def test_bfloat16_compute(tiny_params):
  enc = _tiny(dtype="bfloat16")
  assert enc.dtype == jnp.bfloat16
  x, m = _inputs(2, 64)
  out = enc.apply({"params": tiny_params}, x, m, train=False)
  # Parameters stay float32; frames and intermediates come out in bfloat16.
  assert out.frames.dtype == jnp.bfloat16
  assert out.intermediates["layer_0"].dtype == jnp.bfloat16
  assert bool(jnp.isfinite(out.frames.astype(jnp.float32)).all())
  ref = _tiny().apply({"params": tiny_params}, x, m, train=False)
  np.testing.assert_allclose(out.frames.astype(jnp.float32), ref.frames,
                             atol=0.15)


def test_registry_builds_from_config_dict():
  cfg = ml_collections.ConfigDict(dict(
      name="transformer", size="base", num_layers=3, dropout_rate=0.0,
      scan_layers=None, overrides=dict(width=128, num_heads=2)))
  enc = registry.build_encoder(cfg)
  assert isinstance(enc, transformer.TransformerEncoder)
  assert (enc.num_layers, enc.width, enc.num_heads, enc.mlp_dim) == (
      3, 128, 2, 3072)
  assert enc.dropout_rate == 0.0 and not enc.scan_layers
  assert "transformer" in registry.list_encoders()


@pytest.mark.parametrize("cfg, match", [
    (dict(name="nope", size="tiny"), r"unknown encoder 'nope'.*transformer"),
    (dict(name="transformer", size="huge"), r"unknown size 'huge'.*tiny"),
    (dict(name="transformer"), r"unknown size None"),
    (dict(name="transformer", size="tiny", depth=3), r"unknown override"
     r" 'depth'"),
    (dict(name="transformer", size="tiny", dtype="float33"), "not a dtype"),
])
def test_registry_errors(cfg, match):
  with pytest.raises(ValueError, match=match):
    registry.build_encoder(cfg)


def test_register_encoder_rejects_name_clash():
  with pytest.raises(ValueError, match="already registered"):

    @registry.register_encoder("transformer")
    class Other(nn.Module):  # pylint: disable=unused-variable
      SIZES = {"tiny": {}}


def _reference_attention(q, k, v, mask):
  """Numpy softmax attention over valid keys; zero-key rows use key 0."""
  q, k, v = (np.asarray(a, np.float64) for a in (q, k, v))
  logits = np.einsum("bqhd,bkhd->bhqk", q, k) / np.sqrt(q.shape[-1])
  valid = np.asarray(mask).copy()
  valid[~valid.any(-1), 0] = True
  logits = np.where(valid[:, None, None, :], logits, -np.inf)
  w = np.exp(logits - logits.max(-1, keepdims=True))
  w /= w.sum(-1, keepdims=True)
  return np.einsum("bhqk,bkhd->bqhd", w, v)


def test_prefix_masked_attention_matches_reference():
  # The "cudnn" encoders call jax's fused attention with key lengths taken
  # from the mask; its XLA implementation checks those lengths here.
  b, t, h, d = 3, 9, 2, 8
  q, k, v = (jax.random.normal(jax.random.key(i), (b, t, h, d))
             for i in range(3))
  mask = jnp.arange(t)[None, :] < jnp.array([9, 4, 0])[:, None]
  got = layers.prefix_masked_attention(q, k, v, mask, "xla")
  np.testing.assert_allclose(got, _reference_attention(q, k, v, mask),
                             atol=1e-5)


def test_attention_impls_agree_in_the_block():
  x = jax.random.normal(jax.random.key(0), (2, 7, 16))
  mask = jnp.arange(7)[None, :] < jnp.array([7, 3])[:, None]
  attn = layers.MultiHeadSelfAttention(num_heads=2)
  params = attn.init(jax.random.key(1), x, mask)
  ref = attn.apply(params, x, mask)
  # Same parameters through the fused-attention path (its XLA form on CPU).
  fused = layers.MultiHeadSelfAttention(num_heads=2, attention_impl="cudnn")
  with mock.patch.object(
      layers, "prefix_masked_attention",
      functools.partial(_xla_prefix_attention,
                        layers.prefix_masked_attention)):
    got = fused.apply(params, x, mask)
  np.testing.assert_allclose(got[mask], ref[mask], atol=1e-5)
  with pytest.raises(ValueError, match="no attention dropout"):
    layers.MultiHeadSelfAttention(
        num_heads=2, dropout_rate=0.1, attention_impl="cudnn").apply(
            params, x, mask, train=True, rngs={"dropout": jax.random.key(2)})
  with pytest.raises(ValueError, match=r"unknown attention_impl 'flash'"):
    layers.MultiHeadSelfAttention(num_heads=2, attention_impl="flash").apply(
        params, x, mask)


def _xla_prefix_attention(fn, q, k, v, mask, implementation):
  assert implementation == "cudnn"
  return fn(q, k, v, mask, "xla")
