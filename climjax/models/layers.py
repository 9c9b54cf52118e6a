"""Convolution and pooling layers with a switchable implementation.

Every model builds its convolutions from these so that one config field
(`model.conv_impl`) chooses between XLA's own kernels ("xla") and climjax's
matmul-based CPU kernels ("fast", see `climjax/ops/`). Parameters have the same
names, shapes and initialisers as `flax.linen.Conv` and
`flax.linen.ConvTranspose` (kernel HWIO, bias), so a checkpoint does not depend
on the implementation.

"fast" is a CPU choice: on another backend (a GPU) the layers use XLA's own
kernels, so every config runs there unchanged (`effective_impl`).
"""

from __future__ import annotations

from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from climjax import ops

IMPLS = ("xla", "fast")
_DN = ("NHWC", "HWIO", "NHWC")


def check_impl(impl: str) -> None:
  if impl not in IMPLS:
    raise ValueError(f"model.conv_impl must be one of {IMPLS}, got {impl!r}")


def effective_impl(impl: str) -> str:
  """`impl` checked, and "fast" read as "xla" where JAX's default backend is not the CPU:
  the native kernels are registered for the CPU only, and the matrix-product
  formulations were measured against XLA's CPU convolutions, not cuDNN's."""
  check_impl(impl)
  return impl if jax.default_backend() == "cpu" else "xla"


def conv2d(
  x: jnp.ndarray, kernel: jnp.ndarray, strides: Sequence[int], padding: str, impl: str
) -> jnp.ndarray:
  """NHWC x HWIO -> NHWC convolution by the chosen implementation."""
  if effective_impl(impl) == "xla":
    return jax.lax.conv_general_dilated(x, kernel, tuple(strides), padding, dimension_numbers=_DN)
  return ops.conv2d(x, kernel, tuple(strides), padding)


def conv_transpose2d(
  x: jnp.ndarray, kernel: jnp.ndarray, strides: Sequence[int], padding: str, impl: str
) -> jnp.ndarray:
  """NHWC x HWIO -> NHWC transposed convolution, as `flax.linen.ConvTranspose` computes it
  (`lax.conv_transpose`, kernel not flipped, I = input channels)."""
  if effective_impl(impl) == "xla":
    return jax.lax.conv_transpose(x, kernel, tuple(strides), padding, dimension_numbers=_DN)
  return ops.conv_transpose2d(x, kernel, tuple(strides), padding)


class Conv(nn.Module):
  """2-D convolution, NHWC input, HWIO kernel, plus bias.

  With `pool`, the convolution's output is max-pooled (non-overlapping
  windows) before the bias is added: the same values as pooling conv + bias,
  since the bias is constant per channel, on a quarter of the elements
  (a following ReLU commutes with the pool too, being monotone).
  """

  features: int
  kernel_size: Sequence[int]
  strides: Sequence[int] = (1, 1)
  padding: str = "SAME"
  impl: str = "xla"
  pool: Sequence[int] | None = None

  def _apply(self, x: jnp.ndarray, kernel: jnp.ndarray) -> jnp.ndarray:
    return conv2d(x, kernel, self.strides, self.padding, self.impl)

  def _apply_pooled(self, x: jnp.ndarray, kernel: jnp.ndarray) -> jnp.ndarray:
    if effective_impl(self.impl) == "fast":
      return ops.conv2d_max_pool(x, kernel, self.strides, self.padding, self.pool)
    return max_pool(self._apply(x, kernel), self.pool, self.impl)

  @nn.compact
  def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
    kernel = self.param(
      "kernel",
      nn.initializers.lecun_normal(),
      (*self.kernel_size, x.shape[-1], self.features),
    )
    bias = self.param("bias", nn.initializers.zeros, (self.features,))
    y = self._apply(x, kernel) if self.pool is None else self._apply_pooled(x, kernel)
    return y + bias


class ConvTranspose(Conv):
  """2-D transposed convolution with the parameters of `flax.linen.ConvTranspose`.

  Kernel (KH, KW, in_features, features) initialised lecun_normal, bias zeros;
  "SAME" padding gives an output `strides` times the input's size.
  """

  def _apply(self, x: jnp.ndarray, kernel: jnp.ndarray) -> jnp.ndarray:
    return conv_transpose2d(x, kernel, self.strides, self.padding, self.impl)

  def _apply_pooled(self, x: jnp.ndarray, kernel: jnp.ndarray) -> jnp.ndarray:
    return max_pool(self._apply(x, kernel), self.pool, self.impl)


def max_pool(x: jnp.ndarray, window: Sequence[int], impl: str = "xla") -> jnp.ndarray:
  """Non-overlapping max pooling (stride = window), 'VALID' padding."""
  window = tuple(window)
  if effective_impl(impl) == "xla":
    return nn.max_pool(x, window, strides=window, padding="VALID")
  return ops.max_pool2d(x, window)
