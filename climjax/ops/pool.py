"""Non-overlapping max pooling whose backward pass is an equality mask.

XLA differentiates `reduce_window` max into `select_and_scatter`, which on CPU
is a scalar loop over windows and was a main cost of the TC classifier's step
(~8x slower than this backward pass). With stride equal to the window the
windows tile the input, so the pool is a max over kh*kw strided slices and its
gradient is elementwise: each window sends its output gradient to the position
that held the maximum (an equality mask). Ties go to the first
maximum in row-major window order, the element `select_and_scatter` picks, so
gradients equal XLA's even where a window holds equal values (e.g. after a ReLU).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import jax
import jax.numpy as jnp
from jax import lax


def _window_slice(x: jnp.ndarray, i: int, j: int, window: tuple[int, int], out_hw) -> jnp.ndarray:
  """Element (i, j) of every window: a strided slice, (N, OH, OW, C)."""
  (kh, kw), (oh, ow) = window, out_hw
  n, _, _, c = x.shape
  return lax.slice(
    x, (0, i, j, 0), (n, i + (oh - 1) * kh + 1, j + (ow - 1) * kw + 1, c), (1, kh, kw, 1)
  )


def _out_hw(x: jnp.ndarray, window: tuple[int, int]) -> tuple[int, int]:
  return x.shape[1] // window[0], x.shape[2] // window[1]


# Both directions are written on strided slices (one per window position) so
# that XLA fuses each into a single elementwise loop: a reshape to
# (N, OH, kh, OW, kw, C) and a reduction over the window axes ran 5-8x slower
# in the forward pass, and stacking the backward's pieces 1.4x slower than
# summing them with interior padding (256x32x32x8, 2x2, measured side by side).
@functools.partial(jax.custom_vjp, nondiff_argnums=(1,))
def _max_pool(x: jnp.ndarray, window: tuple[int, int]) -> jnp.ndarray:
  out_hw = _out_hw(x, window)
  y = None
  for i in range(window[0]):
    for j in range(window[1]):
      s = _window_slice(x, i, j, window, out_hw)
      y = s if y is None else jnp.maximum(y, s)
  return y


def _max_pool_fwd(x, window):
  y = _max_pool(x, window)
  return y, (x, y)


def _max_pool_bwd(window, res, dy):
  x, y = res
  (kh, kw), (oh, ow) = window, y.shape[1:3]
  _, h, w, _ = x.shape
  zero = jnp.zeros((), dy.dtype)
  # Earlier window positions claim ties first, as select_and_scatter does.
  taken = jnp.zeros(y.shape, bool)
  dx = None
  for i in range(kh):
    for j in range(kw):
      hit = (_window_slice(x, i, j, window, (oh, ow)) == y) & ~taken
      taken = taken | hit
      # Back to x's grid: element (i, j) of window (a, b) is x[a*kh + i, b*kw + j].
      placed = lax.pad(
        jnp.where(hit, dy, zero),
        zero,
        (
          (0, 0, 0),
          (i, h - i - (oh - 1) * kh - 1, kh - 1),
          (j, w - j - (ow - 1) * kw - 1, kw - 1),
          (0, 0, 0),
        ),
      )
      dx = placed if dx is None else dx + placed
  return (dx,)


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
  if len(window) != 2 or min(window) < 1:
    raise ValueError(f"window must be two positive sizes, got {window}")
  if x.shape[1] < window[0] or x.shape[2] < window[1]:
    raise ValueError(f"window {window} is larger than the input's spatial shape {x.shape[1:3]}")
  return _max_pool(x, window)
