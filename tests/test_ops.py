"""climjax.ops against XLA's own operations: values and gradients, FLOP counts."""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

from climjax import ops
from climjax.models import layers
from climjax.ops import conv as conv_ops
from climjax.ops import s2d

DN = ("NHWC", "HWIO", "NHWC")

# "auto" lets the heuristics choose (XLA's kernels on the narrow channels used
# here); "matmul" forces the matrix-product kernels, so the custom_vjp wiring
# is checked with both on every geometry.
MATMUL = (conv_ops.forward_im2col, conv_ops.input_grad_col2im, conv_ops.weight_grad_im2col)
# "phases": the gradients split by stride phase into stride-1 XLA convolutions.
PHASES = (conv_ops.forward_xla, conv_ops.input_grad_phases, conv_ops.weight_grad_phases)


def _use(formulation, monkeypatch):
  if formulation == "batched":
    # Transposed convolutions: the products over offsets on the unflipped
    # kernel, which the heuristics keep for kernels over 64 MB.
    monkeypatch.setattr(conv_ops, "_FLIP_BYTES", 0)
  if formulation in ("matmul", "phases"):
    fwd, dx, dw = MATMUL if formulation == "matmul" else PHASES
    monkeypatch.setattr(conv_ops, "_choose_forward", lambda *a: fwd)
    monkeypatch.setattr(conv_ops, "_choose_input_grad", lambda *a: dx)
    monkeypatch.setattr(conv_ops, "_choose_weight_grad", lambda *a: dw)


def _normal(seed, shape, scale=1.0):
  # numpy, not jax.random: every new shape would compile a random-number kernel.
  return jnp.asarray(scale * np.random.default_rng(seed).standard_normal(shape), jnp.float32)


def _assert_close(actual, expected, rtol=2e-5):
  actual, expected = np.asarray(actual), np.asarray(expected)
  assert actual.shape == expected.shape
  scale = max(float(np.max(np.abs(expected))), 1e-6)
  np.testing.assert_allclose(actual / scale, expected / scale, atol=rtol, rtol=0)


def _check_values_and_grads(fast, reference, x, w):
  """Same outputs and same vector-Jacobian products for a random cotangent."""

  def outputs_and_vjp(fn, dy):
    y, vjp = jax.vjp(fn, x, w)
    return y, vjp(dy)

  y_ref = jax.eval_shape(reference, x, w)
  dy = _normal(99, y_ref.shape)
  # One compiled program per side: op-by-op dispatch would compile every
  # primitive separately and make these tests several times slower.
  got = jax.jit(lambda dy: outputs_and_vjp(fast, dy))(dy)
  want = jax.jit(lambda dy: outputs_and_vjp(reference, dy))(dy)
  for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(want), strict=True):
    _assert_close(a, b)


# Every kernel/stride/padding the models use (TC/WF 5x5, AR 12x12, detector
# 5x5 stride 2 and 3x3 heads), on odd sizes so "SAME" pads unevenly.
# Compilation dominates these tests' time, so each formulation runs on the
# geometries that differ in kind: "auto" (XLA's kernels on these narrow
# channels) on one case per kernel size, the matrix products on the rest.
CONV_CASES = [
  ("matmul", 5, 1, "SAME", (11, 9)),
  ("matmul", 5, 1, "VALID", (11, 9)),
  ("matmul", 5, 2, "SAME", (12, 9)),
  ("matmul", 5, 2, "VALID", (13, 12)),
  ("matmul", 3, 1, "SAME", (7, 8)),
  ("matmul", 3, 2, "SAME", (9, 7)),
  ("matmul", 12, 1, "SAME", (16, 13)),
  ("phases", 5, 2, "SAME", (12, 9)),
  ("phases", 5, 2, "VALID", (13, 12)),
  ("phases", 3, 2, "SAME", (9, 7)),
  ("phases", 5, 3, "SAME", (11, 10)),
  ("auto", 5, 2, "SAME", (12, 9)),
  ("auto", 12, 1, "VALID", (15, 14)),
]


@pytest.mark.parametrize("formulation,kernel,stride,padding,hw", CONV_CASES)
def test_conv2d_matches_xla(monkeypatch, formulation, kernel, stride, padding, hw):
  _use(formulation, monkeypatch)
  x = _normal(0, (2, *hw, 3))
  w = _normal(1, (kernel, kernel, 3, 4), 0.2)
  _check_values_and_grads(
    lambda x, w: ops.conv2d(x, w, (stride, stride), padding),
    lambda x, w: lax.conv_general_dilated(x, w, (stride, stride), padding, dimension_numbers=DN),
    x,
    w,
  )


@pytest.mark.parametrize(
  "kernel,hw,channels",
  [(5, (12, 10), (3, 4)), (5, (11, 9), (8, 16)), (3, (7, 8), (2, 3)), (7, (9, 12), (4, 4))],
)
def test_space_to_depth_conv_matches_xla(monkeypatch, kernel, hw, channels):
  # With XLA's own convolutions (the platform default), narrow stride-1 "SAME"
  # convolutions run folded 2x2 pixels into channels (climjax.ops.s2d).
  monkeypatch.setattr(conv_ops.platform, "ynn_convolutions", lambda: False)
  c, o = channels
  x = _normal(0, (2, *hw, c))
  w = _normal(1, (kernel, kernel, c, o), 0.2)
  assert s2d.s2d_applies(x.shape, w.shape, (1, 1), "SAME")
  _check_values_and_grads(
    lambda x, w: ops.conv2d(x, w, (1, 1), "SAME"),
    lambda x, w: lax.conv_general_dilated(x, w, (1, 1), "SAME", dimension_numbers=DN),
    x,
    w,
  )


def test_space_to_depth_only_where_it_was_measured():
  assert s2d.s2d_applies((256, 32, 32, 8), (5, 5, 8, 8), (1, 1), "SAME")
  assert not s2d.s2d_applies((256, 32, 32, 8), (5, 5, 8, 8), (2, 2), "SAME")  # strided
  assert not s2d.s2d_applies((256, 32, 32, 8), (5, 5, 8, 8), (1, 1), "VALID")
  assert not s2d.s2d_applies((256, 32, 32, 8), (4, 4, 8, 8), (1, 1), "SAME")  # even kernel
  assert not s2d.s2d_applies((256, 32, 32, 64), (5, 5, 64, 64), (1, 1), "SAME")  # wide


@pytest.mark.parametrize(
  "kernel,stride,padding,hw", [(5, 2, "SAME", (12, 9)), (3, 1, "VALID", (7, 8))]
)
def test_weight_grad_formulations_match_im2col(kernel, stride, padding, hw):
  # The per-offset formulation of the weight gradient and the stride phases
  # with matrix-product pieces (alternatives kept for launch/bench_ops.py),
  # against the im2col one checked above.
  x = _normal(0, (2, *hw, 3))
  geo = conv_ops.conv_geometry(hw, (kernel, kernel), (stride, stride), padding)
  dy = _normal(1, (2, *geo.out_hw, 4))
  shape = (kernel, kernel, 3, 4)
  every = jax.jit(
    lambda x, dy: (
      conv_ops.weight_grad_im2col(x, dy, geo, shape),
      conv_ops.weight_grad_offsets(x, dy, geo, shape),
      conv_ops.weight_grad_phases(x, dy, geo, shape, conv_ops.weight_grad_offsets),
    )
  )
  want, *others = every(x, dy)
  for got in others:
    _assert_close(got, want)


def test_conv2d_wide_channels_choice_follows_ynnpack(monkeypatch):
  # Channel counts at which the heuristics leave XLA's convolutions: matrix
  # products when YNNPACK runs convolutions, stride phases when XLA does.
  x = _normal(0, (1, 10, 10, 128))
  w = _normal(1, (5, 5, 128, 128), 0.02)
  geo = conv_ops.conv_geometry((10, 10), (5, 5), (2, 2), "SAME")
  assert conv_ops._choose_forward(geo, 1, 128, 128) is conv_ops.forward_im2col
  monkeypatch.setattr(conv_ops.platform, "ynn_convolutions", lambda: True)
  assert conv_ops._choose_weight_grad(geo, 1, 128, 128) is conv_ops.weight_grad_im2col
  assert conv_ops._choose_input_grad(geo, 1, 128, 128) is conv_ops.input_grad_col2im
  monkeypatch.setattr(conv_ops.platform, "ynn_convolutions", lambda: False)
  assert conv_ops._choose_weight_grad(geo, 1, 128, 128) is conv_ops.weight_grad_im2col  # small
  large = geo.with_in_hw((96, 96))
  assert conv_ops._choose_weight_grad(large, 1, 128, 128) is conv_ops.weight_grad_phases
  assert conv_ops._choose_input_grad(large, 1, 128, 128) is conv_ops.input_grad_phases
  assert conv_ops._choose_weight_grad(large, 1, 8, 8) is conv_ops.weight_grad_xla
  _check_values_and_grads(
    lambda x, w: ops.conv2d(x, w, (2, 2), "SAME"),
    lambda x, w: lax.conv_general_dilated(x, w, (2, 2), "SAME", dimension_numbers=DN),
    x,
    w,
  )


CONV_TRANSPOSE_CASES = [
  ("matmul", 5, 2, "SAME", (6, 5)),
  ("matmul", 5, 2, "VALID", (5, 6)),
  ("matmul", 3, 2, "SAME", (4, 7)),
  ("phases", 5, 2, "SAME", (6, 5)),
  ("phases", 5, 2, "VALID", (5, 6)),
  ("phases", 3, 2, "SAME", (4, 7)),
  ("auto", 5, 2, "SAME", (6, 5)),
  ("batched", 5, 2, "SAME", (6, 5)),
  ("batched", 5, 2, "VALID", (5, 6)),
  ("batched", 3, 2, "SAME", (4, 7)),
]


@pytest.mark.parametrize("formulation,kernel,stride,padding,hw", CONV_TRANSPOSE_CASES)
def test_conv_transpose2d_matches_xla(monkeypatch, formulation, kernel, stride, padding, hw):
  _use(formulation, monkeypatch)
  x = _normal(2, (2, *hw, 3))
  w = _normal(3, (kernel, kernel, 3, 5), 0.2)
  _check_values_and_grads(
    lambda x, w: ops.conv_transpose2d(x, w, (stride, stride), padding),
    lambda x, w: lax.conv_transpose(x, w, (stride, stride), padding, dimension_numbers=DN),
    x,
    w,
  )


@pytest.mark.parametrize("window,hw", [(2, (8, 6)), (2, (9, 7)), (3, (9, 12)), (3, (10, 11))])
def test_max_pool2d_matches_flax(window, hw):
  x = _normal(4, (2, *hw, 3))
  _check_values_and_grads(
    lambda x, _: ops.max_pool2d(x, (window, window)),
    lambda x, _: nn.max_pool(x, (window, window), strides=(window, window), padding="VALID"),
    x,
    jnp.zeros(()),
  )


def test_max_pool2d_ties_match_select_and_scatter():
  # A ReLU leaves whole windows of zeros, and rounding makes equal maxima:
  # the gradient must still go to one element per window, the one XLA picks.
  x = jnp.round(_normal(5, (2, 12, 12, 4)) * 2) / 2
  x = jnp.maximum(x, 0.0)
  dy = _normal(6, (2, 4, 4, 4))
  got = jax.jit(jax.vjp(lambda x: ops.max_pool2d(x, (3, 3)), x)[1])(dy)[0]

  def ref(x):
    return nn.max_pool(x, (3, 3), strides=(3, 3), padding="VALID")

  want = jax.jit(jax.vjp(ref, x)[1])(dy)[0]
  np.testing.assert_array_equal(np.asarray(got), np.asarray(want))


# --------------------------------------------------------------------------
# Layers: same parameters for both implementations, and as flax's own layers.


def _tree_shapes(tree):
  return jax.tree.map(lambda a: a.shape, tree)


@pytest.mark.parametrize(
  "ours,theirs,strides",
  [(layers.Conv, nn.Conv, (2, 2)), (layers.ConvTranspose, nn.ConvTranspose, (2, 2))],
)
def test_layers_share_flax_parameters(ours, theirs, strides):
  x = _normal(7, (2, 8, 8, 3))
  key = jax.random.key(0, impl="rbg")  # cheaper to compile than threefry
  ref = theirs(6, (5, 5), strides=strides, padding="SAME")
  ref_params = ref.init(key, x)
  y_ref = jax.jit(ref.apply)(ref_params, x)
  for impl in layers.IMPLS:
    layer = ours(6, (5, 5), strides=strides, padding="SAME", impl=impl)
    params = layer.init(key, x)
    assert _tree_shapes(params) == _tree_shapes(ref_params)
    for a, b in zip(jax.tree.leaves(params), jax.tree.leaves(ref_params), strict=True):
      np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    _assert_close(jax.jit(layer.apply)(params, x), y_ref)


def test_layers_max_pool_impls_agree():
  x = _normal(8, (2, 9, 9, 3))
  for window in [(2, 2), (3, 3)]:
    _assert_close(layers.max_pool(x, window, "fast"), layers.max_pool(x, window, "xla"))
  with pytest.raises(ValueError, match="conv_impl"):
    layers.max_pool(x, (2, 2), "torch")


# --------------------------------------------------------------------------
# FLOP accounting.


class _SmallNet(nn.Module):
  impl: str

  @nn.compact
  def __call__(self, x):
    x = nn.relu(layers.Conv(8, (5, 5), impl=self.impl)(x))
    x = layers.max_pool(x, (2, 2), self.impl)
    x = nn.relu(layers.Conv(16, (3, 3), strides=(2, 2), impl=self.impl)(x))
    x = layers.ConvTranspose(4, (5, 5), strides=(2, 2), impl=self.impl)(x)
    return nn.Dense(2)(x.reshape(x.shape[0], -1))


def test_analytic_flops_of_a_dense_layer_and_padding():
  x = jnp.ones((4, 10))
  w = jnp.ones((10, 7))
  assert ops.analytic_flops(lambda x, w: x @ w, x, w) == 2 * 4 * 10 * 7
  # A 3x3 "SAME" conv on a 4x4 image: taps on the border read padding. Along one
  # axis the 4 outputs see 2, 3, 3, 2 real pixels -> 10 taps, so 10 * 10 = 100.
  img, k = jnp.ones((1, 4, 4, 1)), jnp.ones((3, 3, 1, 1))

  def conv(a, b):
    return lax.conv_general_dilated(a, b, (1, 1), "SAME", dimension_numbers=DN)

  assert ops.analytic_flops(conv, img, k) == 2 * 100


@pytest.mark.parametrize("impl", layers.IMPLS)
def test_analytic_and_xla_flops_agree(impl):
  model = _SmallNet(impl)
  x = _normal(9, (2, 16, 16, 3))
  params = model.init(jax.random.key(0, impl="rbg"), x)

  def loss(params, x):
    return jnp.sum(model.apply(params, x) ** 2)

  forward = jax.jit(model.apply)
  grad = jax.jit(jax.grad(loss))
  reference = _SmallNet("xla")

  def reference_loss(params, x):
    return jnp.sum(reference.apply(params, x) ** 2)

  for fn, twin in ((forward, reference.apply), (grad, jax.grad(reference_loss))):
    analytic = ops.analytic_flops(fn, params, x)
    # The native kernels (custom calls, which XLA's cost analysis cannot see)
    # are counted as the convolutions they compute.
    assert analytic == ops.analytic_flops(twin, params, x)
    xla = ops.xla_flops(jax.jit(twin), params, x)
    assert xla is not None
    # XLA also counts elementwise work (bias, ReLU, pool, loss): a few percent.
    assert analytic <= xla <= 1.06 * analytic, (fn, analytic, xla)
  # The backward pass does the forward's work twice more (input and weight
  # gradients), less the input gradient of the first layer, which nobody uses
  # (XLA removes it; the analytic count skips it as dead code).
  first = params["params"]["Conv_0"]["kernel"]
  first_conv = ops.analytic_flops(
    lambda x, w: lax.conv_general_dilated(x, w, (1, 1), "SAME", dimension_numbers=DN), x, first
  )
  fwd = ops.analytic_flops(forward, params, x)
  assert ops.analytic_flops(grad, params, x) == 3 * fwd - first_conv
