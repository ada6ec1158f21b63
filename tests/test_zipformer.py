"""Tests of the Zipformer port, its presets and the PyTorch weight importer."""

import functools
import json
import struct

import flax.linen as nn
import flax.traverse_util
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from audiopt.models import registry
from audiopt.models import zipformer
from audiopt.models import zipformer_import
from audiopt.models import zipformer_modules
from audiopt.models import zipformer_ops as ops
from audiopt.train import sharding

F = 80
# Zipformer-M in the reference code (ZIPFORMER.md): 65,913,719 parameters, of
# which 5,760 are per-layer `bypass_scale` values that its forward never uses.
REFERENCE_M_PARAMS = 65_913_719
UNUSED_M_PARAMS = 5_760


def _tiny(**overrides):
  return registry.build_encoder(dict(name="zipformer", size="tiny",
                                     **overrides))


def _inputs(batch, frames, seed=0):
  x = jnp.asarray(np.random.RandomState(seed).randn(batch, frames, F),
                  jnp.float32)
  return x, jnp.ones((batch, frames), bool)


def _key(seed):
  # rbg keys: the same model code, but XLA compiles their random bits far
  # faster than threefry's, which keeps this file's compile time low.
  return jax.random.key(seed, impl="rbg")


def _n_params(tree):
  return sum(int(np.prod(p.shape)) for p in jax.tree.leaves(nn.unbox(tree)))


def _expected_out_len(n):
  return ((n - 7) // 2 + 1) // 2


@pytest.fixture(scope="module")
def tiny_params():
  x, m = _inputs(2, 64)
  init = jax.jit(functools.partial(_tiny().init, train=False))
  return nn.unbox(init(_key(0), x, m)["params"])


@pytest.fixture(scope="module")
def tiny_apply():
  enc = _tiny()
  return jax.jit(functools.partial(enc.apply, train=False))


@pytest.fixture(scope="module")
def eval_grad():
  return jax.jit(jax.grad(functools.partial(_loss, _tiny(), train=False)))


def _loss(enc, params, x, m, rng, *, train, batch_count=None):
  out = enc.apply({"params": params}, x, m, train=train,
                  batch_count=batch_count, rngs={"dropout": rng})
  w = jnp.sin(jnp.arange(out.frames.size, dtype=jnp.float32) * 0.37).reshape(
      out.frames.shape)
  return jnp.sum(out.frames * w * out.mask[..., None]) / out.frames.size


def test_m_preset_shapes_hop_and_param_count():
  enc = registry.build_encoder(dict(name="zipformer", size="m"))
  assert enc.hop_ms == 40 and enc.output_dim == 512
  x = jax.ShapeDtypeStruct((2, 1000, F), jnp.float32)
  m = jax.ShapeDtypeStruct((2, 1000), jnp.bool_)
  variables = jax.eval_shape(functools.partial(enc.init, train=False),
                             jax.random.key(0), x, m)
  out = jax.eval_shape(functools.partial(enc.apply, train=False), variables,
                       x, m)
  assert out.frames.shape == (2, 248, 512)  # 10 s -> 248 frames at 25 Hz.
  assert out.mask.shape == (2, 248)
  assert {k: v.shape[-1] for k, v in out.intermediates.items()} == {
      f"stack_{i}": d for i, d in enumerate((192, 256, 384, 512, 384, 256))}
  params = variables["params"]
  n = _n_params(params)
  # Exact up to the unused per-layer bypass_scale, which the port leaves out.
  assert n == REFERENCE_M_PARAMS - UNUSED_M_PARAMS
  assert abs(n - REFERENCE_M_PARAMS) / REFERENCE_M_PARAMS < 0.01
  assert _n_params(params["encoder_embed"]) == 611_953
  per_stack = [_n_params(params[f"encoders_{i}"]) for i in range(6)]
  reference = [2_206_146, 3_825_764, 12_550_519, 30_343_052, 12_550_519,
               3_825_764]
  layer_dims = [2 * 192, 2 * 256, 3 * 384, 4 * 512, 3 * 384, 2 * 256]
  assert per_stack == [r - u for r, u in zip(reference, layer_dims)]
  assert _n_params(params["downsample_output"]) == 2


def test_m_preset_torch_names_and_shapes():
  shapes = zipformer_import.param_shapes({"name": "zipformer", "size": "m"})
  torch_shapes = {
      zipformer_import.torch_key(p): zipformer_import.to_torch_layout(
          p, np.empty(s, np.uint8)).shape for p, s in shapes.items()}
  # 731 parameters in the reference state dict, 16 of them unused.
  assert len(torch_shapes) == 731 - 16
  for key, shape in {
      "encoder_embed.conv.0.weight": (8, 1, 3, 3),
      "encoder_embed.conv.7.weight": (128, 32, 3, 3),
      "encoder_embed.convnext.depthwise_conv.weight": (128, 1, 7, 7),
      "encoder_embed.convnext.pointwise_conv2.weight": (128, 384, 1, 1),
      "encoder_embed.out.weight": (192, 2432),
      "encoder_embed.out_norm.log_scale": (),
      "encoder.encoders.0.layers.1.self_attn_weights.in_proj.weight":
          (272, 192),
      "encoder.encoders.0.layers.0.self_attn_weights.linear_pos.weight":
          (16, 48),
      "encoder.encoders.3.encoder.layers.3.conv_module2.depthwise_conv.weight":
          (512, 1, 15),
      "encoder.encoders.3.encoder.layers.0.feed_forward3.in_proj.weight":
          (1920, 512),
      "encoder.encoders.2.encoder.layers.2.nonlin_attention.out_proj.weight":
          (384, 288),
      "encoder.encoders.3.downsample.bias": (8,),
      "encoder.encoders.5.out_combiner.bypass_scale": (256,),
      "encoder.downsample_output.bias": (2,),
  }.items():
    assert torch_shapes[key] == shape, key


def test_tiny_outputs_masks_and_intermediates(tiny_params, tiny_apply):
  enc = _tiny()
  assert enc.hop_ms == 40 and enc.output_dim == 48
  x, m = _inputs(2, 120, seed=1)
  m = m.at[1, 77:].set(False)
  out = tiny_apply({"params": tiny_params}, x, m)
  t_out = _expected_out_len(120)
  assert out.frames.shape == (2, t_out, 48)
  assert out.frames.dtype == jnp.float32
  np.testing.assert_array_equal(out.mask.sum(-1),
                                [t_out, _expected_out_len(77)])
  assert sorted(out.intermediates) == ["stack_0", "stack_1"]
  assert [out.intermediates[f"stack_{i}"].shape[-1] for i in range(2)] == [
      48, 32]
  n = _expected_out_len(77)
  assert float(jnp.abs(out.frames[1, n:]).max()) == 0.0
  assert float(jnp.abs(out.intermediates["stack_0"][1, n:]).max()) == 0.0
  assert bool(jnp.isfinite(out.frames).all())
  # The full-dim output takes channels 0:32 from the last stack and 32:48
  # from stack 0, each downsampled by the same output module.
  np.testing.assert_allclose(out.frames[..., :32],
                             out.intermediates["stack_1"], atol=1e-6)
  np.testing.assert_allclose(out.frames[..., 32:],
                             out.intermediates["stack_0"][..., 32:],
                             atol=1e-6)


def test_padding_invariance(tiny_params, tiny_apply):
  x, _ = _inputs(2, 120, seed=1)
  # 77 input frames -> 35 at 50 Hz: odd, so the last downsampled group of
  # the x2 stack and of the output straddles the padding.
  alone = tiny_apply({"params": tiny_params}, x[:1, :77],
                     jnp.ones((1, 77), bool))
  mask = jnp.ones((2, 120), bool).at[0, 77:].set(False)
  garbage = x.at[0, 77:].set(1e3)
  batched = tiny_apply({"params": tiny_params}, garbage, mask)
  n = int(alone.mask.sum())
  np.testing.assert_allclose(batched.frames[0, :n], alone.frames[0, :n],
                             atol=1e-5)
  for name, y in alone.intermediates.items():
    np.testing.assert_allclose(batched.intermediates[name][0, :n], y[0, :n],
                               atol=1e-5)
  # The reference's behaviour leaks padding into the last valid frames ...
  leaky = jax.jit(functools.partial(_tiny(reference_padding=True).apply,
                                    train=False))
  leaked = leaky({"params": tiny_params}, garbage, mask)
  assert float(jnp.abs(leaked.frames[0, :n] - alone.frames[0, :n]).max()) > 1e-3
  # ... and equals the default without padding.
  full = jnp.ones((2, 120), bool)
  np.testing.assert_allclose(leaky({"params": tiny_params}, x, full).frames,
                             tiny_apply({"params": tiny_params}, x,
                                        full).frames, atol=1e-6)


def test_gradients_reach_every_parameter(tiny_params, eval_grad):
  x, m = _inputs(2, 64)
  m = m.at[1, 50:].set(False)
  norms = {jax.tree_util.keystr(k): float(jnp.linalg.norm(g))
           for k, g in jax.tree_util.tree_leaves_with_path(
               eval_grad(tiny_params, x, m, _key(0)))}
  assert len(norms) == len(jax.tree.leaves(tiny_params))
  assert all(v > 0 for v in norms.values()), {
      k: v for k, v in norms.items() if v <= 0}


def test_train_mode_is_stochastic_and_scheduled(tiny_params):
  enc = _tiny()
  x, m = _inputs(2, 64)

  @jax.jit
  def run(rng, batch_count):
    return enc.apply({"params": tiny_params}, x, m, train=True,
                     batch_count=batch_count, rngs={"dropout": rng}).frames

  a, b = run(_key(0), 0.0), run(_key(1), 0.0)
  assert float(jnp.abs(a - b).max()) > 1e-3
  assert bool(jnp.isfinite(a).all())
  # The batch count is traced: changing it does not retrace.
  run(_key(0), 30000.0)
  assert run._cache_size() == 1  # pylint: disable=protected-access
  assert float(ops.scheduled(jnp.float32(10000.0), ops.DROPOUT)) == (
      pytest.approx(0.2))
  assert float(ops.scheduled(jnp.float32(1e6), ops.FF_SKIP)) == 0.0


def test_bfloat16_and_remat(tiny_params, tiny_apply, eval_grad):
  x, m = _inputs(2, 64)
  ref = tiny_apply({"params": tiny_params}, x, m)
  out = jax.jit(functools.partial(_tiny(dtype="bfloat16").apply,
                                  train=False))({"params": tiny_params}, x, m)
  assert out.frames.dtype == jnp.bfloat16
  assert bool(jnp.isfinite(out.frames.astype(jnp.float32)).all())
  np.testing.assert_allclose(out.frames.astype(jnp.float32), ref.frames,
                             atol=0.1 * float(jnp.abs(ref.frames).max()))
  g_p = eval_grad(tiny_params, x, m, _key(0))
  g_r = jax.jit(jax.grad(functools.partial(_loss, _tiny(remat=True),
                                           train=False)))(
                                               tiny_params, x, m, _key(0))
  for a, b in zip(jax.tree.leaves(g_p), jax.tree.leaves(g_r)):
    np.testing.assert_allclose(a, b, atol=1e-6, rtol=1e-4)


def test_initialisation_matches_reference(tiny_params):
  layer = tiny_params["encoders_0"]["layers_0"]

  def bound(w):
    return float(np.abs(np.asarray(w)).max())

  # (params, U bound): torch default U(+-1/sqrt(fan_in)); ScaledLinear(s)
  # weights U(+-s/sqrt(fan_in)) and biases U(+-0.1 s).
  c, f = 48, 96
  for w, b in [
      (layer["feed_forward2"]["in_proj"]["kernel"], 1 / np.sqrt(c)),
      (layer["feed_forward2"]["in_proj"]["bias"], 1 / np.sqrt(c)),
      (layer["feed_forward2"]["out_proj"]["kernel"], 0.1 / np.sqrt(f)),
      (layer["feed_forward2"]["out_proj"]["bias"], 0.01),
      (layer["self_attn_weights"]["in_proj"]["kernel"],
       8 ** -0.25 / np.sqrt(c)),
      (layer["self_attn1"]["out_proj"]["kernel"], 0.05 / np.sqrt(8)),
      (layer["conv_module1"]["depthwise_conv"]["kernel"], 1 / np.sqrt(7)),
      (layer["conv_module1"]["depthwise_conv"]["bias"], 1 / np.sqrt(7)),
      (tiny_params["encoder_embed"]["convnext"]["pointwise_conv2"]["bias"],
       0.001),
  ]:
    assert 0.5 * b < bound(w) <= b
  flat = flax.traverse_util.flatten_dict(tiny_params)
  for path, v in flat.items():
    if path[-1] == "bypass_scale":
      np.testing.assert_array_equal(v, 0.5)
    elif path[-2:] in (("downsample", "bias"), ("downsample_output", "bias")):
      np.testing.assert_array_equal(v, 0.0)
    elif path[-1] == "log_scale":
      assert float(v) == 1.0
    elif path[-2] in ("norm", "out_norm") and path[-1] == "bias":
      assert 0 < bound(v) < 1e-3


def test_rel_to_abs_matches_gather():
  t = 5
  raw = jnp.asarray(np.random.RandomState(0).randn(2, 3, t, 2 * t - 1))
  i, j = np.meshgrid(np.arange(t), np.arange(t), indexing="ij")
  np.testing.assert_array_equal(ops.rel_to_abs(raw),
                                raw[..., i, (t - 1) - i + j])
  pe = ops.compact_rel_positions(t, 8)
  assert pe.shape == (2 * t - 1, 8) and np.all(pe[:, -1] == 1.0)
  np.testing.assert_allclose(pe[t - 1, 0::2][:-1], 1.0)  # offset 0: cos 0.


def test_importer_round_trip(tiny_params):
  state = zipformer_import.export_state_dict(tiny_params)
  assert state["encoder_embed.conv.4.weight"].shape == (8, 4, 3, 3)
  assert state["encoder.encoders.1.encoder.layers.0.norm.log_scale"].shape == ()
  assert state["encoder.encoders.1.encoder.layers.0.bypass_scale"].shape == (
      32,)  # unused in the reference; exported so that strict loads work.
  assert state["encoder_embed.convnext.pointwise_conv1.weight"].shape == (
      48, 16, 1, 1)
  state["model_batch_count"] = np.float32(4000.0)
  back = zipformer_import.import_state_dict(
      state, {"name": "zipformer", "size": "tiny"})
  flat_a = flax.traverse_util.flatten_dict(tiny_params)
  flat_b = flax.traverse_util.flatten_dict(back)
  assert set(flat_a) == set(flat_b)
  for k, v in flat_a.items():
    np.testing.assert_array_equal(np.asarray(v), flat_b[k])
  # A composite checkpoint: prefixes are found, other modules ignored.
  wrapped = {"module.encoder." + k: v for k, v in state.items()}
  wrapped["module.classifier.weight"] = np.zeros((3, 48), np.float32)
  back = zipformer_import.import_state_dict(wrapped, _tiny())
  np.testing.assert_array_equal(
      back["encoders_0"]["layers_0"]["norm"]["bias"],
      tiny_params["encoders_0"]["layers_0"]["norm"]["bias"])


def test_importer_names_bad_keys(tiny_params):
  state = zipformer_import.export_state_dict(tiny_params)
  del state["encoder.encoders.1.encoder.layers.0.conv_module1.in_proj.bias"]
  state["encoder.encoders.0.layers.0.extra.weight"] = np.zeros((2,))
  state["encoder_embed.out.weight"] = state["encoder_embed.out.weight"].T
  with pytest.raises(zipformer_import.StateDictMismatchError) as e:
    zipformer_import.import_state_dict(state,
                                       {"name": "zipformer", "size": "tiny"})
  msg = str(e.value)
  assert "missing (1)" in msg and "conv_module1.in_proj.bias" in msg
  assert "unexpected (1)" in msg and "layers.0.extra.weight" in msg
  assert ("mis-shaped (1)" in msg and
          "encoder_embed.out.weight: got (304, 48), expected (48, 304)" in msg)


def _write_safetensors(path, tensors):
  header, blobs, offset = {}, [], 0
  names = {np.dtype(np.float32): "F32", np.dtype(np.int64): "I64"}
  for k, v in tensors.items():
    data = np.ascontiguousarray(v).tobytes()
    header[k] = {"dtype": names[v.dtype], "shape": list(v.shape),
                 "data_offsets": [offset, offset + len(data)]}
    blobs.append(data)
    offset += len(data)
  raw = json.dumps(header).encode()
  with open(path, "wb") as f:
    f.write(struct.pack("<Q", len(raw)) + raw + b"".join(blobs))


def test_load_checkpoint_files(tmp_path):
  tensors = {"a.weight": np.arange(6, dtype=np.float32).reshape(2, 3),
             "b": np.asarray([1, 2], np.int64)}
  _write_safetensors(tmp_path / "w.safetensors", tensors)
  got = zipformer_import.load_torch_checkpoint(str(tmp_path / "w.safetensors"))
  for k, v in tensors.items():
    np.testing.assert_array_equal(got[k], v)
  torch = pytest.importorskip("torch")
  torch.save({"model": {k: torch.from_numpy(v) for k, v in tensors.items()},
              "epoch": 3}, tmp_path / "w.pt")
  got = zipformer_import.load_torch_checkpoint(str(tmp_path / "w.pt"))
  assert sorted(got) == sorted(tensors)
  np.testing.assert_array_equal(got["a.weight"], tensors["a.weight"])


def test_train_steps_on_eight_devices(tiny_params):
  mesh = sharding.make_mesh({"data": 2, "fsdp": 2, "tensor": 2})
  rules = sharding.DEFAULT_RULES
  enc = _tiny()
  rs = np.random.RandomState(0)
  local = {"features": rs.randn(8, 64, F).astype(np.float32),
           "mask": np.arange(64)[None, :] < rs.randint(40, 65, (8, 1)),
           "target": rs.randn(8, 4).astype(np.float32)}
  head = jnp.asarray(rs.randn(enc.output_dim, 4).astype(np.float32)) * 0.3

  def loss_fn(params, batch, rng):
    out = enc.apply({"params": params}, batch["features"], batch["mask"],
                    train=True, rngs={"dropout": rng})
    w = out.mask[..., None].astype(jnp.float32)
    pooled = jnp.sum(out.frames * w, 1) / jnp.maximum(jnp.sum(w, 1), 1.0)
    return jnp.mean(jnp.square(pooled @ head - batch["target"]))

  opt = optax.adam(3e-3)
  with sharding.mesh_and_rules(mesh, rules):
    batch = sharding.shard_batch(local, mesh)
    abstract = jax.eval_shape(functools.partial(enc.init, train=False),
                              _key(0), batch["features"], batch["mask"])
    shardings = sharding.logical_to_shardings(abstract["params"], mesh,
                                              rules)
    params = jax.device_put(tiny_params, shardings)
    kernel = params["encoders_1"]["encoder"]["layers_0"]["feed_forward2"][
        "in_proj"]["kernel"]
    assert kernel.sharding.spec == jax.sharding.PartitionSpec("fsdp", "tensor")
    opt_state = opt.init(params)
    # Pin the outputs to the inputs' shardings: one compile for all steps.
    state_shardings = jax.tree.map(lambda a: a.sharding, (params, opt_state))

    @functools.partial(jax.jit, out_shardings=state_shardings + (None,))
    def step(params, opt_state, rng):
      loss, grads = jax.value_and_grad(loss_fn)(params, batch, rng)
      updates, opt_state = opt.update(grads, opt_state, params)
      return optax.apply_updates(params, updates), opt_state, loss

    losses = []
    for i in range(8):
      params, opt_state, loss = step(params, opt_state, _key(i))
      losses.append(float(loss))
  assert step._cache_size() == 1  # pylint: disable=protected-access
  assert np.all(np.isfinite(losses))
  assert np.mean(losses[-2:]) < 0.7 * np.mean(losses[:2]), losses


def test_registry_overrides_and_errors():
  enc = registry.build_encoder(dict(name="zipformer", size="tiny",
                                    reference_padding=True, remat=True,
                                    overrides=dict(warmup_batches=100.0)))
  assert isinstance(enc, zipformer.Zipformer)
  assert enc.reference_padding and enc.remat and enc.warmup_batches == 100.0
  cfgs = enc.stack_configs()
  assert [c.downsample for c in cfgs] == [1, 2]
  assert cfgs[1].warmup_begin == pytest.approx(200.0 / 3)
  assert "zipformer" in registry.list_encoders()
  with pytest.raises(ValueError, match="needs >= 9 input frames"):
    enc.init(jax.random.key(0), *_inputs(1, 8))


# ------------------------------------------------------------- scan_layers

# Deeper than "tiny" so that each stack scans over several layers.
_SCAN_LAYERS = (2, 3)


@pytest.fixture(scope="module")
def scanned():
  """(scan model, its plain params) with _SCAN_LAYERS, built by the registry."""
  enc = _tiny(num_encoder_layers=_SCAN_LAYERS, scan_layers=True)
  assert isinstance(enc, zipformer.Zipformer) and enc.scan_layers
  x, m = _inputs(2, 64)
  # Initialising the scanned model compiles each stack's layer once.
  init = jax.jit(functools.partial(enc.init, train=False))
  return enc, nn.unbox(init(_key(3), x, m)["params"])


def test_scan_layers_layout_and_eval_match_unscanned(scanned):
  enc, params = scanned
  x, m = _inputs(2, 64)
  boxed = jax.eval_shape(functools.partial(enc.init, train=False), _key(0),
                         x, m)["params"]
  kernel = boxed["encoders_1"]["encoder"]["layers"]["feed_forward2"][
      "in_proj"]["kernel"]
  assert kernel.names == ("layers", "embed", "mlp")
  assert kernel.value.shape == (3, 32, 64)
  assert "layers_0" not in boxed["encoders_0"]
  plain_params = zipformer.unstack_layers(params)
  assert sorted(plain_params["encoders_1"]["encoder"]) == [
      "layers_0", "layers_1", "layers_2"]
  np.testing.assert_array_equal(
      plain_params["encoders_0"]["layers_1"]["norm"]["bias"],
      params["encoders_0"]["layers"]["norm"]["bias"][1])
  restacked = zipformer.stack_layers(plain_params)
  assert jax.tree.structure(restacked) == jax.tree.structure(params)
  assert all(jax.tree.leaves(jax.tree.map(np.array_equal, restacked,
                                          params)))
  # Boxed trees keep their logical names, with "layers" added or removed.
  plain_boxed = zipformer.unstack_layers(boxed)
  assert plain_boxed["encoders_0"]["layers_1"]["feed_forward2"]["in_proj"][
      "kernel"].names == ("embed", "mlp")
  assert zipformer.stack_layers(plain_boxed)["encoders_0"]["layers"][
      "feed_forward2"]["in_proj"]["kernel"].names == ("layers", "embed",
                                                      "mlp")

  m = m.at[1, 50:].set(False)
  plain = _tiny(num_encoder_layers=_SCAN_LAYERS)
  ref = jax.jit(functools.partial(plain.apply, train=False))(
      {"params": plain_params}, x, m)
  out = jax.jit(functools.partial(enc.apply, train=False))(
      {"params": params}, x, m)
  np.testing.assert_allclose(out.frames, ref.frames, atol=1e-5, rtol=1e-5)
  np.testing.assert_array_equal(out.mask, ref.mask)
  assert sorted(out.intermediates) == sorted(ref.intermediates)
  for name, y in ref.intermediates.items():
    np.testing.assert_allclose(out.intermediates[name], y, atol=1e-5,
                               rtol=1e-5)

  # The importer reads the reference layout into either model layout.
  state = zipformer_import.export_state_dict(params)
  plain_state = zipformer_import.export_state_dict(plain_params)
  assert sorted(state) == sorted(plain_state)
  for k, v in state.items():
    np.testing.assert_array_equal(v, plain_state[k])
  assert "encoder.encoders.1.encoder.layers.2.norm.log_scale" in state
  back = zipformer_import.import_state_dict(state, enc)
  assert all(jax.tree.leaves(jax.tree.map(np.array_equal, back, params)))
  back = zipformer_import.import_state_dict(
      state, dict(name="zipformer", size="tiny",
                  num_encoder_layers=_SCAN_LAYERS))
  assert sorted(back["encoders_0"]) == ["layers_0", "layers_1"]


def test_scan_layers_remat_gradients_match_unscanned(tiny_params, eval_grad):
  x, m = _inputs(2, 64)
  m = m.at[1, 50:].set(False)
  scan = _tiny(scan_layers=True, remat=True)
  g_scan = jax.jit(jax.grad(functools.partial(_loss, scan, train=False)))(
      zipformer.stack_layers(tiny_params), x, m, _key(0))
  g_ref = zipformer.stack_layers(eval_grad(tiny_params, x, m, _key(0)))
  assert jax.tree.structure(g_scan) == jax.tree.structure(g_ref)
  for a, b in zip(jax.tree.leaves(g_scan), jax.tree.leaves(g_ref)):
    np.testing.assert_allclose(a, b, atol=1e-6, rtol=1e-4)


def test_scan_layers_train_mode(scanned):
  enc, params = scanned
  x, m = _inputs(2, 64)

  @jax.jit
  def loss_and_grad(rng, batch_count):
    return jax.value_and_grad(functools.partial(
        _loss, enc, train=True))(params, x, m, rng, batch_count=batch_count)

  loss_a, grads = loss_and_grad(_key(0), ops.SATURATED_BATCH_COUNT)
  loss_b, _ = loss_and_grad(_key(1), 0.0)
  assert np.isfinite(float(loss_a)) and float(loss_a) != float(loss_b)
  assert loss_and_grad._cache_size() == 1  # pylint: disable=protected-access
  # Every layer of every stack gets a gradient (skips are rare by then).
  for path, g in jax.tree_util.tree_leaves_with_path(grads):
    g = np.asarray(g)
    assert np.all(np.isfinite(g)), jax.tree_util.keystr(path)
    per_layer = g.reshape(g.shape[0], -1) if "layers" in str(path) else g
    assert np.all(np.abs(per_layer).max(axis=-1) > 0), (
        jax.tree_util.keystr(path))


def test_layer_skip_schedules_and_rates():
  cfg = _tiny(num_encoder_layers=(4, 2), warmup_batches=600.0
              ).stack_configs()[1]
  # Stack 1 of 2 warms up over [400, 600]; its 2 layers split that window.
  assert cfg.skip_schedules() == [
      ((400.0, 0.5), (500.0, 0.035 * 2 ** 0.5)),
      ((500.0, 0.5), (600.0, 0.035 * 2 ** 0.5))]
  x0 = jnp.zeros((64, 3, 4))
  x = jnp.ones((64, 3, 4))
  bypass = zipformer_modules.Bypass()
  variables = bypass.init(_key(0), x0, x, jnp.float32(0.0))
  rngs = {"dropout": _key(1)}
  # A scanned layer's rate overrides the (absent) schedule: 1 skips always.
  skipped = bypass.apply(variables, x0, x, jnp.float32(0.0), True,
                         jnp.float32(1.0), rngs=rngs)
  np.testing.assert_array_equal(skipped, x0)
  kept = bypass.apply(variables, x0, x, jnp.float32(0.0), True,
                      jnp.float32(0.0), rngs=rngs)
  np.testing.assert_allclose(kept, 0.5)


@pytest.mark.parametrize("kernel,spatial", [
    ((5,), (11,)), ((5,), (41,)), ((1,), (9,)), ((5, 3), (11, 7)),
    ((3, 5), (4, 23))])
def test_depthwise_conv_matches_a_grouped_convolution(kernel, spatial):
  # The shifted-sum form against XLA's grouped convolution, values and
  # gradients: the reference's Conv1d(C, C, k, groups=C, padding=k // 2) in
  # the conv modules and its Conv2d(.., groups=C) in the front end's ConvNeXt
  # (non-square kernels here, so that swapped axes would show). The kernel
  # gradient cuts a last axis longer than 4 (k - 1) into blocks: 41 and 23
  # are, with a partial last block.
  b, c = 2, 6
  x = jax.random.normal(jax.random.key(0), (b,) + spatial + (c,))
  conv = zipformer_modules.DepthwiseConv(kernel)
  params = nn.meta.unbox(conv.init(jax.random.key(1), x)["params"])
  assert params["kernel"].shape == kernel + (1, c)
  assert params["bias"].shape == (c,)
  layout = "NWC" if len(kernel) == 1 else "NHWC"
  kernel_layout = "WIO" if len(kernel) == 1 else "HWIO"

  def reference(p, x):
    y = jax.lax.conv_general_dilated(
        x, p["kernel"], (1,) * len(kernel), [(k // 2, k // 2) for k in kernel],
        dimension_numbers=(layout, kernel_layout, layout),
        feature_group_count=c, precision=jax.lax.Precision.HIGHEST)
    return y + p["bias"]

  mine = lambda p, x: conv.apply({"params": p}, x)  # noqa: E731
  np.testing.assert_allclose(mine(params, x), reference(params, x),
                             atol=1e-5)
  weights = jax.random.normal(jax.random.key(2), x.shape)
  grads = [jax.grad(lambda p, x, f=f: (f(p, x) * weights).sum(),
                    argnums=(0, 1))(params, x) for f in (mine, reference)]
  for got, want in zip(jax.tree.leaves(grads[0]), jax.tree.leaves(grads[1])):
    np.testing.assert_allclose(got, want, atol=1e-4)
  half = zipformer_modules.DepthwiseConv(kernel, dtype=jnp.bfloat16).apply(
      {"params": params}, x)
  assert half.dtype == jnp.bfloat16
  np.testing.assert_allclose(half.astype(jnp.float32), reference(params, x),
                             atol=0.05)
  # A bfloat16 input stays bfloat16 for the backward pass; its gradient is
  # bfloat16, the kernel's float32, both near the float32 ones.
  x16 = x.astype(jnp.bfloat16)
  grads16 = jax.grad(lambda p, x: (mine(p, x) * weights).sum(),
                     argnums=(0, 1))(params, x16)
  assert grads16[1].dtype == jnp.bfloat16
  assert grads16[0]["kernel"].dtype == jnp.float32
  for got, want in zip(jax.tree.leaves(grads16), jax.tree.leaves(grads[1])):
    np.testing.assert_allclose(np.asarray(got, np.float32), want,
                               atol=0.05 * np.abs(want).max())
  with pytest.raises(ValueError, match="odd"):
    zipformer_modules.DepthwiseConv(kernel[:-1] + (2,)).init(
        jax.random.key(1), x)
  with pytest.raises(ValueError, match="needs input"):
    zipformer_modules.DepthwiseConv(kernel + (3,)).init(jax.random.key(1), x)

