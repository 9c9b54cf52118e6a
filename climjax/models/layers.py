"""Convolution and pooling layers with a switchable implementation.

Every model builds its convolutions from these so that one config field
(`model.conv_impl`) chooses between XLA's own kernels ("xla") and climjax's
matmul-based CPU kernels ("fast", see `climjax/ops/`). Parameters have the same
names, shapes and initialisers as `flax.linen.Conv` (kernel HWIO, bias), so a
checkpoint does not depend on the implementation.
"""

from __future__ import annotations

from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

IMPLS = ("xla", "fast")


def check_impl(impl: str) -> None:
  if impl not in IMPLS:
    raise ValueError(f"model.conv_impl must be one of {IMPLS}, got {impl!r}")


def conv2d(x, kernel, strides, padding: str, impl: str):
  """NHWC x HWIO -> NHWC convolution by the chosen implementation."""
  check_impl(impl)
  if impl == "xla":
    return jax.lax.conv_general_dilated(
        x, kernel, tuple(strides), padding, dimension_numbers=("NHWC", "HWIO", "NHWC")
    )
  raise ValueError("conv_impl='fast' needs climjax.ops (not yet available)")


class Conv(nn.Module):
  """2-D convolution, NHWC input, HWIO kernel, plus bias."""

  features: int
  kernel_size: Sequence[int]
  strides: Sequence[int] = (1, 1)
  padding: str = "SAME"
  impl: str = "xla"

  @nn.compact
  def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
    kernel = self.param(
        "kernel",
        nn.initializers.lecun_normal(),
        (*self.kernel_size, x.shape[-1], self.features),
    )
    bias = self.param("bias", nn.initializers.zeros, (self.features,))
    y = conv2d(x, kernel, self.strides, self.padding, self.impl)
    return y + bias


def max_pool(x: jnp.ndarray, window: Sequence[int], impl: str = "xla") -> jnp.ndarray:
  """Non-overlapping max pooling (stride = window), 'VALID' padding."""
  check_impl(impl)
  window = tuple(window)
  return nn.max_pool(x, window, strides=window, padding="VALID")
