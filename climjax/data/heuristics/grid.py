"""The (lat, lon) grid of a dataset, and reading one time step of a field off it.

Distances in degrees become pixel footprints through the grid spacing. What a
grid cannot resolve does depend on it: a vortex's vorticity on a coarse grid is
the average over a cell, and no radius shorter than a cell holds a neighbour;
`spacing_deg` and `diagonal_deg` are what detectors scale such criteria by.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import xarray as xr

from climjax.data.errors import DataError
from climjax.data.heuristics.sphere import EARTH_RADIUS_KM, _is_global


@dataclasses.dataclass(frozen=True)
class _Grid:
  """A (lat, lon) grid: ascending latitude, longitude 0-360 ascending."""

  lat: np.ndarray
  lon: np.ndarray

  @property
  def dlat(self) -> float:
    return float(np.median(np.abs(np.diff(self.lat))))

  @property
  def dlon(self) -> float:
    return float(np.median(np.diff(self.lon)))

  @property
  def spacing_deg(self) -> float:
    """Mean of the latitude and longitude spacings: the size of a cell, in degrees."""
    return 0.5 * (self.dlat + self.dlon)

  @property
  def diagonal_deg(self) -> float:
    """A cell's diagonal (degrees): the distance to the farthest of its 8 neighbours."""
    return float(np.hypot(self.dlat, self.dlon))

  @property
  def is_global(self) -> bool:
    return _is_global(self.lon)

  @property
  def lon_mode(self) -> str:
    return "wrap" if self.is_global else "nearest"

  def window(self, radius_deg: float) -> tuple[int, int]:
    """Full sizes (rows, columns) of a +-radius_deg window, in pixels."""
    return (
      2 * max(1, int(round(radius_deg / self.dlat))) + 1,
      2 * max(1, int(round(radius_deg / self.dlon))) + 1,
    )

  def y_of(self, lat: np.ndarray) -> np.ndarray:
    """Fractional row of latitudes (clipped to the grid)."""
    return np.interp(lat, self.lat, np.arange(len(self.lat), dtype=np.float64))

  def x_of(self, lon: np.ndarray) -> np.ndarray:
    """Fractional column of longitudes; on a global grid it continues past the seam."""
    if self.is_global:
      return (np.asarray(lon) - self.lon[0]) / self.dlon
    return np.interp(lon, self.lon, np.arange(len(self.lon), dtype=np.float64))

  def nearest(self, lat: np.ndarray, lon: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Nearest grid indices of points, and whether each point lies on the grid."""
    iy = np.rint(self.y_of(lat)).astype(np.int64)
    inside = (lat >= self.lat[0] - self.dlat / 2) & (lat <= self.lat[-1] + self.dlat / 2)
    if self.is_global:
      ix = np.mod(np.rint(self.x_of(lon)).astype(np.int64), len(self.lon))
    else:
      ix = np.rint(self.x_of(lon)).astype(np.int64)
      inside &= (lon >= self.lon[0] - self.dlon / 2) & (lon <= self.lon[-1] + self.dlon / 2)
    return iy, ix, inside

  def cell_area_km2(self) -> np.ndarray:
    """Area of each grid cell (lat, 1) in km2, from the latitude of its edges."""
    edges = np.concatenate([[-90.0], (self.lat[1:] + self.lat[:-1]) / 2, [90.0]])
    if self.lat[0] > -90 + self.dlat:  # regional grid: half a cell beyond the outer rows
      edges[0] = self.lat[0] - self.dlat / 2
    if self.lat[-1] < 90 - self.dlat:
      edges[-1] = self.lat[-1] + self.dlat / 2
    band = np.abs(np.diff(np.sin(np.deg2rad(np.clip(edges, -90, 90)))))
    return (EARTH_RADIUS_KM**2 * np.deg2rad(self.dlon) * band)[:, None]


def region_box(grid: _Grid, ys: np.ndarray, x0: int, x1: int) -> dict:
  """A connected region's box: inclusive pixel indices and its edges in degrees, for
  the rows `ys` and the columns x0..x1 (x1 may pass the last column on a global grid)."""
  lon_min = float(grid.lon[x0])
  return {
    "ymin": int(ys.min()),
    "xmin": x0,
    "ymax": int(ys.max()),
    "xmax": x1,
    "lat_min": float(grid.lat[ys.min()]),
    "lon_min": lon_min,
    "lat_max": float(grid.lat[ys.max()]),
    "lon_max": lon_min + (x1 - x0) * grid.dlon,
  }


def _source(ds: xr.Dataset) -> str:
  files = ds.encoding.get("source_files")
  if not files:
    return "<dataset>"
  return files[0] if len(files) == 1 else f"{files[0]} (and {len(files) - 1} more)"


def _grid_of(ds: xr.Dataset) -> _Grid:
  for dim in ("lat", "lon"):
    if dim not in ds.coords:
      raise DataError(_source(ds), f"expected a {dim!r} coordinate (dims time, lat, lon)", dim)
  lat = np.asarray(ds["lat"].values, np.float64)
  lon = np.asarray(ds["lon"].values, np.float64)
  if np.any(np.diff(lat) <= 0) or np.any(np.diff(lon) <= 0):
    raise DataError(
      _source(ds), "expected ascending lat and lon (as netcdf.open_fields returns)", "lat/lon"
    )
  return _Grid(lat, lon)


def _field(ds: xr.Dataset, name: str, t: int) -> np.ndarray:
  var = ds[name]
  if var.dims != ("time", "lat", "lon"):
    raise DataError(_source(ds), f"expected dims (time, lat, lon), found {var.dims}", name)
  return np.asarray(var.isel(time=t).values, np.float32)
