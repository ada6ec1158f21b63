"""Shared layers: the 2-D convolution both encoders' front ends use."""

import flax.linen as nn
import jax
import numpy as np
import pytest

from audiopt.models import layers


def _reference(params, x, strides, padding):
  return jax.lax.conv_general_dilated(
      x, params["kernel"], strides, padding,
      dimension_numbers=("NHWC", "HWIO", "NHWC"),
      precision=jax.lax.Precision.HIGHEST) + params["bias"]


# The Zipformer front end's three convolutions, the transformer's two, and a
# non-square kernel.
@pytest.mark.parametrize("kernel,strides,padding,cin", [
    ((3, 3), (1, 1), ((0, 0), (1, 1)), 1),
    ((3, 3), (2, 2), ((0, 0), (0, 0)), 3),
    ((3, 3), (1, 2), ((0, 0), (0, 0)), 3),
    ((2, 4), (2, 1), ((1, 0), (2, 1)), 4)])
def test_conv2d_matches_xla_convolution(kernel, strides, padding, cin):
  # Values and gradients (input and parameters) of the CPU lowering, the
  # matrix product of stacked strided views.
  x = jax.random.normal(jax.random.key(0), (2, 13, 12, cin))
  conv = layers.Conv2D(5, kernel, strides=strides, padding=padding,
                       bias_init=nn.initializers.normal(1.0))
  params = nn.meta.unbox(conv.init(jax.random.key(1), x)["params"])
  assert params["kernel"].shape == kernel + (cin, 5)

  mine = lambda p, x: conv.apply({"params": p}, x)  # noqa: E731
  ref = lambda p, x: _reference(p, x, strides, padding)  # noqa: E731
  want = ref(params, x)
  np.testing.assert_allclose(mine(params, x), want, atol=1e-5)
  weights = jax.random.normal(jax.random.key(2), want.shape)
  grads = [jax.grad(lambda p, x, f=f: (f(p, x) * weights).sum(),
                    argnums=(0, 1))(params, x) for f in (mine, ref)]
  for got, want in zip(jax.tree.leaves(grads[0]), jax.tree.leaves(grads[1])):
    np.testing.assert_allclose(got, want, atol=1e-4)


def test_conv2d_is_a_convolution_on_accelerators_a_product_on_cpu():
  x = jax.ShapeDtypeStruct((2, 9, 8, 3), np.float32)
  k = jax.ShapeDtypeStruct((3, 3, 3, 4), np.float32)
  f = jax.jit(lambda x, k: layers.conv2d(x, k, (2, 2)))
  for platform, convolutions in (("cpu", 0), ("cuda", 1), ("tpu", 1)):
    text = jax.export.export(f, platforms=[platform])(x, k).mlir_module()
    assert text.count("stablehlo.convolution") == convolutions, platform
