"""The patch CNNs match the paper's table: output shapes and parameter counts."""

import jax
import jax.numpy as jnp
import ml_collections
import pytest

from climjax.models import cnn


def _count(conv, fc_in, hidden):
  """Parameters of conv(k,k,cin,cout) x2 + dense(fc_in, hidden) + dense(hidden, 2)."""
  (k1, c0, c1), (k2, c2) = conv
  return (
    (k1 * k1 * c0 * c1 + c1)
    + (k2 * k2 * c1 * c2 + c2)
    + (fc_in * hidden + hidden)
    + (hidden * 2 + 2)
  )


@pytest.mark.parametrize(
  "name, shape, expected",
  [
    # TC: 32 -> pool 2 -> 16 -> pool 2 -> 8; 8*8*16 = 1024 into fc 50.
    ("tc_cnn", (32, 32, 8), _count(((5, 8, 8), (5, 16)), 8 * 8 * 16, 50)),
    # AR: 148x224 -> pool 3 -> 49x74 -> pool 2 -> 24x37; *16 = 14208 into fc 200.
    ("ar_cnn", (148, 224, 2), _count(((12, 2, 8), (12, 16)), 24 * 37 * 16, 200)),
    # WF: 27x60 -> pool 2 -> 13x30 -> pool 2 -> 6x15; *16 = 1440 into fc 400.
    ("wf_cnn", (27, 60, 3), _count(((5, 3, 16), (5, 16)), 6 * 15 * 16, 400)),
  ],
)
def test_shapes_and_parameter_counts(name, shape, expected):
  model = cnn.MODELS[name]()
  variables = jax.eval_shape(model.init, jax.random.key(0), jnp.zeros((1, *shape)))
  n = sum(x.size for x in jax.tree.leaves(variables))
  assert n == expected
  out = jax.eval_shape(model.apply, variables, jnp.zeros((3, *shape)))
  assert out.shape == (3, 2)


def test_make_model_rejects_unknown_names():
  with pytest.raises(ValueError, match="model.name"):
    cnn.make_model(ml_collections.ConfigDict({"name": "resnet", "conv_impl": "xla"}))
  with pytest.raises(ValueError, match="conv_impl"):
    cnn.make_model(ml_collections.ConfigDict({"name": "tc_cnn", "conv_impl": "cuda"}))
