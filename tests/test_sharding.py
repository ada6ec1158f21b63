"""Tests of the mesh, logical axis rules and batch placement (8 CPU devices)."""

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from audiopt.models import registry
from audiopt.train import sharding

P = jax.sharding.PartitionSpec


def test_eight_devices():
  assert jax.device_count() == 8


@pytest.mark.parametrize("shape, expected", [
    ({"data": 2, "fsdp": 4}, (2, 4, 1)),
    ({"data": -1}, (8, 1, 1)),
    ({"data": -1, "tensor": 2}, (4, 1, 2)),
    ({"fsdp": -1, "data": 1, "tensor": 1}, (1, 8, 1)),
])
def test_make_mesh_shapes(shape, expected):
  mesh = sharding.make_mesh(shape)
  assert mesh.axis_names == ("data", "fsdp", "tensor")
  assert tuple(mesh.shape.values()) == expected
  assert all(t == jax.sharding.AxisType.Auto for t in mesh.axis_types)


def test_use_mesh_sets_current_mesh():
  mesh = sharding.make_mesh({"data": 2, "fsdp": 4})
  with sharding.use_mesh(mesh):
    assert jax.sharding.get_abstract_mesh().shape == mesh.shape
  assert jax.sharding.get_abstract_mesh().empty


def test_make_mesh_on_given_devices():
  mesh = sharding.make_mesh({"data": -1}, devices=jax.devices()[:4])
  assert mesh.shape["data"] == 4


@pytest.mark.parametrize("shape, match", [
    ({"model": 2, "data": 4}, "unknown mesh axis 'model'"),
    ({"data": 2, "fsdp": 2}, "product 4, but there are 8 devices"),
    ({"data": -1, "fsdp": -1}, "only one mesh axis may be -1"),
    ({"data": 0, "fsdp": 8}, "mesh axis 'data' has size 0"),
    ({"data": -1, "fsdp": 3}, "cannot fill mesh axis 'data'"),
])
def test_make_mesh_errors(shape, match):
  with pytest.raises(ValueError, match=match):
    sharding.make_mesh(shape)


@pytest.mark.parametrize("preset, expected", [
    ("data", P(None, None)),
    ("fsdp", P("fsdp", None)),
    ("fsdp_tensor", P("fsdp", "tensor")),
])
def test_rule_presets_on_mlp_kernel(preset, expected):
  rules = sharding.get_rules(preset)
  assert nn.logical_to_mesh_axes(("embed", "mlp"), rules) == expected
  # Activations: batch takes fsdp, so embed stays whole.
  assert nn.logical_to_mesh_axes(("batch", "time", "embed"), rules) == P(
      ("data", "fsdp"), None, None)
  assert sharding.DEFAULT_RULES == sharding.RULE_PRESETS["fsdp_tensor"]


def test_get_rules_unknown_preset():
  with pytest.raises(ValueError, match="unknown rule preset 'zero3'"):
    sharding.get_rules("zero3")


def test_logical_to_shardings_mixed_leaves():
  mesh = sharding.make_mesh({"data": 2, "fsdp": 4})
  tree = {"spec": P("layers", "embed"), "plain": np.zeros(3),
          "boxed": nn.LogicallyPartitioned(np.zeros((4, 8)), ("embed", "mlp"))}
  out = sharding.logical_to_shardings(tree, mesh, sharding.RULE_PRESETS["fsdp"])
  assert out["spec"].spec == P(None, "fsdp")
  assert out["plain"].spec == P()
  assert out["boxed"].spec == P("fsdp", None)
  assert sharding.replicated(mesh).spec == P()


def test_sharded_init_and_forward():
  mesh = sharding.make_mesh({"data": 2, "fsdp": 4})
  rules = sharding.RULE_PRESETS["fsdp"]
  enc = registry.build_encoder(dict(name="transformer", size="tiny"))
  local = {"features": np.random.RandomState(0).randn(8, 64, 80).astype(
      np.float32), "mask": np.ones((8, 64), bool)}
  with sharding.mesh_and_rules(mesh, rules):
    batch = sharding.shard_batch(local, mesh)
    init = functools.partial(enc.init, train=False)
    abstract = jax.eval_shape(init, jax.random.key(0), batch["features"],
                              batch["mask"])
    shardings = sharding.logical_to_shardings(abstract, mesh, rules)
    variables = jax.jit(init, out_shardings=shardings)(
        jax.random.key(0), batch["features"], batch["mask"])
    wi = variables["params"]["layer_0"]["mlp"]["wi"]["kernel"].value
    assert wi.sharding.spec == P("fsdp", None)
    assert wi.addressable_shards[0].data.shape == (16, 256)
    norm = variables["params"]["norm_out"]["scale"].value
    assert norm.sharding.is_fully_replicated
    params = nn.unbox(variables["params"])
    out = jax.jit(functools.partial(enc.apply, train=False))(
        {"params": params}, batch["features"], batch["mask"])
  assert out.frames.shape == (8, 15, 64)
  assert bool(jnp.isfinite(out.frames).all())


def test_scanned_params_get_layers_axis():
  mesh = sharding.make_mesh({"data": 2, "fsdp": 4})
  enc = registry.build_encoder(dict(name="transformer", size="tiny",
                                    scan_layers=True))
  abstract = jax.eval_shape(functools.partial(enc.init, train=False),
                            jax.random.key(0), jnp.zeros((1, 64, 80)),
                            jnp.ones((1, 64), bool))
  shardings = sharding.logical_to_shardings(abstract, mesh,
                                            sharding.DEFAULT_RULES)
  spec = shardings["params"]["layers"]["attn"]["out"]["kernel"].spec
  assert spec == P(None, "tensor", None, "fsdp")


def test_shard_batch_global_arrays():
  mesh = sharding.make_mesh({"data": 2, "fsdp": 4})
  local = {
      "audio": np.arange(8 * 16, dtype=np.float32).reshape(8, 16),
      "audio_mask": np.ones((8, 16), bool),
      "tags": np.arange(8, dtype=np.int32),
      "clip_id": np.array([f"clip{i}" for i in range(8)]),
      "meta": np.array([{"a": 1}] * 8, dtype=object),
  }
  out = sharding.shard_batch(local, mesh)
  assert sorted(out) == ["audio", "audio_mask", "tags"]
  assert out["audio"].shape == (8 * jax.process_count(), 16)
  assert out["audio"].sharding.spec == P(("data", "fsdp"))
  assert len(out["audio"].addressable_shards) == 8
  assert out["audio"].addressable_shards[0].data.shape == (1, 16)
  np.testing.assert_array_equal(np.asarray(out["audio"]), local["audio"])
  np.testing.assert_array_equal(np.asarray(out["tags"]), local["tags"])


def test_shard_batch_errors_name_the_entry():
  mesh = sharding.make_mesh({"data": 2, "fsdp": 4})
  with pytest.raises(ValueError, match="'step'"):
    sharding.shard_batch({"step": np.int32(3)}, mesh)
  with pytest.raises(ValueError, match="'audio'"):
    sharding.shard_batch({"audio": np.zeros((6, 4), np.float32)}, mesh)
