"""Real land-sea mask on any latitude-longitude grid.

The AR classifier takes a land-sea mask as its second channel (LANDFRAC), and
the synthetic generator needs coasts for land-sea contrast and AR landfall.
The mask comes from the `global-land-mask` package (the GLOBE 1 km data set;
most lakes count as land). Its 1 km grid is far finer than any model grid, so a
cell's value is the fraction of sub-samples on land, as a model's LANDFRAC is,
not the value at the cell centre.

`global_land_mask` decompresses about 1 GB on import, so it is imported on first
use only, and results are cached per grid.
"""

from __future__ import annotations

import functools

import numpy as np

# Spacing (deg) the sub-samples aim for: fine enough that coastlines of a 25 km
# grid cell are resolved, coarse enough that a 2 deg cell costs 256 look-ups.
_SUBSAMPLE_DEG = 0.1
_MAX_SUBSAMPLES = 16


def _to_lon180(lon: np.ndarray) -> np.ndarray:
  """Longitude in [-180, 180), the convention of `global_land_mask`."""
  return (np.asarray(lon, np.float64) + 180.0) % 360.0 - 180.0


def is_land(lat: np.ndarray, lon: np.ndarray) -> np.ndarray:
  """Boolean land mask at points (lat, lon in degrees, lon in 0-360 or -180-180).

  `lat` and `lon` broadcast against each other.
  """
  from global_land_mask import globe  # ~1 GB on first import; see the module docstring

  lat = np.clip(np.asarray(lat, np.float64), -90.0, 90.0)
  return np.asarray(globe.is_land(lat, _to_lon180(lon)), bool)


def _spacing(coord: np.ndarray, name: str) -> float:
  if coord.ndim != 1 or coord.size == 0:
    raise ValueError(f"{name} must be a non-empty 1-D array of degrees, got shape {coord.shape}")
  if coord.size == 1:
    return 0.0
  return float(np.median(np.abs(np.diff(coord))))


@functools.lru_cache(maxsize=16)
def _land_fraction_cached(lat_bytes: bytes, lon_bytes: bytes, samples: int | None) -> np.ndarray:
  lat = np.frombuffer(lat_bytes, np.float64)
  lon = np.frombuffer(lon_bytes, np.float64)
  dlat, dlon = _spacing(lat, "lat"), _spacing(lon, "lon")

  def count(spacing: float) -> int:
    if samples is not None:
      return samples
    return int(np.clip(np.ceil(spacing / _SUBSAMPLE_DEG), 1, _MAX_SUBSAMPLES))

  nlat_sub, nlon_sub = count(dlat), count(dlon)
  # Sub-samples sit at the centres of an even k x k split of each cell.
  off_lat = ((np.arange(nlat_sub) + 0.5) / nlat_sub - 0.5) * dlat
  off_lon = ((np.arange(nlon_sub) + 0.5) / nlon_sub - 0.5) * dlon
  total = np.zeros((lat.size, lon.size), np.float32)
  for a in off_lat:
    for b in off_lon:
      total += is_land((lat + a)[:, None], (lon + b)[None, :])
  out = total / np.float32(nlat_sub * nlon_sub)
  out.setflags(write=False)
  return out


def land_fraction(
  lat: np.ndarray, lon: np.ndarray, *, samples_per_cell: int | None = None
) -> np.ndarray:
  """Fraction of each grid cell that is land: float32 (nlat, nlon) in [0, 1].

  `lat`, `lon`: 1-D cell-centre coordinates in degrees (lon in 0-360 or
  -180-180; any order). Each cell is split into k x k sub-samples, with k set so
  sub-samples are about 0.1 deg apart (between 1 and 16 per axis) unless
  `samples_per_cell` fixes it; the fraction is the mean of the sub-samples. The
  cell size is the median spacing of the coordinates. Results are cached per
  grid; a fresh writable copy is returned.
  """
  lat = np.ascontiguousarray(lat, np.float64)
  lon = np.ascontiguousarray(lon, np.float64)
  _spacing(lat, "lat"), _spacing(lon, "lon")
  if np.any(np.abs(lat) > 90):
    raise ValueError(f"lat must lie in [-90, 90], got [{lat.min()}, {lat.max()}]")
  if samples_per_cell is not None and samples_per_cell < 1:
    raise ValueError(f"samples_per_cell must be >= 1, got {samples_per_cell}")
  return _land_fraction_cached(lat.tobytes(), lon.tobytes(), samples_per_cell).copy()
