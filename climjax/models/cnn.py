"""The supervised patch classifiers of Liu et al. (2016) for TC, AR and WF.

Each is two conv + max-pool stages, a fully connected hidden layer and a 2-way
output (event / no event), with the filter counts, kernel and pool sizes of the
paper's table (docs/DESIGN.md):

| task | patch   | conv1   | pool1 | conv2    | pool2 | fc  |
|------|---------|---------|-------|----------|-------|-----|
| TC   | 32x32x8 | 5x5-8   | 2x2   | 5x5-16   | 2x2   | 50  |
| AR   | 148x224x2 | 12x12-8 | 3x3 | 12x12-16 | 2x2   | 200 |
| WF   | 27x60x3 | 5x5-16  | 2x2   | 5x5-16   | 2x2   | 400 |

Convolutions are "SAME" and pools "VALID" (floor), ReLU throughout.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import flax.linen as nn
import jax.numpy as jnp

from climjax.models import layers


class PatchCNN(nn.Module):
  """conv -> pool -> conv -> pool -> fc -> fc(num_classes)."""

  conv_features: Sequence[int]
  conv_kernels: Sequence[int]
  pools: Sequence[int]
  hidden: int
  num_classes: int = 2
  conv_impl: str = "xla"

  @nn.compact
  def __call__(self, x: jnp.ndarray, *, train: bool = False) -> jnp.ndarray:
    del train  # no dropout or batch norm in the paper's networks
    for features, kernel, pool in zip(self.conv_features, self.conv_kernels, self.pools, strict=True):
      # relu(pool(conv) + bias) = pool(relu(conv + bias)), on 1/pool² of the elements.
      x = layers.Conv(features, (kernel, kernel), impl=self.conv_impl, pool=(pool, pool))(x)
      x = nn.relu(x)
    x = x.reshape((x.shape[0], -1))
    x = nn.relu(nn.Dense(self.hidden)(x))
    return nn.Dense(self.num_classes)(x)


TCNet = functools.partial(PatchCNN, conv_features=(8, 16), conv_kernels=(5, 5), pools=(2, 2), hidden=50)
ARNet = functools.partial(PatchCNN, conv_features=(8, 16), conv_kernels=(12, 12), pools=(3, 2), hidden=200)
WFNet = functools.partial(PatchCNN, conv_features=(16, 16), conv_kernels=(5, 5), pools=(2, 2), hidden=400)
# A very small variant for tests of the machinery (not a paper network).
TinyNet = functools.partial(PatchCNN, conv_features=(4, 4), conv_kernels=(3, 3), pools=(2, 2), hidden=8)

MODELS = {"tc_cnn": TCNet, "ar_cnn": ARNet, "wf_cnn": WFNet, "tiny_cnn": TinyNet}


def make_model(model_config) -> nn.Module:
  """The classifier the config names (`model.name`, `model.conv_impl`)."""
  name = model_config.name
  if name not in MODELS:
    raise ValueError(f"model.name must be one of {sorted(MODELS)}, got {name!r}")
  layers.check_impl(model_config.get("conv_impl", "xla"))
  return MODELS[name](conv_impl=model_config.get("conv_impl", "xla"))
