"""Fields sampled along great-circle rays from storm centres: the "every direction" tests.

As in GFDL/TECA, a criterion holds in every direction when it holds along each
of `num_directions` rays (N, NE, E, ...), sampled at half the grid spacing.
"""

from __future__ import annotations

import numpy as np

from climjax.data.heuristics.grid import _Grid
from climjax.data.heuristics.sphere import destination


def _ray_samples(
  fields: dict[str, np.ndarray],
  grid: _Grid,
  lat_c: np.ndarray,
  lon_c: np.ndarray,
  radii: np.ndarray,
  bearings: np.ndarray,
) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray]:
  """Values (K, D, R) of each field along D rays from K centres, NaN off the grid."""
  lat, lon = destination(
    lat_c[:, None, None], lon_c[:, None, None], bearings[None, :, None], radii[None, None, :]
  )
  iy, ix, inside = grid.nearest(lat, lon)
  iy = np.clip(iy, 0, len(grid.lat) - 1)
  ix = np.clip(ix, 0, len(grid.lon) - 1)
  samples = {name: np.where(inside, f[iy, ix], np.nan) for name, f in fields.items()}
  return samples, lat, lon


def _nan_reduce(fn, x: np.ndarray, axis, empty: float) -> np.ndarray:
  """np.nanmax/nanmin without the all-NaN warning; `empty` where nothing is finite."""
  finite = np.isfinite(x)
  fill = -np.inf if fn is np.max else np.inf
  out = fn(np.where(finite, x, fill), axis=axis)
  return np.where(np.any(finite, axis=axis), out, empty)


def _core_drop(
  field: np.ndarray,
  grid: _Grid,
  samples: np.ndarray,
  ray_lat: np.ndarray,
  ray_lon: np.ndarray,
  core: np.ndarray,
  radii: np.ndarray,
  bearings: np.ndarray,
) -> np.ndarray:
  """Smallest fall, over all directions, of a field away from its core maximum.

  The core is the largest sample within the core radius of the centre (`core`
  selects those radii of `samples`, (K, D, R)); from there, rays of length
  `radii[-1]` must each reach a value below the core's by the threshold. Rays
  start at the core maximum, not the pressure centre, so a cold-core low (whose
  warmest point within the core radius lies on its rim) does not pass.
  """
  inner = np.where(np.isfinite(samples[..., core]), samples[..., core], -np.inf)
  flat = inner.reshape(len(inner), -1)
  best = np.argmax(flat, axis=1)
  peak = flat[np.arange(len(flat)), best]
  peak_lat = ray_lat[..., core].reshape(len(inner), -1)[np.arange(len(flat)), best]
  peak_lon = ray_lon[..., core].reshape(len(inner), -1)[np.arange(len(flat)), best]
  rays, _, _ = _ray_samples({"f": field}, grid, peak_lat, peak_lon, radii, bearings)
  lowest = _nan_reduce(np.min, rays["f"], -1, np.nan)
  drop = (peak[:, None] - lowest).min(axis=1)
  return np.where(np.isfinite(peak), drop, np.nan)
