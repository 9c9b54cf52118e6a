"""The detector module (shapes, variants, sizes) and its semi-supervised loss."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from climjax import losses
from climjax.models import detector


def _shapes(model, x):
  """Parameter and output shapes, traced only (no compilation: keeps the tests fast)."""
  params = jax.eval_shape(model.init, jax.random.key(0), x)
  return params, jax.eval_shape(model.apply, params, x)


def _random_params(model, x, seed=0):
  # numpy draws instead of model.init: flax's initialisers compile for seconds per
  # model on this CPU, and these tests need parameters, not their initialiser.
  rng = np.random.default_rng(seed)
  shapes = jax.eval_shape(model.init, jax.random.key(0), x)
  return jax.tree.map(lambda s: jnp.asarray(rng.normal(0, 0.3, s.shape), jnp.float32), shapes)


def test_2d_output_shapes_and_cell_size():
  model = detector._DetectorTiny()
  x = jnp.zeros((2, 64, 96, 3))
  _, out = _shapes(model, x)
  assert model.cell_size == 8
  assert out["objectness"].shape == (2, 8, 12, 2)
  assert out["classes"].shape == (2, 8, 12, 4)
  assert out["boxes"].shape == (2, 8, 12, 4)
  assert out["reconstruction"].shape == x.shape


@pytest.mark.parametrize("temporal, grid_lead", [("pool", (2,)), ("keep", (2, 3))])
def test_3d_variants(temporal, grid_lead):
  model = detector.Detector(features=(4, 6), time_steps=3, temporal=temporal)
  x = jnp.zeros((2, 3, 32, 32, 2))
  params, out = _shapes(model, x)
  assert out["objectness"].shape == (*grid_lead, 8, 8, 2)
  assert out["boxes"].shape == (*grid_lead, 8, 8, 4)
  assert out["reconstruction"].shape == x.shape
  assert params["params"]["encoder_0"]["kernel"].shape == (3, 5, 5, 2, 4)


@pytest.mark.parametrize("transpose", [False, True])
def test_time_conv_is_flax_3d_conv(transpose):
  # The time-offset decomposition computes what flax's 3-D (transposed) conv does,
  # with the same parameters.
  x = jnp.asarray(np.random.default_rng(0).normal(size=(2, 3, 8, 12, 2)), jnp.float32)
  ours = detector.TimeConv(5, transpose=transpose)
  flax_cls = nn.ConvTranspose if transpose else nn.Conv
  ref = flax_cls(5, (3, 5, 5), strides=(1, 2, 2), padding="SAME")
  params = _random_params(ours, x)
  assert jax.tree.map(jnp.shape, params) == jax.tree.map(
    lambda s: s.shape, jax.eval_shape(ref.init, jax.random.key(0), x)
  )
  got, want = jax.jit(ours.apply)(params, x), jax.jit(ref.apply)(params, x)
  np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


def test_rejects_bad_inputs():
  model = detector._DetectorTiny()
  with pytest.raises(ValueError, match="divisible by 8"):
    _shapes(model, jnp.zeros((1, 60, 64, 3)))
  with pytest.raises(ValueError, match="expects"):
    _shapes(model, jnp.zeros((1, 2, 64, 64, 3)))


def test_make_detector_from_config_and_counts():
  config = ml_collections.ConfigDict(
    {"width": 1 / 32, "num_layers": 4, "time_steps": 1, "conv_impl": "xla"}
  )
  model = detector.make_detector(config)
  assert tuple(model.features) == (4, 8, 16, 24)
  shape = detector.input_shape(config, 64, 64, 3)
  assert shape == (64, 64, 3)
  params, _ = _shapes(model, jnp.zeros((1, *shape)))
  n = sum(p.size for p in jax.tree.leaves(params))
  # Encoder and decoder 5x5 kernels + biases, and three 3x3 heads on 24 channels.
  chans = [3, 4, 8, 16, 24]
  enc = sum(25 * a * b + b for a, b in zip(chans[:-1], chans[1:], strict=True))
  dec = sum(25 * b * a + a for a, b in zip(chans[:-1], chans[1:], strict=True))
  heads = sum(9 * 24 * k + k for k in (2, 4, 4))
  assert n == enc + dec + heads == detector.count_parameters(model, shape)


def test_paper_network_size():
  # Counted from shapes only: the paper-width 2-D network at 768x1152x16.
  n = detector.count_parameters(detector.Detector2D(), (768, 1152, 16))
  assert n == 132_934_682


def test_forward_flops_matches_xla_cost_analysis():
  model = detector.Detector(features=(8, 16, 24))
  x = jnp.zeros((1, 64, 96, 5))
  params, _ = _shapes(model, x)
  cost = jax.jit(model.apply).lower(params, x).compile().cost_analysis()
  cost = cost[0] if isinstance(cost, list) else cost
  analytic = detector.forward_flops(model, (64, 96, 5))
  # XLA skips the padding's zeros at the borders and adds bias and activation
  # FLOPs; on this small image the two differ by a few percent.
  assert 0.9 * analytic <= cost["flops"] <= 1.1 * analytic


# ---------------------------------------------------------------------------
# Loss


def test_assign_boxes_first_box_wins_and_targets():
  boxes = jnp.array([[[2.0, 4.0, 10.0, 8.0], [3.0, 5.0, 5.0, 7.0], [-1, -1, -1, -1]]])
  targets = jax.jit(losses.assign_boxes_to_cells, static_argnames=("grid_shape",))(
    boxes=boxes,
    box_classes=jnp.array([[1, 3, 0]]),
    box_mask=jnp.array([[1.0, 1.0, 0.0]]),
    grid_shape=(2, 2),
    cell_size=8.0,
    anchor_size=4.0,
  )
  # Both boxes' centres are in cell (0, 0); the first one (TC) keeps it.
  np.testing.assert_array_equal(targets["object"][0], [[1, 0], [0, 0]])
  assert int(targets["classes"][0, 0, 0]) == 1
  np.testing.assert_allclose(
    targets["boxes"][0, 0, 0], [6 / 8, 6 / 8, np.log(8 / 4), np.log(4 / 4)], rtol=1e-6
  )


def _loss_inputs(seed):
  model = detector._DetectorTiny()
  x = jnp.asarray(np.random.default_rng(seed).normal(size=(2, 32, 32, 3)), jnp.float32)
  params = _random_params(model, x)
  batch = {
    "boxes": jnp.array([[[4.0, 4.0, 12.0, 20.0]], [[16.0, 0.0, 30.0, 8.0]]]),
    "box_classes": jnp.array([[2], [0]]),
    "box_mask": jnp.ones((2, 1)),
  }
  return model, params, x, batch


def test_unlabelled_examples_train_only_the_decoder_path():
  model, params, x, batch = _loss_inputs(0)

  @jax.jit
  def loss(p, labelled):
    out = model.apply(p, x)
    return losses.detection_loss(
      outputs=out, inputs=x, labelled=labelled, cell_size=8, anchor_size=8, **batch
    )

  total, parts = loss(params, jnp.zeros(2))
  assert float(parts["detection"]) == 0.0
  np.testing.assert_allclose(total, 10.0 * parts["reconstruction_mse"], rtol=1e-6)
  grads = jax.jit(jax.grad(lambda p: loss(p, jnp.zeros(2))[0]))(params)["params"]
  for head in ("objectness", "classes", "boxes"):
    assert float(jnp.abs(grads[head]["kernel"]).max()) == 0.0
  assert float(jnp.abs(grads["encoder_0"]["kernel"]).max()) > 0.0

  total, parts = loss(params, jnp.ones(2))
  summed = sum(parts[k] for k in ("offset", "size", "objectness", "class", "reconstruction"))
  np.testing.assert_allclose(total, summed, rtol=1e-6)
  assert float(parts["detection"]) > 0.0


def test_detection_loss_is_small_for_a_perfect_prediction():
  boxes = jnp.array([[[4.0, 4.0, 12.0, 20.0]]])
  kwargs = dict(box_classes=jnp.array([[3]]), box_mask=jnp.ones((1, 1)))
  targets = jax.jit(
    lambda b: losses.assign_boxes_to_cells(
      boxes=b, grid_shape=(4, 4), cell_size=8, anchor_size=8, **kwargs
    )
  )(boxes)
  obj = targets["object"]
  x = jnp.ones((1, 32, 32, 2))
  outputs = {
    "objectness": 40.0 * jnp.stack([1 - obj, obj], -1) - 20.0,
    "classes": 40.0 * jax.nn.one_hot(targets["classes"], 4),
    "boxes": targets["boxes"],
    "reconstruction": x,
  }
  loss = jax.jit(
    lambda out: losses.detection_loss(
      outputs=out,
      inputs=x,
      boxes=boxes,
      labelled=jnp.ones(1),
      cell_size=8,
      anchor_size=8,
      **kwargs,
    )
  )
  total, parts = loss(outputs)
  assert float(total) < 1e-6
  # Moving the predicted centre by a quarter cell costs 5 x smooth-L1(0.25).
  shifted = dict(outputs, boxes=outputs["boxes"].at[..., 0].add(0.25))
  _, parts = loss(shifted)
  np.testing.assert_allclose(parts["offset"], 5 * 0.5 * 0.25**2, rtol=1e-5)


@pytest.mark.parametrize("time_steps", [1, 2])
def test_fast_kernels_match_xla(time_steps):
  # model.conv_impl must change the speed, never the numbers (outputs and gradients).
  shape = (2, 32, 32, 3) if time_steps == 1 else (1, 2, 32, 32, 3)
  x = jnp.asarray(np.random.default_rng(1).normal(size=shape), jnp.float32)
  models = {
    impl: detector.Detector(features=(4, 6), time_steps=time_steps, conv_impl=impl)
    for impl in ("xla", "fast")
  }
  params = _random_params(models["xla"], x)

  def run(model):
    def loss(p):
      out = model.apply(p, x)
      return sum(jnp.sum(jnp.sin(v)) for v in out.values()), out

    return jax.jit(jax.grad(loss, has_aux=True))(params)

  (g_xla, out_xla), (g_fast, out_fast) = run(models["xla"]), run(models["fast"])
  for key in out_xla:
    np.testing.assert_allclose(out_fast[key], out_xla[key], rtol=1e-4, atol=1e-4)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-3), g_fast, g_xla)
