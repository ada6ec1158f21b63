"""Contrastive losses against independent numpy formulations."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from audiopt.objectives import contrastive_losses as cl
from audiopt.train import sharding


def _np_norm(x):
  return x / np.linalg.norm(x, axis=-1, keepdims=True)


def _np_log_softmax(x, axis):
  m = x.max(axis=axis, keepdims=True)
  return x - m - np.log(np.exp(x - m).sum(axis=axis, keepdims=True))


def _np_info_nce(a, t, log_scale, valid):
  a, t = _np_norm(a)[valid], _np_norm(t)[valid]
  logits = np.exp(log_scale) * a @ t.T
  idx = np.arange(len(a))
  a2t = -_np_log_softmax(logits, 1)[idx, idx]
  t2a = -_np_log_softmax(logits, 0)[idx, idx]
  return float(np.mean((a2t + t2a) / 2))


def _np_siglip(a, t, log_scale, bias, valid):
  a, t = _np_norm(a)[valid], _np_norm(t)[valid]
  logits = np.exp(log_scale) * a @ t.T + bias
  z = 2 * np.eye(len(a)) - 1
  # -log sigmoid(x) = log(1 + exp(-x)), written stably.
  nll = np.logaddexp(0.0, -z * logits)
  return float(nll.sum() / len(a))


def _inputs(b=16, d=8, seed=0):
  rng = np.random.default_rng(seed)
  a = rng.normal(size=(b, d)).astype(np.float32)
  t = (a + 0.7 * rng.normal(size=(b, d))).astype(np.float32)
  return a, t


@pytest.mark.parametrize("with_padding", [False, True])
def test_info_nce_matches_numpy(with_padding):
  a, t = _inputs()
  valid = np.ones(16, bool)
  if with_padding:
    valid[[3, 11]] = False
  got = cl.info_nce_loss(jnp.asarray(a), jnp.asarray(t),
                         jnp.asarray(cl.INFO_NCE_INIT_LOG_SCALE),
                         jnp.asarray(valid))
  want = _np_info_nce(a, t, cl.INFO_NCE_INIT_LOG_SCALE, valid)
  np.testing.assert_allclose(float(got), want, rtol=1e-5)


def test_info_nce_clips_the_log_scale():
  a, t = _inputs()
  big = cl.info_nce_loss(jnp.asarray(a), jnp.asarray(t), jnp.asarray(20.0))
  want = _np_info_nce(a, t, cl.MAX_LOG_SCALE, np.ones(16, bool))
  np.testing.assert_allclose(float(big), want, rtol=1e-5)


@pytest.mark.parametrize("with_padding", [False, True])
def test_siglip_dense_matches_numpy(with_padding):
  a, t = _inputs()
  valid = np.ones(16, bool)
  if with_padding:
    valid[[0, 9, 15]] = False
  got = cl.siglip_loss(jnp.asarray(a), jnp.asarray(t),
                       jnp.asarray(cl.SIGLIP_INIT_LOG_SCALE),
                       jnp.asarray(cl.SIGLIP_INIT_BIAS), jnp.asarray(valid))
  want = _np_siglip(a, t, cl.SIGLIP_INIT_LOG_SCALE, cl.SIGLIP_INIT_BIAS, valid)
  np.testing.assert_allclose(float(got), want, rtol=1e-5)
  # Away from the init the positives matter too.
  got = cl.siglip_loss(jnp.asarray(a), jnp.asarray(t), jnp.asarray(2.5),
                       jnp.asarray(-1.0), jnp.asarray(valid))
  np.testing.assert_allclose(float(got), _np_siglip(a, t, 2.5, -1.0, valid),
                             rtol=1e-5)


@pytest.mark.parametrize("mesh_shape", [(8, 1), (2, 4), (4, 1)])
def test_siglip_chunked_equals_dense_on_8_devices(mesh_shape):
  data, fsdp = mesh_shape
  mesh = sharding.make_mesh({"data": data, "fsdp": fsdp, "tensor": -1})
  a, t = _inputs(b=32, d=8, seed=1)
  valid = np.ones(32, bool)
  valid[[2, 17, 30]] = False
  batch = sharding.batch_sharding(mesh)
  a_s, t_s, v_s = (jax.device_put(x, batch) for x in (a, t, valid))
  params = (jnp.asarray(1.7), jnp.asarray(-2.0))

  def dense(a, t, s, b):
    return cl.siglip_loss(a, t, s, b, v_s)

  def chunked(a, t, s, b):
    return cl.siglip_loss_chunked(a, t, s, b, v_s)

  def grad(f):
    return jax.jit(jax.value_and_grad(f, argnums=(0, 1, 2, 3)))
  with sharding.use_mesh(mesh):
    want, want_g = grad(dense)(a_s, t_s, *params)
    got, got_g = grad(chunked)(a_s, t_s, *params)
    dense_text = jax.jit(dense).lower(a_s, t_s, *params).as_text()
    text = jax.jit(grad(chunked)).lower(a_s, t_s, *params).as_text()
  # Only b x b blocks (b = 32 / devices) exist in the chunked program.
  assert "32x32xf32" in dense_text and "32x32xf32" not in text
  assert "collective_permute" in text
  np.testing.assert_allclose(float(got), float(want), rtol=1e-5)
  np.testing.assert_allclose(float(want), _np_siglip(a, t, 1.7, -2.0, valid),
                             rtol=1e-5)
  for g, w in zip(got_g, want_g):
    np.testing.assert_allclose(np.asarray(g), np.asarray(w), rtol=1e-4,
                               atol=1e-6)


def test_siglip_chunked_falls_back_without_a_mesh():
  a, t = _inputs(b=6)
  got = cl.siglip_loss_chunked(jnp.asarray(a), jnp.asarray(t),
                               jnp.asarray(1.0), jnp.asarray(-3.0))
  want = _np_siglip(a, t, 1.0, -3.0, np.ones(6, bool))
  np.testing.assert_allclose(float(got), want, rtol=1e-5)


def test_info_nce_gradient_matches_finite_difference():
  a, t = _inputs(b=6, d=4, seed=3)
  valid = np.ones(6, bool)
  g = jax.grad(cl.info_nce_loss, argnums=2)(
      jnp.asarray(a), jnp.asarray(t), jnp.asarray(1.5))
  eps = 1e-3
  fd = (_np_info_nce(a.astype(np.float64), t.astype(np.float64), 1.5 + eps,
                     valid) -
        _np_info_nce(a.astype(np.float64), t.astype(np.float64), 1.5 - eps,
                     valid)) / (2 * eps)
  np.testing.assert_allclose(float(g), fd, rtol=1e-3)
