"""Non-overlapping max pooling whose backward pass is an equality with a saved index.

XLA differentiates `reduce_window` max into `select_and_scatter`, which on CPU
is a scalar loop over windows and was a main cost of the TC classifier's step.
With stride equal to the window the windows tile the input, so the forward
pass is a max over kh*kw strided slices that also records which window
position held the maximum (the first one in row-major order on ties, the
element `select_and_scatter` picks, so gradients equal XLA's even where a
window holds equal values, e.g. after a ReLU). The backward pass is then one
elementwise loop: the input viewed as (N, OH, kh, OW, kw, C) -- a reshape,
no copy -- takes dy where its window position equals the saved index.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import jax
import jax.numpy as jnp
from jax import lax

from climjax.ops import native


def _window_slice(x: jnp.ndarray, i: int, j: int, window: tuple[int, int], out_hw) -> jnp.ndarray:
  """Element (i, j) of every window: a strided slice, (N, OH, OW, C)."""
  (kh, kw), (oh, ow) = window, out_hw
  n, _, _, c = x.shape
  return lax.slice(
    x, (0, i, j, 0), (n, i + (oh - 1) * kh + 1, j + (ow - 1) * kw + 1, c), (1, kh, kw, 1)
  )


def _out_hw(x: jnp.ndarray, window: tuple[int, int]) -> tuple[int, int]:
  return x.shape[1] // window[0], x.shape[2] // window[1]


# The forward pass is written on strided slices (one per window position) so
# that XLA fuses it into a single elementwise loop: a reshape to
# (N, OH, kh, OW, kw, C) and a reduction over the window axes ran 5-8x slower
# (256x32x32x8, 2x2, measured side by side).
def _max_and_index(x: jnp.ndarray, window: tuple[int, int]):
  if x.dtype == jnp.float32 and native.available():
    # A custom call: XLA cannot fuse the index's computation into the backward
    # loop (which re-evaluated it for each of the window's elements, 6x slower).
    return native.max_pool_with_index(x, window)
  out_hw = _out_hw(x, window)
  y = best = index = None
  for i in range(window[0]):
    for j in range(window[1]):
      s = _window_slice(x, i, j, window, out_hw)
      if y is None:
        y = best = s
        index = jnp.zeros(s.shape, jnp.int8)
        continue
      y = jnp.maximum(y, s)
      later = s > best  # strictly greater: ties stay with the earlier position
      index = jnp.where(later, jnp.int8(i * window[1] + j), index)
      best = jnp.where(later, s, best)
  return y, index


@functools.partial(jax.custom_vjp, nondiff_argnums=(1,))
def _max_pool(x: jnp.ndarray, window: tuple[int, int]) -> jnp.ndarray:
  return _max_and_index(x, window)[0]


def _max_pool_fwd(x, window):
  y, index = _max_and_index(x, window)
  return y, (index, x.shape)


def _max_pool_bwd(window, res, dy):
  index, x_shape = res
  (kh, kw), (n, oh, ow, c) = window, dy.shape
  position = (
    lax.broadcasted_iota(jnp.int8, (1, 1, kh, 1, kw, 1), 2) * kw
    + lax.broadcasted_iota(jnp.int8, (1, 1, kh, 1, kw, 1), 4)
  )
  hit = position == index[:, :, None, :, None, :]
  dx = jnp.where(hit, dy[:, :, None, :, None, :], jnp.zeros((), dy.dtype))
  dx = dx.reshape(n, oh * kh, ow * kw, c)
  # Rows and columns past the last whole window get no gradient.
  _, h, w, _ = x_shape
  return (jnp.pad(dx, ((0, 0), (0, h - oh * kh), (0, w - ow * kw), (0, 0))),)


_max_pool.defvjp(_max_pool_fwd, _max_pool_bwd)


def max_pool2d(x: jnp.ndarray, window: Sequence[int]) -> jnp.ndarray:
  """Same as `flax.linen.max_pool(x, window, strides=window, padding="VALID")` on NHWC.

  Args:
    x: (N, H, W, C) input.
    window: (kh, kw) pooling window, also the stride.

  Returns:
    (N, H // kh, W // kw, C).
  """
  if x.ndim != 4:
    raise ValueError(f"max_pool2d expects NHWC input, got shape {x.shape}")
  window = tuple(int(k) for k in window)
  if len(window) != 2 or min(window) < 1 or window[0] * window[1] > 127:
    raise ValueError(f"window must be two positive sizes of at most 127 elements (an int8 index), got {window}")
  if x.shape[1] < window[0] or x.shape[2] < window[1]:
    raise ValueError(f"window {window} is larger than the input's spatial shape {x.shape[1:3]}")
  return _max_pool(x, window)
