"""Stride-1 convolutions on narrow channels, run on a space-to-depth grid.

The fallback for machines without the native kernels (climjax.ops.native,
which are 2-3x faster on these layers); used when those are unavailable.

XLA's CPU convolution is slow when both channel counts are small (the TC
classifier's 5x5 convolutions have 8 and 16): its matrix products are 8 or 16
wide. Folding each 2x2 block of pixels into the channels turns a KxK
convolution C -> O on HxW into a ceil((K+1)/2)-square convolution 4C -> 4O on
(H/2)x(W/2): the same outputs, 4x wider products, at the price of the
structural zeros of the folded kernel (36 taps where 25 are real for K=5).
On the TC layers XLA ran the folded pieces 1.1-2.2x faster per useful FLOP
(`launch/bench_ops.py --tc --formulations`).

Everything here is pad / reshape / gather / one XLA convolution, so JAX's
autodiff gives the gradients (XLA's convolution gradients, on the wide grid).
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
from jax import lax

_DN = ("NHWC", "HWIO", "NHWC")


def s2d_applies(x_shape, w_shape, strides, padding: str) -> bool:
  """Stride 1, "SAME", odd square kernels of at least 3, narrow channels."""
  kh, kw, c, o = w_shape
  return (
    tuple(strides) == (1, 1)
    and padding == "SAME"
    and kh == kw
    and kh % 2 == 1
    and kh >= 3
    and c <= 16
    and o <= 32
    and min(x_shape[1:3]) >= kh
  )


def _folded_taps(k: int) -> np.ndarray:
  """(Ku, 2, 2) index into a kernel axis padded by one zero on each side:
  folded tap U, input phase p, output phase a -> original tap 2U + p - a (+1)."""
  ku = (k + 2) // 2
  u, p, a = np.meshgrid(np.arange(ku), np.arange(2), np.arange(2), indexing="ij")
  return 2 * u + p - a + 1


def fold_kernel(w: jnp.ndarray) -> jnp.ndarray:
  """(K, K, C, O) -> (Ku, Ku, 4C, 4O), channels ordered (row phase, col phase, channel)."""
  k, _, c, o = w.shape
  ku = (k + 2) // 2
  taps = _folded_taps(k)  # (Ku, 2, 2): U, p, a
  # Taps 2U + p - a outside [0, K) read the zero padding.
  wp = jnp.pad(w, ((1, 1), (1, 1), (0, 0), (0, 0)))
  # (U, p, a) x (V, q, b) -> (U, p, a, V, q, b, C, O)
  folded = wp[taps[:, :, :, None, None, None], taps[None, None, None, :, :, :]]
  folded = folded.transpose(0, 3, 1, 4, 6, 2, 5, 7)  # (U, V, p, q, C, a, b, O)
  return folded.reshape(ku, ku, 4 * c, 4 * o)


def conv2d_s2d(x: jnp.ndarray, w: jnp.ndarray) -> jnp.ndarray:
  """`lax.conv_general_dilated(x, w, (1, 1), "SAME")` (NHWC, HWIO) on the folded grid."""
  n, h, w_, c = x.shape
  k, _, _, o = w.shape
  pad = (k - 1) // 2
  # Pad to an even size: the folded grid pairs rows and columns.
  hp, wp = h + 2 * pad, w_ + 2 * pad
  xp = jnp.pad(x, ((0, 0), (pad, pad + hp % 2), (pad, pad + wp % 2), (0, 0)))
  hp, wp = xp.shape[1], xp.shape[2]
  folded = xp.reshape(n, hp // 2, 2, wp // 2, 2, c).transpose(0, 1, 3, 2, 4, 5)
  folded = folded.reshape(n, hp // 2, wp // 2, 4 * c)
  y = lax.conv_general_dilated(folded, fold_kernel(w), (1, 1), "VALID", dimension_numbers=_DN)
  gh, gw = y.shape[1], y.shape[2]
  y = y.reshape(n, gh, gw, 2, 2, o).transpose(0, 1, 3, 2, 4, 5).reshape(n, 2 * gh, 2 * gw, o)
  return y[:, :h, :w_, :]
