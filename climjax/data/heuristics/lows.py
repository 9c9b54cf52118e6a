"""Closed sea-level pressure lows, shared by the tropical and extratropical cyclone detectors.

Local PSL minima, merging minima closer than a distance, the centre of a low
(the centroid of its pressure deficit) and its box (where PSL has recovered
part of its rise along each ray).
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from climjax.data.heuristics.grid import _Grid
from climjax.data.heuristics.sphere import KM_PER_DEG, great_circle_km


def _local_minima(field: np.ndarray, grid: _Grid, window_deg: float) -> np.ndarray:
  """Flat indices of one pixel per local minimum of a window_deg-wide window (ties merged)."""
  filled = np.where(np.isfinite(field), field, np.inf)
  lowest = ndimage.minimum_filter(
    filled, size=grid.window(window_deg / 2), mode=("nearest", grid.lon_mode)
  )
  mask = (filled == lowest) & np.isfinite(filled)
  # A flat minimum is one candidate, not one per pixel.
  labels, _ = ndimage.label(mask)
  flat = labels.ravel()
  where = np.flatnonzero(flat)
  _, first = np.unique(flat[where], return_index=True)
  return where[first]


def _merge_nearby(lat: np.ndarray, lon: np.ndarray, value: np.ndarray, distance_deg: float):
  """Indices of the points kept when, of any two within `distance_deg`, the lower value wins.

  TempestExtremes' `mergedist`: points are taken lowest first, and each drops
  every point within the distance (great circle) that is not yet taken.
  """
  order = np.argsort(value, kind="stable")
  near = great_circle_km(lat[:, None], lon[:, None], lat[None], lon[None])
  near = near <= distance_deg * KM_PER_DEG
  dropped = np.zeros(len(lat), bool)
  kept = []
  for i in order:
    if not dropped[i]:
      kept.append(i)
      dropped |= near[i]
  return np.sort(np.array(kept, np.int64))


def _pressure_centre(
  psl: np.ndarray,
  grid: _Grid,
  cy: np.ndarray,
  cx: np.ndarray,
  depth: np.ndarray,
  radius_deg: float,
) -> tuple[np.ndarray, np.ndarray]:
  """Centre (lat, lon) of each low: the centroid of its pressure deficit near the minimum.

  Weights are how far PSL lies below `depth` above the minimum, over pixels
  within `radius_deg` of it. The single lowest pixel of a flat-bottomed low
  wanders with small-scale noise by a few pixels; the centroid of the deficit
  does not.
  """
  height, width = psl.shape
  lat_c, lon_c = grid.lat[cy], grid.lon[cx]
  ry = max(1, int(np.ceil(radius_deg / grid.dlat)))
  widest = np.cos(np.deg2rad(min(float(np.abs(lat_c).max()), 85.0)))
  rx = min(max(1, int(np.ceil(radius_deg / (grid.dlon * widest)))), width // 2)
  iy = cy[:, None, None] + np.arange(-ry, ry + 1)[None, :, None]
  ix = cx[:, None, None] + np.arange(-rx, rx + 1)[None, None, :]
  valid = (iy >= 0) & (iy < height)
  if grid.is_global:
    ix = np.mod(ix, width)
  else:
    valid = valid & (ix >= 0) & (ix < width)
  iy, ix = np.clip(iy, 0, height - 1), np.clip(ix, 0, width - 1)
  lat = grid.lat[iy]
  east = np.mod(grid.lon[ix] - lon_c[:, None, None] + 180.0, 360.0) - 180.0
  near = great_circle_km(
    lat_c[:, None, None], lon_c[:, None, None], lat, lon_c[:, None, None] + east
  )
  weight = np.clip(psl[cy, cx][:, None, None] + depth[:, None, None] - psl[iy, ix], 0.0, None)
  weight = np.where(valid & (near <= radius_deg * KM_PER_DEG) & np.isfinite(weight), weight, 0.0)
  total = np.maximum(weight.sum(axis=(1, 2)), 1e-30)
  centre_lat = (weight * lat).sum(axis=(1, 2)) / total
  centre_lon = lon_c + (weight * east).sum(axis=(1, 2)) / total
  return centre_lat, np.mod(centre_lon, 360.0)


def _recovery_box(
  grid: _Grid,
  psl_rays: np.ndarray,
  psl_c: np.ndarray,
  ray_rise: np.ndarray,
  ray_lat: np.ndarray,
  ray_lon: np.ndarray,
  lon_c: np.ndarray,
  centre_lon: np.ndarray,
  recovery: float,
) -> dict[str, np.ndarray]:
  """The box of each low: along each ray, where PSL has recovered `recovery` of that ray's rise.

  `psl_rays` (K, D, R) are PSL samples along D rays of R radii from the minima
  at longitudes `lon_c` (a ray that never recovers ends at its last radius);
  the box is expressed around the refined centre `centre_lon`, so that across
  the seam both use the same continuation of longitude. Returns the box in
  pixels (`ymin`, `xmin`, `ymax`, `xmax`; fractional, x continuing past the
  seam) and degrees (`lat_min`, `lon_min`, `lat_max`, `lon_max` = lon_min + width).
  """
  recovered = (psl_rays - psl_c[:, None, None]) >= (recovery * np.maximum(ray_rise, 0))[..., None]
  recovered[..., -1] = True
  edge = np.argmax(recovered, axis=-1)[..., None]  # (K, D, 1): first radius index
  edge_lat = np.take_along_axis(ray_lat, edge, -1)[..., 0]
  edge_lon = np.take_along_axis(ray_lon, edge, -1)[..., 0]
  east = np.mod(edge_lon - lon_c[:, None] + 180.0, 360.0) - 180.0
  shift = np.mod(lon_c - centre_lon + 180.0, 360.0) - 180.0
  box_lo = centre_lon + shift + east.min(axis=1)
  box_hi = centre_lon + shift + east.max(axis=1)
  lat_min, lat_max = edge_lat.min(axis=1), edge_lat.max(axis=1)
  lon_min = np.mod(box_lo, 360.0)
  return {
    "ymin": grid.y_of(lat_min),
    "xmin": grid.x_of(box_lo),
    "ymax": grid.y_of(lat_max),
    "xmax": grid.x_of(box_hi),
    "lat_min": lat_min,
    "lon_min": lon_min,
    "lat_max": lat_max,
    "lon_max": lon_min + (box_hi - box_lo),
  }
