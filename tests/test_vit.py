"""Tests of the ViT/AST-style patch encoder."""

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from audiopt.models import registry
from audiopt.models import vit
from audiopt.train import sharding

F = 80


def _tiny(**overrides):
  return registry.build_encoder(dict(name="vit", size="tiny", **overrides))


def _inputs(batch, frames, seed=0):
  x = jax.random.normal(jax.random.key(seed), (batch, frames, F)) * 4 - 4
  return x, jnp.ones((batch, frames), bool)


def _n_params(tree):
  return sum(int(np.prod(p.shape)) for p in jax.tree.leaves(tree))


@pytest.fixture(scope="module")
def tiny_params():
  enc = _tiny()
  init = jax.jit(functools.partial(enc.init, train=False))
  return nn.unbox(init(jax.random.key(0), *_inputs(2, 64))["params"])


def test_output_shapes_hop_and_mask(tiny_params):
  enc = _tiny()
  x, m = _inputs(2, 1000)
  m = m.at[1, 600:].set(False)
  out = jax.jit(functools.partial(enc.apply, train=False))(
      {"params": tiny_params}, x, m)
  assert enc.hop_ms == 160 and enc.output_dim == 64
  assert vit.num_time_patches(1000, 16) == 63
  assert out.frames.shape == (2, 63, 64) and out.frames.dtype == jnp.float32
  assert out.mask.shape == (2, 63)
  # A time patch is valid iff its first frame is: ceil(600 / 16) = 38.
  np.testing.assert_array_equal(out.mask.sum(-1), [63, 38])
  assert sorted(out.intermediates) == ["layer_0", "layer_1"]
  assert out.intermediates["layer_1"].shape == (2, 63, 64)
  assert float(jnp.abs(out.frames[1, 38:]).max()) == 0.0
  assert float(jnp.abs(out.frames[1, :38]).min()) > 0.0


def test_patch_shape_is_configurable():
  enc = _tiny(patch_time=4, patch_freq=10)
  x, m = _inputs(1, 30)
  out, variables = jax.eval_shape(
      functools.partial(enc.init_with_output, train=False),
      jax.random.key(0), x, m)
  params = nn.unbox(variables["params"])
  assert enc.hop_ms == 40 and out.frames.shape == (1, 8, 64)
  assert params["patch_embed"]["kernel"].shape == (4, 10, 64)
  assert params["freq_pos"].shape == (8, 64)
  assert params["time_pos"].shape == (1500, 64)  # 60 s at 40 ms.


def test_rejects_bad_shapes():
  enc = _tiny()
  init = functools.partial(enc.init, train=False)
  with pytest.raises(ValueError, match="patch_freq"):
    jax.eval_shape(init, jax.random.key(0), jnp.zeros((1, 64, 70)),
                   jnp.ones((1, 64), bool))
  frames = 6000 + 16  # 60.16 s: one patch more than the table holds.
  with pytest.raises(ValueError, match="max_seconds"):
    jax.eval_shape(init, jax.random.key(0), *_inputs(1, frames))


def test_padding_invariance(tiny_params):
  enc = _tiny()
  apply = jax.jit(functools.partial(enc.apply, train=False))
  x, _ = _inputs(2, 200, seed=1)
  # 150 frames: the last valid patch (frames 144..159) reaches the padding.
  alone = apply({"params": tiny_params}, x[:1, :150], jnp.ones((1, 150), bool))
  mask = jnp.ones((2, 200), bool).at[0, 150:].set(False)
  batched = apply({"params": tiny_params}, x.at[0, 150:].set(1e3), mask)
  n = int(alone.mask.sum())
  assert n == int(batched.mask[0].sum()) == 10
  np.testing.assert_allclose(batched.frames[0, :n], alone.frames[0, :n],
                             atol=1e-5)
  for name in alone.intermediates:
    np.testing.assert_allclose(batched.intermediates[name][0, :n],
                               alone.intermediates[name][0, :n], atol=1e-5)


def _loss(enc, params, x, m, rng):
  out = enc.apply({"params": params}, x, m, train=True, rngs={"dropout": rng})
  w = jax.random.normal(jax.random.key(7), out.frames.shape[1:])
  return jnp.sum(out.frames * w * out.mask[..., None]) / out.mask.sum()


def _grad(enc, params, x, m, rng):
  return jax.jit(jax.grad(functools.partial(_loss, enc)))(params, x, m, rng)


@pytest.fixture(scope="module")
def tiny_grads(tiny_params):
  return _grad(_tiny(), tiny_params, *_inputs(2, 64), jax.random.key(3))


def test_gradients_reach_every_parameter(tiny_params, tiny_grads):
  leaves = jax.tree_util.tree_leaves_with_path(tiny_grads)
  assert len(leaves) == len(jax.tree.leaves(tiny_params))
  zero = []
  for path, g in leaves:
    if jax.tree_util.keystr(path) == "['time_pos']":
      g = g[:4]  # Only the 4 time patches of 64 frames are used.
    if not bool(jnp.all(jnp.any(g != 0, axis=-1))):
      zero.append(jax.tree_util.keystr(path))
  assert not zero, zero


def test_param_counts_of_presets():
  counts = {}
  for size in ("tiny", "s", "b", "l"):
    enc = registry.build_encoder(dict(name="vit", size=size))
    shapes = jax.eval_shape(functools.partial(enc.init, train=False),
                            jax.random.key(0), *_inputs(1, 100))
    counts[size] = _n_params(shapes)
  print("vit parameter counts (80 mel bins):", counts)
  assert 21e6 <= counts["s"] <= 23e6
  assert 84e6 <= counts["b"] <= 88e6
  assert 295e6 <= counts["l"] <= 310e6
  assert counts["tiny"] < 1e6


def _apply(enc, params, x, m):
  return jax.jit(functools.partial(enc.apply, train=False))(
      {"params": params}, x, m)


def test_remat_and_scan_match_plain(tiny_params, tiny_grads):
  x, m = _inputs(2, 64)
  out_p = _apply(_tiny(), tiny_params, x, m)
  g_r = _grad(_tiny(remat=True), tiny_params, x, m, jax.random.key(3))
  for a, b in zip(jax.tree.leaves(tiny_grads), jax.tree.leaves(g_r)):
    np.testing.assert_allclose(a, b, atol=1e-5)

  scan = _tiny(scan_layers=True, remat=True)
  blocks = [tiny_params[f"layer_{i}"] for i in range(2)]
  stacked = {k: v for k, v in tiny_params.items() if not k.startswith("layer")}
  stacked["layers"] = jax.tree.map(lambda *a: jnp.stack(a), *blocks)
  boxed = jax.eval_shape(functools.partial(scan.init, train=False),
                         jax.random.key(0), x, m)["params"]
  assert boxed["layers"]["mlp"]["wi"]["kernel"].names == ("layers", "embed",
                                                          "mlp")
  assert jax.tree.structure(nn.unbox(boxed)) == jax.tree.structure(stacked)
  out_s = _apply(scan, stacked, x, m)
  np.testing.assert_allclose(out_s.frames, out_p.frames, atol=1e-5)
  assert list(out_s.intermediates) == ["layer_1"]


def test_bfloat16_compute(tiny_params):
  enc = _tiny(dtype="bfloat16")
  x, m = _inputs(2, 64)
  out = _apply(enc, tiny_params, x, m)
  assert out.frames.dtype == jnp.bfloat16
  assert out.intermediates["layer_0"].dtype == jnp.bfloat16
  ref = _apply(_tiny(), tiny_params, x, m)
  np.testing.assert_allclose(out.frames.astype(jnp.float32), ref.frames,
                             atol=0.15)


def _toy_batch(n, frames, seed):
  """Clips whose class says which half of the mel bins carries a band."""
  rng = np.random.default_rng(seed)
  labels = rng.integers(0, 2, n)
  x = rng.normal(size=(n, frames, F)).astype(np.float32) * 2.0 - 6.0
  for i, label in enumerate(labels):
    lo = 8 + 40 * label
    x[i, :, lo:lo + 16] += 6.0
  lengths = rng.integers(frames // 2, frames + 1, n)
  mask = np.arange(frames)[None, :] < lengths[:, None]
  return x, mask, labels.astype(np.int32)


def test_tiny_trains_sharded_on_8_devices():
  mesh = sharding.make_mesh({"data": 2, "fsdp": 4})
  rules = sharding.RULE_PRESETS["fsdp"]
  enc = _tiny(dropout_rate=0.0)
  x, m, labels = _toy_batch(16, 64, seed=0)

  class Classifier(nn.Module):
    encoder: nn.Module

    @nn.compact
    def __call__(self, x, m, train):
      out = self.encoder(x, m, train=train)
      w = out.mask[..., None].astype(jnp.float32)
      pooled = jnp.sum(out.frames * w, axis=1) / jnp.sum(w, axis=1)
      return nn.Dense(2, name="head")(pooled)

  model = Classifier(enc)
  tx = optax.adam(1e-3)

  def init(rng):
    params = model.init(rng, x, m, train=False)["params"]
    return params, tx.init(params)

  with sharding.mesh_and_rules(mesh, rules):
    abstract = jax.eval_shape(init, jax.random.key(0))
    shardings = nn.logical_to_mesh_sharding(nn.get_partition_spec(abstract),
                                            mesh, rules)
    params, opt = jax.jit(lambda r: nn.meta.unbox(init(r)),
                          out_shardings=shardings)(jax.random.key(0))
  kernel = params["encoder"]["layer_0"]["mlp"]["wi"]["kernel"]
  assert kernel.sharding.spec == jax.P("fsdp", None)

  def step(params, opt, x, m, labels):
    def loss_fn(p):
      logits = model.apply({"params": p}, x, m, train=True)
      return optax.softmax_cross_entropy_with_integer_labels(
          logits, labels).mean()
    loss, grads = jax.value_and_grad(loss_fn)(params)
    updates, opt = tx.update(grads, opt, params)
    return optax.apply_updates(params, updates), opt, loss

  batch = sharding.shard_batch({"x": x, "m": m, "labels": labels}, mesh)
  with sharding.mesh_and_rules(mesh, rules):
    step = jax.jit(step, out_shardings=(*shardings, None))
    losses = []
    for _ in range(8):
      params, opt, loss = step(params, opt, batch["x"], batch["m"],
                               batch["labels"])
      losses.append(float(loss))
  print("vit tiny, 8 devices, losses:", np.round(losses, 3))
  assert np.all(np.isfinite(losses)) and losses[-1] < 0.5 * losses[0], losses
  assert params["encoder"]["layer_0"]["mlp"]["wi"]["kernel"].sharding \
      .spec == jax.P("fsdp", None)


def test_registered():
  assert "vit" in registry.list_encoders()
  enc = registry.build_encoder(dict(name="vit", size="b", patch_time=8))
  assert isinstance(enc, vit.VitEncoder) and enc.hop_ms == 80
  assert enc.max_time_patches == 750
