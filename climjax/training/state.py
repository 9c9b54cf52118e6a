"""The training state: arrays only (step, params, optimizer state)."""

from __future__ import annotations

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import optax


@flax.struct.dataclass
class TrainState:
  step: jnp.ndarray
  params: flax.core.FrozenDict | dict
  opt_state: optax.OptState


def create_train_state(
    model: nn.Module, tx: optax.GradientTransformation, rng: jax.Array, input_shape: tuple[int, ...]
) -> TrainState:
  """Initialises parameters from `rng` for inputs of `input_shape` (batch first)."""
  params = model.init(rng, jnp.zeros(input_shape, jnp.float32))["params"]
  return TrainState(step=jnp.zeros((), jnp.int32), params=params, opt_state=tx.init(params))


def num_parameters(params) -> int:
  return int(sum(x.size for x in jax.tree.leaves(params)))
