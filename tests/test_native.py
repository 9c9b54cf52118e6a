"""The C++ narrow-channel kernels (climjax/ops/native.py) against XLA's operations."""

from __future__ import annotations

import subprocess
import sys

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

from climjax import ops
from climjax.models import layers
from climjax.ops import native, pool

DN = ("NHWC", "HWIO", "NHWC")

# A machine with a C++ compiler must build the kernels: a silent fallback to
# XLA would hide a broken build behind slower training.
pytestmark = pytest.mark.skipif(native._compiler() is None, reason="no C++ compiler")


def _normal(seed, shape):
  return jnp.asarray(np.random.default_rng(seed).standard_normal(shape), jnp.float32)


def _close(actual, expected, tol=2e-5):
  actual, expected = np.asarray(actual), np.asarray(expected)
  assert actual.shape == expected.shape
  scale = max(float(np.max(np.abs(expected))), 1e-6)
  np.testing.assert_allclose(actual / scale, expected / scale, atol=tol, rtol=0)


def test_kernels_build_and_load():
  assert native.available(), native._load()
  assert native.library_path().exists()


@pytest.mark.parametrize(
  "shape,kernel,channels,padding",
  [
    ((3, 32, 32), 5, (8, 8), "SAME"),  # TC conv1: two vectors per row
    ((3, 16, 16), 5, (8, 16), "SAME"),  # TC conv2: rows in pairs, two channel blocks
    ((2, 13, 30), 5, (3, 16), "SAME"),  # WF-like: odd channels (padded), a partial vector
    ((2, 9, 37), 3, (16, 12), "SAME"),  # three vectors per row, one of them a tail
    ((2, 11, 20), 12, (2, 8), "SAME"),  # AR's even 12x12 kernel: uneven padding
    ((2, 10, 23), 5, (8, 8), "VALID"),
    ((1, 5, 7), 3, (32, 32), "SAME"),  # the widest channels sent to the kernels
  ],
)
def test_conv2d_values_and_gradients_match_xla(shape, kernel, channels, padding):
  c, o = channels
  x = _normal(0, (*shape, c))
  w = _normal(1, (kernel, kernel, c, o)) / kernel
  assert native.applies(x.shape, w.shape, (1, 1), padding, x.dtype)

  def ref(x, w):
    return lax.conv_general_dilated(x, w, (1, 1), padding, dimension_numbers=DN)

  y_ref, vjp_ref = jax.vjp(ref, x, w)
  dy = _normal(2, y_ref.shape)
  y, vjp = jax.jit(lambda x, w: jax.vjp(lambda x, w: ops.conv2d(x, w, (1, 1), padding), x, w))(x, w)
  _close(y, y_ref)
  for got, want in zip(vjp(dy), vjp_ref(dy), strict=True):
    _close(got, want)


@pytest.mark.parametrize(
  "shape,kernel,channels,window",
  [
    ((3, 32, 32), 5, (8, 8), (2, 2)),  # TC conv1 + pool1
    ((2, 9, 11), 3, (16, 16), (2, 2)),  # odd sizes: the last row and column get no gradient
    ((2, 13, 17), 5, (3, 12), (3, 3)),  # odd channels (padded) and AR's 3x3 pool
  ],
)
def test_conv2d_max_pool_matches_xla(shape, kernel, channels, window):
  # The fused backward pass unpools the gradient inside the kernels.
  c, o = channels
  x = jnp.round(_normal(7, (*shape, c)) * 4) / 4  # coarse values: ties in the pool
  w = jnp.round(_normal(8, (kernel, kernel, c, o)) * 4) / 4

  def ref(x, w):
    y = lax.conv_general_dilated(x, w, (1, 1), "SAME", dimension_numbers=DN)
    return nn.max_pool(y, window, strides=window, padding="VALID")

  y_ref, vjp_ref = jax.vjp(ref, x, w)
  dy = _normal(9, y_ref.shape)
  y, vjp = jax.jit(
    lambda x, w: jax.vjp(lambda x, w: ops.conv2d_max_pool(x, w, (1, 1), "SAME", window), x, w)
  )(x, w)
  hlo = jax.jit(jax.grad(lambda x, w: ops.conv2d_max_pool(x, w, (1, 1), "SAME", window).sum(), (0, 1)))
  text = hlo.lower(x, w).as_text()
  assert "climjax_narrow_conv_weight_grad_unpool" in text and "climjax_narrow_conv_forward_unpool" in text
  _close(y, y_ref)
  for got, want in zip(vjp(dy), vjp_ref(dy), strict=True):
    _close(got, want)


def test_conv2d_dispatches_narrow_stride1_only():
  hlo = jax.jit(lambda x, w: ops.conv2d(x, w, (1, 1), "SAME")).lower(
    jnp.zeros((2, 8, 8, 8)), jnp.zeros((5, 5, 8, 8))
  )
  assert "climjax_narrow_conv_forward" in hlo.as_text()
  assert not native.applies((2, 8, 8, 8), (5, 5, 8, 8), (2, 2), "SAME", jnp.float32)
  assert not native.applies((2, 8, 8, 64), (5, 5, 64, 64), (1, 1), "SAME", jnp.float32)
  assert not native.applies((2, 8, 8, 8), (5, 5, 8, 8), (1, 1), "SAME", jnp.bfloat16)


def test_weight_gradient_is_deterministic():
  # Partial sums are per chunk of images and added in a fixed order.
  x, dy = _normal(3, (37, 12, 12, 8)), _normal(4, (37, 12, 12, 8))
  grad = jax.jit(lambda x, dy: native._weight_grad(x, dy, (5, 5, 8, 8), (2, 2, 2, 2)))
  first = np.asarray(grad(x, dy))
  for _ in range(3):
    np.testing.assert_array_equal(np.asarray(grad(x, dy)), first)


@pytest.mark.parametrize("window,shape", [((2, 2), (3, 9, 8, 16)), ((3, 3), (2, 10, 11, 5))])
def test_max_pool_index_matches_xla_formulation(window, shape):
  # Rounded values after a ReLU: many ties, which must go to the first position.
  x = jnp.maximum(jnp.round(_normal(5, shape) * 2) / 2, 0.0)
  y, index = jax.jit(lambda x: native.max_pool_with_index(x, window))(x)
  y_want = nn.max_pool(x, window, strides=window, padding="VALID")
  np.testing.assert_array_equal(np.asarray(y), np.asarray(y_want))
  # The XLA fallback's index (the custom call switched off).
  original = pool.native.available
  try:
    pool.native.available = lambda: False
    _, index_xla = jax.jit(lambda x: pool._max_and_index(x, window))(x)
  finally:
    pool.native.available = original
  np.testing.assert_array_equal(np.asarray(index), np.asarray(index_xla))


def test_analytic_flops_count_the_fused_pool_kernels():
  # The TC network's convolutions are all native custom calls (with the fused
  # pool's unpool variants in the backward pass); their count must equal the
  # XLA twin's, which XLA's cost analysis checks in tests/test_ops.py.
  from climjax.models import cnn

  x = _normal(10, (4, 32, 32, 8))

  def grad_flops(impl):
    model = cnn.TCNet(conv_impl=impl)
    params = model.init(jax.random.key(0), x)
    loss = lambda p: jnp.sum(model.apply(p, x) ** 2)  # noqa: E731
    text = jax.jit(jax.grad(loss)).lower(params).as_text()
    return ops.analytic_flops(jax.grad(loss), params), text

  fast, text = grad_flops("fast")
  assert "climjax_narrow_conv_weight_grad_unpool" in text
  assert fast == grad_flops("xla")[0]


def test_max_pool_window_limit_is_a_clear_error():
  with pytest.raises(ValueError, match="at most 127 elements"):
    ops.max_pool2d(jnp.zeros((1, 24, 24, 1)), (12, 12))


def test_conv_with_pool_equals_pool_of_conv_plus_bias():
  # layers.Conv(pool=...) adds the bias after pooling: the same values.
  x = _normal(6, (2, 12, 12, 8))
  module = layers.Conv(16, (5, 5), impl="fast", pool=(2, 2))
  params = module.init(jax.random.key(0), x)
  params = jax.tree.map(lambda p: p + 0.1, params)  # a non-zero bias
  k, b = params["params"]["kernel"], params["params"]["bias"]
  want = nn.max_pool(
    lax.conv_general_dilated(x, k, (1, 1), "SAME", dimension_numbers=DN) + b, (2, 2), (2, 2)
  )
  _close(module.apply(params, x), want)


def test_disabled_by_environment():
  code = "from climjax.ops import native; print(native.available())"
  out = subprocess.run(
    [sys.executable, "-W", "ignore", "-c", code],
    env={"CLIMJAX_NATIVE": "0", "PATH": "/usr/bin:/bin", "JAX_PLATFORMS": "cpu"},
    capture_output=True,
    text=True,
    check=True,
  )
  assert out.stdout.strip() == "False"


def test_build_error_names_the_command(tmp_path, monkeypatch):
  monkeypatch.setenv("CXX", "g++")
  monkeypatch.setattr(native, "FLAGS", (*native.FLAGS, "-DCLIMJAX_BROKEN", "-include", "/nonexistent.h"))
  with pytest.raises(native.NativeBuildError, match="nonexistent"):
    native.build(tmp_path / "broken.so")
  assert not list(tmp_path.glob("*.so"))  # no half-written library left behind
