"""Spatially correlated noise: the synoptic variability on top of every background.

Gaussian bumps centred on a coarse lattice (`smooth_noise`); the lattice
interpolators are shared with the time-evolving noise of the global snapshots
(`background._NoiseBank`).
"""

from __future__ import annotations

import numpy as np


def _gaussian_interpolator(
  n: int, length_px: float, spacing: int, *, periodic: bool = True
) -> np.ndarray:
  """(n, ceil(n / spacing)) Gaussian kernel from a coarse lattice to n pixels.

  Rows have unit L2 norm, so a kernel applied to unit-variance white noise on the
  lattice gives unit variance at every pixel. Periodic kernels wrap around (for
  longitude); non-periodic ones extend the lattice 2 lengths past both ends so
  the edges see as many lattice points as the interior (for latitude).
  """
  if periodic:
    m = -(-n // spacing)
    centres = spacing * np.arange(m) + (spacing - 1) / 2
    d = np.abs(np.arange(n)[:, None] - centres[None, :])
    d = np.minimum(d, spacing * m - d)
  else:
    pad = int(np.ceil(2 * length_px / spacing))
    centres = spacing * np.arange(-pad, -(-n // spacing) + pad) + (spacing - 1) / 2
    d = np.abs(np.arange(n)[:, None] - centres[None, :])
  k = np.exp(-0.5 * (d / length_px) ** 2)
  return (k / np.sqrt((k**2).sum(axis=1, keepdims=True))).astype(np.float32)


def smooth_noise(
  rng: np.random.Generator, shape: tuple[int, ...], length_px: float | np.ndarray
) -> np.ndarray:
  """Unit-variance noise with Gaussian spatial correlation over the last two axes.

  A sum of Gaussian bumps of width `length_px` centred on a lattice of spacing
  about L/1.5 pixels with independent uniform amplitudes: stationary to within
  a few per cent, Gaussian by the central limit theorem (each pixel sums over a
  dozen or more lattice points), periodic in both axes (seamless in longitude),
  and a few times cheaper than smoothing white noise on the full grid because
  random numbers dominate the cost. The correlation of pixels d apart is about
  exp(-d^2 / (4 L^2)). `length_px` is a scalar or broadcasts against
  `shape[:-2]` (one length scale per channel, say).
  """
  ny, nx = shape[-2:]
  lengths = np.broadcast_to(np.asarray(length_px, np.float32), shape[:-2])
  out = np.empty(shape, np.float32)
  for length in np.unique(lengths):
    sel = lengths == length
    spacing = max(1, int(length / 1.5))
    ky = _gaussian_interpolator(ny, float(length), spacing)
    kx = _gaussian_interpolator(nx, float(length), spacing)
    count = int(sel.sum())
    # Uniform amplitudes scaled to unit variance: cheaper than normals.
    amp = rng.random((count, ky.shape[1], kx.shape[1]), dtype=np.float32)
    amp = (amp - 0.5) * np.float32(np.sqrt(12.0))
    # Two large matrix products (one per axis) instead of many tiny batched ones.
    w = amp.reshape(-1, kx.shape[1]) @ kx.T  # (count * my, nx)
    w = w.reshape(count, ky.shape[1], nx).transpose(0, 2, 1).reshape(-1, ky.shape[1]) @ ky.T
    out[sel] = w.reshape(count, nx, ny).transpose(0, 2, 1)
  return out
